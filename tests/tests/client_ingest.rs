//! berth-client's content ingest against a real daemon: an interrupted ingest resumes
//! where it stopped, a blob already there is not sent again, two clients ingesting the
//! same blob at once transfer it once, and wrong bytes leave nothing behind.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_client::content::{
    blob_info, ingest, ingest_ref, ingest_status, read_stream, BlobSource, ByteStream, FnSource,
    IngestOutcome, Labels, MemorySource,
};
use berth_client::oci::{media_types, Descriptor};
use berth_client::progress::{ItemState, Progress, ProgressEvent};
use berth_client::proto::containerd::services::content::v1::{WriteAction, WriteContentRequest};
use berth_client::{connect, Api, ClientError};
use berth_tests::fixtures::large::pseudo_random_bytes;
use berth_tests::{unique_id, Daemon};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};

/// Size of the test blobs: a few write messages, not a multiple of their size.
const BLOB_LEN: usize = (3 << 20) + 4321;
/// How long a test waits for something the daemon or another task does.
const PATIENCE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// A layer blob of pseudo-random bytes and its descriptor.
fn layer_blob(seed: u64) -> (Bytes, Descriptor) {
    let bytes = Bytes::from(pseudo_random_bytes(seed, BLOB_LEN));
    let descriptor = Descriptor::of_bytes(media_types::OCI_LAYER_TAR_GZIP, &bytes);
    (bytes, descriptor)
}

/// The bytes of `blob` from `offset`, in 64 KiB chunks.
fn chunked(blob: &Bytes, offset: u64) -> ByteStream {
    let rest = blob.slice(offset as usize..);
    let chunks: Vec<_> = (0..rest.len())
        .step_by(64 << 10)
        .map(|start| Ok(rest.slice(start..(start + (64 << 10)).min(rest.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

/// A source serving `blob` that records every offset it is opened at.
fn recording_source(blob: Bytes) -> (impl BlobSource, Arc<Mutex<Vec<u64>>>) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let record = opened.clone();
    let source = FnSource(move |offset: u64| {
        record.lock().unwrap().push(offset);
        let stream = chunked(&blob, offset);
        async move { Ok(stream) }
    });
    (source, opened)
}

/// A source that sends the first 1 MiB of `blob`, then waits for `gate` before the
/// rest.
fn gated_source(blob: Bytes, gate: Arc<Notify>) -> impl BlobSource {
    FnSource(move |offset: u64| {
        let (blob, gate) = (blob.clone(), gate.clone());
        async move {
            let first_end = ((1u64 << 20).max(offset)).min(blob.len() as u64);
            let first =
                chunked(&blob, offset).take(((first_end - offset) as usize).div_ceil(64 << 10));
            let rest = futures::stream::once(async move {
                gate.notified().await;
                futures::stream::iter([Ok(blob.slice(first_end as usize..))])
            })
            .flatten();
            Ok(first.chain(rest).boxed())
        }
    })
}

/// Writes `data` into the ingest `reference` through the raw Write API and closes the
/// stream without committing, as a client that was interrupted would.
async fn write_partially(api: &Api, reference: &str, descriptor: &Descriptor, data: &[u8]) {
    let (requests, outgoing) = mpsc::channel(4);
    requests
        .send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            total: descriptor.size as i64,
            expected: descriptor.digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut responses = api
        .content()
        .write(receiver_stream(outgoing))
        .await
        .expect("opening a write stream")
        .into_inner();
    responses.message().await.expect("the stat answer");
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        requests
            .send(WriteContentRequest {
                action: WriteAction::Write as i32,
                offset: (i << 20) as i64,
                data: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        responses.message().await.expect("a write answer");
    }
    drop(requests);
    while let Ok(Some(_)) = responses.message().await {}
}

/// The messages sent on `receiver`, as a stream.
fn receiver_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// The whole blob as the daemon returns it.
async fn stored_bytes(api: &Api, digest: &str) -> Vec<u8> {
    let mut stream = read_stream(api, digest, 0).await.expect("reading the blob");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("a blob chunk"));
    }
    out
}

/// Waits until `condition` (polled every 20 ms) holds.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a progress event saying `WaitingForOther` about `digest`.
async fn wait_for_waiting(events: &mut mpsc::UnboundedReceiver<ProgressEvent>, digest: &str) {
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            if let ProgressEvent::Item(item) = event {
                if item.digest == digest && item.state == ItemState::WaitingForOther {
                    return;
                }
            }
        }
        panic!("progress ended without WaitingForOther");
    })
    .await
    .expect("the second ingest reports that it waits for the first");
}

#[test]
fn an_interrupted_ingest_resumes_where_it_stopped_and_a_stored_blob_is_not_sent_again() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        let (blob, descriptor) = layer_blob(1);
        let reference = ingest_ref(&descriptor);
        let half = 2 << 20;
        write_partially(&api, &reference, &descriptor, &blob[..half]).await;
        let status = ingest_status(&api, &reference).await.unwrap().unwrap();
        assert_eq!(status.offset, half as u64, "{status:?}");

        let (source, opened) = recording_source(blob.clone());
        let labels = Labels::from([("test.label".to_string(), "one".to_string())]);
        let outcome = ingest(
            &api,
            &reference,
            &descriptor,
            &labels,
            &source,
            &Progress::none(),
        )
        .await
        .unwrap();
        assert_eq!(
            outcome,
            IngestOutcome::Written {
                resumed_from: half as u64,
                sent: (BLOB_LEN - half) as u64
            }
        );
        assert_eq!(
            *opened.lock().unwrap(),
            [half as u64],
            "only the rest was asked for"
        );
        assert_eq!(stored_bytes(&api, &descriptor.digest).await, blob);
        assert_eq!(ingest_status(&api, &reference).await.unwrap(), None);
        let info = blob_info(&api, &descriptor.digest).await.unwrap().unwrap();
        assert_eq!(info.size, BLOB_LEN as u64);
        assert_eq!(
            info.labels.get("test.label").map(String::as_str),
            Some("one")
        );

        // Again: the blob is there, the source is not even opened; labels still apply.
        let (source, opened) = recording_source(blob.clone());
        let more = Labels::from([("test.other".to_string(), "two".to_string())]);
        let again = ingest(
            &api,
            &reference,
            &descriptor,
            &more,
            &source,
            &Progress::none(),
        )
        .await
        .unwrap();
        assert_eq!(again, IngestOutcome::Exists);
        assert!(opened.lock().unwrap().is_empty());
        let info = blob_info(&api, &descriptor.digest).await.unwrap().unwrap();
        assert_eq!(
            info.labels.get("test.label").map(String::as_str),
            Some("one")
        );
        assert_eq!(
            info.labels.get("test.other").map(String::as_str),
            Some("two")
        );
    });
}

#[test]
fn two_ingests_of_one_blob_at_once_transfer_it_once() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        let (blob, descriptor) = layer_blob(2);
        let reference = ingest_ref(&descriptor);
        let gate = Arc::new(Notify::new());

        let first = tokio::spawn({
            let (api, descriptor, reference) = (api.clone(), descriptor.clone(), reference.clone());
            let source = gated_source(blob.clone(), gate.clone());
            async move {
                ingest(
                    &api,
                    &reference,
                    &descriptor,
                    &Labels::new(),
                    &source,
                    &Progress::none(),
                )
                .await
            }
        });
        eventually("the first ingest has written bytes", || async {
            matches!(ingest_status(&api, &reference).await, Ok(Some(s)) if s.offset > 0)
        })
        .await;

        let (progress, mut events) = Progress::channel();
        let (source, opened) = recording_source(blob.clone());
        let second = tokio::spawn({
            let (api, descriptor, reference) = (api.clone(), descriptor.clone(), reference.clone());
            async move {
                ingest(
                    &api,
                    &reference,
                    &descriptor,
                    &Labels::new(),
                    &source,
                    &progress,
                )
                .await
            }
        });
        wait_for_waiting(&mut events, &descriptor.digest).await;
        gate.notify_one();

        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap().unwrap();
        assert!(
            matches!(
                first,
                IngestOutcome::Written {
                    resumed_from: 0,
                    ..
                }
            ),
            "{first:?}"
        );
        assert_eq!(second, IngestOutcome::WrittenByOther);
        assert!(
            opened.lock().unwrap().is_empty(),
            "the second client sent nothing"
        );
        assert_eq!(stored_bytes(&api, &descriptor.digest).await, blob);
    });
}

#[test]
fn a_waiting_ingest_takes_over_when_the_writer_goes_away() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        let (blob, descriptor) = layer_blob(3);
        let reference = ingest_ref(&descriptor);
        let never = Arc::new(Notify::new());

        let first = tokio::spawn({
            let (api, descriptor, reference) = (api.clone(), descriptor.clone(), reference.clone());
            let source = gated_source(blob.clone(), never.clone());
            async move {
                ingest(
                    &api,
                    &reference,
                    &descriptor,
                    &Labels::new(),
                    &source,
                    &Progress::none(),
                )
                .await
            }
        });
        let written = 1u64 << 20;
        eventually("the first ingest has written its first MiB", || async {
            matches!(ingest_status(&api, &reference).await, Ok(Some(s)) if s.offset == written)
        })
        .await;

        let (progress, mut events) = Progress::channel();
        let (source, opened) = recording_source(blob.clone());
        let second = tokio::spawn({
            let (api, descriptor, reference) = (api.clone(), descriptor.clone(), reference.clone());
            async move {
                ingest(
                    &api,
                    &reference,
                    &descriptor,
                    &Labels::new(),
                    &source,
                    &progress,
                )
                .await
            }
        });
        wait_for_waiting(&mut events, &descriptor.digest).await;
        // The first client dies mid-blob: its stream closes and the ingest is free.
        first.abort();
        let _ = first.await;

        let second = tokio::time::timeout(PATIENCE, second)
            .await
            .expect("the second ingest finishes")
            .unwrap()
            .unwrap();
        assert_eq!(
            second,
            IngestOutcome::Written {
                resumed_from: written,
                sent: BLOB_LEN as u64 - written
            }
        );
        assert_eq!(*opened.lock().unwrap(), [written]);
        assert_eq!(stored_bytes(&api, &descriptor.digest).await, blob);
    });
}

#[test]
fn wrong_bytes_are_refused_and_leave_nothing_behind() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), &ns).await.unwrap();
        let (blob, descriptor) = layer_blob(4);
        let reference = ingest_ref(&descriptor);

        // Same size, other bytes.
        let other = Bytes::from(pseudo_random_bytes(5, BLOB_LEN));
        let error = ingest(
            &api,
            &reference,
            &descriptor,
            &Labels::new(),
            &MemorySource(other),
            &Progress::none(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ClientError::DigestMismatch { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&descriptor.digest), "{error}");
        assert_eq!(ingest_status(&api, &reference).await.unwrap(), None);
        assert_eq!(blob_info(&api, &descriptor.digest).await.unwrap(), None);

        // More bytes than announced.
        let mut longer = blob.to_vec();
        longer.extend_from_slice(b"tail");
        let error = ingest(
            &api,
            &reference,
            &descriptor,
            &Labels::new(),
            &MemorySource(Bytes::from(longer)),
            &Progress::none(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ClientError::DigestMismatch { .. }),
            "{error}"
        );
        assert_eq!(ingest_status(&api, &reference).await.unwrap(), None);
        assert_eq!(blob_info(&api, &descriptor.digest).await.unwrap(), None);

        // The right bytes still go in afterwards.
        let outcome = ingest(
            &api,
            &reference,
            &descriptor,
            &Labels::new(),
            &MemorySource(blob.clone()),
            &Progress::none(),
        )
        .await
        .unwrap();
        assert!(matches!(
            outcome,
            IngestOutcome::Written {
                resumed_from: 0,
                ..
            }
        ));
    });
}
