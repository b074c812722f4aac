//! One debug line per gRPC call: the method, how long berthd took to answer (to the reply's
//! headers; a stream's later messages are not counted) and the gRPC status when the reply
//! carries it in its headers. With `--log-level berthd=debug` an operator sees where a slow
//! `ctr run` spends its time without a tracer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};

/// The tower layer wrapping every service of the router in [`RpcLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLogLayer;

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcLog { inner }
    }
}

/// Times each request of the wrapped service and logs it at debug level.
#[derive(Debug, Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for RpcLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return Box::pin(self.inner.call(request));
        }
        let method = request.uri().path().to_string();
        let started = Instant::now();
        let reply = self.inner.call(request);
        Box::pin(async move {
            let result = reply.await;
            let took = started.elapsed();
            match &result {
                Ok(response) => {
                    // Unary errors come back as a headers-only reply carrying grpc-status;
                    // successes carry it in the trailers, which are not waited for here.
                    let status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0");
                    tracing::debug!(%method, ?took, status, "rpc");
                }
                Err(_) => tracing::debug!(%method, ?took, "rpc failed in transport"),
            }
            result
        })
    }
}
