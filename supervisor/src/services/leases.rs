//! `containerd.services.leases.v1.Leases`: leases are garbage-collection roots. Whatever
//! a client adds to a lease (blobs, ingests, snapshots) survives collection until the
//! lease is deleted or its `containerd.io/gc.expire` time passes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_content::Digest;
use berth_proto::containerd::services::leases::v1::{
    leases_server::{Leases, LeasesServer},
    AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResourceRequest, Lease,
    ListRequest, ListResourcesRequest, ListResourcesResponse, ListResponse, Resource,
};
use rand::distributions::{Alphanumeric, DistString};
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::gc;
use crate::ident;
use crate::metadata::{Kind, LeaseRecord, LeaseResource};
use crate::request;
use crate::services::{labels, reply, MAX_MESSAGE_BYTES};
use crate::state::{ensure_namespace, Daemon, SNAPSHOTTER};

/// Resource type of a blob.
pub const CONTENT_RESOURCE: &str = "content";
/// Resource type of an ingest (by ref).
pub const INGEST_RESOURCE: &str = "ingests";
/// Prefix of the resource type of a snapshot: `snapshots/<snapshotter>`.
pub const SNAPSHOT_RESOURCE_PREFIX: &str = "snapshots/";
/// Most resources one lease may hold through AddResource.
pub const MAX_LEASE_RESOURCES: usize = 65_536;

/// The Leases service.
pub struct LeasesService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> LeasesServer<LeasesService> {
    LeasesServer::new(LeasesService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A fresh lease id for a client that sent none: the time in nanoseconds and a random
/// suffix, so ids sort by creation and never collide in practice.
pub fn generate_id(now: SystemTime) -> String {
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let suffix = Alphanumeric.sample_string(&mut rand::thread_rng(), 6);
    format!("{nanos}-{suffix}")
}

/// Checks a resource sent by a client and converts it for storage. Blob ids are parsed
/// as digests; snapshots must belong to the one snapshotter Berth has.
pub fn resource_from_wire(resource: Option<Resource>) -> ApiResult<LeaseResource> {
    let resource =
        resource.ok_or_else(|| ApiError::InvalidArgument("resource must be set".to_string()))?;
    let id = resource.id;
    let kind = resource.r#type;
    if id.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{kind:?} resource: id must not be empty"
        )));
    }
    let id = match kind.as_str() {
        CONTENT_RESOURCE => Digest::parse(&id)
            .map_err(|e| ApiError::InvalidArgument(format!("content resource: {e}")))?
            .to_string(),
        INGEST_RESOURCE if id.len() <= berth_content::MAX_REF_LEN => id,
        INGEST_RESOURCE => {
            return Err(ApiError::InvalidArgument(format!(
                "ingest resource: ref is {} bytes long, the limit is {}",
                id.len(),
                berth_content::MAX_REF_LEN
            )))
        }
        other => match other.strip_prefix(SNAPSHOT_RESOURCE_PREFIX) {
            Some(SNAPSHOTTER) if id.len() <= berth_snapshot::overlay::MAX_KEY_LEN => id,
            Some(SNAPSHOTTER) => {
                return Err(ApiError::InvalidArgument(format!(
                    "snapshot resource: key is {} bytes long, the limit is {}",
                    id.len(),
                    berth_snapshot::overlay::MAX_KEY_LEN
                )))
            }
            Some(snapshotter) => {
                return Err(ApiError::InvalidArgument(format!(
                    "snapshotter {snapshotter:?} does not exist: Berth has only {SNAPSHOTTER:?}"
                )))
            }
            None => {
                return Err(ApiError::InvalidArgument(format!(
                    "unknown resource type {other:?}: expected {CONTENT_RESOURCE:?}, \
                     {INGEST_RESOURCE:?} or \"{SNAPSHOT_RESOURCE_PREFIX}{SNAPSHOTTER}\""
                )))
            }
        },
    };
    Ok(LeaseResource { kind, id })
}

fn to_wire(id: &str, record: &LeaseRecord) -> Lease {
    Lease {
        id: id.to_string(),
        created_at: record.created_at.and_then(reply::timestamp),
        labels: labels::to_wire(&record.labels),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("lease {id:?}: not found"))
}

/// A lease with its id, as filters see it: `id`, `labels.<key>`.
struct Named<'a> {
    id: &'a str,
    record: &'a LeaseRecord,
}

impl Fields for Named<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "id" => Some(self.id.to_string()),
            [f, key] if f == "labels" => self.record.labels.get(key).cloned(),
            _ => None,
        }
    }
}

impl LeasesService {
    async fn create_lease(&self, ns: &str, req: CreateRequest) -> ApiResult<CreateResponse> {
        let now = SystemTime::now();
        let id = if req.id.is_empty() {
            generate_id(now)
        } else {
            req.id
        };
        ident::validate_lease_id(&id)?;
        let record = LeaseRecord {
            labels: labels::from_wire(req.labels)?,
            created_at: Some(now),
            resources: Default::default(),
        };
        if let Some(expiry) = record.labels.get(gc::LABEL_EXPIRE) {
            if gc::parse_rfc3339(expiry).is_none() {
                return Err(ApiError::InvalidArgument(format!(
                    "label {}={expiry:?} is not an RFC 3339 time",
                    gc::LABEL_EXPIRE
                )));
            }
        }
        self.daemon
            .meta
            .write_lazily(|meta, batch| -> ApiResult<()> {
                if meta.get::<LeaseRecord>(Kind::Lease, ns, &id)?.is_some() {
                    return Err(ApiError::AlreadyExists(format!(
                        "lease {id:?}: already exists"
                    )));
                }
                ensure_namespace(meta, batch, ns)?;
                batch.put(Kind::Lease, ns, &id, &record)?;
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, lease = %id, labels = ?record.labels, "lease created");
        Ok(CreateResponse {
            lease: Some(to_wire(&id, &record)),
        })
    }

    async fn delete_lease(&self, ns: &str, req: DeleteRequest) -> ApiResult<()> {
        ident::validate_lease_id(&req.id)?;
        let id = req.id;
        let held = self
            .daemon
            .meta
            .write_lazily(|meta, batch| -> ApiResult<usize> {
                let record: LeaseRecord = meta
                    .get(Kind::Lease, ns, &id)?
                    .ok_or_else(|| not_found(&id))?;
                batch.delete(Kind::Lease, ns, &id);
                Ok(record.resources.len())
            })
            .await?;
        tracing::info!(namespace = %ns, lease = %id, resources = held, sync = req.sync, "lease deleted");
        if req.sync {
            let report = gc::collect(&self.daemon).await?;
            tracing::info!(namespace = %ns, ?report, "garbage collected after lease delete");
        } else {
            gc::schedule(self.daemon.clone());
        }
        Ok(())
    }

    fn list_leases(&self, ns: &str, req: ListRequest) -> ApiResult<ListResponse> {
        tracing::debug!(namespace = %ns, filters = ?req.filters, "leases list");
        let filter = Filter::parse(&req.filters)?;
        let leases = self
            .daemon
            .meta
            .list::<LeaseRecord>(Kind::Lease, ns)?
            .iter()
            .filter(|(id, record)| filter.matches(&Named { id, record }))
            .map(|(id, record)| to_wire(id, record))
            .collect();
        let reply = ListResponse { leases };
        reply::ensure_fits("leases list", &reply)?;
        Ok(reply)
    }

    async fn add_lease_resource(&self, ns: &str, req: AddResourceRequest) -> ApiResult<()> {
        ident::validate_lease_id(&req.id)?;
        let resource = resource_from_wire(req.resource)?;
        let id = req.id;
        self.daemon
            .meta
            .write_lazily(|meta, batch| -> ApiResult<()> {
                let mut record: LeaseRecord = meta
                    .get(Kind::Lease, ns, &id)?
                    .ok_or_else(|| not_found(&id))?;
                if record.resources.contains(&resource) {
                    return Ok(());
                }
                if record.resources.len() >= MAX_LEASE_RESOURCES {
                    return Err(ApiError::ResourceExhausted(format!(
                        "lease {id:?} already holds {MAX_LEASE_RESOURCES} resources"
                    )));
                }
                record.resources.insert(resource.clone());
                batch.put(Kind::Lease, ns, &id, &record)?;
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, lease = %id, kind = %resource.kind, resource = %resource.id, "lease resource added");
        Ok(())
    }

    async fn delete_lease_resource(&self, ns: &str, req: DeleteResourceRequest) -> ApiResult<()> {
        ident::validate_lease_id(&req.id)?;
        let resource = resource_from_wire(req.resource)?;
        let id = req.id;
        self.daemon
            .meta
            .write_lazily(|meta, batch| -> ApiResult<()> {
                let mut record: LeaseRecord = meta
                    .get(Kind::Lease, ns, &id)?
                    .ok_or_else(|| not_found(&id))?;
                if record.resources.remove(&resource) {
                    batch.put(Kind::Lease, ns, &id, &record)?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, lease = %id, kind = %resource.kind, resource = %resource.id, "lease resource removed");
        // What the lease held may now be garbage.
        gc::schedule(self.daemon.clone());
        Ok(())
    }

    fn list_lease_resources(
        &self,
        ns: &str,
        req: ListResourcesRequest,
    ) -> ApiResult<ListResourcesResponse> {
        tracing::debug!(namespace = %ns, lease = %req.id, "lease resources list");
        ident::validate_lease_id(&req.id)?;
        let record: LeaseRecord = self
            .daemon
            .meta
            .get(Kind::Lease, ns, &req.id)?
            .ok_or_else(|| not_found(&req.id))?;
        let reply = ListResourcesResponse {
            resources: record
                .resources
                .into_iter()
                .map(|r| Resource {
                    id: r.id,
                    r#type: r.kind,
                })
                .collect(),
        };
        reply::ensure_fits("lease resources list", &reply)?;
        Ok(reply)
    }
}

#[tonic::async_trait]
impl Leases for LeasesService {
    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.create_lease(&ns, req.into_inner()).await?,
        ))
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.delete_lease(&ns, req.into_inner()).await?;
        Ok(Response::new(()))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(self.list_leases(&ns, req.into_inner())?))
    }

    async fn add_resource(&self, req: Request<AddResourceRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.add_lease_resource(&ns, req.into_inner()).await?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        req: Request<DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.delete_lease_resource(&ns, req.into_inner()).await?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        req: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.list_lease_resources(&ns, req.into_inner())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_support::{daemon, request, TestDaemon};
    use std::collections::HashMap;
    use tonic::Code;

    const DIGEST: &str = "sha256:694b47338edcec1d3ee37aa008d34c9adb2de65588e47db3fd78aab1655d7c9b";

    fn service(t: &TestDaemon) -> LeasesService {
        LeasesService {
            daemon: t.daemon.clone(),
        }
    }

    fn res(kind: &str, id: &str) -> Option<Resource> {
        Some(Resource {
            id: id.to_string(),
            r#type: kind.to_string(),
        })
    }

    async fn create(
        svc: &LeasesService,
        ns: &str,
        id: &str,
        labels: &[(&str, &str)],
    ) -> Result<Lease, Status> {
        svc.create(request(
            ns,
            CreateRequest {
                id: id.to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            },
        ))
        .await
        .map(|r| r.into_inner().lease.unwrap())
    }

    async fn ids(svc: &LeasesService, ns: &str, filters: &[&str]) -> Vec<String> {
        svc.list(request(
            ns,
            ListRequest {
                filters: filters.iter().map(|f| f.to_string()).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .leases
        .into_iter()
        .map(|l| l.id)
        .collect()
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let now = SystemTime::now();
        let a = generate_id(now);
        let b = generate_id(now);
        assert_ne!(a, b);
        assert_eq!(ident::validate_lease_id(&a), Ok(()));
        assert_eq!(
            ident::validate(&a),
            Ok(()),
            "generated ids fit the strict grammar too"
        );
    }

    #[test]
    fn resources_are_validated() {
        let ok = resource_from_wire(res("content", DIGEST)).unwrap();
        assert_eq!(ok.id, DIGEST);
        assert!(resource_from_wire(res("ingests", "default/upload-1")).is_ok());
        assert!(resource_from_wire(res("snapshots/overlayfs", "sha256:abc/layer")).is_ok());
        for (kind, id) in [
            ("content", "sha256:nothex"),
            ("content", ""),
            ("ingests", ""),
            ("snapshots/native", "k"),
            ("snapshots/", "k"),
            ("images", "x"),
            ("", "x"),
        ] {
            let err = resource_from_wire(res(kind, id)).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{kind} {id}");
        }
        let long = "k".repeat(berth_content::MAX_REF_LEN + 1);
        assert!(resource_from_wire(res("ingests", &long)).is_err());
        assert!(resource_from_wire(None).is_err());
    }

    #[tokio::test]
    async fn create_list_filter_delete() {
        let t = daemon();
        let svc = service(&t);
        let generated = create(&svc, "ns", "", &[("x", "y")]).await.unwrap();
        assert!(!generated.id.is_empty());
        assert!(generated.created_at.is_some());
        create(
            &svc,
            "ns",
            "291608516-s_-K",
            &[(gc::LABEL_EXPIRE, "2030-01-01T00:00:00Z")],
        )
        .await
        .unwrap();
        assert_eq!(
            create(&svc, "ns", "291608516-s_-K", &[])
                .await
                .unwrap_err()
                .code(),
            Code::AlreadyExists
        );
        assert_eq!(ids(&svc, "ns", &[]).await.len(), 2);
        assert_eq!(
            ids(&svc, "ns", &["labels.x==y"]).await,
            std::slice::from_ref(&generated.id)
        );
        assert_eq!(
            ids(&svc, "ns", &["id==291608516-s_-K"]).await,
            ["291608516-s_-K"]
        );
        assert!(
            ids(&svc, "other", &[]).await.is_empty(),
            "leases are namespaced"
        );

        svc.delete(request(
            "ns",
            DeleteRequest {
                id: generated.id.clone(),
                sync: true,
            },
        ))
        .await
        .unwrap();
        assert_eq!(ids(&svc, "ns", &[]).await, ["291608516-s_-K"]);
        let err = svc
            .delete(request(
                "ns",
                DeleteRequest {
                    id: generated.id,
                    sync: false,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }

    #[tokio::test]
    async fn bad_ids_and_expiry_labels_are_refused() {
        let t = daemon();
        let svc = service(&t);
        for bad in ["a/b", "..", ".hidden", "a b"] {
            let err = create(&svc, "ns", bad, &[]).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        }
        let err = create(&svc, "ns", "l", &[(gc::LABEL_EXPIRE, "tomorrow")])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(ids(&svc, "ns", &[]).await.is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn resources_are_added_listed_and_removed() {
        let t = daemon();
        let svc = service(&t);
        create(&svc, "ns", "l1", &[]).await.unwrap();
        let list = || async {
            svc.list_lease_resources("ns", ListResourcesRequest { id: "l1".into() })
                .unwrap()
                .resources
                .into_iter()
                .map(|r| format!("{} {}", r.r#type, r.id))
                .collect::<Vec<_>>()
        };
        for r in [
            res("content", DIGEST),
            res("snapshots/overlayfs", "key1"),
            res("content", DIGEST),
        ] {
            svc.add_resource(request(
                "ns",
                AddResourceRequest {
                    id: "l1".into(),
                    resource: r,
                },
            ))
            .await
            .unwrap();
        }
        assert_eq!(
            list().await,
            [
                format!("content {DIGEST}"),
                "snapshots/overlayfs key1".to_string()
            ]
        );
        svc.delete_resource(request(
            "ns",
            DeleteResourceRequest {
                id: "l1".into(),
                resource: res("content", DIGEST),
            },
        ))
        .await
        .unwrap();
        assert_eq!(list().await, ["snapshots/overlayfs key1"]);

        let err = svc
            .add_resource(request(
                "ns",
                AddResourceRequest {
                    id: "missing".into(),
                    resource: res("content", DIGEST),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = svc
            .list_resources(request(
                "ns",
                ListResourcesRequest {
                    id: "missing".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}
