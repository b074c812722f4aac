//! The byte stream of a blob being fetched: starts at the offset asked for, fails when
//! the registry goes quiet for too long, and never hands out more than the
//! descriptor's size.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::RegistryError;
use crate::oci_errors::{from_io, whole_seconds, ErrorContext};

/// A blob's bytes from a registry, from the offset they were asked from.
///
/// - Each chunk must arrive within the stall timeout, or the stream yields
///   [`RegistryError::Stalled`].
/// - When the registry ignored the range request, the bytes before the offset are
///   dropped here, so the stream always starts at the offset.
/// - More bytes than the descriptor's size, or an end before it, is a
///   [`RegistryError::SizeMismatch`].
/// - A fetch of the whole blob is verified as it goes: after the last byte, a
///   mismatching digest is yielded as [`RegistryError::DigestMismatch`]. (A resumed
///   fetch cannot be verified here; whoever holds the first part checks the whole.)
///
/// After an error the stream ends.
pub struct BlobStream {
    inner: Option<BoxStream<'static, std::io::Result<Bytes>>>,
    skip: u64,
    expected: u64,
    delivered: u64,
    stall_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    registry: String,
    what: String,
}

impl BlobStream {
    /// Wraps the response body `inner`, which starts `skip` bytes before the wanted
    /// offset and should then carry `expected` bytes.
    pub(crate) fn new(
        inner: BoxStream<'static, std::io::Result<Bytes>>,
        skip: u64,
        expected: u64,
        stall_timeout: Duration,
        registry: String,
        what: String,
    ) -> BlobStream {
        BlobStream {
            inner: Some(inner),
            skip,
            expected,
            delivered: 0,
            stall_timeout,
            deadline: Box::pin(tokio::time::sleep(stall_timeout)),
            registry,
            what,
        }
    }

    /// A stream with nothing left to fetch (the offset is the blob's size).
    pub(crate) fn empty(stall_timeout: Duration, registry: String, what: String) -> BlobStream {
        BlobStream {
            inner: None,
            ..BlobStream::new(
                futures::stream::empty().boxed(),
                0,
                0,
                stall_timeout,
                registry,
                what,
            )
        }
    }

    /// How many bytes the stream yields when all goes well: the blob's size minus the
    /// offset.
    pub fn expected_len(&self) -> u64 {
        self.expected
    }

    /// How many bytes the stream has yielded so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Ends the stream, yielding `err` as its last item.
    fn fail(&mut self, err: RegistryError) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.inner = None;
        Poll::Ready(Some(Err(err)))
    }

    fn context(&self) -> ErrorContext<'_> {
        ErrorContext {
            registry: &self.registry,
            what: &self.what,
            stall_seconds: whole_seconds(self.stall_timeout),
        }
    }

    fn size_mismatch(&self, actual: u64) -> RegistryError {
        RegistryError::SizeMismatch {
            what: self.what.clone(),
            expected: self.expected,
            actual,
        }
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(mut chunk))) => {
                    let next_deadline = Instant::now() + this.stall_timeout;
                    this.deadline.as_mut().reset(next_deadline);
                    if this.skip > 0 {
                        let dropped = this.skip.min(chunk.len() as u64);
                        let _ = chunk.split_to(dropped as usize);
                        this.skip -= dropped;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    let after = this.delivered + chunk.len() as u64;
                    if after > this.expected {
                        let err = this.size_mismatch(after);
                        return this.fail(err);
                    }
                    this.delivered = after;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = from_io(e, &this.context());
                    return this.fail(err);
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    if this.delivered < this.expected {
                        let err = this.size_mismatch(this.delivered);
                        return this.fail(err);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        let err = this.context().stalled();
                        return this.fail(err);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn chunks(parts: &[&'static [u8]]) -> BoxStream<'static, std::io::Result<Bytes>> {
        let items: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(items).boxed()
    }

    fn wrap(
        inner: BoxStream<'static, std::io::Result<Bytes>>,
        skip: u64,
        expected: u64,
    ) -> BlobStream {
        BlobStream::new(
            inner,
            skip,
            expected,
            Duration::from_millis(200),
            "reg".into(),
            "blob x".into(),
        )
    }

    async fn collect(stream: BlobStream) -> Result<Vec<u8>, RegistryError> {
        let parts: Vec<Bytes> = stream.try_collect().await?;
        Ok(parts.concat())
    }

    #[tokio::test]
    async fn bytes_before_the_offset_are_dropped_across_chunks() {
        let stream = wrap(chunks(&[b"ab", b"cdef", b"gh"]), 3, 5);
        assert_eq!(collect(stream).await.unwrap(), b"defgh");
    }

    #[tokio::test]
    async fn too_many_or_too_few_bytes_are_size_mismatches() {
        match collect(wrap(chunks(&[b"abc", b"def"]), 0, 4)).await {
            Err(RegistryError::SizeMismatch {
                expected: 4,
                actual: 6,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match collect(wrap(chunks(&[b"abc"]), 0, 4)).await {
            Err(RegistryError::SizeMismatch {
                expected: 4,
                actual: 3,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_quiet_registry_is_a_stall_after_the_bytes_that_came() {
        let inner = futures::stream::iter(vec![Ok(Bytes::from_static(b"half"))])
            .chain(futures::stream::pending())
            .boxed();
        let mut stream = wrap(inner, 0, 8);
        let started = std::time::Instant::now();
        assert_eq!(stream.next().await.unwrap().unwrap(), &b"half"[..]);
        match stream.next().await {
            Some(Err(RegistryError::Stalled { what, .. })) => assert_eq!(what, "blob x"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            stream.next().await.is_none(),
            "the stream ends after an error"
        );
        assert_eq!(stream.delivered(), 4);
    }

    #[tokio::test]
    async fn the_empty_stream_ends_at_once() {
        let stream = BlobStream::empty(Duration::from_secs(1), "r".into(), "w".into());
        assert_eq!(stream.expected_len(), 0);
        assert!(collect(stream).await.unwrap().is_empty());
    }
}
