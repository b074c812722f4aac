//! Streaming sha256: computes a [`Digest`] over data fed in pieces.

use std::fmt;
use std::io;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Incremental sha256 over a stream of bytes. Uses the CPU's SHA extensions when present.
#[derive(Clone, Default)]
pub struct DigestHasher {
    state: Sha256,
    length: u64,
}

impl DigestHasher {
    /// Starts an empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
        self.length += bytes.len() as u64;
    }

    /// How many bytes have been fed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// True when nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The digest of everything fed so far; the hasher can keep going afterwards.
    pub fn digest(&self) -> Digest {
        Digest::from_bytes(self.state.clone().finalize().into())
    }

    /// The digest of everything fed, consuming the hasher.
    pub fn finish(self) -> Digest {
        Digest::from_bytes(self.state.finalize().into())
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestHasher")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl io::Write for DigestHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hash_the_same_as_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut hasher = DigestHasher::new();
        for piece in data.chunks(777) {
            hasher.update(piece);
        }
        assert_eq!(hasher.len(), data.len() as u64);
        assert_eq!(hasher.digest(), Digest::of(&data));
        hasher.update(b"more");
        let mut whole = data.clone();
        whole.extend_from_slice(b"more");
        assert_eq!(hasher.finish(), Digest::of(&whole));
    }

    #[test]
    fn empty_hash_is_the_well_known_empty_digest() {
        let hasher = DigestHasher::new();
        assert!(hasher.is_empty());
        assert_eq!(
            hasher.finish().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
