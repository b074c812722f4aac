//! One `Content.Write` stream: a client opens (or resumes) the ingest named by its ref,
//! sends STAT / WRITE / COMMIT messages, and gets one `WriteContentResponse` for each.
//!
//! The stream holds the ingest's writer (and so its lock) from the first message to the
//! end. Bytes go straight to the ingest file and are hashed on the way, one message at a
//! time, on the blocking thread pool: nothing buffers a whole blob. The first error ends
//! the stream with that error.
//!
//! Namespacing: the ingest lives in the content store under `<namespace>/<ref>`. A blob
//! becomes visible in the namespace when it is committed there; a blob already on disk
//! (committed by another namespace) is only recorded, never re-read or re-written.

use std::sync::Arc;
use std::time::SystemTime;

use berth_content::{Digest, IngestStatus, Writer};
use berth_proto::containerd::services::content::v1::{
    WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{
    check_ref, client_ref_error, content_resource, ingest_resource, join_error, to_wire_size,
    ContentLimits,
};
use crate::error::{ApiError, ApiResult};
use crate::metadata::{ContentRecord, Kind, Labels, LeaseRecord};
use crate::services::{labels, reply};
use crate::state::{self, Daemon};

/// Where a stream's responses go.
pub type Responses = mpsc::Sender<Result<WriteContentResponse, Status>>;

/// What a Write stream works in: the daemon, its limits, and the request's namespace and
/// lease.
pub struct WriteSession {
    /// The daemon's stores.
    pub daemon: Arc<Daemon>,
    /// Size limits.
    pub limits: ContentLimits,
    /// The request's namespace.
    pub namespace: String,
    /// The request's lease, if any.
    pub lease: Option<String>,
}

/// What the client told us to expect, from any message so far (later ones win).
#[derive(Debug, Default, Clone, Copy)]
struct Expectations {
    total: Option<u64>,
    digest: Option<Digest>,
}

impl Expectations {
    /// Folds in the `total` and `expected` of one message.
    fn merge(&mut self, req: &WriteContentRequest, limits: &ContentLimits) -> ApiResult<()> {
        if let Some(total) = declared_total(req.total, limits)? {
            self.total = Some(total);
        }
        if !req.expected.is_empty() {
            self.digest = Some(Digest::parse(&req.expected)?);
        }
        Ok(())
    }
}

/// A message's declared total: none when zero or negative; refused above the limit.
fn declared_total(total: i64, limits: &ContentLimits) -> ApiResult<Option<u64>> {
    if total <= 0 {
        return Ok(None);
    }
    let total = total as u64;
    if total > limits.max_blob_bytes {
        return Err(ApiError::InvalidArgument(format!(
            "declared total of {total} bytes is larger than the maximum blob size of {} bytes",
            limits.max_blob_bytes
        )));
    }
    Ok(Some(total))
}

/// Where a WRITE or COMMIT puts its data: `offset` must not leave a gap (a smaller offset
/// rewinds the ingest to it), and the end must stay within the maximum blob size.
fn check_write_range(
    offset: i64,
    len: usize,
    current: u64,
    limits: &ContentLimits,
) -> ApiResult<u64> {
    let offset = u64::try_from(offset)
        .map_err(|_| ApiError::InvalidArgument(format!("write offset {offset} is negative")))?;
    if offset > current {
        return Err(ApiError::InvalidArgument(format!(
            "write at offset {offset} must not start past the {current} bytes received"
        )));
    }
    match offset.checked_add(len as u64) {
        Some(end) if end <= limits.max_blob_bytes => Ok(offset),
        _ => Err(ApiError::ResourceExhausted(format!(
            "write of {len} bytes at offset {offset} would make the blob larger than the \
             maximum blob size of {} bytes",
            limits.max_blob_bytes
        ))),
    }
}

/// How far an ingest got: the fields every response carries.
struct Progress {
    status: IngestStatus,
    digest: Digest,
}

impl Progress {
    fn of(writer: &Writer) -> Self {
        Progress {
            status: writer.status(),
            digest: writer.digest(),
        }
    }

    fn response(&self, action: WriteAction) -> WriteContentResponse {
        WriteContentResponse {
            action: action as i32,
            started_at: reply::timestamp(self.status.started_at),
            updated_at: reply::timestamp(self.status.updated_at),
            offset: to_wire_size(self.status.offset),
            total: self.status.total.map(to_wire_size).unwrap_or(0),
            digest: self.digest.to_string(),
        }
    }
}

/// What the stream's first message led to.
enum Opened {
    /// A writer for the ingest (boxed: it is large, and made once per stream).
    Writer(Box<Writer>),
    /// The expected blob is (now) visible in the namespace; nothing to write.
    AlreadyExists(Digest),
}

impl WriteSession {
    /// Serves the stream until the client closes it or an error ends it; the error, if
    /// any, is sent as the stream's last item.
    pub async fn run(self, mut inbound: Streaming<WriteContentRequest>, out: Responses) {
        if let Err(status) = self.serve(&mut inbound, &out).await {
            let _ = out.send(Err(status)).await;
        }
    }

    /// Restates a content-store error about this stream's ingest for the client.
    fn for_client(&self, reference: &str) -> impl Fn(ApiError) -> ApiError + '_ {
        let reference = reference.to_string();
        move |e| client_ref_error(e, &self.namespace, &reference)
    }

    async fn serve(
        &self,
        inbound: &mut Streaming<WriteContentRequest>,
        out: &Responses,
    ) -> Result<(), Status> {
        let Some(mut req) = inbound.message().await? else {
            return Ok(());
        };
        let reference = check_ref(&self.namespace, &req.r#ref)?;
        tracing::Span::current().record("ref", reference.as_str());
        if let Some(lease) = &self.lease {
            self.check_lease(lease)?;
        }
        let mut expect = Expectations::default();
        expect.merge(&req, &self.limits)?;
        let mut writer = match self
            .open(&reference, expect, &req)
            .await
            .map_err(self.for_client(&reference))?
        {
            Opened::Writer(writer) => *writer,
            Opened::AlreadyExists(digest) => return Err(already_exists(&digest).into()),
        };
        tracing::debug!(offset = writer.offset(), total = ?expect.total, "write stream opened");
        let mut ingest_leased = false;
        loop {
            let action = WriteAction::try_from(req.action).map_err(|_| {
                ApiError::InvalidArgument(format!("unknown write action {}", req.action))
            })?;
            if !req.r#ref.is_empty() && req.r#ref != reference {
                return Err(ApiError::InvalidArgument(format!(
                    "this stream writes ref {reference:?}; it cannot switch to another ref"
                ))
                .into());
            }
            expect.merge(&req, &self.limits)?;
            if !req.expected.is_empty() {
                if let Some(digest) = expect.digest {
                    if self.visible(&digest)? {
                        // As on the first message: the client may stop sending the bytes.
                        self.lease_content(&digest).await?;
                        drop(writer);
                        self.abort_ingest(&reference).await;
                        return Err(already_exists(&digest).into());
                    }
                }
            }
            let response = match action {
                WriteAction::Stat => Progress::of(&writer).response(action),
                WriteAction::Write | WriteAction::Commit => {
                    let offset = check_write_range(
                        req.offset,
                        req.data.len(),
                        writer.offset(),
                        &self.limits,
                    )?;
                    // Labels are checked before any byte is written.
                    let commit_labels = if action == WriteAction::Commit {
                        Some(labels::from_wire(std::mem::take(&mut req.labels))?)
                    } else {
                        None
                    };
                    let data = std::mem::take(&mut req.data);
                    if !data.is_empty() && !ingest_leased {
                        self.lease_ingest(&reference).await?;
                        ingest_leased = true;
                    }
                    let progress;
                    (writer, progress) = write_at(writer, offset, data)
                        .await
                        .map_err(self.for_client(&reference))?;
                    if let Some(labels) = commit_labels {
                        let response = self
                            .commit(writer, &reference, expect, labels)
                            .await
                            .map_err(self.for_client(&reference))?;
                        let _ = out.send(Ok(response)).await;
                        return self.after_commit(inbound).await;
                    }
                    progress.response(action)
                }
            };
            if out.send(Ok(response)).await.is_err() {
                return Ok(()); // the client went away; the ingest stays resumable
            }
            req = match inbound.message().await? {
                Some(next) => next,
                None => return Ok(()),
            };
        }
    }

    /// A committed stream accepts nothing more; the client just closes it.
    async fn after_commit(
        &self,
        inbound: &mut Streaming<WriteContentRequest>,
    ) -> Result<(), Status> {
        match inbound.message().await? {
            None => Ok(()),
            Some(_) => Err(ApiError::FailedPrecondition(
                "the ingest is committed; open a new Write stream for more content".to_string(),
            )
            .into()),
        }
    }

    /// Handles an expected digest that is already visible or on disk, else opens the
    /// ingest's writer.
    async fn open(
        &self,
        reference: &str,
        expect: Expectations,
        first: &WriteContentRequest,
    ) -> ApiResult<Opened> {
        if let Some(digest) = expect.digest {
            if let Some(found) = self
                .claim_existing(&digest, expect.total, &first.labels)
                .await?
            {
                return Ok(found);
            }
        }
        let store = self.daemon.content.clone();
        let backend_ref = state::ingest_ref(&self.namespace, reference);
        let opened = tokio::task::spawn_blocking(move || {
            store.writer(&backend_ref, expect.total, expect.digest)
        })
        .await
        .map_err(join_error)?;
        match opened {
            Ok(writer) => Ok(Opened::Writer(Box::new(writer))),
            // The expected blob was committed (by another namespace) since we looked.
            Err(berth_content::Error::AlreadyExists { .. }) if expect.digest.is_some() => {
                let digest = expect.digest.expect("checked above");
                match self
                    .claim_existing(&digest, expect.total, &first.labels)
                    .await?
                {
                    Some(found) => Ok(found),
                    None => Err(ApiError::Internal(format!(
                        "blob {digest} was reported present and then absent"
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// If the expected blob is visible in the namespace, or on disk and can be made
    /// visible by recording it (its bytes were verified when they were committed), returns
    /// `AlreadyExists`; `None` when it is not on disk. A declared total that disagrees
    /// with the blob on disk is refused. Under a lease, the blob is added to it.
    async fn claim_existing(
        &self,
        digest: &Digest,
        total: Option<u64>,
        given_labels: &std::collections::HashMap<String, String>,
    ) -> ApiResult<Option<Opened>> {
        if self.visible(digest)? {
            self.lease_content(digest).await?;
            return Ok(Some(Opened::AlreadyExists(*digest)));
        }
        // From the existence check until the record is written, no collection may delete
        // the blob as unreferenced.
        let _gc = self.daemon.gc.writer().await;
        let store = self.daemon.content.clone();
        let found = {
            let digest = *digest;
            tokio::task::spawn_blocking(move || store.info(&digest))
                .await
                .map_err(join_error)?
        };
        let blob = match found {
            Ok(blob) => blob,
            Err(berth_content::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Some(total) = total.filter(|total| *total != blob.size) {
            return Err(ApiError::FailedPrecondition(format!(
                "size mismatch for {digest}: expected {total} bytes (declared by the writer), \
                 the stored blob has {}",
                blob.size
            )));
        }
        let labels = labels::from_wire(given_labels.clone())?;
        let recorded = self.record(digest, blob.size, labels, None).await?;
        if recorded {
            tracing::info!(digest = %digest, size = blob.size, "content shared into namespace");
        }
        Ok(Some(Opened::AlreadyExists(*digest)))
    }

    /// Verifies and commits the ingest, then records the blob in the namespace (and the
    /// lease). A blob that was on disk already is recorded the same way; one that was
    /// already visible in the namespace is `AlreadyExists`, as in containerd.
    async fn commit(
        &self,
        writer: Writer,
        reference: &str,
        expect: Expectations,
        labels: Labels,
    ) -> ApiResult<WriteContentResponse> {
        let before = Progress::of(&writer);
        let size = writer.offset();
        let digest = before.digest;
        // Hold off collections from the commit until the record is written, so the new
        // blob is never seen unreferenced.
        let _gc = self.daemon.gc.writer().await;
        let committed =
            tokio::task::spawn_blocking(move || writer.commit(expect.total, expect.digest))
                .await
                .map_err(join_error)?;
        match committed {
            Ok(_) => {}
            // Same bytes already on disk: the store verified them and dropped the ingest.
            Err(berth_content::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let recorded = self.record(&digest, size, labels, Some(reference)).await?;
        if !recorded {
            return Err(already_exists(&digest));
        }
        tracing::info!(digest = %digest, size, "content committed");
        let mut response = before.response(WriteAction::Commit);
        response.offset = to_wire_size(size);
        response.total = to_wire_size(size);
        response.updated_at = reply::timestamp(SystemTime::now());
        Ok(response)
    }

    /// Makes `digest` visible in the namespace unless it is already: writes its record,
    /// creates the namespace if needed, and under a lease adds the blob to it (and drops
    /// the ingest `committed_ref` from it). Returns false if it was visible already (the
    /// lease is still updated).
    async fn record(
        &self,
        digest: &Digest,
        size: u64,
        labels: Labels,
        committed_ref: Option<&str>,
    ) -> ApiResult<bool> {
        let ns = self.namespace.as_str();
        let key = digest.to_string();
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<bool> {
                let visible = meta
                    .get::<ContentRecord>(Kind::Content, ns, &key)?
                    .is_some();
                if !visible {
                    state::ensure_namespace(meta, batch, ns)?;
                    let now = SystemTime::now();
                    let record = ContentRecord {
                        size: to_wire_size(size),
                        labels,
                        created_at: now,
                        updated_at: now,
                    };
                    batch.put(Kind::Content, ns, &key, &record)?;
                }
                if let Some(lease) = &self.lease {
                    let mut record: LeaseRecord =
                        meta.get(Kind::Lease, ns, lease)?.ok_or_else(|| {
                            ApiError::NotFound(format!(
                                "lease {lease:?} does not exist in namespace {ns:?}"
                            ))
                        })?;
                    let mut changed = record.resources.insert(content_resource(digest));
                    if let Some(reference) = committed_ref {
                        changed |= record.resources.remove(&ingest_resource(reference));
                    }
                    if changed {
                        batch.put(Kind::Lease, ns, lease, &record)?;
                    }
                }
                Ok(!visible)
            })
            .await
    }

    /// True if `digest` is visible in the namespace.
    fn visible(&self, digest: &Digest) -> ApiResult<bool> {
        Ok(self
            .daemon
            .meta
            .get::<ContentRecord>(Kind::Content, &self.namespace, &digest.to_string())?
            .is_some())
    }

    /// Refuses a lease that does not exist, before anything is written.
    fn check_lease(&self, lease: &str) -> ApiResult<()> {
        match self
            .daemon
            .meta
            .get::<LeaseRecord>(Kind::Lease, &self.namespace, lease)?
        {
            Some(_) => Ok(()),
            None => Err(ApiError::NotFound(format!(
                "lease {lease:?} does not exist in namespace {:?}",
                self.namespace
            ))),
        }
    }

    /// Under a lease, adds the blob to it (a client told "already exists" relies on it).
    async fn lease_content(&self, digest: &Digest) -> ApiResult<()> {
        self.add_to_lease(content_resource(digest)).await
    }

    /// Under a lease, adds the ingest to it so it is kept while the lease lives.
    async fn lease_ingest(&self, reference: &str) -> ApiResult<()> {
        self.add_to_lease(ingest_resource(reference)).await
    }

    async fn add_to_lease(&self, resource: crate::metadata::LeaseResource) -> ApiResult<()> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let ns = self.namespace.as_str();
        self.daemon
            .meta
            .write(|meta, batch| state::add_to_lease(meta, batch, ns, lease, resource))
            .await
    }

    /// Drops the ingest after the client learnt its blob exists; failures only leave a
    /// stale ingest for the collector.
    async fn abort_ingest(&self, reference: &str) {
        let store = self.daemon.content.clone();
        let backend_ref = state::ingest_ref(&self.namespace, reference);
        let result = tokio::task::spawn_blocking(move || store.abort(&backend_ref)).await;
        if let Ok(Err(e)) = result {
            tracing::debug!(error = %e, "could not drop the ingest of an existing blob");
        }
    }
}

/// Writes `data` at `offset` on the blocking pool; hands the writer back with its progress.
async fn write_at(mut writer: Writer, offset: u64, data: Vec<u8>) -> ApiResult<(Writer, Progress)> {
    if offset == writer.offset() && data.is_empty() {
        let progress = Progress::of(&writer);
        return Ok((writer, progress));
    }
    tokio::task::spawn_blocking(move || {
        writer.write(offset, &data)?;
        let progress = Progress::of(&writer);
        Ok((writer, progress))
    })
    .await
    .map_err(join_error)?
}

/// The `AlreadyExists` answer for a blob visible in the namespace.
fn already_exists(digest: &Digest) -> ApiError {
    ApiError::AlreadyExists(format!("content {digest}: already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64) -> ContentLimits {
        ContentLimits {
            max_blob_bytes: max,
        }
    }

    #[test]
    fn declared_totals() {
        let l = limits(100);
        assert_eq!(declared_total(0, &l).unwrap(), None);
        assert_eq!(declared_total(-5, &l).unwrap(), None);
        assert_eq!(declared_total(100, &l).unwrap(), Some(100));
        let err = declared_total(101, &l).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("maximum blob size"), "{err}");
    }

    #[test]
    fn write_ranges() {
        let l = limits(100);
        assert_eq!(check_write_range(10, 5, 10, &l).unwrap(), 10, "append");
        assert_eq!(check_write_range(0, 5, 10, &l).unwrap(), 0, "restart");
        assert_eq!(
            check_write_range(100, 0, 100, &l).unwrap(),
            100,
            "commit at end"
        );
        assert_eq!(
            check_write_range(11, 1, 10, &l).unwrap_err().code(),
            tonic::Code::InvalidArgument,
            "gap"
        );
        assert_eq!(
            check_write_range(-1, 1, 10, &l).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            check_write_range(90, 11, 90, &l).unwrap_err().code(),
            tonic::Code::ResourceExhausted,
            "past the maximum blob size"
        );
    }

    #[test]
    fn expectations_merge_later_messages_win() {
        let l = limits(1 << 20);
        let mut e = Expectations::default();
        let d = Digest::of(b"x");
        e.merge(
            &WriteContentRequest {
                total: 5,
                ..Default::default()
            },
            &l,
        )
        .unwrap();
        e.merge(
            &WriteContentRequest {
                expected: d.to_string(),
                ..Default::default()
            },
            &l,
        )
        .unwrap();
        assert_eq!(
            e.total,
            Some(5),
            "a message without total keeps the earlier one"
        );
        assert_eq!(e.digest, Some(d));
        let bad = e.merge(
            &WriteContentRequest {
                expected: "sha256:nothex".into(),
                ..Default::default()
            },
            &l,
        );
        assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
