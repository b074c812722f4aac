//! `containerd.services.introspection.v1.Introspection`: what this daemon is made of
//! (`ctr plugins ls`) and who it is (`ctr version` shows the uuid).
//!
//! The plugin list uses containerd's plugin types and ids so tools that look for, say,
//! the `overlayfs` snapshotter find it, but it only names what Berth really has: the
//! metadata store is `sled`, not bolt. A gRPC service added to the router gets a row in
//! [`GRPC_SERVICES`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use berth_proto::containerd::services::introspection::v1::{
    introspection_server::{Introspection, IntrospectionServer},
    Plugin, PluginsRequest, PluginsResponse, ServerResponse,
};
use berth_proto::containerd::types::Platform;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::services::{reply, MAX_MESSAGE_BYTES};
use crate::state::{Daemon, SNAPSHOTTER};

const CONTENT: &str = "io.containerd.content.v1";
const SNAPSHOTTER_TYPE: &str = "io.containerd.snapshotter.v1";
const METADATA: &str = "io.containerd.metadata.v1";
const DIFFER: &str = "io.containerd.differ.v1";
const EVENT: &str = "io.containerd.event.v1";
const GC: &str = "io.containerd.gc.v1";
const LEASE: &str = "io.containerd.lease.v1";
const GRPC: &str = "io.containerd.grpc.v1";

/// The gRPC services berthd serves, as (plugin id, plugin types it requires).
pub const GRPC_SERVICES: &[(&str, &[&str])] = &[
    ("containers", &[METADATA, GC]),
    ("content", &[METADATA]),
    ("diff", &[DIFFER]),
    ("events", &[EVENT]),
    ("images", &[METADATA, GC]),
    ("introspection", &[]),
    ("leases", &[LEASE]),
    ("namespaces", &[METADATA]),
    ("snapshots", &[METADATA]),
    ("version", &[]),
];

/// The Introspection service.
pub struct IntrospectionService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> IntrospectionServer<IntrospectionService> {
    IntrospectionServer::new(IntrospectionService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The platform this daemon runs on, in OCI terms (`linux/amd64`).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        os: std::env::consts::OS.to_string(),
        architecture: architecture.to_string(),
        variant: String::new(),
    }
}

fn plugin(kind: &str, id: &str, requires: &[&str], platforms: Vec<Platform>) -> Plugin {
    Plugin {
        r#type: kind.to_string(),
        id: id.to_string(),
        requires: requires.iter().map(|r| r.to_string()).collect(),
        platforms,
        exports: HashMap::new(),
        capabilities: Vec::new(),
        init_err: None,
    }
}

fn export(mut p: Plugin, key: &str, value: &std::path::Path) -> Plugin {
    p.exports
        .insert(key.to_string(), value.display().to_string());
    p
}

/// Every plugin of a daemon whose persistent root is `root`, in dependency order.
pub fn plugins(root: &std::path::Path) -> Vec<Plugin> {
    let host = || vec![host_platform()];
    let mut list = vec![
        export(
            plugin(CONTENT, "content", &[], vec![]),
            "root",
            &root.join("content"),
        ),
        export(
            plugin(SNAPSHOTTER_TYPE, SNAPSHOTTER, &[], host()),
            "root",
            &root.join("snapshots").join(SNAPSHOTTER),
        ),
        export(
            plugin(METADATA, "sled", &[CONTENT, SNAPSHOTTER_TYPE], vec![]),
            "path",
            &root.join("meta.sled"),
        ),
        plugin(DIFFER, "walking", &[METADATA], host()),
        plugin(EVENT, "exchange", &[], vec![]),
        plugin(GC, "scheduler", &[METADATA], vec![]),
        plugin(LEASE, "manager", &[METADATA, GC], vec![]),
    ];
    list.extend(
        GRPC_SERVICES
            .iter()
            .map(|(id, requires)| plugin(GRPC, id, requires, vec![])),
    );
    list
}

/// A plugin as filters see it: `type`, `id`.
struct PluginFields<'a>(&'a Plugin);

impl Fields for PluginFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "type" => Some(self.0.r#type.clone()),
            [f] if f == "id" => Some(self.0.id.clone()),
            _ => None,
        }
    }
}

/// The inode of this process's pid namespace, which identifies it.
fn pid_namespace() -> ApiResult<u64> {
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .map_err(|e| ApiError::Internal(format!("reading /proc/self/ns/pid: {e}")))
}

impl IntrospectionService {
    fn list_plugins(&self, req: PluginsRequest) -> ApiResult<PluginsResponse> {
        tracing::debug!(filters = ?req.filters, "introspection plugins");
        let filter = Filter::parse(&req.filters)?;
        let reply = PluginsResponse {
            plugins: plugins(&self.daemon.settings.root)
                .into_iter()
                .filter(|p| filter.matches(&PluginFields(p)))
                .collect(),
        };
        reply::ensure_fits("plugins", &reply)?;
        Ok(reply)
    }

    fn server_info(&self) -> ApiResult<ServerResponse> {
        tracing::debug!("introspection server");
        Ok(ServerResponse {
            uuid: self.daemon.uuid.clone(),
            pid: u64::from(std::process::id()),
            pidns: pid_namespace()?,
            deprecations: Vec::new(),
        })
    }
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(
        &self,
        req: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        Ok(Response::new(self.list_plugins(req.into_inner())?))
    }

    async fn server(&self, _req: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(self.server_info()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_support::{daemon, request};

    fn ids(reply: &PluginsResponse) -> Vec<String> {
        reply
            .plugins
            .iter()
            .map(|p| format!("{} {}", p.r#type, p.id))
            .collect()
    }

    #[tokio::test]
    async fn plugins_name_what_berth_has_and_filter() {
        let t = daemon();
        let svc = IntrospectionService {
            daemon: t.daemon.clone(),
        };
        let all = svc
            .plugins(request("default", PluginsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        let names = ids(&all);
        for want in [
            "io.containerd.content.v1 content",
            "io.containerd.snapshotter.v1 overlayfs",
            "io.containerd.metadata.v1 sled",
            "io.containerd.grpc.v1 images",
            "io.containerd.grpc.v1 version",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.ends_with(" bolt")));
        let overlay = all.plugins.iter().find(|p| p.id == "overlayfs").unwrap();
        assert_eq!(overlay.platforms, vec![host_platform()]);
        assert_eq!(
            overlay.exports["root"],
            t.daemon
                .settings
                .root
                .join("snapshots/overlayfs")
                .display()
                .to_string()
        );

        let snapshotters = svc
            .plugins(request(
                "default",
                PluginsRequest {
                    filters: vec!["type==io.containerd.snapshotter.v1".into()],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ids(&snapshotters),
            ["io.containerd.snapshotter.v1 overlayfs"]
        );
        let by_id = svc
            .plugins(request(
                "default",
                PluginsRequest {
                    filters: vec!["id==leases".into()],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(&by_id), ["io.containerd.grpc.v1 leases"]);
    }

    #[test]
    fn every_requirement_is_a_listed_plugin_type() {
        let list = plugins(std::path::Path::new("/r"));
        for p in &list {
            for r in &p.requires {
                assert!(
                    list.iter().any(|q| &q.r#type == r),
                    "{} requires missing {r}",
                    p.id
                );
            }
        }
    }

    #[tokio::test]
    async fn server_reports_this_process() {
        let t = daemon();
        let svc = IntrospectionService {
            daemon: t.daemon.clone(),
        };
        let info = svc.server(Request::new(())).await.unwrap().into_inner();
        assert_eq!(info.uuid, t.daemon.uuid);
        assert_eq!(info.pid, u64::from(std::process::id()));
        assert_ne!(info.pidns, 0);
    }
}
