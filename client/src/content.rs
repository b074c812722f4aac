//! Blobs in the daemon's content store, over the Content service: resumable,
//! de-duplicated ingest, reading, and labels.
//!
//! An ingest is named by a ref that depends only on the blob (`layer-sha256:<hex>`, the
//! form containerd clients use), so a transfer that was interrupted — by this client,
//! or by `ctr` — continues where it stopped: the Write stream's first STAT answers how
//! many bytes the ingest already holds, and only the rest is sent. While another client
//! writes the same ref, the daemon keeps it locked; [`ingest`] then waits for that
//! client instead of transferring the blob a second time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use berth_proto::containerd::services::content::v1::{
    AbortRequest, Info, InfoRequest, ReadContentRequest, StatusRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::connection::Api;
use crate::error::{ClientError, Result};
use crate::oci::{check_digest, sha256_digest, Descriptor};
use crate::progress::{ItemKind, ItemState, Progress};

/// Largest data payload of one Write message.
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Write messages sent before the daemon's answer to the first of them is awaited.
const WRITE_WINDOW: usize = 4;
/// First pause between looks at a blob another client is writing; it doubles up to
/// [`MAX_WAIT_POLL`].
const FIRST_WAIT_POLL: Duration = Duration::from_millis(50);
/// Longest pause between looks at a blob another client is writing.
const MAX_WAIT_POLL: Duration = Duration::from_secs(1);
/// How long another client may hold a blob's ingest without writing a byte before
/// [`ingest`] gives up waiting for it.
pub const WAIT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Labels of a blob, snapshot or lease.
pub type Labels = BTreeMap<String, String>;

/// A blob's bytes from some offset on.
pub struct SourceStream {
    /// The offset the stream starts at: the one asked for, or an earlier one (0 for a
    /// source that cannot skip ahead), in which case the ingest starts over from there.
    pub start: u64,
    /// The bytes from `start` to the end of the blob.
    pub bytes: ByteStream,
}

/// Where an ingest reads a blob from: a registry, an archive entry, memory.
pub trait BlobSource: Send + Sync {
    /// The blob's bytes from `offset` on (or from an earlier offset, see
    /// [`SourceStream::start`]).
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<SourceStream>>;
}

/// A blob held in memory (manifests, configs, indexes).
#[derive(Debug, Clone)]
pub struct MemorySource(pub Bytes);

impl BlobSource for MemorySource {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<SourceStream>> {
        let start = offset.min(self.0.len() as u64);
        let rest = self.0.slice(start as usize..);
        Box::pin(async move {
            Ok(SourceStream {
                start,
                bytes: futures::stream::iter([Ok(rest)]).boxed(),
            })
        })
    }
}

/// A source made of a function from an offset to a stream starting exactly there (a
/// registry fetch with a `Range` header, say).
pub struct FnSource<F>(pub F);

impl<F, Fut> BlobSource for FnSource<F>
where
    F: Fn(u64) -> Fut + Send + Sync,
    Fut: Future<Output = Result<ByteStream>> + Send + 'static,
{
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<SourceStream>> {
        let opened = (self.0)(offset);
        Box::pin(async move {
            Ok(SourceStream {
                start: offset,
                bytes: opened.await?,
            })
        })
    }
}

/// How an ingest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The blob was in the store already: nothing was sent.
    Exists,
    /// Another client was writing the blob; it finished and nothing was sent by us.
    WrittenByOther,
    /// This call wrote the blob: `resumed_from` bytes were in the ingest already and
    /// `sent` bytes went to the daemon.
    Written {
        /// Bytes an earlier, interrupted ingest had written.
        resumed_from: u64,
        /// Bytes this call sent.
        sent: u64,
    },
}

/// A blob as the Content service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Its labels.
    pub labels: Labels,
}

impl BlobInfo {
    fn from_wire(info: Info) -> BlobInfo {
        BlobInfo {
            digest: info.digest,
            size: u64::try_from(info.size).unwrap_or(0),
            labels: info.labels.into_iter().collect(),
        }
    }
}

/// Progress of an unfinished ingest, as the Content service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The ingest's ref.
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// The size declared for the blob (0 if none was).
    pub total: u64,
    /// The digest expected at commit, if one was declared.
    pub expected: String,
}

/// The deterministic ingest ref of a blob: `<kind>-sha256:<hex>`, as containerd
/// clients name theirs (so `ctr` and this client resume each other's transfers).
pub fn ingest_ref(descriptor: &Descriptor) -> String {
    format!(
        "{}-{}",
        descriptor.kind().ingest_prefix(),
        descriptor.digest
    )
}

/// The blob's info, or `None` if the namespace does not hold it.
pub async fn blob_info(api: &Api, digest: &str) -> Result<Option<BlobInfo>> {
    check_digest(digest)?;
    let request = InfoRequest {
        digest: digest.to_string(),
    };
    match api.content().info(request).await {
        Ok(reply) => Ok(reply.into_inner().info.map(BlobInfo::from_wire)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(ClientError::rpc(format!("looking up blob {digest}"))(
            status,
        )),
    }
}

/// The status of the ingest `reference`, or `None` if there is no such ingest.
pub async fn ingest_status(api: &Api, reference: &str) -> Result<Option<IngestStatus>> {
    let request = StatusRequest {
        r#ref: reference.to_string(),
    };
    match api.content().status(request).await {
        Ok(reply) => Ok(reply.into_inner().status.map(|s| IngestStatus {
            reference: s.r#ref,
            offset: u64::try_from(s.offset).unwrap_or(0),
            total: u64::try_from(s.total).unwrap_or(0),
            expected: s.expected,
        })),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(ClientError::rpc(format!("status of ingest {reference:?}"))(
            status,
        )),
    }
}

/// Drops the unfinished ingest `reference` (nothing if there is none).
pub async fn abort_ingest(api: &Api, reference: &str) -> Result<()> {
    let request = AbortRequest {
        r#ref: reference.to_string(),
    };
    match api.content().abort(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(ClientError::rpc(format!("aborting ingest {reference:?}"))(
            status,
        )),
    }
}

/// Sets (adds or replaces) `labels` on the blob `digest`, leaving its other labels.
pub async fn update_labels(api: &Api, digest: &str, labels: &Labels) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    check_digest(digest)?;
    let request = UpdateRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..Info::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
        }),
    };
    api.content()
        .update(request)
        .await
        .map_err(ClientError::rpc(format!("labelling blob {digest}")))?;
    Ok(())
}

/// Reads a whole blob into memory, refusing one larger than `limit` bytes (manifests
/// and configs are small; a huge one is an attack). The bytes are checked against the
/// digest.
pub async fn read_blob(api: &Api, digest: &str, limit: u64) -> Result<Bytes> {
    check_digest(digest)?;
    let action = format!("reading blob {digest}");
    let request = ReadContentRequest {
        digest: digest.to_string(),
        offset: 0,
        size: i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
    };
    let mut stream = api
        .content()
        .read(request)
        .await
        .map_err(ClientError::rpc(action.clone()))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(ClientError::rpc(action.clone()))?
    {
        if (data.len() + message.data.len()) as u64 > limit {
            return Err(ClientError::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        data.extend_from_slice(&message.data);
    }
    let actual = sha256_digest(&data);
    if actual != digest {
        return Err(ClientError::DigestMismatch {
            what: format!("blob {digest}"),
            detail: format!("the daemon returned bytes with digest {actual}"),
        });
    }
    Ok(Bytes::from(data))
}

/// Up to `len` bytes of the blob from `offset` (fewer at its end), e.g. its first bytes
/// to tell its compression.
pub async fn read_bytes(api: &Api, digest: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
    check_digest(digest)?;
    let action = format!("reading blob {digest}");
    if len == 0 {
        return Ok(Vec::new());
    }
    let request = ReadContentRequest {
        digest: digest.to_string(),
        offset: i64::try_from(offset).unwrap_or(i64::MAX),
        size: i64::try_from(len).unwrap_or(i64::MAX),
    };
    let mut stream = api
        .content()
        .read(request)
        .await
        .map_err(ClientError::rpc(action.clone()))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .map_err(ClientError::rpc(action.clone()))?
    {
        data.extend_from_slice(&message.data);
        if data.len() as u64 >= len {
            data.truncate(len as usize);
            break;
        }
    }
    Ok(data)
}

/// The blob's bytes from `offset` to its end, as the daemon streams them (1 MiB
/// messages), for export and push.
pub async fn read_stream(api: &Api, digest: &str, offset: u64) -> Result<ByteStream> {
    check_digest(digest)?;
    let action = format!("reading blob {digest}");
    let request = ReadContentRequest {
        digest: digest.to_string(),
        offset: i64::try_from(offset).unwrap_or(i64::MAX),
        size: 0,
    };
    let stream = api
        .content()
        .read(request)
        .await
        .map_err(ClientError::rpc(action.clone()))?
        .into_inner();
    Ok(stream
        .map(move |message| {
            message
                .map(|m| Bytes::from(m.data))
                .map_err(ClientError::rpc(action.clone()))
        })
        .boxed())
}

/// Puts the blob `expected` into the content store under the ingest `reference`,
/// reading it from `source`, and gives it `labels`.
///
/// - A blob the namespace holds already is not transferred (`Exists`); its labels are
///   still set.
/// - An interrupted earlier ingest of the same ref is resumed from where it stopped.
/// - While another client writes the same ref, progress says `WaitingForOther` and the
///   call waits until the blob exists (`WrittenByOther`) or the other client lets go of
///   the ingest (then this call takes over and resumes it). It gives up with
///   [`ClientError::WaitTimeout`] if the other client writes nothing for
///   [`WAIT_STALL_TIMEOUT`].
/// - Bytes that do not match the expected digest or size are thrown away (the ingest is
///   aborted) and reported as [`ClientError::DigestMismatch`].
///
/// Progress goes to `progress` under the blob's digest; the caller reports `Waiting`.
pub async fn ingest(
    api: &Api,
    reference: &str,
    expected: &Descriptor,
    labels: &Labels,
    source: &dyn BlobSource,
    progress: &Progress,
) -> Result<IngestOutcome> {
    check_digest(&expected.digest)?;
    let reporter = Reporter {
        progress,
        name: &expected.digest,
        descriptor: expected,
    };
    let result = ingest_once(api, reference, expected, labels, source, &reporter).await;
    match &result {
        Ok(IngestOutcome::Written { .. }) => reporter.state(ItemState::Done, expected.size),
        Ok(_) => reporter.state(ItemState::Exists, expected.size),
        Err(_) => reporter.state(ItemState::Failed, 0),
    }
    result
}

/// Progress reports about one blob, under `name` (its digest, when known).
struct Reporter<'a> {
    progress: &'a Progress,
    name: &'a str,
    descriptor: &'a Descriptor,
}

impl Reporter<'_> {
    fn state(&self, state: ItemState, done: u64) {
        self.progress.item(
            self.name,
            self.descriptor.kind().progress_kind(),
            state,
            done,
            self.descriptor.size,
        );
    }
}

async fn ingest_once(
    api: &Api,
    reference: &str,
    expected: &Descriptor,
    labels: &Labels,
    source: &dyn BlobSource,
    reporter: &Reporter<'_>,
) -> Result<IngestOutcome> {
    if blob_info(api, &expected.digest).await?.is_some() {
        update_labels(api, &expected.digest, labels).await?;
        return Ok(IngestOutcome::Exists);
    }
    let mut waiting: Option<OtherWriter> = None;
    let mut restarted = false;
    let mut session = loop {
        let opened = match open_write(api, reference, expected).await {
            // The ingest was begun for another size or digest (a stale ref): start over.
            Err(ClientError::Rpc { status, .. })
                if status.code() == tonic::Code::FailedPrecondition && !restarted =>
            {
                restarted = true;
                abort_ingest(api, reference).await?;
                continue;
            }
            other => other?,
        };
        match opened {
            Opened::Ready(session) => break session,
            Opened::Exists => {
                update_labels(api, &expected.digest, labels).await?;
                return Ok(match waiting {
                    Some(_) => IngestOutcome::WrittenByOther,
                    None => IngestOutcome::Exists,
                });
            }
            Opened::Locked => {
                let other = waiting.get_or_insert_with(|| {
                    reporter.state(ItemState::WaitingForOther, 0);
                    OtherWriter::new()
                });
                tokio::time::sleep(other.next_pause()).await;
                if blob_info(api, &expected.digest).await?.is_some() {
                    update_labels(api, &expected.digest, labels).await?;
                    return Ok(IngestOutcome::WrittenByOther);
                }
                if let Some(status) = ingest_status(api, reference).await? {
                    if other.observe(status.offset) {
                        reporter.state(ItemState::WaitingForOther, status.offset);
                    }
                }
                if other.stalled() {
                    return Err(ClientError::WaitTimeout {
                        what: format!("blob {}", expected.digest),
                        waited: WAIT_STALL_TIMEOUT,
                    });
                }
            }
        }
    };
    let (outcome, _) = session
        .transfer(api, reference, expected, labels, source, reporter)
        .await?;
    Ok(outcome)
}

/// Puts a blob whose digest is not known beforehand (an archive entry not named by its
/// digest) into the store: the bytes are hashed as they go by and the blob is committed
/// under that digest. Each call uses a fresh ingest, so nothing is resumed. Returns the
/// blob's descriptor (with `media_type`). Progress is reported under `name`.
pub async fn ingest_unnamed(
    api: &Api,
    name: &str,
    size: u64,
    media_type: &str,
    labels: &Labels,
    source: &dyn BlobSource,
    progress: &Progress,
) -> Result<Descriptor> {
    let reference = format!("unnamed-{:032x}", rand::random::<u128>());
    let announced = Descriptor {
        media_type: media_type.to_string(),
        digest: String::new(),
        size,
        ..Descriptor::default()
    };
    let report = |state, done| progress.item(name, ItemKind::Layer, state, done, size);
    let reporter = Reporter {
        progress,
        name,
        descriptor: &announced,
    };
    let result = async {
        let mut session = match open_write(api, &reference, &announced).await? {
            Opened::Ready(session) => session,
            Opened::Exists | Opened::Locked => {
                return Err(ClientError::rpc(format!("writing {name}"))(
                    tonic::Status::unavailable("a fresh ingest ref is taken"),
                ))
            }
        };
        session
            .transfer(api, &reference, &announced, labels, source, &reporter)
            .await
    }
    .await;
    match result {
        Ok((_, digest)) => {
            report(ItemState::Done, size);
            Ok(Descriptor {
                digest,
                ..announced
            })
        }
        Err(e) => {
            report(ItemState::Failed, 0);
            Err(e)
        }
    }
}

/// What opening a Write stream on a ref found.
enum Opened {
    /// The expected blob is in the namespace already.
    Exists,
    /// Another client holds the ingest.
    Locked,
    /// The stream is open; the ingest holds `offset` bytes.
    Ready(Box<WriteSession>),
}

/// An open Write stream: requests go out through `requests`, answers come back on
/// `responses`, at most [`WRITE_WINDOW`] requests unanswered.
struct WriteSession {
    requests: mpsc::Sender<WriteContentRequest>,
    responses: tonic::Streaming<WriteContentResponse>,
    /// Bytes the ingest held when the stream opened.
    offset: u64,
    /// Requests sent and not answered yet.
    in_flight: usize,
}

/// Opens a Write stream on `reference` and asks (STAT) how far the ingest got.
async fn open_write(api: &Api, reference: &str, expected: &Descriptor) -> Result<Opened> {
    let action = format!("writing blob {} (ingest {reference:?})", expected.digest);
    let (requests, outgoing) = mpsc::channel(WRITE_WINDOW + 1);
    let stat = WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: reference.to_string(),
        total: i64::try_from(expected.size).unwrap_or(i64::MAX),
        expected: expected.digest.clone(),
        ..WriteContentRequest::default()
    };
    // The receiver is alive and the channel empty: this cannot fail.
    let _ = requests.send(stat).await;
    let reply = api.content().write(ReceiverStream::new(outgoing)).await;
    let first = match reply {
        Ok(reply) => {
            let mut responses = reply.into_inner();
            match responses.message().await {
                Ok(Some(first)) => Ok((responses, first)),
                Ok(None) => {
                    return Err(ClientError::rpc(action)(tonic::Status::unknown(
                        "the daemon closed the write stream without an answer",
                    )))
                }
                Err(status) => Err(status),
            }
        }
        Err(status) => Err(status),
    };
    match first {
        Ok((responses, stat)) => Ok(Opened::Ready(Box::new(WriteSession {
            requests,
            responses,
            offset: u64::try_from(stat.offset).unwrap_or(0),
            in_flight: 0,
        }))),
        Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(Opened::Exists),
        // Locked by another writer. (A broken connection is also `Unavailable`; the next
        // call made while waiting reports it.)
        Err(status) if status.code() == tonic::Code::Unavailable => Ok(Opened::Locked),
        Err(status) => Err(ClientError::rpc(action)(status)),
    }
}

impl WriteSession {
    /// Sends the blob from where the ingest stopped and commits it.
    async fn transfer(
        &mut self,
        api: &Api,
        reference: &str,
        expected: &Descriptor,
        labels: &Labels,
        source: &dyn BlobSource,
        reporter: &Reporter<'_>,
    ) -> Result<(IngestOutcome, String)> {
        let size = expected.size;
        // Without a digest to check against, the bytes are hashed here as they go by,
        // and the transfer starts at 0: what an ingest holds cannot be vouched for.
        let mut hasher = expected.digest.is_empty().then(Sha256::new);
        let digest = if hasher.is_some() {
            format!("entry {reference:?}")
        } else {
            expected.digest.clone()
        };
        // An ingest longer than the blob holds something else: start over.
        let wanted = if self.offset <= size && hasher.is_none() {
            self.offset
        } else {
            0
        };
        let SourceStream { start, mut bytes } = source.open(wanted).await?;
        if start > wanted {
            return Err(ClientError::Source {
                what: format!("blob {digest}"),
                detail: format!("asked for bytes from {wanted}, the source starts at {start}"),
            });
        }
        reporter.state(ItemState::Transferring, start);
        let mut position = start;
        let mut pending: Vec<u8> = Vec::with_capacity(WRITE_CHUNK_BYTES);
        while let Some(chunk) = bytes.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // The source itself found its bytes wrong: keep none of them.
                Err(e @ ClientError::DigestMismatch { .. }) => {
                    drop(bytes);
                    self.finish().await;
                    discard_ingest(api, reference).await;
                    return Err(e);
                }
                // Anything else (a network failure) leaves the ingest to resume.
                Err(e) => return Err(e),
            };
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            if position + (pending.len() + chunk.len()) as u64 > size {
                drop(bytes);
                self.finish().await;
                discard_ingest(api, reference).await;
                return Err(ClientError::DigestMismatch {
                    what: format!("blob {digest}"),
                    detail: format!("the source has more than the expected {size} bytes"),
                });
            }
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let take = (WRITE_CHUNK_BYTES - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() == WRITE_CHUNK_BYTES {
                    let data =
                        std::mem::replace(&mut pending, Vec::with_capacity(WRITE_CHUNK_BYTES));
                    let len = data.len() as u64;
                    self.send(write_request(WriteAction::Write, position, data), reporter)
                        .await?;
                    position += len;
                }
            }
        }
        if position + pending.len() as u64 != size {
            return Err(ClientError::Source {
                what: format!("blob {digest}"),
                detail: format!(
                    "the source ended after {} of {size} bytes",
                    position + pending.len() as u64
                ),
            });
        }
        let data = std::mem::take(&mut pending);
        let len = data.len() as u64;
        let mut commit = write_request(WriteAction::Commit, position, data);
        commit.total = i64::try_from(size).unwrap_or(i64::MAX);
        let digest = match hasher {
            Some(hasher) => format!("sha256:{}", hex::encode(hasher.finalize())),
            None => digest,
        };
        commit.expected = digest.clone();
        commit.labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        position += len;
        let committed = match self.send(commit, reporter).await {
            Ok(()) => self.drain(reporter).await,
            Err(e) => Err(e),
        };
        self.finish().await;
        match committed {
            Ok(()) => Ok((
                IngestOutcome::Written {
                    resumed_from: start,
                    sent: position - start,
                },
                digest,
            )),
            // The same bytes became visible meanwhile (another namespace's blob recorded
            // here, say): what we sent is what is stored.
            Err(ClientError::Rpc { status, .. }) if status.code() == tonic::Code::AlreadyExists => {
                update_labels(api, &digest, labels).await?;
                Ok((
                    IngestOutcome::Written {
                        resumed_from: start,
                        sent: position - start,
                    },
                    digest,
                ))
            }
            Err(ClientError::Rpc { status, .. })
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                // Wrong bytes: keep nothing of them, so no later resume builds on them.
                discard_ingest(api, reference).await;
                Err(ClientError::DigestMismatch {
                    what: format!("blob {digest}"),
                    detail: status.message().to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Sends one request, first waiting for an answer if the window is full.
    async fn send(&mut self, request: WriteContentRequest, reporter: &Reporter<'_>) -> Result<()> {
        if self.in_flight >= WRITE_WINDOW {
            self.receive(reporter).await?;
        }
        if self.requests.send(request).await.is_err() {
            // The call ended on the daemon's side; its answer says why.
            return Err(match self.receive(reporter).await {
                Err(e) => e,
                Ok(()) => ClientError::rpc("writing blob")(tonic::Status::unknown(
                    "the daemon ended the write stream early",
                )),
            });
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for one answer and reports the bytes the daemon has written.
    async fn receive(&mut self, reporter: &Reporter<'_>) -> Result<()> {
        let action = format!("writing blob {}", reporter.name);
        match self.responses.message().await {
            Ok(Some(answer)) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let done = u64::try_from(answer.offset).unwrap_or(0);
                reporter.state(ItemState::Transferring, done);
                Ok(())
            }
            Ok(None) => Err(ClientError::rpc(action)(tonic::Status::unknown(
                "the daemon ended the write stream early",
            ))),
            Err(status) => Err(ClientError::rpc(action)(status)),
        }
    }

    /// Waits for the answers to every request sent.
    async fn drain(&mut self, reporter: &Reporter<'_>) -> Result<()> {
        while self.in_flight > 0 {
            self.receive(reporter).await?;
        }
        Ok(())
    }

    /// Ends the request stream and waits until the daemon has ended its side, which is
    /// when it lets go of the ingest.
    async fn finish(&mut self) {
        let (closed, _) = mpsc::channel(1);
        self.requests = closed;
        while let Ok(Some(_)) = self.responses.message().await {}
    }
}

/// Aborts an ingest whose bytes are wrong; a failure only leaves it for the daemon's
/// collector, so it is logged rather than returned.
async fn discard_ingest(api: &Api, reference: &str) {
    if let Err(e) = abort_ingest(api, reference).await {
        tracing::warn!(reference, error = %e, "could not abort an ingest holding wrong bytes");
    }
}

/// A WRITE or COMMIT request carrying `data` at `offset`.
fn write_request(action: WriteAction, offset: u64, data: Vec<u8>) -> WriteContentRequest {
    WriteContentRequest {
        action: action as i32,
        offset: i64::try_from(offset).unwrap_or(i64::MAX),
        data,
        ..WriteContentRequest::default()
    }
}

/// Another client writing the blob we want: how long to pause between looks, and
/// whether it still makes progress.
struct OtherWriter {
    pause: Duration,
    offset: Option<u64>,
    last_progress: Instant,
}

impl OtherWriter {
    fn new() -> Self {
        OtherWriter {
            pause: FIRST_WAIT_POLL,
            offset: None,
            last_progress: Instant::now(),
        }
    }

    /// The pause before the next look (doubling up to [`MAX_WAIT_POLL`]).
    fn next_pause(&mut self) -> Duration {
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_WAIT_POLL);
        pause
    }

    /// Notes the ingest's offset; true if it moved since the last look.
    fn observe(&mut self, offset: u64) -> bool {
        if self.offset == Some(offset) {
            return false;
        }
        self.offset = Some(offset);
        self.last_progress = Instant::now();
        true
    }

    /// True once the other client wrote nothing for [`WAIT_STALL_TIMEOUT`].
    fn stalled(&self) -> bool {
        self.last_progress.elapsed() > WAIT_STALL_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media_types;

    #[test]
    fn refs_are_containerds_kind_prefixed_digests() {
        let layer = Descriptor::of_bytes(media_types::OCI_LAYER_TAR_GZIP, b"l");
        assert_eq!(ingest_ref(&layer), format!("layer-{}", layer.digest));
        let manifest = Descriptor::of_bytes(media_types::DOCKER_MANIFEST, b"m");
        assert_eq!(
            ingest_ref(&manifest),
            format!("manifest-{}", manifest.digest)
        );
        let index = Descriptor::of_bytes(media_types::OCI_INDEX, b"i");
        assert!(ingest_ref(&index).starts_with("index-sha256:"));
    }

    #[tokio::test]
    async fn memory_sources_start_where_asked() {
        let source = MemorySource(Bytes::from_static(b"hello"));
        let opened = source.open(2).await.unwrap();
        assert_eq!(opened.start, 2);
        let bytes: Vec<Bytes> = opened.bytes.map(|b| b.unwrap()).collect().await;
        assert_eq!(bytes.concat(), b"llo");
        let past_end = source.open(9).await.unwrap();
        assert_eq!(past_end.start, 5);
    }

    #[tokio::test]
    async fn function_sources_are_opened_at_the_offset() {
        let source = FnSource(|offset: u64| async move {
            let data = Bytes::from(format!("from {offset}"));
            Ok(futures::stream::iter([Ok(data)]).boxed())
        });
        let opened = source.open(7).await.unwrap();
        assert_eq!(opened.start, 7);
        let bytes: Vec<Bytes> = opened.bytes.map(|b| b.unwrap()).collect().await;
        assert_eq!(bytes.concat(), b"from 7");
    }

    #[test]
    fn waiting_backs_off_and_notices_progress() {
        let mut other = OtherWriter::new();
        let pauses: Vec<Duration> = (0..8).map(|_| other.next_pause()).collect();
        assert_eq!(pauses[0], FIRST_WAIT_POLL);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), MAX_WAIT_POLL);
        assert!(other.observe(10));
        assert!(!other.observe(10));
        assert!(other.observe(20));
        assert!(!other.stalled());
    }
}
