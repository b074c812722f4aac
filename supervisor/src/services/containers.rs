//! `containerd.services.containers.v1.Containers`: container records — the image, runtime,
//! OCI spec and root filesystem snapshot a task is later started from. A record holds no
//! running state; tasks are the Tasks service's business.
//!
//! What the rest of the daemon relies on:
//! - Garbage collection keeps a container's `snapshot_key` snapshot alive for as long as
//!   the record exists (it reads that field from the record's JSON, see [`crate::gc`]).
//! - A container with a task cannot be deleted. [`has_task`] is the one check
//!   Containers.Delete makes; it looks for the task's bundle directory
//!   `<state>/tasks/<ns>/<id>` ([`task_bundle_dir`]), which the Tasks service creates
//!   before it starts a shim and removes before Tasks.Delete replies. Delete runs the check
//!   with the metadata write lock held, so a Tasks.Create that creates the bundle directory
//!   inside [`MetaStore::write`](crate::metadata::MetaStore::write) after reading the
//!   record with [`load`] can never race a Delete into a task without a container.
//! - Runtime name, snapshotter and sandbox are fixed at create: Update refuses to change
//!   them (`InvalidArgument`), as containerd does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::containerd::events::{
    container_create, ContainerCreate, ContainerDelete, ContainerUpdate,
};
use berth_proto::containerd::services::containers::v1::{
    container,
    containers_server::{Containers, ContainersServer},
    Container, CreateContainerRequest, CreateContainerResponse, DeleteContainerRequest,
    GetContainerRequest, GetContainerResponse, ListContainerMessage, ListContainersRequest,
    ListContainersResponse, UpdateContainerRequest, UpdateContainerResponse,
};
use berth_proto::type_urls::OCI_SPEC;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::gc;
use crate::ident;
use crate::metadata::{AnyRecord, ContainerRecord, Kind, MetaStore, RuntimeRecord};
use crate::request;
use crate::services::{images, labels, reply, snapshots, MAX_MESSAGE_BYTES};
use crate::state::{ensure_namespace, Daemon, SNAPSHOTTER};

/// Largest spec accepted, in bytes (an OCI spec from ctr is a few KiB).
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// Largest runtime options value accepted, in bytes.
pub const MAX_RUNTIME_OPTIONS_BYTES: usize = 64 << 10;
/// Longest runtime name accepted, in bytes.
pub const MAX_RUNTIME_NAME_LEN: usize = 1024;
/// Longest `Any` type URL accepted, in bytes.
pub const MAX_TYPE_URL_LEN: usize = 1024;
/// Most extensions one container may carry.
pub const MAX_EXTENSIONS: usize = 128;
/// Longest extension name accepted, in bytes.
pub const MAX_EXTENSION_NAME_LEN: usize = 1024;
/// Most bytes all extensions of one container may add up to (names, type URLs, values).
pub const MAX_EXTENSIONS_TOTAL_BYTES: usize = 2 << 20;

/// Upper bound of one container's encoded size: its spec, extensions, labels and
/// runtime options at their limits, plus room for ids, names and timestamps.
pub const MAX_CONTAINER_BYTES: usize = MAX_SPEC_BYTES
    + MAX_EXTENSIONS_TOTAL_BYTES
    + MAX_EXTENSIONS * 16
    + labels::MAX_LABELS_TOTAL_BYTES
    + labels::MAX_LABELS * 16
    + MAX_RUNTIME_OPTIONS_BYTES
    + MAX_TYPE_URL_LEN * 2
    + (64 << 10);
const _: () = assert!(
    MAX_CONTAINER_BYTES < MAX_MESSAGE_BYTES,
    "a container must fit in one ListStream message"
);

/// Update field path replacing the spec.
const SPEC_PATH: &str = "spec";
/// Update field path replacing the image name.
const IMAGE_PATH: &str = "image";
/// Update field paths replacing the snapshot key (containerd spells it without `_`).
const SNAPSHOT_KEY_PATHS: [&str; 2] = ["snapshotkey", "snapshot_key"];
/// Update field path replacing every extension.
const EXTENSIONS_PATH: &str = "extensions";
/// Prefix of an update field path setting or removing one extension.
const EXTENSION_PATH_PREFIX: &str = "extensions.";
/// What an Update without field paths replaces, as containerd does.
const FULL_UPDATE_PATHS: [&str; 5] = [
    labels::LABELS_PATH,
    SPEC_PATH,
    EXTENSIONS_PATH,
    IMAGE_PATH,
    SNAPSHOT_KEY_PATHS[0],
];
/// Fields that exist but are fixed once the container is created.
const IMMUTABLE_PATHS: [&str; 10] = [
    "id",
    "runtime",
    "runtime.name",
    "runtime.options",
    "snapshotter",
    "sandbox",
    "createdat",
    "created_at",
    "updatedat",
    "updated_at",
];

/// Topic of the event published when a container is created.
pub const TOPIC_CREATE: &str = "/containers/create";
/// Topic of the event published when a container is updated.
pub const TOPIC_UPDATE: &str = "/containers/update";
/// Topic of the event published when a container is deleted.
pub const TOPIC_DELETE: &str = "/containers/delete";

/// The Containers service.
pub struct ContainersService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> ContainersServer<ContainersService> {
    ContainersServer::new(ContainersService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The bundle directory of the task of container `id` in namespace `ns`:
/// `<state>/tasks/<ns>/<id>` (the layout berthd and berth-shim agree on). Both names
/// must already have passed [`ident::validate`].
pub fn task_bundle_dir(state: &Path, ns: &str, id: &str) -> PathBuf {
    state.join("tasks").join(ns).join(id)
}

/// True while container `id` in `ns` has a task, i.e. while its bundle directory exists.
///
/// This is the hook between the Containers and Tasks services: Containers.Delete refuses
/// with `FailedPrecondition` while it returns true. The Tasks service keeps it true by
/// creating the bundle directory (under the metadata write lock, after [`load`]) before
/// it starts the shim, and removing it before Tasks.Delete replies.
pub fn has_task(daemon: &Daemon, ns: &str, id: &str) -> ApiResult<bool> {
    let dir = task_bundle_dir(&daemon.settings.state, ns, id);
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ApiError::Internal(format!(
            "checking for the task bundle {}: {e}",
            dir.display()
        ))),
    }
}

/// Reads the record of container `id` in `ns`: `InvalidArgument` for a malformed id,
/// `NotFound` if there is none. The Tasks service starts tasks from this.
pub fn load(meta: &MetaStore, ns: &str, id: &str) -> ApiResult<ContainerRecord> {
    ident::validate(id)?;
    meta.get(Kind::Container, ns, id)?
        .ok_or_else(|| not_found(ns, id))
}

fn not_found(ns: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("container {id:?} in namespace {ns:?}: not found"))
}

/// Checks a short text field: at most `max` bytes and no control characters.
fn check_text(what: &str, text: &str, max: usize) -> ApiResult<()> {
    if text.len() > max {
        let shown: String = text.chars().take(64).collect();
        return Err(ApiError::InvalidArgument(format!(
            "{what} {shown:?}… is {} bytes long, the limit is {max}",
            text.len()
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument(format!(
            "{what} {text:?} must not contain control characters"
        )));
    }
    Ok(())
}

/// Converts an `Any` from the wire, checking its type URL and that its value holds at
/// most `max` bytes; `what` names it in errors.
fn any_from_wire(what: &str, any: prost_types::Any, max: usize) -> ApiResult<AnyRecord> {
    if any.type_url.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{what} must carry a type URL"
        )));
    }
    check_text(&format!("{what} type URL"), &any.type_url, MAX_TYPE_URL_LEN)?;
    if any.value.len() > max {
        return Err(ApiError::InvalidArgument(format!(
            "{what} is {} bytes, the limit is {max}",
            any.value.len()
        )));
    }
    Ok(AnyRecord {
        type_url: any.type_url,
        value: any.value,
    })
}

fn any_to_wire(any: &AnyRecord) -> prost_types::Any {
    prost_types::Any {
        type_url: any.type_url.clone(),
        value: any.value.clone(),
    }
}

/// Checks and converts the spec of container `id`: required, bounded, and valid JSON
/// object when it claims to be an OCI spec (it becomes the bundle's config.json).
fn spec_from_wire(id: &str, spec: Option<prost_types::Any>) -> ApiResult<AnyRecord> {
    let spec = spec
        .ok_or_else(|| ApiError::InvalidArgument(format!("container {id:?}: spec must be set")))?;
    let spec = any_from_wire(&format!("container {id:?} spec"), spec, MAX_SPEC_BYTES)?;
    if spec.type_url == OCI_SPEC {
        match serde_json::from_slice::<serde_json::Value>(&spec.value) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => {
                return Err(ApiError::InvalidArgument(format!(
                    "container {id:?}: the OCI spec must be a JSON object"
                )))
            }
            Err(e) => {
                return Err(ApiError::InvalidArgument(format!(
                    "container {id:?}: the OCI spec is not valid JSON: {e}"
                )))
            }
        }
    }
    Ok(spec)
}

/// Checks and converts the runtime of container `id`: a name is required.
fn runtime_from_wire(id: &str, runtime: Option<container::Runtime>) -> ApiResult<RuntimeRecord> {
    let runtime = runtime.unwrap_or_default();
    if runtime.name.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "container {id:?}: a runtime name must be set (e.g. io.containerd.runc.v2)"
        )));
    }
    check_text("runtime name", &runtime.name, MAX_RUNTIME_NAME_LEN)?;
    let options = runtime
        .options
        .map(|o| any_from_wire("runtime options", o, MAX_RUNTIME_OPTIONS_BYTES))
        .transpose()?;
    Ok(RuntimeRecord {
        name: runtime.name,
        options,
    })
}

/// Checks an image name; empty means the container was not made from an image.
fn check_image(image: &str) -> ApiResult<()> {
    if image.is_empty() {
        Ok(())
    } else {
        images::validate_name(image)
    }
}

/// Checks one extension name.
fn check_extension_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::InvalidArgument(
            "extension names must not be empty".to_string(),
        ));
    }
    check_text("extension name", name, MAX_EXTENSION_NAME_LEN)
}

/// Converts one extension from the wire.
fn extension_from_wire(name: &str, any: prost_types::Any) -> ApiResult<AnyRecord> {
    check_extension_name(name)?;
    any_from_wire(
        &format!("extension {name:?}"),
        any,
        MAX_EXTENSIONS_TOTAL_BYTES,
    )
}

/// Converts every extension from the wire and checks the whole set.
fn extensions_from_wire(
    sent: HashMap<String, prost_types::Any>,
) -> ApiResult<BTreeMap<String, AnyRecord>> {
    let extensions = sent
        .into_iter()
        .map(|(name, any)| Ok((name.clone(), extension_from_wire(&name, any)?)))
        .collect::<ApiResult<BTreeMap<_, _>>>()?;
    check_extensions(&extensions)?;
    Ok(extensions)
}

/// Checks how many extensions there are and how much they weigh together.
fn check_extensions(extensions: &BTreeMap<String, AnyRecord>) -> ApiResult<()> {
    if extensions.len() > MAX_EXTENSIONS {
        return Err(ApiError::InvalidArgument(format!(
            "{} extensions given, the limit is {MAX_EXTENSIONS}",
            extensions.len()
        )));
    }
    let total: usize = extensions
        .iter()
        .map(|(name, any)| name.len() + any.type_url.len() + any.value.len())
        .sum();
    if total > MAX_EXTENSIONS_TOTAL_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "extensions add up to {total} bytes, the limit is {MAX_EXTENSIONS_TOTAL_BYTES}"
        )));
    }
    Ok(())
}

/// Checks the snapshotter of container `id`: none, or the one Berth provides.
fn check_snapshotter(id: &str, snapshotter: &str) -> ApiResult<()> {
    if snapshotter.is_empty() || snapshotter == SNAPSHOTTER {
        return Ok(());
    }
    Err(ApiError::InvalidArgument(format!(
        "container {id:?}: snapshotter {snapshotter:?} is not available: berthd provides \
         only {SNAPSHOTTER:?}"
    )))
}

/// Checks the snapshot key of container `id` against its snapshotter: a key needs one.
fn check_snapshot_key(id: &str, snapshotter: &str, key: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Ok(());
    }
    snapshots::check_key("key", key)?;
    if snapshotter.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "container {id:?}: snapshot key {key:?} given without a snapshotter"
        )));
    }
    Ok(())
}

/// Checks the sandbox a container belongs to; empty means none.
fn check_sandbox(sandbox: &str) -> ApiResult<()> {
    if sandbox.is_empty() {
        Ok(())
    } else {
        ident::validate(sandbox).map_err(ApiError::from)
    }
}

/// Checks what a client sent to Create and makes the record, stamped `now`.
fn record_from_wire(sent: Container, now: SystemTime) -> ApiResult<ContainerRecord> {
    ident::validate(&sent.id)?;
    let id = sent.id;
    check_image(&sent.image)?;
    check_snapshotter(&id, &sent.snapshotter)?;
    check_snapshot_key(&id, &sent.snapshotter, &sent.snapshot_key)?;
    check_sandbox(&sent.sandbox)?;
    Ok(ContainerRecord {
        labels: labels::from_wire(sent.labels)?,
        image: sent.image,
        runtime: runtime_from_wire(&id, sent.runtime)?,
        spec: spec_from_wire(&id, sent.spec)?,
        snapshotter: sent.snapshotter,
        snapshot_key: sent.snapshot_key,
        created_at: now,
        updated_at: now,
        extensions: extensions_from_wire(sent.extensions)?,
        sandbox: sent.sandbox,
        id,
    })
}

/// A record as the wire carries it.
fn to_wire(record: &ContainerRecord) -> Container {
    Container {
        id: record.id.clone(),
        labels: labels::to_wire(&record.labels),
        image: record.image.clone(),
        runtime: Some(container::Runtime {
            name: record.runtime.name.clone(),
            options: record.runtime.options.as_ref().map(any_to_wire),
        }),
        spec: Some(any_to_wire(&record.spec)),
        snapshotter: record.snapshotter.clone(),
        snapshot_key: record.snapshot_key.clone(),
        created_at: reply::timestamp(record.created_at),
        updated_at: reply::timestamp(record.updated_at),
        extensions: record
            .extensions
            .iter()
            .map(|(name, any)| (name.clone(), any_to_wire(any)))
            .collect(),
        sandbox: record.sandbox.clone(),
    }
}

/// A container as filters see it, with containerd's field names: `id`, `image`,
/// `runtime.name`, `labels.<key>`. Empty fields count as absent.
struct ContainerFields<'a>(&'a ContainerRecord);

impl Fields for ContainerFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let (first, rest) = path.split_first()?;
        match (first.as_str(), rest) {
            ("id", []) => non_empty(&self.0.id),
            ("image", []) => non_empty(&self.0.image),
            ("runtime", [name]) if name == "name" => non_empty(&self.0.runtime.name),
            ("labels", key) if !key.is_empty() => self.0.labels.get(&key.join(".")).cloned(),
            _ => None,
        }
    }
}

/// Computes the updated record from what the client sent and the field paths of its mask
/// (none: labels, spec, extensions, image and snapshot key, refusing a different runtime
/// name or snapshotter). The result is fully checked and stamped `now`.
fn apply_update(
    current: &ContainerRecord,
    sent: Container,
    paths: &[String],
    now: SystemTime,
) -> ApiResult<ContainerRecord> {
    let id = current.id.as_str();
    labels::validate_sent(&sent.labels)?;
    let full_update;
    let paths: &[String] = if paths.is_empty() {
        let sent_runtime = sent.runtime.as_ref().map(|r| r.name.as_str());
        if sent_runtime.unwrap_or_default() != current.runtime.name {
            return Err(ApiError::InvalidArgument(format!(
                "container {id:?}: the runtime name {:?} cannot change after create (sent {:?})",
                current.runtime.name,
                sent_runtime.unwrap_or_default()
            )));
        }
        if sent.snapshotter != current.snapshotter {
            return Err(ApiError::InvalidArgument(format!(
                "container {id:?}: the snapshotter {:?} cannot change after create (sent {:?})",
                current.snapshotter, sent.snapshotter
            )));
        }
        full_update = FULL_UPDATE_PATHS.map(String::from);
        &full_update
    } else {
        paths
    };

    let mut updated = current.clone();
    for path in paths {
        let path = path.as_str();
        if labels::apply_path(&mut updated.labels, &sent.labels, path) {
            continue;
        }
        if let Some(name) = path.strip_prefix(EXTENSION_PATH_PREFIX) {
            match sent.extensions.get(name) {
                Some(any) => {
                    let any = extension_from_wire(name, any.clone())?;
                    updated.extensions.insert(name.to_string(), any);
                }
                None => {
                    updated.extensions.remove(name);
                }
            }
            continue;
        }
        match path {
            EXTENSIONS_PATH => updated.extensions = extensions_from_wire(sent.extensions.clone())?,
            SPEC_PATH => updated.spec = spec_from_wire(id, sent.spec.clone())?,
            IMAGE_PATH => {
                check_image(&sent.image)?;
                updated.image = sent.image.clone();
            }
            p if SNAPSHOT_KEY_PATHS.contains(&p) => {
                check_snapshot_key(id, &updated.snapshotter, &sent.snapshot_key)?;
                updated.snapshot_key = sent.snapshot_key.clone();
            }
            p if IMMUTABLE_PATHS.contains(&p) => {
                return Err(ApiError::InvalidArgument(format!(
                    "container {id:?}: field {p:?} cannot change after create"
                )));
            }
            p => {
                return Err(ApiError::InvalidArgument(format!(
                    "container {id:?}: cannot update field {p:?}; the fields that can change \
                     are labels, labels.<key>, spec, image, snapshotkey, extensions and \
                     extensions.<name>"
                )));
            }
        }
    }
    labels::validate(&updated.labels)?;
    check_extensions(&updated.extensions)?;
    updated.updated_at = now;
    Ok(updated)
}

/// The stream type of `ListStream`.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListContainerMessage, Status>> + Send>>;

impl ContainersService {
    fn get_container(&self, ns: &str, req: GetContainerRequest) -> ApiResult<GetContainerResponse> {
        tracing::debug!(namespace = %ns, container = %req.id, "containers get");
        let record = load(&self.daemon.meta, ns, &req.id)?;
        Ok(GetContainerResponse {
            container: Some(to_wire(&record)),
        })
    }

    /// The records of `ns` that pass the request's filters, sorted by id.
    fn matching(&self, ns: &str, filters: &[String]) -> ApiResult<Vec<ContainerRecord>> {
        let filter = Filter::parse(filters)?;
        Ok(self
            .daemon
            .meta
            .list::<ContainerRecord>(Kind::Container, ns)?
            .into_iter()
            .map(|(_, record)| record)
            .filter(|record| filter.matches(&ContainerFields(record)))
            .collect())
    }

    fn list_containers(
        &self,
        ns: &str,
        req: ListContainersRequest,
    ) -> ApiResult<ListContainersResponse> {
        tracing::debug!(namespace = %ns, filters = ?req.filters, "containers list");
        let containers = self
            .matching(ns, &req.filters)?
            .iter()
            .map(to_wire)
            .collect();
        let reply = ListContainersResponse { containers };
        reply::ensure_fits("containers list (ListStream has no such limit)", &reply)?;
        Ok(reply)
    }

    /// One message per container, converted as the client reads them. No container can
    /// outgrow a message: [`MAX_CONTAINER_BYTES`] bounds each.
    fn stream_containers(&self, ns: &str, req: ListContainersRequest) -> ApiResult<ListStream> {
        tracing::debug!(namespace = %ns, filters = ?req.filters, "containers list stream");
        let records = self.matching(ns, &req.filters)?;
        let messages = futures::stream::iter(records)
            .map(|record| ListContainerMessage {
                container: Some(to_wire(&record)),
            })
            .map(Ok);
        Ok(Box::pin(messages))
    }

    async fn create_container(
        &self,
        ns: &str,
        req: CreateContainerRequest,
    ) -> ApiResult<CreateContainerResponse> {
        let sent = req
            .container
            .ok_or_else(|| ApiError::InvalidArgument("container must be set".to_string()))?;
        let record = record_from_wire(sent, SystemTime::now())?;
        let id = record.id.clone();
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta
                    .get::<ContainerRecord>(Kind::Container, ns, &id)?
                    .is_some()
                {
                    return Err(ApiError::AlreadyExists(format!(
                        "container {id:?} in namespace {ns:?}: already exists"
                    )));
                }
                ensure_namespace(meta, batch, ns)?;
                batch.put(Kind::Container, ns, &id, &record)?;
                Ok(())
            })
            .await?;
        tracing::info!(
            namespace = %ns, container = %id, image = %record.image,
            runtime = %record.runtime.name, snapshot_key = %record.snapshot_key,
            "container created"
        );
        self.daemon.events.publish(
            ns,
            TOPIC_CREATE,
            &ContainerCreate {
                id,
                image: record.image.clone(),
                runtime: Some(container_create::Runtime {
                    name: record.runtime.name.clone(),
                    options: record.runtime.options.as_ref().map(any_to_wire),
                }),
            },
        );
        Ok(CreateContainerResponse {
            container: Some(to_wire(&record)),
        })
    }

    async fn update_container(
        &self,
        ns: &str,
        req: UpdateContainerRequest,
    ) -> ApiResult<UpdateContainerResponse> {
        let sent = req
            .container
            .ok_or_else(|| ApiError::InvalidArgument("container must be set".to_string()))?;
        ident::validate(&sent.id)?;
        let id = sent.id.clone();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let record = self
            .daemon
            .meta
            .write(|meta, batch| -> ApiResult<ContainerRecord> {
                let current = load(meta, ns, &id)?;
                let updated = apply_update(&current, sent, &paths, SystemTime::now())?;
                batch.put(Kind::Container, ns, &id, &updated)?;
                Ok(updated)
            })
            .await?;
        tracing::info!(namespace = %ns, container = %id, ?paths, "container updated");
        self.daemon.events.publish(
            ns,
            TOPIC_UPDATE,
            &ContainerUpdate {
                id,
                image: record.image.clone(),
                labels: labels::to_wire(&record.labels),
                snapshot_key: record.snapshot_key.clone(),
            },
        );
        // A changed snapshot key may have released the old snapshot.
        gc::schedule(self.daemon.clone());
        Ok(UpdateContainerResponse {
            container: Some(to_wire(&record)),
        })
    }

    async fn delete_container(&self, ns: &str, req: DeleteContainerRequest) -> ApiResult<()> {
        ident::validate(&req.id)?;
        let id = req.id;
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                load(meta, ns, &id)?;
                if has_task(&self.daemon, ns, &id)? {
                    return Err(ApiError::FailedPrecondition(format!(
                        "container {id:?} in namespace {ns:?} has a task: delete the task first"
                    )));
                }
                batch.delete(Kind::Container, ns, &id);
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, container = %id, "container deleted");
        self.daemon
            .events
            .publish(ns, TOPIC_DELETE, &ContainerDelete { id });
        // Its snapshot is no longer held by the container.
        gc::schedule(self.daemon.clone());
        Ok(())
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn get(
        &self,
        req: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(self.get_container(&ns, req.into_inner())?))
    }

    async fn list(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(self.list_containers(&ns, req.into_inner())?))
    }

    type ListStreamStream = ListStream;

    async fn list_stream(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.stream_containers(&ns, req.into_inner())?,
        ))
    }

    async fn create(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.create_container(&ns, req.into_inner()).await?,
        ))
    }

    async fn update(
        &self,
        req: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.update_container(&ns, req.into_inner()).await?,
        ))
    }

    async fn delete(&self, req: Request<DeleteContainerRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.delete_container(&ns, req.into_inner()).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests;
