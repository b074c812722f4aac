//! Tests of the content service: the pure rules, then the service itself served on a real
//! unix socket to the generated client, as ctr would talk to it.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::containerd::services::content::v1::{
    content_client::ContentClient, WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use super::*;
use crate::metadata::Labels;
use crate::request::{LEASE_KEY, NAMESPACE_KEY};
use crate::services::test_support::{daemon, TestDaemon};

#[test]
fn read_ranges() {
    assert_eq!(read_range(0, 0, 10).unwrap(), (0, 10), "whole blob");
    assert_eq!(read_range(-3, 0, 10).unwrap(), (0, 10), "negative offset");
    assert_eq!(read_range(4, 3, 10).unwrap(), (4, 7));
    assert_eq!(
        read_range(4, 100, 10).unwrap(),
        (4, 10),
        "size past the end"
    );
    assert_eq!(read_range(8, i64::MAX, 10).unwrap(), (8, 10), "no overflow");
    assert_eq!(
        read_range(10, 0, 10).unwrap(),
        (10, 10),
        "at the end: nothing"
    );
    assert_eq!(
        read_range(11, 0, 10).unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[test]
fn label_updates_follow_the_field_mask() {
    let current = Labels::from([
        ("a".to_string(), "1".to_string()),
        ("b".to_string(), "2".to_string()),
    ]);
    let sent = HashMap::from([
        ("a".to_string(), "new".to_string()),
        ("c".to_string(), "3".to_string()),
        ("d".to_string(), String::new()),
    ]);
    let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let replaced = Labels::from([
        ("a".to_string(), "new".to_string()),
        ("c".to_string(), "3".to_string()),
    ]);
    assert_eq!(
        updated_labels(&current, &sent, &[]).unwrap(),
        replaced,
        "empty mask"
    );
    assert_eq!(
        updated_labels(&current, &sent, &paths(&["labels"])).unwrap(),
        replaced
    );
    assert_eq!(
        updated_labels(&current, &sent, &paths(&["labels.a", "labels.b"])).unwrap(),
        Labels::from([("a".to_string(), "new".to_string())]),
        "a set, b not sent so removed, c not in the mask"
    );
    let dotted = "containerd.io/gc.ref.content.l.0";
    let sent_dotted = HashMap::from([(dotted.to_string(), "sha256:x".to_string())]);
    let got = updated_labels(
        &Labels::new(),
        &sent_dotted,
        &paths(&[&format!("labels.{dotted}")]),
    );
    assert_eq!(
        got.unwrap().get(dotted).map(String::as_str),
        Some("sha256:x")
    );
    for path in ["size", "digest", "labelsx"] {
        let err = updated_labels(&current, &sent, &paths(&[path])).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}");
    }
    let big = HashMap::from([("k".to_string(), "v".repeat(4096))]);
    assert_eq!(
        updated_labels(&current, &big, &paths(&["labels.other"]))
            .unwrap_err()
            .code(),
        Code::InvalidArgument,
        "an over-long label is refused even outside the mask"
    );
}

fn info(n: usize, label_bytes: usize) -> Info {
    Info {
        digest: format!("sha256:{n:064x}"),
        size: n as i64,
        labels: HashMap::from([("k".to_string(), "v".repeat(label_bytes))]),
        ..Default::default()
    }
}

#[test]
fn list_batches_are_bounded_in_bytes_and_keep_everything() {
    let infos: Vec<Info> = (0..1000).map(|n| info(n, 1000)).collect();
    let batches = list_batches(infos.clone().into_iter(), 64 << 10);
    assert!(batches.len() > 10, "{} batches", batches.len());
    for batch in &batches {
        assert!(batch.encoded_len() <= 64 << 10, "{}", batch.encoded_len());
    }
    let flat: Vec<Info> = batches.into_iter().flat_map(|b| b.info).collect();
    assert_eq!(flat, infos);
    // One info larger than a batch still goes out, alone.
    let big = list_batches(
        [info(1, 100), info(2, 10_000), info(3, 1)].into_iter(),
        1000,
    );
    assert_eq!(
        big.iter().map(|b| b.info.len()).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert!(list_batches(std::iter::empty(), 1000).is_empty());
}

#[test]
fn content_filters_see_digest_size_and_labels() {
    let record = ContentRecord {
        size: 42,
        labels: Labels::from([
            ("containerd.io/gc.root".to_string(), "1".to_string()),
            ("a".to_string(), "x".to_string()),
        ]),
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
    };
    let fields = ContentFields {
        digest: "sha256:abc",
        record: &record,
    };
    let yes = [
        "digest==sha256:abc",
        "size==42",
        "labels.a==x",
        r#"labels."containerd.io/gc.root""#,
        "labels.containerd.io/gc.root==1",
        "size~=^4",
    ];
    for f in yes {
        assert!(Filter::parse(&[f]).unwrap().matches(&fields), "{f}");
    }
    for f in [
        "size==41",
        "labels.b",
        "digest!=sha256:abc",
        "labels",
        "other==x",
    ] {
        assert!(!Filter::parse(&[f]).unwrap().matches(&fields), "{f}");
    }
    assert!(Filter::parse(&["ref==a"])
        .unwrap()
        .matches(&IngestFields { reference: "a" }));
}

#[test]
fn ingest_errors_name_the_clients_ref() {
    let e = client_ref_error(
        berth_content::Error::FailedPrecondition(
            "digest mismatch for ref \"ns/up\": expected a, got b".into(),
        )
        .into(),
        "ns",
        "up",
    );
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.to_string(),
        "failed precondition: digest mismatch for ref \"up\": expected a, got b"
    );
    let e = client_ref_error(
        berth_content::Error::Locked {
            reference: "ns/up".into(),
        }
        .into(),
        "ns",
        "up",
    );
    assert_eq!(e.code(), Code::Unavailable);
    assert!(!e.to_string().contains("ns/"), "{e}");
}

#[test]
fn refs_are_required_and_bounded() {
    assert_eq!(check_ref("ns", "r").unwrap(), "r");
    assert_eq!(
        check_ref("ns", "").unwrap_err().code(),
        Code::InvalidArgument
    );
    let limit = berth_content::MAX_REF_LEN - 3;
    assert!(check_ref("ns", &"r".repeat(limit)).is_ok());
    assert_eq!(
        check_ref("ns", &"r".repeat(limit + 1)).unwrap_err().code(),
        Code::InvalidArgument
    );
}

/// The content service of a fresh daemon, served on a unix socket; stops when dropped.
struct Served {
    test: TestDaemon,
    socket: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Served {
    async fn start() -> Self {
        let test = daemon();
        let socket = test.dir.path().join("content.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let router = tonic::transport::Server::builder().add_service(service(test.daemon.clone()));
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
                .expect("serving");
        });
        Served {
            test,
            socket,
            server,
        }
    }

    async fn client(&self) -> ContentClient<Channel> {
        let socket = self.socket.clone();
        let channel = tonic::transport::Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .expect("connect");
        ContentClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn daemon(&self) -> &Daemon {
        &self.test.daemon
    }
}

fn req<T>(ns: &str, lease: Option<&str>, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert(NAMESPACE_KEY, ns.parse().expect("metadata"));
    if let Some(lease) = lease {
        req.metadata_mut()
            .insert(LEASE_KEY, lease.parse().expect("metadata"));
    }
    req
}

fn stat(reference: &str, total: i64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: reference.to_string(),
        total,
        expected: expected.to_string(),
        ..Default::default()
    }
}

fn write_msg(offset: usize, data: &[u8]) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Write as i32,
        offset: offset as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn commit_msg(offset: usize, total: i64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset: offset as i64,
        total,
        expected: expected.to_string(),
        ..Default::default()
    }
}

/// Sends `messages` on one Write stream the way ctr does (one response per message) and
/// returns the responses, or the status that ended the stream.
async fn write_stream(
    client: &mut ContentClient<Channel>,
    ns: &str,
    lease: Option<&str>,
    messages: Vec<WriteContentRequest>,
) -> Result<Vec<WriteContentResponse>, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = client
        .write(req(
            ns,
            lease,
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await?
        .into_inner();
    let mut got = Vec::new();
    for message in messages {
        tx.send(message).await.expect("stream open");
        match responses.next().await {
            Some(Ok(response)) => got.push(response),
            Some(Err(status)) => return Err(status),
            None => return Err(tonic::Status::unknown("stream ended early")),
        }
    }
    drop(tx);
    match responses.next().await {
        None => Ok(got),
        Some(Err(status)) => Err(status),
        Some(Ok(extra)) => panic!("unexpected extra response {extra:?}"),
    }
}

/// Writes `data` as ctr's `content ingest` does: STAT, 1 MiB WRITEs, COMMIT.
async fn ingest(
    client: &mut ContentClient<Channel>,
    ns: &str,
    lease: Option<&str>,
    reference: &str,
    data: &[u8],
    expected: &str,
) -> Result<Vec<WriteContentResponse>, tonic::Status> {
    let mut messages = vec![stat(reference, data.len() as i64, expected)];
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        messages.push(write_msg(i << 20, chunk));
    }
    messages.push(commit_msg(data.len(), data.len() as i64, expected));
    write_stream(client, ns, lease, messages).await
}

async fn read_all(
    client: &mut ContentClient<Channel>,
    ns: &str,
    digest: &str,
    offset: i64,
    size: i64,
) -> Result<(Vec<u8>, Vec<i64>), tonic::Status> {
    let mut stream = client
        .read(req(
            ns,
            None,
            ReadContentRequest {
                digest: digest.to_string(),
                offset,
                size,
            },
        ))
        .await?
        .into_inner();
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        offsets.push(chunk.offset);
        data.extend_from_slice(&chunk.data);
    }
    Ok((data, offsets))
}

async fn info_of(
    client: &mut ContentClient<Channel>,
    ns: &str,
    digest: &str,
) -> Result<Info, tonic::Status> {
    Ok(client
        .info(req(
            ns,
            None,
            InfoRequest {
                digest: digest.to_string(),
            },
        ))
        .await?
        .into_inner()
        .info
        .expect("info"))
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_commit_info_read_list() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let data = blob(2_500_000);
    let digest = Digest::of(&data).to_string();

    let responses = ingest(&mut client, "ns1", None, "upload-1", &data, "")
        .await
        .unwrap();
    assert_eq!(responses.len(), 5, "one response per message");
    assert_eq!(responses[0].action, WriteAction::Stat as i32);
    assert_eq!(responses[0].offset, 0, "a new ref starts at 0");
    assert_eq!(responses[0].total, data.len() as i64);
    assert!(responses[0].started_at.is_some());
    assert_eq!(responses[1].offset, 1 << 20);
    assert_eq!(responses[2].offset, 2 << 20);
    let committed = responses.last().unwrap();
    assert_eq!(committed.action, WriteAction::Commit as i32);
    assert_eq!(committed.offset, data.len() as i64);
    assert_eq!(committed.digest, digest);

    let info = info_of(&mut client, "ns1", &digest).await.unwrap();
    assert_eq!(info.size, data.len() as i64);
    assert!(info.created_at.is_some());

    let (bytes, offsets) = read_all(&mut client, "ns1", &digest, 0, 0).await.unwrap();
    assert_eq!(bytes, data);
    assert_eq!(offsets, [0, 1 << 20, 2 << 20], "1 MiB chunks");
    let (part, _) = read_all(&mut client, "ns1", &digest, 1_000_000, 100)
        .await
        .unwrap();
    assert_eq!(part, &data[1_000_000..1_000_100]);
    let (tail, _) = read_all(&mut client, "ns1", &digest, 2_499_990, 1000)
        .await
        .unwrap();
    assert_eq!(tail, &data[2_499_990..]);
    let past = read_all(&mut client, "ns1", &digest, 2_500_001, 0)
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::InvalidArgument);

    let mut list = client
        .list(req("ns1", None, ListContentRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = list.next().await.unwrap().unwrap();
    assert_eq!(first.info.len(), 1);
    assert_eq!(first.info[0].digest, digest);
    assert!(list.next().await.is_none());

    // The ingest is gone once committed.
    let statuses = client
        .list_statuses(req("ns1", None, ListStatusesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(statuses.statuses.is_empty(), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_only_see_what_they_wrote_and_share_bytes_without_rewriting() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let data = blob(300_000);
    let digest = Digest::of(&data).to_string();
    ingest(&mut client, "a", None, "r", &data, &digest)
        .await
        .unwrap();

    for call in [
        info_of(&mut client, "b", &digest).await.map(|_| ()),
        read_all(&mut client, "b", &digest, 0, 0).await.map(|_| ()),
    ] {
        assert_eq!(call.unwrap_err().code(), Code::NotFound);
    }

    // In namespace a the blob exists: opening a write for it answers AlreadyExists.
    let again = ingest(&mut client, "a", None, "r2", &data, &digest)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // In namespace b the bytes are on disk already: the blob is recorded, not re-sent.
    let shared = write_stream(
        &mut client,
        "b",
        None,
        vec![stat("r", data.len() as i64, &digest)],
    )
    .await
    .unwrap_err();
    assert_eq!(shared.code(), Code::AlreadyExists, "{shared:?}");
    let info = info_of(&mut client, "b", &digest).await.unwrap();
    assert_eq!(info.size, data.len() as i64);
    assert_eq!(
        read_all(&mut client, "b", &digest, 0, 0).await.unwrap().0,
        data
    );

    // A wrong declared size for a blob on disk is refused, and records nothing.
    let wrong = write_stream(&mut client, "c", None, vec![stat("r", 5, &digest)])
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
    assert_eq!(
        info_of(&mut client, "c", &digest).await.unwrap_err().code(),
        Code::NotFound
    );

    // Writing the same bytes without announcing them also ends up visible in c.
    let responses = ingest(&mut client, "c", None, "r", &data, "")
        .await
        .unwrap();
    assert_eq!(responses.last().unwrap().digest, digest);
    assert!(info_of(&mut client, "c", &digest).await.is_ok());

    // Deleting from a keeps the file for b, where it is a collection root.
    client
        .update(req(
            "b",
            None,
            UpdateRequest {
                info: Some(Info {
                    digest: digest.clone(),
                    labels: HashMap::from([(crate::gc::LABEL_ROOT.to_string(), "1".to_string())]),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap();
    client
        .delete(req(
            "a",
            None,
            DeleteContentRequest {
                digest: digest.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        info_of(&mut client, "a", &digest).await.unwrap_err().code(),
        Code::NotFound
    );
    crate::gc::collect(served.daemon()).await.unwrap();
    assert_eq!(
        read_all(&mut client, "b", &digest, 0, 0).await.unwrap().0,
        data
    );
    assert_eq!(served.daemon().content.walk().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_or_size_commits_nothing() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let data = blob(1000);
    let wrong_digest = Digest::of(b"something else").to_string();

    let err = ingest(&mut client, "ns", None, "bad", &data, &wrong_digest)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&wrong_digest), "{}", err.message());
    assert!(
        err.message().contains(&Digest::of(&data).to_string()),
        "{}",
        err.message()
    );

    let err = write_stream(
        &mut client,
        "ns",
        None,
        vec![
            stat("short", 0, ""),
            write_msg(0, &data),
            commit_msg(1000, 1001, ""),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("1001"), "{}", err.message());

    assert!(
        served.daemon().content.walk().unwrap().is_empty(),
        "no blob on disk"
    );
    let list = client
        .list(req("ns", None, ListContentRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert!(list.is_empty());

    let bad = write_stream(&mut client, "ns", None, vec![stat("x", 0, "sha256:nope")])
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let huge = write_stream(&mut client, "ns", None, vec![stat("x", 1 << 40, "")])
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::InvalidArgument);
    let gap = write_stream(
        &mut client,
        "ns",
        None,
        vec![stat("y", 0, ""), write_msg(10, b"x")],
    )
    .await
    .unwrap_err();
    assert_eq!(gap.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_resume_lock_report_and_abort() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let data = blob(10_000);

    // First stream writes half and stops.
    write_stream(
        &mut client,
        "ns",
        None,
        vec![
            stat("job", data.len() as i64, ""),
            write_msg(0, &data[..4000]),
        ],
    )
    .await
    .unwrap();

    let status = client
        .status(req(
            "ns",
            None,
            StatusRequest {
                r#ref: "job".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        (status.r#ref.as_str(), status.offset, status.total),
        ("job", 4000, 10_000)
    );
    let other_ns = client
        .status(req(
            "other",
            None,
            StatusRequest {
                r#ref: "job".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other_ns.code(), Code::NotFound);
    let listed = client
        .list_statuses(req(
            "ns",
            None,
            ListStatusesRequest {
                filters: vec!["ref==job".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.statuses.len(), 1);
    let none = client
        .list_statuses(req("other", None, ListStatusesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(none.statuses.is_empty());

    // While one stream holds the ref, a second one is refused.
    let (hold_tx, hold_rx) = tokio::sync::mpsc::channel(1);
    let mut holder = client
        .write(req(
            "ns",
            None,
            tokio_stream::wrappers::ReceiverStream::new(hold_rx),
        ))
        .await
        .unwrap()
        .into_inner();
    hold_tx.send(stat("job", 0, "")).await.unwrap();
    let resumed = holder.next().await.unwrap().unwrap();
    assert_eq!(resumed.offset, 4000, "STAT reports where to resume");
    let locked = write_stream(&mut client, "ns", None, vec![stat("job", 0, "")])
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::Unavailable);
    assert!(locked.message().contains("locked"), "{}", locked.message());
    assert!(!locked.message().contains("ns/job"), "{}", locked.message());
    let abort_locked = client
        .abort(req(
            "ns",
            None,
            AbortRequest {
                r#ref: "job".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(abort_locked.code(), Code::Unavailable);

    // The holder finishes the blob.
    hold_tx.send(write_msg(4000, &data[4000..])).await.unwrap();
    assert_eq!(holder.next().await.unwrap().unwrap().offset, 10_000);
    hold_tx.send(commit_msg(10_000, 0, "")).await.unwrap();
    let done = holder.next().await.unwrap().unwrap();
    assert_eq!(done.digest, Digest::of(&data).to_string());
    drop(hold_tx);
    assert!(holder.next().await.is_none());

    // Abort drops an ingest; then it is gone.
    write_stream(
        &mut client,
        "ns",
        None,
        vec![stat("tmp", 0, ""), write_msg(0, b"abc")],
    )
    .await
    .unwrap();
    client
        .abort(req(
            "ns",
            None,
            AbortRequest {
                r#ref: "tmp".into(),
            },
        ))
        .await
        .unwrap();
    let gone = client
        .abort(req(
            "ns",
            None,
            AbortRequest {
                r#ref: "tmp".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_labels_and_delete() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let data = blob(64);
    let digest = Digest::of(&data).to_string();
    let mut commit = commit_msg(64, 64, "");
    commit.labels = HashMap::from([("a".to_string(), "1".to_string())]);
    write_stream(
        &mut client,
        "ns",
        None,
        vec![stat("r", 0, ""), write_msg(0, &data), commit],
    )
    .await
    .unwrap();
    assert_eq!(
        info_of(&mut client, "ns", &digest).await.unwrap().labels,
        HashMap::from([("a".to_string(), "1".to_string())]),
        "commit labels are kept"
    );

    let update = |labels: &[(&str, &str)], paths: &[&str]| UpdateRequest {
        info: Some(Info {
            digest: digest.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    let updated = client
        .update(req("ns", None, update(&[("b", "2")], &["labels.b"])))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(updated.labels.len(), 2);
    let updated = client
        .update(req("ns", None, update(&[], &["labels.a"])))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        updated.labels,
        HashMap::from([("b".to_string(), "2".to_string())])
    );
    let refused = client
        .update(req("ns", None, update(&[], &["size"])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let too_big = client
        .update(req(
            "ns",
            None,
            update(&[("k", &"v".repeat(5000))], &["labels.k"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    let elsewhere = client
        .update(req("other", None, update(&[("b", "2")], &["labels.b"])))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::NotFound);

    let filtered = client
        .list(req(
            "ns",
            None,
            ListContentRequest {
                filters: vec!["labels.b==2".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(filtered.len(), 1);

    let mut events = served.daemon().events.subscribe();
    client
        .delete(req(
            "ns",
            None,
            DeleteContentRequest {
                digest: digest.clone(),
            },
        ))
        .await
        .unwrap();
    let event = events.recv().await.unwrap();
    assert_eq!(
        (event.namespace.as_str(), event.topic.as_str()),
        ("ns", TOPIC_DELETE)
    );
    let again = client
        .delete(req(
            "ns",
            None,
            DeleteContentRequest {
                digest: digest.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    crate::gc::collect(served.daemon()).await.unwrap();
    assert!(
        served.daemon().content.walk().unwrap().is_empty(),
        "the file goes once no namespace holds it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_hold_ingests_and_committed_blobs() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let meta = &served.daemon().meta;
    meta.write(|_, batch| -> ApiResult<()> {
        batch.put(Kind::Lease, "ns", "l1", &LeaseRecord::default())?;
        Ok(())
    })
    .await
    .unwrap();
    let lease_of = || -> LeaseRecord { meta.get(Kind::Lease, "ns", "l1").unwrap().unwrap() };

    write_stream(
        &mut client,
        "ns",
        Some("l1"),
        vec![stat("r", 0, ""), write_msg(0, b"hello")],
    )
    .await
    .unwrap();
    assert!(lease_of().resources.contains(&ingest_resource("r")));

    let digest = Digest::of(b"hello");
    write_stream(
        &mut client,
        "ns",
        Some("l1"),
        vec![stat("r", 0, ""), commit_msg(5, 5, &digest.to_string())],
    )
    .await
    .unwrap();
    let lease = lease_of();
    assert!(lease.resources.contains(&content_resource(&digest)));
    assert!(
        !lease.resources.contains(&ingest_resource("r")),
        "{lease:?}"
    );

    // Unreferenced but leased: a collection keeps it.
    crate::gc::collect(served.daemon()).await.unwrap();
    assert!(info_of(&mut client, "ns", &digest.to_string())
        .await
        .is_ok());

    let missing = write_stream(&mut client, "ns", Some("nope"), vec![stat("q", 0, "")])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
