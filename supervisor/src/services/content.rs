//! `containerd.services.content.v1.Content`: blobs by digest and ingests by ref.
//!
//! A blob is stored once on disk (berth-content) but is visible in a namespace only while
//! the namespace holds a content record for it (metadata kind `Content`, keyed by
//! digest); every call but the ingest ones looks at that record first. Ingests are kept in
//! the content store under `<namespace>/<ref>`, so namespaces never see each other's.
//! Deleting a blob removes the namespace's record; the collector removes the file once no
//! namespace holds it.

mod write;

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use berth_content::{Digest, IngestStatus};
use berth_proto::containerd::events::ContentDelete;
use berth_proto::containerd::services::content::v1::{
    content_server::{Content, ContentServer},
    AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse, ListContentRequest,
    ListContentResponse, ListStatusesRequest, ListStatusesResponse, ReadContentRequest,
    ReadContentResponse, Status as IngestStatusMessage, StatusRequest, StatusResponse,
    UpdateRequest, UpdateResponse, WriteContentRequest, WriteContentResponse,
};
use futures::Stream;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::MAX_MESSAGE_BYTES;
use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::metadata::{ContentRecord, Kind, Labels, LeaseRecord, LeaseResource};
use crate::request;
use crate::services::{labels, reply};
use crate::state::{self, Daemon};

/// Bytes per `Read` response message (what containerd sends, and what ctr expects).
pub const READ_CHUNK_BYTES: u64 = 1 << 20;
/// Most bytes of `Info` one `List` response message carries.
pub const LIST_BATCH_BYTES: usize = 1 << 20;
/// Topic of the event published when a blob is deleted from a namespace.
pub const TOPIC_DELETE: &str = "/content/delete";

/// Lease resource type of a blob.
const LEASE_KIND_CONTENT: &str = "content";
/// Lease resource type of an ingest.
const LEASE_KIND_INGEST: &str = "ingests";

/// Size limits of the content service.
#[derive(Debug, Clone, Copy)]
pub struct ContentLimits {
    /// Largest blob a Write may declare (`total`) or write, in bytes.
    pub max_blob_bytes: u64,
}

impl Default for ContentLimits {
    fn default() -> Self {
        Self {
            max_blob_bytes: crate::config::DEFAULT_MAX_BLOB_SIZE,
        }
    }
}

/// The Content service.
pub struct ContentService {
    daemon: Arc<Daemon>,
    limits: ContentLimits,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> ContentServer<ContentService> {
    let limits = ContentLimits {
        max_blob_bytes: daemon.settings.max_blob_size,
    };
    ContentServer::new(ContentService { daemon, limits })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A stream of responses as the generated trait wants it.
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ns = request::namespace(&req)?;
        let digest = Digest::parse(&req.get_ref().digest).map_err(ApiError::from)?;
        tracing::debug!(namespace = %ns, %digest, "content info");
        let record = self.visible_record(&ns, &digest)?;
        Ok(Response::new(InfoResponse {
            info: Some(info_to_wire(&digest.to_string(), &record)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let ns = request::namespace(&req)?;
        let req = req.into_inner();
        let info = req
            .info
            .ok_or_else(|| ApiError::InvalidArgument("update needs an info".to_string()))?;
        let digest = Digest::parse(&info.digest).map_err(ApiError::from)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let key = digest.to_string();
        let record = self
            .daemon
            .meta
            .write(|meta, batch| -> ApiResult<ContentRecord> {
                let mut record: ContentRecord = meta
                    .get(Kind::Content, &ns, &key)?
                    .ok_or_else(|| not_found(&digest))?;
                record.labels = updated_labels(&record.labels, &info.labels, &paths)?;
                record.updated_at = SystemTime::now();
                batch.put(Kind::Content, &ns, &key, &record)?;
                Ok(record)
            })
            .await?;
        tracing::info!(namespace = %ns, %digest, ?paths, "content labels updated");
        Ok(Response::new(UpdateResponse {
            info: Some(info_to_wire(&key, &record)),
        }))
    }

    type ListStream = BoxStream<ListContentResponse>;

    async fn list(
        &self,
        req: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = request::namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(ApiError::from)?;
        tracing::debug!(namespace = %ns, filters = ?req.get_ref().filters, "content list");
        let records: Vec<(String, ContentRecord)> = self
            .daemon
            .meta
            .list(Kind::Content, &ns)
            .map_err(ApiError::from)?;
        let infos = records
            .iter()
            .filter(|(digest, record)| filter.matches(&ContentFields { digest, record }))
            .map(|(digest, record)| info_to_wire(digest, record));
        let batches = list_batches(infos, LIST_BATCH_BYTES);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            batches.into_iter().map(Ok),
        ))))
    }

    async fn delete(&self, req: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        let digest = Digest::parse(&req.get_ref().digest).map_err(ApiError::from)?;
        let key = digest.to_string();
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta
                    .get::<ContentRecord>(Kind::Content, &ns, &key)?
                    .is_none()
                {
                    return Err(not_found(&digest));
                }
                batch.delete(Kind::Content, &ns, &key);
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, %digest, "content deleted from namespace");
        self.daemon
            .events
            .publish(&ns, TOPIC_DELETE, &ContentDelete { digest: key });
        // The file goes once no namespace holds it.
        crate::gc::schedule(self.daemon.clone());
        Ok(Response::new(()))
    }

    type ReadStream = BoxStream<ReadContentResponse>;

    async fn read(
        &self,
        req: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = request::namespace(&req)?;
        let ReadContentRequest {
            digest,
            offset,
            size,
        } = req.into_inner();
        let digest = Digest::parse(&digest).map_err(ApiError::from)?;
        tracing::debug!(namespace = %ns, %digest, offset, size, "content read");
        self.visible_record(&ns, &digest)?;
        let store = self.daemon.content.clone();
        let (file, blob_size) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
            let file = store.open_blob(&digest)?;
            let size = file
                .metadata()
                .map_err(|e| ApiError::Internal(format!("stat blob {digest}: {e}")))?
                .len();
            Ok((file, size))
        })
        .await
        .map_err(join_error)??;
        let (start, end) = read_range(offset, size, blob_size)?;
        let file = Arc::new(file);
        let chunks = async_stream::try_stream! {
            let mut position = start;
            while position < end {
                let len = (end - position).min(READ_CHUNK_BYTES);
                let file = file.clone();
                let data = tokio::task::spawn_blocking(move || read_chunk(&file, position, len))
                    .await
                    .map_err(join_error)?
                    .map_err(|e| ApiError::Internal(format!("reading blob {digest}: {e}")))?;
                yield ReadContentResponse {
                    offset: to_wire_size(position),
                    data,
                };
                position += len;
            }
        };
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let ns = request::namespace(&req)?;
        let reference = check_ref(&ns, &req.get_ref().r#ref)?;
        tracing::debug!(namespace = %ns, r#ref = %reference, "content ingest status");
        let store = self.daemon.content.clone();
        let backend_ref = state::ingest_ref(&ns, &reference);
        let status = tokio::task::spawn_blocking(move || store.status(&backend_ref))
            .await
            .map_err(join_error)?
            .map_err(|e| client_ref_error(e.into(), &ns, &reference))?;
        Ok(Response::new(StatusResponse {
            status: Some(status_to_wire(&reference, &status)),
        }))
    }

    async fn list_statuses(
        &self,
        req: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let ns = request::namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(ApiError::from)?;
        tracing::debug!(namespace = %ns, filters = ?req.get_ref().filters, "content ingest list");
        let store = self.daemon.content.clone();
        let all = tokio::task::spawn_blocking(move || store.list_statuses())
            .await
            .map_err(join_error)?
            .map_err(ApiError::from)?;
        let prefix = state::ingest_ref(&ns, "");
        let statuses = all
            .iter()
            .filter_map(|status| {
                let reference = status.reference.strip_prefix(&prefix)?;
                filter
                    .matches(&IngestFields { reference })
                    .then(|| status_to_wire(reference, status))
            })
            .collect();
        let reply = ListStatusesResponse { statuses };
        reply::ensure_fits("content ingest list", &reply)?;
        Ok(Response::new(reply))
    }

    type WriteStream = ReceiverStream<Result<WriteContentResponse, Status>>;

    async fn write(
        &self,
        req: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let namespace = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let span = tracing::info_span!(
            "content.write",
            namespace = %namespace,
            lease = lease.as_deref().unwrap_or(""),
            r#ref = tracing::field::Empty,
        );
        let session = write::WriteSession {
            daemon: self.daemon.clone(),
            limits: self.limits,
            namespace,
            lease,
        };
        let (out, responses) = tokio::sync::mpsc::channel(2);
        // The session runs to its end even if the client goes away mid-commit, so a
        // committed blob is always recorded.
        tokio::spawn(session.run(req.into_inner(), out).instrument(span));
        Ok(Response::new(ReceiverStream::new(responses)))
    }

    async fn abort(&self, req: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        let reference = check_ref(&ns, &req.get_ref().r#ref)?;
        let store = self.daemon.content.clone();
        let backend_ref = state::ingest_ref(&ns, &reference);
        tokio::task::spawn_blocking(move || store.abort(&backend_ref))
            .await
            .map_err(join_error)?
            .map_err(|e| client_ref_error(e.into(), &ns, &reference))?;
        // Leases holding the ingest no longer need to.
        let resource = ingest_resource(&reference);
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                for (id, mut lease) in meta.list::<LeaseRecord>(Kind::Lease, &ns)? {
                    if lease.resources.remove(&resource) {
                        batch.put(Kind::Lease, &ns, &id, &lease)?;
                    }
                }
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, r#ref = %reference, "content ingest aborted");
        Ok(Response::new(()))
    }
}

impl ContentService {
    /// The namespace's record of `digest`; `NotFound` if the blob is not visible there.
    fn visible_record(&self, ns: &str, digest: &Digest) -> ApiResult<ContentRecord> {
        self.daemon
            .meta
            .get(Kind::Content, ns, &digest.to_string())?
            .ok_or_else(|| not_found(digest))
    }
}

/// A blob's labels after an `Update` with field mask `paths` and the labels `sent`: an
/// empty mask or `labels` replaces them all, `labels.<key>` sets or removes one; labels are
/// the only mutable field of a blob, so any other path is `InvalidArgument`.
fn updated_labels(
    current: &Labels,
    sent: &HashMap<String, String>,
    paths: &[String],
) -> ApiResult<Labels> {
    labels::validate_sent(sent)?;
    let mut updated = current.clone();
    if paths.is_empty() {
        labels::apply_path(&mut updated, sent, labels::LABELS_PATH);
    }
    for path in paths {
        if !labels::apply_path(&mut updated, sent, path) {
            let shown: String = path.chars().take(128).collect();
            return Err(ApiError::InvalidArgument(format!(
                "cannot update field {shown:?} of a content blob: only \"labels\" and \
                 \"labels.<key>\" are mutable"
            )));
        }
    }
    labels::validate(&updated)?;
    Ok(updated)
}

/// The `NotFound` answer for a blob not visible in the namespace.
fn not_found(digest: &Digest) -> ApiError {
    ApiError::NotFound(format!("content {digest}: not found"))
}

/// Checks a client's ingest ref: not empty, and short enough that the namespaced ref the
/// content store keeps fits its limit. Returns it owned.
fn check_ref(ns: &str, reference: &str) -> ApiResult<String> {
    if reference.is_empty() {
        return Err(ApiError::InvalidArgument(
            "an ingest ref is required".to_string(),
        ));
    }
    let limit = berth_content::MAX_REF_LEN.saturating_sub(ns.len() + 1);
    if reference.len() > limit {
        return Err(ApiError::InvalidArgument(format!(
            "ingest ref is {} bytes long, the limit is {limit}",
            reference.len()
        )));
    }
    Ok(reference.to_string())
}

/// Restates an error about the namespaced ingest `<ns>/<reference>` in terms of the
/// client's ref: the namespace prefix is an internal detail.
fn client_ref_error(e: ApiError, ns: &str, reference: &str) -> ApiError {
    use berth_content::Error as C;
    let internal = format!("{:?}", state::ingest_ref(ns, reference));
    let client = format!("{reference:?}");
    let restate = |text: String| text.replace(&internal, &client);
    match e {
        ApiError::Content(e) => ApiError::Content(match e {
            C::NotFound { what } => C::NotFound {
                what: restate(what),
            },
            C::AlreadyExists { what } => C::AlreadyExists {
                what: restate(what),
            },
            C::Locked { .. } => C::Locked {
                reference: reference.to_string(),
            },
            C::InvalidArgument(text) => C::InvalidArgument(restate(text)),
            C::FailedPrecondition(text) => C::FailedPrecondition(restate(text)),
            io @ C::Io { .. } => io,
        }),
        other => other,
    }
}

/// The lease resource of a blob.
fn content_resource(digest: &Digest) -> LeaseResource {
    LeaseResource {
        kind: LEASE_KIND_CONTENT.to_string(),
        id: digest.to_string(),
    }
}

/// The lease resource of an ingest (by the client's ref).
fn ingest_resource(reference: &str) -> LeaseResource {
    LeaseResource {
        kind: LEASE_KIND_INGEST.to_string(),
        id: reference.to_string(),
    }
}

/// A blocking task that died (panicked or was cancelled at shutdown).
fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(format!("background I/O task failed: {e}"))
}

/// A size on the wire (int64); sizes beyond it cannot occur under the blob limit.
fn to_wire_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn info_to_wire(digest: &str, record: &ContentRecord) -> Info {
    Info {
        digest: digest.to_string(),
        size: record.size,
        created_at: reply::timestamp(record.created_at),
        updated_at: reply::timestamp(record.updated_at),
        labels: labels::to_wire(&record.labels),
    }
}

fn status_to_wire(reference: &str, status: &IngestStatus) -> IngestStatusMessage {
    IngestStatusMessage {
        started_at: reply::timestamp(status.started_at),
        updated_at: reply::timestamp(status.updated_at),
        r#ref: reference.to_string(),
        offset: to_wire_size(status.offset),
        total: status.total.map(to_wire_size).unwrap_or(0),
        expected: status.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// Groups infos into `List` responses of at most about `max_bytes` each (one info larger
/// than that still goes, alone).
fn list_batches(infos: impl Iterator<Item = Info>, max_bytes: usize) -> Vec<ListContentResponse> {
    let mut batches = Vec::new();
    let mut current = ListContentResponse::default();
    let mut bytes = 0usize;
    for info in infos {
        // The field tag and length prefix of each repeated entry take a few bytes more.
        let len = info.encoded_len() + 8;
        if !current.info.is_empty() && bytes + len > max_bytes {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.info.push(info);
    }
    if !current.info.is_empty() {
        batches.push(current);
    }
    batches
}

/// The byte range `[start, end)` a Read returns: from `offset` (negative means 0) for
/// `size` bytes (zero or negative, or past the end, means to the end). An offset past the
/// end is refused.
fn read_range(offset: i64, size: i64, blob_size: u64) -> ApiResult<(u64, u64)> {
    let start = offset.max(0) as u64;
    if start > blob_size {
        return Err(ApiError::InvalidArgument(format!(
            "read offset {start} is past the end of the blob ({blob_size} bytes)"
        )));
    }
    let end = if size <= 0 {
        blob_size
    } else {
        start.saturating_add(size as u64).min(blob_size)
    };
    Ok((start, end))
}

/// Reads exactly `len` bytes at `position` (the blob is immutable, so a short read is an
/// error).
fn read_chunk(file: &std::fs::File, position: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, position)?;
    Ok(data)
}

/// What content filters can match on: `digest`, `size`, `labels.<key>`.
struct ContentFields<'a> {
    digest: &'a str,
    record: &'a ContentRecord,
}

impl Fields for ContentFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [field] if field == "digest" => Some(self.digest.to_string()),
            [field] if field == "size" => Some(self.record.size.to_string()),
            [field, key @ ..] if field == "labels" && !key.is_empty() => {
                self.record.labels.get(&key.join(".")).cloned()
            }
            _ => None,
        }
    }
}

/// What ingest filters can match on: `ref`.
struct IngestFields<'a> {
    reference: &'a str,
}

impl Fields for IngestFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [field] if field == "ref" => Some(self.reference.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
