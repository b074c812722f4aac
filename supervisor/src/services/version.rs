//! `containerd.services.version.v1.Version`: the daemon's version.

use std::sync::Arc;

use berth_proto::containerd::services::version::v1::{
    version_server::{Version, VersionServer},
    VersionResponse,
};
use tonic::{Request, Response, Status};

use crate::state::Daemon;

/// The Version service.
pub struct VersionService;

/// The service, ready to add to the router.
pub fn service(_daemon: Arc<Daemon>) -> VersionServer<VersionService> {
    VersionServer::new(VersionService)
}

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _req: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION").unwrap_or("").to_string(),
        }))
    }
}
