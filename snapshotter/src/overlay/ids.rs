//! Handing out snapshot ids that are never reused, even across restarts.
//!
//! Persisting a counter on every snapshot would cost two fsyncs each; instead ids are
//! reserved in small batches: the file holds the end of the current batch, and on open the
//! next id is past both that mark and every id found on disk.

use std::path::PathBuf;

use super::durable::write_atomically;
use crate::error::{Error, Result};

/// How many ids are reserved by one write of the id file.
const BATCH: u64 = 32;

/// The source of new snapshot ids.
#[derive(Debug)]
pub(crate) struct IdAllocator {
    file: PathBuf,
    next: u64,
    reserved_until: u64,
}

impl IdAllocator {
    /// Loads the allocator: new ids start above the persisted mark and above
    /// `highest_seen`, the largest id found in any directory at open.
    pub fn load(file: PathBuf, highest_seen: u64) -> Result<Self> {
        let persisted = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u64>().map_err(|err| {
                Error::io(
                    format!("parse {}", file.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, err),
                )
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(Error::io(format!("read {}", file.display()), err)),
        };
        let next = persisted.max(highest_seen.saturating_add(1)).max(1);
        Ok(IdAllocator {
            file,
            next,
            reserved_until: next,
        })
    }

    /// Returns a fresh id, first persisting a new batch when the current one is used up.
    pub fn allocate(&mut self) -> Result<u64> {
        if self.next >= self.reserved_until {
            let until = self.next + BATCH;
            write_atomically(&self.file, format!("{until}\n").as_bytes())?;
            self.reserved_until = until;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("next-id");
        let mut ids = IdAllocator::load(file.clone(), 0).unwrap();
        let first: Vec<u64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3]);
        drop(ids);
        // Even if the snapshots with those ids were removed, a reopen continues past them.
        let mut ids = IdAllocator::load(file, 0).unwrap();
        assert!(ids.allocate().unwrap() > 3);
    }

    #[test]
    fn ids_found_on_disk_push_the_counter_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = IdAllocator::load(dir.path().join("next-id"), 500).unwrap();
        assert_eq!(ids.allocate().unwrap(), 501);
    }

    #[test]
    fn a_batch_is_written_before_its_ids_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("next-id");
        let mut ids = IdAllocator::load(file.clone(), 0).unwrap();
        for _ in 0..=BATCH {
            let id = ids.allocate().unwrap();
            let mark: u64 = std::fs::read_to_string(&file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(
                id < mark,
                "id {id} handed out beyond the persisted mark {mark}"
            );
        }
    }
}
