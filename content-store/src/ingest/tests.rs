//! Behaviour of ingests as a client sees it: write, resume, lock, verify, commit, abort, sweep.

use std::fs::{self, File, FileTimes};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::Error;
use crate::test_support::{commit_bytes, TempStore};
use crate::MAX_REF_LEN;

/// A ref shaped like the ones ctr sends: slashes, colons, dots.
const CTR_REF: &str = "import-123/index-sha256:../../etc/passwd";

/// Pattern bytes of a given length.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Pushes the last-activity time of the ingest `reference` into the past.
fn age_ingest(temp: &TempStore, reference: &str, by: Duration) {
    let dir = super::IngestDir::for_ref(temp.store.ingest_dir(), reference);
    let past = SystemTime::now() - by;
    let data = File::options().write(true).open(dir.data_path()).unwrap();
    data.set_times(FileTimes::new().set_modified(past)).unwrap();
    fs::write(
        dir.path().join("started"),
        crate::fsutil::time_to_text(past),
    )
    .unwrap();
}

#[test]
fn write_then_commit_round_trips_and_cleans_up_the_ingest() {
    let temp = TempStore::new();
    let content = pattern(3 << 20);
    let mut writer = temp
        .store
        .writer(CTR_REF, Some(content.len() as u64), None)
        .unwrap();
    let mut offset = 0;
    for chunk in content.chunks(100_000) {
        writer.write(offset, chunk).unwrap();
        offset += chunk.len() as u64;
    }
    assert_eq!(writer.offset(), content.len() as u64);
    assert_eq!(writer.digest(), Digest::of(&content));
    let digest = writer
        .commit(Some(content.len() as u64), Some(Digest::of(&content)))
        .unwrap();

    assert_eq!(digest, Digest::of(&content));
    let path = temp.store.blob_path(&digest);
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(temp.store.info(&digest).unwrap().size, content.len() as u64);
    assert!(matches!(
        temp.store.status(CTR_REF),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(fs::read_dir(temp.path().join("ingest")).unwrap().count(), 0);
}

#[test]
fn ref_is_never_used_as_a_path() {
    let temp = TempStore::new();
    let writer = temp.store.writer(CTR_REF, None, None).unwrap();
    let names: Vec<String> = fs::read_dir(temp.path().join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![Digest::of(CTR_REF.as_bytes()).hex()]);
    assert_eq!(writer.reference(), CTR_REF);
}

#[test]
fn bad_refs_are_rejected() {
    let temp = TempStore::new();
    for reference in [String::new(), "x".repeat(MAX_REF_LEN + 1)] {
        assert!(matches!(
            temp.store.writer(&reference, None, None),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            temp.store.status(&reference),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            temp.store.abort(&reference),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(temp
        .store
        .writer(&"x".repeat(MAX_REF_LEN), None, None)
        .is_ok());
}

#[test]
fn dropped_writer_resumes_at_its_offset_with_a_correct_digest() {
    let temp = TempStore::new();
    let content = pattern(2_500_000);
    let (first, second) = content.split_at(1_234_567);
    let mut writer = temp.store.writer("resume", None, None).unwrap();
    writer.write(0, first).unwrap();
    drop(writer);

    let status = temp.store.status("resume").unwrap();
    assert_eq!(status.offset, first.len() as u64);

    let mut writer = temp.store.writer("resume", None, None).unwrap();
    assert_eq!(writer.offset(), first.len() as u64);
    assert_eq!(writer.digest(), Digest::of(first));
    writer.write(first.len() as u64, second).unwrap();
    assert_eq!(
        writer.commit(None, Some(Digest::of(&content))).unwrap(),
        Digest::of(&content)
    );
}

#[test]
fn second_writer_on_the_same_ref_is_locked_until_the_first_is_dropped() {
    let temp = TempStore::new();
    let mut first = temp.store.writer(CTR_REF, None, None).unwrap();
    first.write(0, b"abc").unwrap();
    assert!(matches!(
        temp.store.writer(CTR_REF, None, None),
        Err(Error::Locked { reference }) if reference == CTR_REF
    ));
    assert!(matches!(
        temp.store.abort(CTR_REF),
        Err(Error::Locked { .. })
    ));
    // Other refs are independent.
    temp.store.writer("other", None, None).unwrap();
    drop(first);
    let second = temp.store.writer(CTR_REF, None, None).unwrap();
    assert_eq!(second.offset(), 3);
}

#[test]
fn the_lock_holds_against_other_processes() {
    let temp = TempStore::new();
    let dir = super::IngestDir::for_ref(temp.store.ingest_dir(), "shared");
    let try_lock_from_another_process = || {
        // flock(1) exits with 99 when the lock is taken, 0 when it got (and released) it.
        Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "99"])
            .arg(dir.path())
            .arg("true")
            .status()
            .expect("run flock(1)")
            .code()
    };
    let writer = temp.store.writer("shared", None, None).unwrap();
    assert_eq!(try_lock_from_another_process(), Some(99));
    drop(writer);
    assert_eq!(try_lock_from_another_process(), Some(0));
}

#[test]
fn write_at_a_smaller_offset_rewinds_and_rehashes() {
    let temp = TempStore::new();
    let mut writer = temp.store.writer("rewind", None, None).unwrap();
    writer.write(0, b"hello wrong tail").unwrap();
    writer.write(6, b"world").unwrap();
    assert_eq!(writer.offset(), 11);
    assert_eq!(writer.digest(), Digest::of(b"hello world"));
    writer.write(0, b"").unwrap();
    assert_eq!(writer.offset(), 0);
    writer.write(0, b"hello world").unwrap();
    let digest = writer.commit(Some(11), None).unwrap();
    assert_eq!(temp.store.read_at(&digest, 0, 100).unwrap(), b"hello world");
}

#[test]
fn write_past_the_end_or_past_the_total_is_refused_and_changes_nothing() {
    let temp = TempStore::new();
    let mut writer = temp.store.writer("bounds", Some(8), None).unwrap();
    writer.write(0, b"1234").unwrap();
    assert!(matches!(
        writer.write(5, b"x"),
        Err(Error::FailedPrecondition(m)) if m.contains("skips ahead")
    ));
    assert!(matches!(
        writer.write(4, b"56789"),
        Err(Error::FailedPrecondition(m)) if m.contains("expected total of 8")
    ));
    // A refused rewind-and-overflow does not rewind either.
    assert!(writer.write(0, b"123456789").is_err());
    assert_eq!(writer.offset(), 4);
    assert_eq!(temp.store.status("bounds").unwrap().offset, 4);
    writer.write(4, b"5678").unwrap();
    assert_eq!(writer.commit(None, None).unwrap(), Digest::of(b"12345678"));
}

#[test]
fn wrong_digest_is_rejected_and_the_ingest_stays_resumable() {
    let temp = TempStore::new();
    let wrong = Digest::of(b"something else");
    let right = Digest::of(b"payload");
    let mut writer = temp.store.writer("bad-digest", None, None).unwrap();
    writer.write(0, b"payload").unwrap();
    match writer.commit(None, Some(wrong)) {
        Err(Error::FailedPrecondition(message)) => {
            assert!(message.contains(&format!("expected {wrong}")), "{message}");
            assert!(message.contains(&format!("got {right}")), "{message}");
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!temp.store.exists(&right));
    assert!(!temp.store.exists(&wrong));
    assert!(temp.store.walk().unwrap().is_empty());

    let writer = temp.store.writer("bad-digest", None, None).unwrap();
    assert_eq!(writer.offset(), 7);
    assert_eq!(writer.commit(None, Some(right)).unwrap(), right);
}

#[test]
fn digest_expected_at_open_is_enforced_at_commit() {
    let temp = TempStore::new();
    let promised = Digest::of(b"promised");
    let mut writer = temp.store.writer("promise", None, Some(promised)).unwrap();
    writer.write(0, b"delivered").unwrap();
    assert!(matches!(
        writer.commit(None, None),
        Err(Error::FailedPrecondition(m)) if m.contains(&format!("expected {promised}"))
    ));
    assert!(temp.store.walk().unwrap().is_empty());
    assert_eq!(
        temp.store.status("promise").unwrap().expected,
        Some(promised)
    );
}

#[test]
fn wrong_size_is_rejected_with_nothing_committed() {
    let temp = TempStore::new();
    let mut writer = temp.store.writer("bad-size", None, None).unwrap();
    writer.write(0, b"12345").unwrap();
    assert!(matches!(
        writer.commit(Some(6), None),
        Err(Error::FailedPrecondition(m)) if m.contains("expected 6 bytes") && m.contains("got 5")
    ));
    assert!(temp.store.walk().unwrap().is_empty());

    // A total promised at open is checked too.
    let mut writer = temp.store.writer("short", Some(10), None).unwrap();
    writer.write(0, b"12345").unwrap();
    assert!(matches!(
        writer.commit(None, None),
        Err(Error::FailedPrecondition(m)) if m.contains("expected 10 bytes")
    ));
    assert!(temp.store.walk().unwrap().is_empty());
    assert_eq!(temp.store.status("short").unwrap().offset, 5);
}

#[test]
fn already_committed_content_is_reported_as_already_exists() {
    let temp = TempStore::new();
    let digest = commit_bytes(&temp.store, "first", b"same bytes");
    assert!(matches!(
        temp.store.writer("second", None, Some(digest)),
        Err(Error::AlreadyExists { what }) if what.contains(&digest.to_string())
    ));
    assert!(matches!(
        temp.store.status("second"),
        Err(Error::NotFound { .. })
    ));

    // Without an expected digest the duplicate is only found at commit; the ingest goes away.
    let mut writer = temp.store.writer("third", None, None).unwrap();
    writer.write(0, b"same bytes").unwrap();
    assert!(matches!(
        writer.commit(None, None),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        temp.store.status("third"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        fs::read(temp.store.blob_path(&digest)).unwrap(),
        b"same bytes"
    );
}

#[test]
fn status_and_list_report_every_ingest() {
    let temp = TempStore::new();
    let expected = Digest::of(b"abcdef");
    let before = SystemTime::now();
    let mut a = temp.store.writer(CTR_REF, Some(6), Some(expected)).unwrap();
    a.write(0, b"abc").unwrap();
    let mut b = temp.store.writer("b", None, None).unwrap();
    b.write(0, b"x").unwrap();
    drop(b);

    let status = temp.store.status(CTR_REF).unwrap();
    let live = a.status();
    assert_eq!(
        (&status.reference, status.offset),
        (&live.reference, live.offset)
    );
    assert_eq!(status.started_at, live.started_at);
    assert_eq!(status.reference, CTR_REF);
    assert_eq!(status.offset, 3);
    assert_eq!(status.total, Some(6));
    assert_eq!(status.expected, Some(expected));
    assert!(status.started_at >= before - Duration::from_secs(1));
    assert!(status.updated_at >= status.started_at);

    let listed: Vec<(String, u64)> = temp
        .store
        .list_statuses()
        .unwrap()
        .into_iter()
        .map(|s| (s.reference, s.offset))
        .collect();
    assert_eq!(listed, vec![("b".to_string(), 1), (CTR_REF.to_string(), 3)]);
    assert!(matches!(
        temp.store.status("nope"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn reopening_with_new_expectations_replaces_the_old_ones() {
    let temp = TempStore::new();
    drop(temp.store.writer("r", Some(100), None).unwrap());
    let expected = Digest::of(b"xy");
    let mut writer = temp.store.writer("r", Some(2), Some(expected)).unwrap();
    assert_eq!(
        (writer.total(), writer.expected()),
        (Some(2), Some(expected))
    );
    drop(writer);
    // Not giving them keeps what was recorded.
    writer = temp.store.writer("r", None, None).unwrap();
    assert_eq!(
        (writer.total(), writer.expected()),
        (Some(2), Some(expected))
    );
    writer.write(0, b"xy").unwrap();
    assert_eq!(writer.commit(None, None).unwrap(), expected);
}

#[test]
fn abort_removes_the_ingest_and_its_data() {
    let temp = TempStore::new();
    let mut writer = temp.store.writer(CTR_REF, None, None).unwrap();
    writer.write(0, b"abandoned").unwrap();
    drop(writer);
    temp.store.abort(CTR_REF).unwrap();
    assert!(matches!(
        temp.store.status(CTR_REF),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        temp.store.abort(CTR_REF),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(fs::read_dir(temp.path().join("ingest")).unwrap().count(), 0);
    // The ref can be used again from scratch.
    assert_eq!(temp.store.writer(CTR_REF, None, None).unwrap().offset(), 0);
}

#[test]
fn stale_ingests_are_removed_but_live_and_recent_ones_kept() {
    let temp = TempStore::new();
    let hour = Duration::from_secs(3600);
    for reference in ["old", "old-but-locked", "recent"] {
        let mut writer = temp.store.writer(reference, None, None).unwrap();
        writer.write(0, b"data").unwrap();
    }
    age_ingest(&temp, "old", 2 * hour);
    age_ingest(&temp, "old-but-locked", 2 * hour);
    let _live = temp.store.writer("old-but-locked", None, None).unwrap();
    // Leftover of an ingest creation interrupted by a crash.
    let staging = temp.path().join("ingest/.new-deadbeef-1-0");
    fs::create_dir(&staging).unwrap();
    File::open(&staging)
        .unwrap()
        .set_times(FileTimes::new().set_modified(SystemTime::now() - 2 * hour))
        .unwrap();

    assert_eq!(temp.store.remove_stale_ingests(hour).unwrap(), 2);
    assert!(!staging.exists());
    let left: Vec<String> = temp
        .store
        .list_statuses()
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(
        left,
        vec!["old-but-locked".to_string(), "recent".to_string()]
    );
    assert_eq!(temp.store.remove_stale_ingests(hour).unwrap(), 0);
}

#[test]
fn damaged_ingest_is_skipped_by_listing_and_replaced_by_a_new_writer() {
    let temp = TempStore::new();
    let mut writer = temp.store.writer("damaged", None, None).unwrap();
    writer.write(0, b"lost").unwrap();
    drop(writer);
    let dir = super::IngestDir::for_ref(temp.store.ingest_dir(), "damaged");
    fs::remove_file(dir.path().join("ref")).unwrap();

    assert!(temp.store.list_statuses().unwrap().is_empty());
    assert!(matches!(
        temp.store.status("damaged"),
        Err(Error::FailedPrecondition(_))
    ));
    let writer = temp.store.writer("damaged", None, None).unwrap();
    assert_eq!(writer.offset(), 0);
    assert_eq!(temp.store.status("damaged").unwrap().offset, 0);
}

#[test]
fn io_write_appends_at_the_end() {
    let temp = TempStore::new();
    let content = pattern(5 << 20);
    let mut writer = temp.store.writer("stream", None, None).unwrap();
    std::io::copy(&mut content.as_slice(), &mut writer).unwrap();
    writer.flush().unwrap();
    assert_eq!(writer.commit(None, None).unwrap(), Digest::of(&content));
}

#[test]
fn empty_blob_can_be_committed() {
    let temp = TempStore::new();
    let writer = temp.store.writer("empty", Some(0), None).unwrap();
    let digest = writer.commit(Some(0), None).unwrap();
    assert_eq!(digest, Digest::of(b""));
    assert_eq!(temp.store.info(&digest).unwrap().size, 0);
}
