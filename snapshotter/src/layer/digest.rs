//! SHA-256 digests of the streams going through the layer code.
//!
//! [`HashingInput`] is the one place the uncompressed layer is read from: it buffers the
//! decompressor's output, hashes every byte it pulls (so the diff id covers the stream
//! to its very end, trailing padding included) and enforces the size limit.
//! [`HashingWriter`] hashes and counts what is written through it.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::compression::Compression;
use super::error::LayerError;

/// Formats a finished SHA-256 hash as an OCI digest, `sha256:<hex>`.
pub(crate) fn format_digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Checks that `digest` is `sha256:` followed by 64 lower-case hex digits.
pub(crate) fn validate_sha256_digest(digest: &str) -> Result<(), LayerError> {
    let hex_part = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| LayerError::InvalidDigest(digest.to_string()))?;
    let well_formed = hex_part.len() == 64
        && hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(LayerError::InvalidDigest(digest.to_string()))
    }
}

/// Size of the buffer holding decompressed bytes.
const BUFFER_SIZE: usize = 512 * 1024;

/// The decompressed layer stream: buffered, hashed, counted and bounded.
pub(crate) struct HashingInput<'a> {
    source: Box<dyn Read + 'a>,
    compression: Compression,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    hasher: Sha256,
    /// Bytes pulled from the source (all of them hashed).
    pulled: u64,
    /// Bytes handed out to the reader of this input.
    consumed: u64,
    limit: u64,
}

impl<'a> HashingInput<'a> {
    /// Reads from `source` (the decompressor for `compression`), refusing more than `limit`
    /// uncompressed bytes.
    pub fn new(source: Box<dyn Read + 'a>, compression: Compression, limit: u64) -> Self {
        HashingInput {
            source,
            compression,
            buffer: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            hasher: Sha256::new(),
            pulled: 0,
            consumed: 0,
            limit,
        }
    }

    /// Offset of the next byte to be handed out, in the uncompressed stream.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Reads from the source into `out`, hashing and counting what arrives. Returns 0 at the
    /// end of the stream.
    fn pull(&mut self, out_is_buffer: bool, out: &mut [u8]) -> Result<usize, LayerError> {
        let target: &mut [u8] = if out_is_buffer {
            &mut self.buffer[..]
        } else {
            out
        };
        let n = loop {
            match self.source.read(target) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.source_error(err)),
            }
        };
        self.hasher.update(&target[..n]);
        self.pulled += n as u64;
        if self.pulled > self.limit {
            return Err(LayerError::TooLarge {
                what: "uncompressed layer".to_string(),
                size: self.pulled,
                limit: self.limit,
            });
        }
        Ok(n)
    }

    fn source_error(&self, err: io::Error) -> LayerError {
        match self.compression {
            Compression::None => LayerError::io("read layer", err),
            other => LayerError::CorruptCompression {
                compression: other.name(),
                source: err,
            },
        }
    }

    /// Refills the internal buffer; false at the end of the stream.
    fn refill(&mut self) -> Result<bool, LayerError> {
        self.start = 0;
        self.end = 0;
        let n = self.pull(true, &mut [])?;
        self.end = n;
        Ok(n > 0)
    }

    /// Fills `out` as far as the stream allows and returns how many bytes were read; less
    /// than `out.len()` only at the end of the stream.
    pub fn read_up_to(&mut self, out: &mut [u8]) -> Result<usize, LayerError> {
        let mut done = 0;
        while done < out.len() {
            if self.start == self.end {
                // Large reads bypass the buffer.
                if out.len() - done >= self.buffer.len() {
                    let n = self.pull(false, &mut out[done..])?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                    self.consumed += n as u64;
                    continue;
                }
                if !self.refill()? {
                    break;
                }
            }
            let n = (self.end - self.start).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buffer[self.start..self.start + n]);
            self.start += n;
            done += n;
            self.consumed += n as u64;
        }
        Ok(done)
    }

    /// Reads exactly `out.len()` bytes; running out is a truncated archive (`what` names the
    /// part being read, for the message).
    pub fn read_exact(&mut self, out: &mut [u8], what: &str) -> Result<(), LayerError> {
        let at = self.consumed;
        let n = self.read_up_to(out)?;
        if n < out.len() {
            return Err(LayerError::corrupt_tar(
                at,
                format!("stream ends inside {what} ({n} of {} bytes)", out.len()),
            ));
        }
        Ok(())
    }

    /// Reads the next `len` bytes into a new vector.
    pub fn read_vec(&mut self, len: usize, what: &str) -> Result<Vec<u8>, LayerError> {
        let mut data = vec![0u8; len];
        self.read_exact(&mut data, what)?;
        Ok(data)
    }

    /// Copies the next `len` bytes to `out`.
    pub fn copy_to(
        &mut self,
        mut len: u64,
        out: &mut impl Write,
        what: &str,
    ) -> Result<(), LayerError> {
        while len > 0 {
            if self.start == self.end && !self.refill()? {
                return Err(LayerError::corrupt_tar(
                    self.consumed,
                    format!("stream ends inside {what}"),
                ));
            }
            let n = ((self.end - self.start) as u64).min(len) as usize;
            out.write_all(&self.buffer[self.start..self.start + n])
                .map_err(|err| LayerError::io(format!("write {what}"), err))?;
            self.start += n;
            self.consumed += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Skips the next `len` bytes (they are still hashed).
    pub fn skip(&mut self, mut len: u64, what: &str) -> Result<(), LayerError> {
        while len > 0 {
            if self.start == self.end && !self.refill()? {
                return Err(LayerError::corrupt_tar(
                    self.consumed,
                    format!("stream ends inside {what}"),
                ));
            }
            let n = ((self.end - self.start) as u64).min(len) as usize;
            self.start += n;
            self.consumed += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Reads the rest of the stream to its end and returns the digest of everything read
    /// (`sha256:<hex>`) and its length. Reading to the end also makes the decompressor check
    /// its trailer.
    pub fn finish(mut self) -> Result<(String, u64), LayerError> {
        self.start = self.end;
        while self.refill()? {}
        Ok((format_digest(self.hasher), self.pulled))
    }
}

/// A writer that hashes and counts everything written to the writer inside it.
pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Returns the inner writer, the digest (`sha256:<hex>`) and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, format_digest(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_are_validated() {
        validate_sha256_digest(EMPTY_SHA256).unwrap();
        for bad in [
            "sha256:abc",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "",
        ] {
            assert!(validate_sha256_digest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_hashes_everything_including_the_unread_tail() {
        let data = vec![7u8; 3 * BUFFER_SIZE + 11];
        let mut input = HashingInput::new(Box::new(&data[..]), Compression::None, u64::MAX);
        let mut head = [0u8; 5];
        input.read_exact(&mut head, "head").unwrap();
        input.skip(BUFFER_SIZE as u64, "skip").unwrap();
        let big = input.read_vec(BUFFER_SIZE + 3, "big").unwrap();
        assert!(big.iter().all(|&b| b == 7));
        assert_eq!(input.offset(), 2 * BUFFER_SIZE as u64 + 8);
        let (digest, size) = input.finish().unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(
            digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
    }

    #[test]
    fn input_reports_truncation_and_limits() {
        let data = [1u8; 10];
        let mut input = HashingInput::new(Box::new(&data[..]), Compression::None, u64::MAX);
        let err = input.read_vec(11, "file data").unwrap_err();
        assert!(
            err.to_string().contains("stream ends inside file data"),
            "{err}"
        );

        let mut input = HashingInput::new(Box::new(&data[..]), Compression::None, 4);
        let err = input.read_vec(8, "file data").unwrap_err();
        assert!(
            matches!(err, LayerError::TooLarge { limit: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn writer_hashes_and_counts() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"").unwrap();
        let (out, digest, count) = writer.finish();
        assert!(out.is_empty());
        assert_eq!(count, 0);
        assert_eq!(digest, EMPTY_SHA256);
    }
}
