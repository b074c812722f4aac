//! Connecting to a shim's task API on its unix socket.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::client::{ClientError, TaskClient};

/// How long [`connect`] waits for a shim before giving up. A shim that is gone refuses
/// at once; this bounds only a shim that is alive but not answering, so that one stuck
/// shim cannot hold up a daemon restart.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Placeholder URI for the channel: the connector ignores it and dials the socket.
const CHANNEL_URI: &str = "http://berth-shim.invalid";

/// Connects to the shim listening on `socket`, failing after [`CONNECT_TIMEOUT`].
pub async fn connect(socket: &Path) -> Result<TaskClient, ClientError> {
    connect_with_timeout(socket, CONNECT_TIMEOUT).await
}

/// Connects to the shim listening on `socket`, failing after `limit`.
///
/// The returned client multiplexes calls over one connection, so it can be cloned and
/// used from many requests at once (a `Wait` may be pending while `Start` runs). If the
/// connection drops, the next call dials the socket again.
pub async fn connect_with_timeout(
    socket: &Path,
    limit: Duration,
) -> Result<TaskClient, ClientError> {
    Ok(TaskClient::new(open_channel(socket, limit).await?))
}

/// A gRPC channel to whatever serves on `socket`, connected within `limit`.
pub(crate) async fn open_channel(socket: &Path, limit: Duration) -> Result<Channel, ClientError> {
    let failed = |detail: String| ClientError::Connect {
        socket: socket.to_path_buf(),
        detail,
    };
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let endpoint = Endpoint::from_static(CHANNEL_URI).connect_timeout(limit);
    tokio::time::timeout(limit, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| failed(format!("no answer within {limit:?}")))?
        .map_err(|e| failed(describe(&e)))
}

fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_missing_socket_fails_at_once_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let err = connect(&dir.path().join("gone.sock")).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let text = err.to_string();
        assert!(text.contains("gone.sock"), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[tokio::test]
    async fn a_dead_socket_fails_at_once() {
        // A socket file whose listener is closed, as a killed shim leaves it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let started = Instant::now();
        let err = connect(&path).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn a_listening_socket_connects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let client = connect(&path).await;
        assert!(client.is_ok(), "{:?}", client.err());
        assert!(accept.await.unwrap().is_ok());
    }
}
