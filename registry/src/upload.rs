//! The body of a blob upload: checked against its descriptor as it streams (so a wrong
//! blob is never committed), and watched for progress (so a registry that stops
//! reading fails the push instead of hanging it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::Stream;
use oci_client::errors::OciDistributionError;
use tokio::time::Instant;

use crate::digest::Hasher;
use crate::error::RegistryError;

/// What an upload in flight shares with the code waiting for it.
#[derive(Debug)]
pub(crate) struct UploadWatch {
    last_progress: Mutex<Instant>,
    verdict: Mutex<Option<RegistryError>>,
}

impl UploadWatch {
    /// A watch whose clock starts now.
    pub(crate) fn new() -> Arc<UploadWatch> {
        Arc::new(UploadWatch {
            last_progress: Mutex::new(Instant::now()),
            verdict: Mutex::new(None),
        })
    }

    fn touch(&self) {
        *self.last_progress.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn last_progress(&self) -> Instant {
        *self.last_progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_verdict(&self, err: RegistryError) {
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
    }

    /// Why the body stopped the upload, if it did.
    pub(crate) fn take_verdict(&self) -> Option<RegistryError> {
        self.verdict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Runs `upload` until it finishes, or until no progress was seen for
    /// `stall_timeout` (then `None`).
    pub(crate) async fn run<F: Future>(
        &self,
        upload: F,
        stall_timeout: Duration,
    ) -> Option<F::Output> {
        tokio::pin!(upload);
        loop {
            let deadline = self.last_progress() + stall_timeout;
            tokio::select! {
                output = &mut upload => return Some(output),
                _ = tokio::time::sleep_until(deadline) => {
                    if self.last_progress() + stall_timeout <= Instant::now() {
                        return None;
                    }
                }
            }
        }
    }
}

/// The stream sent as an upload body: `data`, ended with an error (which aborts the
/// request) as soon as it differs from the expected size or, at its end, digest.
pub(crate) struct UploadBody<S> {
    data: Pin<Box<S>>,
    hasher: Option<Hasher>,
    sent: u64,
    expected_size: u64,
    expected_digest: String,
    what: String,
    watch: Arc<UploadWatch>,
    done: bool,
}

impl<S> UploadBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    /// Wraps `data`, which must be `expected_size` bytes hashing to `expected_digest`
    /// (whose algorithm the caller has checked is supported).
    pub(crate) fn new(
        data: S,
        expected_size: u64,
        expected_digest: &str,
        what: String,
        watch: Arc<UploadWatch>,
    ) -> Self {
        UploadBody {
            data: Box::pin(data),
            hasher: Hasher::for_digest(expected_digest),
            sent: 0,
            expected_size,
            expected_digest: expected_digest.to_string(),
            what,
            watch,
            done: false,
        }
    }

    /// Compares the digest of everything sent with the expected one (once: later
    /// calls pass).
    fn check_digest(&mut self) -> Result<(), RegistryError> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let actual = hasher.finish();
        if actual != self.expected_digest {
            return Err(RegistryError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected_digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Records `err` as the reason the upload stopped and ends the body with an error.
    fn abort(&mut self, err: RegistryError) -> Poll<Option<Result<Bytes, OciDistributionError>>> {
        let message = err.to_string();
        self.watch.set_verdict(err);
        self.done = true;
        Poll::Ready(Some(Err(OciDistributionError::IoError(
            std::io::Error::other(message),
        ))))
    }
}

impl<S> Stream for UploadBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    type Item = Result<Bytes, OciDistributionError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.data.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.sent += chunk.len() as u64;
                if this.sent > this.expected_size {
                    let err = RegistryError::SizeMismatch {
                        what: this.what.clone(),
                        expected: this.expected_size,
                        actual: this.sent,
                    };
                    return this.abort(err);
                }
                if let Some(hasher) = this.hasher.as_mut() {
                    hasher.update(&chunk);
                }
                // The HTTP layer stops reading once it has sent the announced length,
                // so the digest is checked before the last chunk is handed over.
                if this.sent == this.expected_size {
                    if let Err(err) = this.check_digest() {
                        return this.abort(err);
                    }
                }
                this.watch.touch();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(source))) => {
                let err = RegistryError::UploadSource {
                    what: this.what.clone(),
                    source,
                };
                this.abort(err)
            }
            Poll::Ready(None) => {
                if this.sent != this.expected_size {
                    let err = RegistryError::SizeMismatch {
                        what: this.what.clone(),
                        expected: this.expected_size,
                        actual: this.sent,
                    };
                    return this.abort(err);
                }
                if let Err(err) = this.check_digest() {
                    return this.abort(err);
                }
                this.done = true;
                this.watch.touch();
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;
    use futures::StreamExt;

    async fn drain(
        data: Vec<&'static [u8]>,
        size: u64,
        digest: &str,
    ) -> (Vec<u8>, usize, Option<RegistryError>) {
        let watch = UploadWatch::new();
        let items: Vec<Result<Bytes, std::io::Error>> = data
            .into_iter()
            .map(|d| Ok(Bytes::from_static(d)))
            .collect();
        let body = UploadBody::new(
            futures::stream::iter(items),
            size,
            digest,
            "upload".into(),
            watch.clone(),
        );
        let results: Vec<_> = body.collect().await;
        let passed: Vec<u8> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|b| b.to_vec())
            .collect();
        let errors = results.iter().filter(|r| r.is_err()).count();
        (passed, errors, watch.take_verdict())
    }

    #[tokio::test]
    async fn a_matching_body_passes_untouched() {
        let (passed, errors, verdict) = drain(vec![b"ab", b"c"], 3, &sha256_digest(b"abc")).await;
        assert_eq!(passed, b"abc");
        assert_eq!(errors, 0);
        assert!(verdict.is_none());
    }

    #[tokio::test]
    async fn wrong_bytes_or_lengths_abort_the_body() {
        // The last chunk is withheld, so the upload never completes.
        let (passed, errors, verdict) = drain(vec![b"ab", b"d"], 3, &sha256_digest(b"abc")).await;
        assert_eq!(passed, b"ab");
        assert_eq!(errors, 1);
        assert!(matches!(
            verdict,
            Some(RegistryError::DigestMismatch { .. })
        ));
        let (_, _, verdict) = drain(vec![b"ab"], 3, &sha256_digest(b"abc")).await;
        assert!(matches!(
            verdict,
            Some(RegistryError::SizeMismatch { actual: 2, .. })
        ));
        let (_, _, verdict) = drain(vec![b"ab", b"cd"], 3, &sha256_digest(b"abc")).await;
        assert!(matches!(
            verdict,
            Some(RegistryError::SizeMismatch { actual: 4, .. })
        ));
    }

    #[tokio::test]
    async fn the_watch_gives_up_only_without_progress() {
        let watch = UploadWatch::new();
        let finished = watch
            .run(
                tokio::time::sleep(Duration::from_millis(10)),
                Duration::from_secs(5),
            )
            .await;
        assert!(finished.is_some());
        let started = std::time::Instant::now();
        let stalled = watch
            .run(futures::future::pending::<()>(), Duration::from_millis(100))
            .await;
        assert!(stalled.is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
