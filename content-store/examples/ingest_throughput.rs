//! Rough ingest throughput check: compares a full `Writer` ingest (hash + write + commit)
//! against this machine's two limits measured separately, sha256 alone and write+fsync alone.
//! On a shared or virtual machine the figures vary from run to run; run it a few times.
//!
//! Run: `cargo run --release -p berth-content --example ingest_throughput -- [MiB] [dir]`
//! (defaults: 512 MiB in the system temp directory). Proper side-by-side timings live in bench/.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use berth_content::{ContentStore, DigestHasher};

const MIB: usize = 1 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let total_mib: usize = args.next().map_or(512, |a| a.parse().expect("size in MiB"));
    let parent = args.next().map_or_else(std::env::temp_dir, Into::into);
    let scratch = tempfile::Builder::new()
        .prefix("berth-ingest-throughput-")
        .tempdir_in(parent)
        .expect("create scratch dir");

    let chunk: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let chunks = total_mib;

    let hash_only = time(|| {
        let mut hasher = DigestHasher::new();
        for _ in 0..chunks {
            hasher.update(&chunk);
        }
        std::hint::black_box(hasher.finish());
    });

    let raw_write = || write_and_fsync(&scratch.path().join("raw"), &chunk, chunks);
    let first_disk_run = raw_write();

    let store = ContentStore::open(scratch.path().join("content")).expect("open store");
    let mut results = Vec::new();
    for (label, piece) in [("1 MiB writes", MIB), ("64 KiB writes", 64 << 10)] {
        let elapsed = time(|| {
            let mut writer = store.writer(label, None, None).expect("writer");
            for _ in 0..chunks {
                for part in chunk.chunks(piece) {
                    writer.write(writer.offset(), part).expect("write");
                }
            }
            let digest = writer.commit(None, None).expect("commit");
            store.delete(&digest).expect("delete");
        });
        results.push((label, elapsed));
    }

    // Fresh blocks can be slower to write than reused ones on virtual disks: take the better
    // of a run before and a run after the ingests.
    let disk_only = first_disk_run.min(raw_write());

    let rate = |elapsed: Duration| total_mib as f64 / elapsed.as_secs_f64();
    // One pass hashes a chunk, then copies it to the file: the two times add up.
    let limit = total_mib as f64 / (hash_only + disk_only).as_secs_f64();
    println!("data:                         {total_mib} MiB");
    println!(
        "sha256 alone:                 {:8.0} MiB/s",
        rate(hash_only)
    );
    println!(
        "write + fsync alone:          {:8.0} MiB/s",
        rate(disk_only)
    );
    println!("limit (sha256 + write):       {limit:8.0} MiB/s");
    for (label, elapsed) in results {
        println!(
            "ingest, {label:<14}:       {:8.0} MiB/s  ({:.0}% of the limit)",
            rate(elapsed),
            100.0 * rate(elapsed) / limit
        );
    }
}

/// Time to write `chunks` copies of `chunk` to a new file at `path`, fsync it and remove it.
fn write_and_fsync(path: &std::path::Path, chunk: &[u8], chunks: usize) -> Duration {
    let elapsed = time(|| {
        let mut file = File::create(path).expect("create");
        for _ in 0..chunks {
            file.write_all(chunk).expect("write");
        }
        file.sync_data().expect("fsync");
    });
    std::fs::remove_file(path).expect("remove");
    elapsed
}

/// Wall time of one run of `work`.
fn time(work: impl FnOnce()) -> Duration {
    let start = Instant::now();
    work();
    start.elapsed()
}
