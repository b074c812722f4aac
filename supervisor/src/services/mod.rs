//! The gRPC services, one file per service: each converts between the wire types of
//! berth-proto and the stores in [`crate::state::Daemon`], and nothing more.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod labels;
pub mod leases;
pub mod namespaces;
pub mod reply;
pub mod snapshots;
pub mod tasks;
#[cfg(test)]
pub mod test_support;
pub mod version;

use std::sync::Arc;

use tonic::transport::server::Router;
use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::rpc_log::RpcLogLayer;
use crate::state::Daemon;

/// Most bytes one gRPC message may carry in either direction. ctr writes content in 1 MiB
/// chunks; a little headroom covers the rest of the message.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Builds the router serving every service on `daemon`.
pub fn router(daemon: Arc<Daemon>) -> Router<Stack<RpcLogLayer, Identity>> {
    Server::builder()
        .layer(RpcLogLayer)
        .add_service(version::service(daemon.clone()))
        .add_service(snapshots::service(daemon.clone()))
        .add_service(diff::service(daemon.clone()))
        .add_service(content::service(daemon.clone()))
        .add_service(namespaces::service(daemon.clone()))
        .add_service(images::service(daemon.clone()))
        .add_service(leases::service(daemon.clone()))
        .add_service(events::service(daemon.clone()))
        .add_service(introspection::service(daemon.clone()))
        .add_service(containers::service(daemon.clone()))
        .add_service(tasks::service(daemon.clone()))
    // Each further service adds a line here: .add_service(<module>::service(daemon.clone()))
}
