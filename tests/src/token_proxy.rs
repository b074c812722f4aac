//! A small HTTP proxy in front of a [`crate::registry::LocalRegistry`] that behaves
//! like Docker Hub's token auth, and that can break transfers on purpose.
//!
//! - Bearer auth (with [`TokenProxy::start`]): a request without the token gets `401`
//!   and `WWW-Authenticate: Bearer realm="http://ADDR/token",service=...,scope=...`;
//!   `GET /token` checks basic credentials and answers `{"token":..,"access_token":..}`.
//!   [`TokenProxy::start_open`] lets everything through without auth.
//! - Everything else is forwarded to the registry as it streams (`Range` included,
//!   `Host` kept so the registry's upload locations point back at the proxy).
//! - [`TokenProxy::corrupt`]: every GET of a blob or manifest by that digest gets a
//!   body with its first byte flipped (same length, same headers).
//! - [`TokenProxy::stall_once`]: the next GET of that digest sends half its body and
//!   then hangs.
//! - [`TokenProxy::ignore_range`]: `Range` headers are dropped, as by a registry that
//!   does not support them.
//!
//! It runs on its own thread and runtime, so it serves blocking and async tests alike,
//! and stops (dropping every connection) on drop.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RANGE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The `service` the proxy names in its challenges.
pub const TOKEN_SERVICE: &str = "berth-test-registry";

/// Errors carried by proxied bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy sends.
type ProxyBody = BoxBody<Bytes, BoxError>;

/// One request the proxy saw, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// `GET`, `HEAD`, `PUT`, ...
    pub method: String,
    /// The path (and query) asked for.
    pub path: String,
    /// The `Range` header the client sent, if any.
    pub range: Option<String>,
    /// The status the proxy answered with.
    pub status: u16,
}

/// The settings and switches shared by the proxy's handlers and its handle.
#[derive(Debug)]
struct Controls {
    upstream: String,
    addr: String,
    credentials: Option<(String, String)>,
    token: String,
    corrupt: Mutex<Option<String>>,
    stall_once: Mutex<Option<String>>,
    ignore_range: AtomicBool,
    log: Mutex<Vec<ProxiedRequest>>,
}

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct TokenProxy {
    controls: Arc<Controls>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TokenProxy {
    /// Starts a proxy in front of the registry at `upstream` (`127.0.0.1:PORT`) that
    /// demands bearer tokens, which it hands out for `username` / `password`.
    pub fn start(upstream: &str, username: &str, password: &str) -> Self {
        Self::start_inner(upstream, Some((username.to_string(), password.to_string())))
    }

    /// Starts a proxy in front of `upstream` that asks for no credentials (for the
    /// fault switches alone).
    pub fn start_open(upstream: &str) -> Self {
        Self::start_inner(upstream, None)
    }

    fn start_inner(upstream: &str, credentials: Option<(String, String)>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        listener
            .set_nonblocking(true)
            .expect("making the proxy's listener non-blocking");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let controls = Arc::new(Controls {
            upstream: upstream.to_string(),
            addr,
            credentials,
            token: format!("berth-test-token-{}-{nanos}", std::process::id()),
            corrupt: Mutex::new(None),
            stall_once: Mutex::new(None),
            ignore_range: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let serving = controls.clone();
        let thread = std::thread::Builder::new()
            .name("token-proxy".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the proxy's runtime");
                runtime.block_on(serve(listener, serving, shutdown_rx));
                // Dropping the runtime here drops every connection still open,
                // the stalled ones included.
            })
            .expect("starting the proxy thread");
        TokenProxy {
            controls,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, the address clients use instead of the registry's.
    pub fn addr(&self) -> &str {
        &self.controls.addr
    }

    /// `ADDR/repo_tag` through the proxy.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr())
    }

    /// From now on, serves the blob or manifest `digest` with its first byte flipped.
    pub fn corrupt(&self, digest: &str) {
        *lock(&self.controls.corrupt) = Some(digest.to_string());
    }

    /// The next GET of `digest` sends half of the body and then hangs; later GETs
    /// are served normally.
    pub fn stall_once(&self, digest: &str) {
        *lock(&self.controls.stall_once) = Some(digest.to_string());
    }

    /// Drops (`true`) or passes on (`false`) the `Range` header of requests.
    pub fn ignore_range(&self, ignore: bool) {
        self.controls.ignore_range.store(ignore, Ordering::SeqCst);
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.controls.log).clone()
    }

    /// How many token requests were answered with a token.
    pub fn tokens_issued(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.starts_with("/token") && r.status == 200)
            .count()
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Locks `mutex`, even if a panicking handler poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections until `shutdown` fires.
async fn serve(
    listener: std::net::TcpListener,
    controls: Arc<Controls>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let controls = controls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let controls = controls.clone();
                async move { Ok::<_, Infallible>(handle(request, &controls).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one request: a token, a challenge, or the registry's answer.
async fn handle(request: Request<Incoming>, controls: &Controls) -> Response<ProxyBody> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let range = request
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let response = if request.uri().path() == "/token" {
        issue_token(&request, controls)
    } else if controls.credentials.is_some() && !has_token(&request, controls) {
        challenge(&request, controls)
    } else {
        match forward(request, controls).await {
            Ok(response) => response,
            Err(e) => text_response(StatusCode::BAD_GATEWAY, format!("proxy: {e}")),
        }
    };
    lock(&controls.log).push(ProxiedRequest {
        method,
        path,
        range,
        status: response.status().as_u16(),
    });
    response
}

/// `GET /token`: a token for the right basic credentials, 401 otherwise.
fn issue_token(request: &Request<Incoming>, controls: &Controls) -> Response<ProxyBody> {
    let expected = controls.credentials.as_ref().map(|(user, password)| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    });
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if expected.is_none() || given != expected.as_deref() {
        return json_response(
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#
                .to_string(),
        );
    }
    let body = serde_json::json!({
        "token": controls.token,
        "access_token": controls.token,
        "expires_in": 300,
    });
    json_response(StatusCode::OK, body.to_string())
}

/// Whether the request carries the proxy's bearer token.
fn has_token(request: &Request<Incoming>, controls: &Controls) -> bool {
    let expected = format!("Bearer {}", controls.token);
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
}

/// The 401 answer that tells a client where to get a token and for what scope.
fn challenge(request: &Request<Incoming>, controls: &Controls) -> Response<ProxyBody> {
    let mut value = format!(
        r#"Bearer realm="http://{}/token",service="{TOKEN_SERVICE}""#,
        controls.addr
    );
    if let Some(repository) = repository_of(request.uri().path()) {
        let actions = if matches!(*request.method(), Method::GET | Method::HEAD) {
            "pull"
        } else {
            "pull,push"
        };
        value.push_str(&format!(r#",scope="repository:{repository}:{actions}""#));
    }
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_string(),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_str(&value).expect("a valid header value"),
    );
    response
}

/// The repository named by a `/v2/<name>/{blobs,manifests,tags}/...` path.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|marker| rest.rfind(marker))
        .min()
        .map(|end| &rest[..end])
}

/// Sends the request on to the registry and streams its answer back, applying the
/// fault switches.
async fn forward(
    request: Request<Incoming>,
    controls: &Controls,
) -> Result<Response<ProxyBody>, BoxError> {
    let stream = tokio::net::TcpStream::connect(&controls.upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);

    let (mut parts, body) = request.into_parts();
    parts.headers.remove(AUTHORIZATION);
    if controls.ignore_range.load(Ordering::SeqCst) {
        parts.headers.remove(RANGE);
    }
    let is_get = parts.method == Method::GET;
    let path = parts.uri.path().to_string();
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;

    let ends_with = |digest: &Option<String>| {
        digest
            .as_deref()
            .is_some_and(|d| is_get && path.ends_with(&format!("/{d}")))
    };
    let corrupt = ends_with(&lock(&controls.corrupt));
    let stall = {
        let mut armed = lock(&controls.stall_once);
        let hit = ends_with(&armed);
        if hit {
            *armed = None;
        }
        hit
    };

    let (parts, body) = response.into_parts();
    let length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let frames = BodyStream::new(body).map(|frame| frame.map_err(BoxError::from));
    let body: ProxyBody = if stall {
        let half = length.unwrap_or(0) / 2;
        BodyExt::boxed(StreamBody::new(stall_after(frames, half)))
    } else if corrupt {
        BodyExt::boxed(StreamBody::new(flip_first_byte(frames)))
    } else {
        BodyExt::boxed(StreamBody::new(frames))
    };
    Ok(Response::from_parts(parts, body))
}

/// The frames of `frames` with the first data byte inverted.
fn flip_first_byte(
    frames: impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static,
) -> impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
    let mut flipped = false;
    frames.map(move |frame| {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) if !flipped && !data.is_empty() => {
                flipped = true;
                let mut bytes = data.to_vec();
                bytes[0] ^= 0xFF;
                Ok(Frame::data(Bytes::from(bytes)))
            }
            Ok(data) => Ok(Frame::data(data)),
            Err(other) => Ok(other),
        }
    })
}

/// The first `limit` data bytes of `frames`, then nothing, forever.
fn stall_after(
    frames: impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Unpin + 'static,
    limit: u64,
) -> impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
    futures::stream::unfold((frames, 0u64), move |(mut frames, sent)| async move {
        if sent >= limit {
            return None;
        }
        match frames.next().await? {
            Ok(frame) => match frame.into_data() {
                Ok(mut data) => {
                    let room = (limit - sent) as usize;
                    data.truncate(room);
                    let sent = sent + data.len() as u64;
                    Some((Ok(Frame::data(data)), (frames, sent)))
                }
                Err(other) => Some((Ok(other), (frames, sent))),
            },
            Err(e) => Some((Err(e), (frames, sent))),
        }
    })
    .chain(futures::stream::pending())
}

/// A response with a JSON body.
fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = text_response(status, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response with a fixed body.
fn text_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_read_from_distribution_paths() {
        assert_eq!(repository_of("/v2/a/b/manifests/v1"), Some("a/b"));
        assert_eq!(repository_of("/v2/app/blobs/sha256:abc"), Some("app"));
        assert_eq!(repository_of("/v2/app/blobs/uploads/1234"), Some("app"));
        assert_eq!(repository_of("/v2/x/tags/list"), Some("x"));
        assert_eq!(repository_of("/v2/"), None);
        assert_eq!(repository_of("/token"), None);
    }
}
