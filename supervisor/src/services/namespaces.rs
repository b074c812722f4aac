//! `containerd.services.namespaces.v1.Namespaces`: create, label, list and delete
//! namespaces. A namespace that still holds anything cannot be deleted.
//!
//! Namespace calls are not themselves namespaced; their events are published in the
//! caller's namespace (ctr sends `default`), or in the namespace acted on if the caller
//! sent none.

use std::sync::Arc;

use berth_proto::containerd::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use berth_proto::containerd::services::namespaces::v1::{
    namespaces_server::{Namespaces, NamespacesServer},
    CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest, GetNamespaceRequest,
    GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse, Namespace,
    UpdateNamespaceRequest, UpdateNamespaceResponse,
};
use serde::de::IgnoredAny;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::ident;
use crate::metadata::{Kind, MetaStore, NamespaceRecord};
use crate::request;
use crate::services::{labels, reply, MAX_MESSAGE_BYTES};
use crate::state::Daemon;

/// The Namespaces service.
pub struct NamespacesService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> NamespacesServer<NamespacesService> {
    NamespacesServer::new(NamespacesService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A namespace record with its name, as filters see it (`name`, `labels.<key>`).
struct Named<'a> {
    name: &'a str,
    record: &'a NamespaceRecord,
}

impl Fields for Named<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "name" => Some(self.name.to_string()),
            [f, key] if f == "labels" => self.record.labels.get(key).cloned(),
            _ => None,
        }
    }
}

fn to_wire(name: &str, record: &NamespaceRecord) -> Namespace {
    Namespace {
        name: name.to_string(),
        labels: labels::to_wire(&record.labels),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("namespace {name:?}: not found"))
}

/// The namespace events go to: the caller's, else the one acted on.
fn event_namespace<T>(req: &Request<T>, acted_on: &str) -> String {
    request::namespace(req).unwrap_or_else(|_| acted_on.to_string())
}

/// What namespace `ns` still holds, by kind (empty if nothing): metadata records, then
/// snapshots and ingests in the stores under the namespace's prefix.
fn holdings(daemon: &Daemon, meta: &MetaStore, ns: &str) -> ApiResult<Vec<&'static str>> {
    let mut held = Vec::new();
    if meta.namespace_in_use(ns)? {
        for (kind, what) in [
            (Kind::Image, "images"),
            (Kind::Content, "content blobs"),
            (Kind::Lease, "leases"),
            (Kind::Container, "containers"),
        ] {
            if !meta.list::<IgnoredAny>(kind, ns)?.is_empty() {
                held.push(what);
            }
        }
    }
    if crate::services::snapshots::namespace_has_snapshots(daemon, ns)? {
        held.push("snapshots");
    }
    let ingest_prefix = format!("{ns}/");
    if daemon
        .content
        .list_statuses()?
        .iter()
        .any(|status| status.reference.starts_with(&ingest_prefix))
    {
        held.push("ingests");
    }
    Ok(held)
}

impl NamespacesService {
    fn get_namespace(&self, req: GetNamespaceRequest) -> ApiResult<GetNamespaceResponse> {
        ident::validate(&req.name)?;
        tracing::debug!(namespace = %req.name, "namespaces get");
        let record: NamespaceRecord = self
            .daemon
            .meta
            .get(Kind::Namespace, "", &req.name)?
            .ok_or_else(|| not_found(&req.name))?;
        Ok(GetNamespaceResponse {
            namespace: Some(to_wire(&req.name, &record)),
        })
    }

    fn list_namespaces(&self, req: ListNamespacesRequest) -> ApiResult<ListNamespacesResponse> {
        tracing::debug!(filter = %req.filter, "namespaces list");
        let filter = Filter::parse(&[&req.filter])?;
        let namespaces = self
            .daemon
            .meta
            .list::<NamespaceRecord>(Kind::Namespace, "")?
            .iter()
            .filter(|(name, record)| filter.matches(&Named { name, record }))
            .map(|(name, record)| to_wire(name, record))
            .collect();
        let reply = ListNamespacesResponse { namespaces };
        reply::ensure_fits("namespaces list", &reply)?;
        Ok(reply)
    }

    async fn create_namespace(
        &self,
        req: CreateNamespaceRequest,
        event_ns: &str,
    ) -> ApiResult<CreateNamespaceResponse> {
        let given = req
            .namespace
            .ok_or_else(|| ApiError::InvalidArgument("namespace must be set".to_string()))?;
        ident::validate(&given.name)?;
        let record = NamespaceRecord {
            labels: labels::from_wire(given.labels)?,
        };
        let name = given.name;
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta
                    .get::<NamespaceRecord>(Kind::Namespace, "", &name)?
                    .is_some()
                {
                    return Err(ApiError::AlreadyExists(format!(
                        "namespace {name:?}: already exists"
                    )));
                }
                batch.put(Kind::Namespace, "", &name, &record)?;
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %name, labels = record.labels.len(), "namespace created");
        self.daemon.events.publish(
            event_ns,
            "/namespaces/create",
            &NamespaceCreate {
                name: name.clone(),
                labels: labels::to_wire(&record.labels),
            },
        );
        Ok(CreateNamespaceResponse {
            namespace: Some(to_wire(&name, &record)),
        })
    }

    async fn update_namespace(
        &self,
        req: UpdateNamespaceRequest,
        event_ns: &str,
    ) -> ApiResult<UpdateNamespaceResponse> {
        let given = req
            .namespace
            .ok_or_else(|| ApiError::InvalidArgument("namespace must be set".to_string()))?;
        ident::validate(&given.name)?;
        labels::validate_sent(&given.labels)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let name = given.name;
        let record = self
            .daemon
            .meta
            .write(|meta, batch| -> ApiResult<NamespaceRecord> {
                let mut record: NamespaceRecord = meta
                    .get(Kind::Namespace, "", &name)?
                    .ok_or_else(|| not_found(&name))?;
                if paths.is_empty() {
                    labels::apply_path(&mut record.labels, &given.labels, labels::LABELS_PATH);
                }
                for path in &paths {
                    if !labels::apply_path(&mut record.labels, &given.labels, path) {
                        return Err(ApiError::InvalidArgument(format!(
                            "cannot update field {path:?} of namespace {name:?}: only labels \
                             can change"
                        )));
                    }
                }
                labels::validate(&record.labels)?;
                batch.put(Kind::Namespace, "", &name, &record)?;
                Ok(record)
            })
            .await?;
        tracing::info!(namespace = %name, ?paths, "namespace updated");
        self.daemon.events.publish(
            event_ns,
            "/namespaces/update",
            &NamespaceUpdate {
                name: name.clone(),
                labels: labels::to_wire(&record.labels),
            },
        );
        Ok(UpdateNamespaceResponse {
            namespace: Some(to_wire(&name, &record)),
        })
    }

    async fn delete_namespace(&self, req: DeleteNamespaceRequest, event_ns: &str) -> ApiResult<()> {
        let name = req.name;
        ident::validate(&name)?;
        let daemon = &self.daemon;
        daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta
                    .get::<NamespaceRecord>(Kind::Namespace, "", &name)?
                    .is_none()
                {
                    return Err(not_found(&name));
                }
                let held = holdings(daemon, meta, &name)?;
                if !held.is_empty() {
                    return Err(ApiError::FailedPrecondition(format!(
                        "namespace {name:?} is not empty: it still holds {}; remove them first",
                        held.join(", ")
                    )));
                }
                batch.delete(Kind::Namespace, "", &name);
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %name, "namespace deleted");
        daemon
            .events
            .publish(event_ns, "/namespaces/delete", &NamespaceDelete { name });
        Ok(())
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    async fn get(
        &self,
        req: Request<GetNamespaceRequest>,
    ) -> Result<Response<GetNamespaceResponse>, Status> {
        Ok(Response::new(self.get_namespace(req.into_inner())?))
    }

    async fn list(
        &self,
        req: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        Ok(Response::new(self.list_namespaces(req.into_inner())?))
    }

    async fn create(
        &self,
        req: Request<CreateNamespaceRequest>,
    ) -> Result<Response<CreateNamespaceResponse>, Status> {
        let acted_on = req.get_ref().namespace.as_ref().map(|n| n.name.clone());
        let event_ns = event_namespace(&req, acted_on.as_deref().unwrap_or_default());
        Ok(Response::new(
            self.create_namespace(req.into_inner(), &event_ns).await?,
        ))
    }

    async fn update(
        &self,
        req: Request<UpdateNamespaceRequest>,
    ) -> Result<Response<UpdateNamespaceResponse>, Status> {
        let acted_on = req.get_ref().namespace.as_ref().map(|n| n.name.clone());
        let event_ns = event_namespace(&req, acted_on.as_deref().unwrap_or_default());
        Ok(Response::new(
            self.update_namespace(req.into_inner(), &event_ns).await?,
        ))
    }

    async fn delete(&self, req: Request<DeleteNamespaceRequest>) -> Result<Response<()>, Status> {
        let event_ns = event_namespace(&req, &req.get_ref().name.clone());
        self.delete_namespace(req.into_inner(), &event_ns).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::LeaseRecord;
    use crate::services::test_support::{daemon, request};
    use prost_types::FieldMask;
    use std::collections::HashMap;
    use tonic::Code;

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    async fn create(svc: &NamespacesService, namespace: Namespace) -> Result<(), Status> {
        svc.create(request(
            "default",
            CreateNamespaceRequest {
                namespace: Some(namespace),
            },
        ))
        .await
        .map(|_| ())
    }

    async fn names(svc: &NamespacesService) -> Vec<String> {
        svc.list(request("default", ListNamespacesRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect()
    }

    #[tokio::test]
    async fn create_label_list_delete() {
        let t = daemon();
        let svc = NamespacesService {
            daemon: t.daemon.clone(),
        };
        let mut events = t.daemon.events.subscribe();
        create(&svc, ns("web", &[("a", "1")])).await.unwrap();
        let again = create(&svc, ns("web", &[])).await.unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists);
        assert_eq!(names(&svc).await, ["web"]);

        let updated = svc
            .update(request(
                "default",
                UpdateNamespaceRequest {
                    namespace: Some(ns("web", &[("b", "2"), ("a", "")])),
                    update_mask: Some(FieldMask {
                        paths: vec!["labels.b".into(), "labels.a".into()],
                    }),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .namespace
            .unwrap();
        assert_eq!(updated.labels, HashMap::from([("b".into(), "2".into())]));
        let got = svc
            .get(request(
                "default",
                GetNamespaceRequest { name: "web".into() },
            ))
            .await
            .unwrap()
            .into_inner()
            .namespace
            .unwrap();
        assert_eq!(got.labels, updated.labels, "the update is stored");

        let filtered = svc
            .list(request(
                "default",
                ListNamespacesRequest {
                    filter: "labels.b==3".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(filtered.namespaces.is_empty());

        svc.delete(request(
            "default",
            DeleteNamespaceRequest { name: "web".into() },
        ))
        .await
        .unwrap();
        assert!(names(&svc).await.is_empty());
        let topics: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| format!("{} {}", e.namespace, e.topic))
            .collect();
        assert_eq!(
            topics,
            [
                "default /namespaces/create",
                "default /namespaces/update",
                "default /namespaces/delete"
            ]
        );
    }

    #[tokio::test]
    async fn bad_names_are_refused_and_nothing_is_written() {
        let t = daemon();
        let svc = NamespacesService {
            daemon: t.daemon.clone(),
        };
        let long = "a".repeat(ident::MAX_IDENTIFIER_LEN + 1);
        for bad in ["", "a/b", "..", "../x", long.as_str()] {
            let err = create(&svc, ns(bad, &[])).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        }
        let err = create(&svc, ns("ok", &[("", "v")])).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(names(&svc).await.is_empty());
    }

    #[tokio::test]
    async fn update_and_delete_of_a_missing_namespace_are_not_found() {
        let t = daemon();
        let svc = NamespacesService {
            daemon: t.daemon.clone(),
        };
        let err = svc
            .update(request(
                "default",
                UpdateNamespaceRequest {
                    namespace: Some(ns("nope", &[("a", "1")])),
                    update_mask: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = svc
            .delete(request(
                "default",
                DeleteNamespaceRequest {
                    name: "nope".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(names(&svc).await.is_empty(), "update must not create");
    }

    #[tokio::test]
    async fn a_namespace_in_use_cannot_be_deleted() {
        let t = daemon();
        let svc = NamespacesService {
            daemon: t.daemon.clone(),
        };
        create(&svc, ns("busy", &[])).await.unwrap();
        t.daemon
            .meta
            .write(|_, batch| -> ApiResult<()> {
                batch.put(Kind::Lease, "busy", "l1", &LeaseRecord::default())?;
                Ok(())
            })
            .await
            .unwrap();
        // An ingest in the namespace counts too.
        let writer = t
            .daemon
            .content
            .writer(&crate::state::ingest_ref("busy", "upload-1"), None, None)
            .unwrap();
        drop(writer);
        let err = svc
            .delete(request(
                "default",
                DeleteNamespaceRequest {
                    name: "busy".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("leases"), "{}", err.message());
        assert!(err.message().contains("ingests"), "{}", err.message());
        assert_eq!(names(&svc).await, ["busy"], "nothing was deleted");
    }
}
