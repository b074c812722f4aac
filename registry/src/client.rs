//! [`RegistryClient`]: the OCI distribution API operations a pull and a push need,
//! each one bounded by the stall timeout and reporting errors that name what failed.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use crate::auth_probe::AuthProbe;
use crate::blob_stream::BlobStream;
use crate::credentials::Credentials;
use crate::descriptor::Descriptor;
use crate::digest::{check_digest_syntax, digest_like, sha256_digest};
use crate::error::RegistryError;
use crate::manifest::{document_media_type, MAX_MANIFEST_SIZE};
use crate::media_types;
use crate::oci_errors::{from_oci, whole_seconds, ErrorContext};
use crate::options::RegistryOptions;
use crate::reference::Reference;
use crate::upload::{UploadBody, UploadWatch};

/// The `User-Agent` sent to registries.
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));
/// Longest wait for a TCP (and TLS) connection, however long the stall timeout is.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one registry for one pull or push, shared by all its transfers
/// (clone it freely: clones share connections and tokens).
#[derive(Clone)]
pub struct RegistryClient {
    /// Used for manifest fetches, which always carry the credentials.
    manifests: Client,
    /// Used for everything else; carries credentials only if the registry asks.
    transfers: Client,
    auth: RegistryAuth,
    registry: String,
    stall_timeout: Duration,
    probe: Arc<AuthProbe>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for the registry of `reference`, speaking HTTPS or plain HTTP as
    /// `options` say. Nothing is sent until the first operation.
    pub fn new(reference: &Reference, options: RegistryOptions) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let registry = reference.registry().to_string();
        let plain_http = options.uses_plain_http(&registry);
        let connect_timeout = options.stall_timeout.min(MAX_CONNECT_TIMEOUT);
        let build_error = |detail: String| {
            RegistryError::protocol(
                format!("setting up a client for registry {registry}"),
                detail,
            )
        };
        let make_client = || {
            let config = ClientConfig {
                protocol: if plain_http {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                accept_invalid_certificates: options.insecure_skip_verify,
                // One PUT per blob, streamed; the size is always known.
                use_monolithic_push: true,
                platform_resolver: None,
                connect_timeout: Some(connect_timeout),
                user_agent: USER_AGENT,
                ..ClientConfig::default()
            };
            Client::try_from(config).map_err(|e| build_error(e.to_string()))
        };
        // The host requests actually go to (Docker Hub's API is not at `docker.io`).
        let api_host = to_oci(reference, false).resolve_registry().to_string();
        let probe = AuthProbe::new(
            &api_host,
            plain_http,
            options.insecure_skip_verify,
            connect_timeout,
            USER_AGENT,
        )
        .map_err(|e| build_error(e.to_string()))?;
        let auth = match options.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => RegistryAuth::Basic(username, password),
        };
        Ok(RegistryClient {
            manifests: make_client()?,
            transfers: make_client()?,
            auth,
            registry,
            stall_timeout: options.stall_timeout,
            probe: Arc::new(probe),
        })
    }

    /// The registry host this client talks to.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Fetches what `reference` points at (a manifest or an index) and describes it:
    /// the digest is computed over the bytes received and checked against the
    /// registry's `Docker-Content-Digest` and against the reference's own digest.
    pub async fn resolve(
        &self,
        reference: &Reference,
    ) -> Result<(Descriptor, Bytes), RegistryError> {
        self.check_registry(reference)?;
        let what = format!("manifest {reference}");
        let ctx = self.context(&what);
        let oci_ref = to_oci(reference, false);
        let bytes = self
            .within_stall(&ctx, async {
                self.authorize(&self.manifests, &oci_ref, &ctx).await?;
                let (bytes, _) = self
                    .manifests
                    .pull_manifest_raw(&oci_ref, &self.auth, media_types::MANIFEST_ACCEPT)
                    .await
                    .map_err(|e| from_oci(e, &ctx))?;
                Ok(bytes)
            })
            .await?;
        check_manifest_size(&what, bytes.len() as u64)?;
        let digest = match reference.digest() {
            Some(expected) => {
                verify_digest(&what, expected, &bytes)?;
                expected.to_string()
            }
            None => sha256_digest(&bytes),
        };
        let media_type = document_media_type(&bytes, &what)?;
        let descriptor = Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        Ok((descriptor, bytes))
    }

    /// Fetches the manifest (or index) `desc` of `reference`'s repository by digest,
    /// checking its digest and size.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<Bytes, RegistryError> {
        self.check_registry(reference)?;
        let what = format!("manifest {}@{}", reference.name(), desc.digest);
        desc.check(&what)?;
        check_manifest_size(&what, desc.size)?;
        let ctx = self.context(&what);
        let oci_ref = to_oci(&reference.with_digest(&desc.digest), false);
        let bytes = self
            .within_stall(&ctx, async {
                self.authorize(&self.manifests, &oci_ref, &ctx).await?;
                let (bytes, _) = self
                    .manifests
                    .pull_manifest_raw(&oci_ref, &self.auth, media_types::MANIFEST_ACCEPT)
                    .await
                    .map_err(|e| from_oci(e, &ctx))?;
                Ok(bytes)
            })
            .await?;
        verify_digest(&what, &desc.digest, &bytes)?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Starts fetching the blob `desc` of `reference`'s repository from byte `offset`
    /// (to resume a partial download); see [`BlobStream`] for what the stream checks.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        self.check_registry(reference)?;
        let what = format!("blob {}@{}", reference.name(), desc.digest);
        desc.check(&what)?;
        if offset > desc.size {
            return Err(RegistryError::protocol(
                what,
                format!("offset {offset} is past the blob's size {}", desc.size),
            ));
        }
        if offset == desc.size {
            return Ok(BlobStream::empty(
                self.stall_timeout,
                self.registry.clone(),
                what,
            ));
        }
        let ctx = self.context(&what);
        let oci_ref = to_oci(reference, false);
        let digest = desc.digest.as_str();
        let (inner, skip) = self
            .within_stall(&ctx, async {
                self.authorize(&self.transfers, &oci_ref, &ctx).await?;
                if offset == 0 {
                    let stream = self
                        .transfers
                        .pull_blob_stream(&oci_ref, digest)
                        .await
                        .map_err(|e| from_oci(e, &ctx))?;
                    return Ok((stream.stream, 0));
                }
                let response = self
                    .transfers
                    .pull_blob_stream_partial(&oci_ref, digest, offset, None)
                    .await
                    .map_err(|e| from_oci(e, &ctx))?;
                match response {
                    // The registry ignored the range: skip the start here.
                    BlobResponse::Full(stream) => Ok((stream.stream, offset)),
                    BlobResponse::Partial(stream) => {
                        let wanted = desc.size - offset;
                        match stream.content_length {
                            Some(length) if length != wanted => Err(RegistryError::protocol(
                                &what,
                                format!(
                                    "asked for bytes {offset}- of {} and got {length} bytes",
                                    desc.size
                                ),
                            )),
                            _ => Ok((stream.stream, 0)),
                        }
                    }
                }
            })
            .await?;
        Ok(BlobStream::new(
            inner,
            skip,
            desc.size - offset,
            self.stall_timeout,
            self.registry.clone(),
            what,
        ))
    }

    /// Whether `reference`'s repository already has the blob `digest`.
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        self.check_registry(reference)?;
        let what = format!("blob {}@{digest}", reference.name());
        check_digest_syntax(digest).map_err(|reason| RegistryError::protocol(&what, reason))?;
        let ctx = self.context(&what);
        let oci_ref = to_oci(reference, false);
        self.within_stall(&ctx, async {
            self.authorize(&self.transfers, &oci_ref, &ctx).await?;
            self.transfers
                .blob_exists(&oci_ref, digest)
                .await
                .map_err(|e| from_oci(e, &ctx))
        })
        .await
    }

    /// Uploads the blob `desc` to `reference`'s repository from `data`, which must be
    /// exactly `desc.size` bytes with digest `desc.digest`: data that is not fails the
    /// upload before the registry commits it.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        data: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), RegistryError> {
        self.check_registry(reference)?;
        let what = format!("upload of blob {} to {}", desc.digest, reference.name());
        desc.check(&what)?;
        let ctx = self.context(&what);
        let oci_ref = to_oci(reference, false);
        let watch = UploadWatch::new();
        let body = UploadBody::new(data, desc.size, &desc.digest, what.clone(), watch.clone());
        let upload = async {
            self.authorize(&self.transfers, &oci_ref, &ctx).await?;
            self.transfers
                .push_blob_stream(&oci_ref, body, &desc.digest, Some(desc.size))
                .await
                .map_err(|e| from_oci(e, &ctx))
        };
        match watch.run(upload, self.stall_timeout).await {
            None => Err(ctx.stalled()),
            Some(Ok(_location)) => Ok(()),
            Some(Err(err)) => Err(watch.take_verdict().unwrap_or(err)),
        }
    }

    /// Uploads the manifest (or index) `bytes` of `media_type` under `reference`'s tag
    /// (or digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        self.check_registry(reference)?;
        let what = format!("manifest push to {reference}");
        check_manifest_size(&what, bytes.len() as u64)?;
        let digest = sha256_digest(&bytes);
        if let Some(expected) = reference.digest() {
            verify_digest(&what, expected, &bytes)?;
        }
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::UnsupportedMediaType {
                what: what.clone(),
                media_type: media_type.to_string(),
            }
        })?;
        let ctx = self.context(&what);
        let oci_ref = to_oci(reference, true);
        self.within_stall(&ctx, async {
            self.authorize(&self.transfers, &oci_ref, &ctx).await?;
            self.transfers
                .push_manifest_raw(&oci_ref, bytes, content_type)
                .await
                .map_err(|e| from_oci(e, &ctx))
        })
        .await?;
        Ok(digest)
    }

    /// Refuses a reference of another registry than this client's.
    fn check_registry(&self, reference: &Reference) -> Result<(), RegistryError> {
        if reference.registry() == self.registry {
            return Ok(());
        }
        Err(RegistryError::InvalidReference {
            reference: reference.to_string(),
            reason: format!("this client talks to registry {}", self.registry),
        })
    }

    /// Hands the credentials to `client` when the registry asks for authentication.
    async fn authorize(
        &self,
        client: &Client,
        oci_ref: &oci_client::Reference,
        ctx: &ErrorContext<'_>,
    ) -> Result<(), RegistryError> {
        if self.probe.challenges(ctx).await? {
            client
                .store_auth_if_needed(oci_ref.resolve_registry(), &self.auth)
                .await;
        }
        Ok(())
    }

    /// Runs `operation`, failing with [`RegistryError::Stalled`] if it takes longer
    /// than the stall timeout (used for requests whose answer is small).
    async fn within_stall<T>(
        &self,
        ctx: &ErrorContext<'_>,
        operation: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        tokio::time::timeout(self.stall_timeout, operation)
            .await
            .map_err(|_| ctx.stalled())?
    }

    fn context<'a>(&'a self, what: &'a str) -> ErrorContext<'a> {
        ErrorContext {
            registry: &self.registry,
            what,
            stall_seconds: whole_seconds(self.stall_timeout),
        }
    }
}

/// The distribution client's reference for `reference`: by digest when it has one
/// (unless `prefer_tag` and it has a tag), else by tag.
fn to_oci(reference: &Reference, prefer_tag: bool) -> oci_client::Reference {
    let registry = reference.registry().to_string();
    let repository = reference.repository().to_string();
    match (reference.tag(), reference.digest()) {
        (Some(tag), _) if prefer_tag => {
            oci_client::Reference::with_tag(registry, repository, tag.to_string())
        }
        (_, Some(digest)) => {
            oci_client::Reference::with_digest(registry, repository, digest.to_string())
        }
        (tag, None) => oci_client::Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or(crate::reference::DEFAULT_TAG).to_string(),
        ),
    }
}

/// Refuses a manifest larger than [`MAX_MANIFEST_SIZE`].
fn check_manifest_size(what: &str, size: u64) -> Result<(), RegistryError> {
    if size > MAX_MANIFEST_SIZE {
        return Err(RegistryError::protocol(
            what,
            format!("{size} bytes is more than the {MAX_MANIFEST_SIZE}-byte limit for manifests"),
        ));
    }
    Ok(())
}

/// Checks that `bytes` have the digest `expected`.
fn verify_digest(what: &str, expected: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    let actual = digest_like(expected, bytes)
        .ok_or_else(|| RegistryError::protocol(what, format!("cannot verify digest {expected}")))?;
    if actual != expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Makes `ring` the process's TLS crypto provider unless one is installed already.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error only means another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Drains `stream` into one buffer; a convenience for small blobs such as configs.
pub async fn read_blob_to_end(mut stream: BlobStream) -> Result<Bytes, RegistryError> {
    let mut buffer = Vec::with_capacity(stream.expected_len().min(64 * 1024 * 1024) as usize);
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_references_use_the_digest_unless_pushing_a_tag() {
        let digest = sha256_digest(b"x");
        let both = Reference::parse(&format!("127.0.0.1:5000/a/b:v1@{digest}")).unwrap();
        assert_eq!(to_oci(&both, false).digest(), Some(digest.as_str()));
        assert_eq!(to_oci(&both, true).tag(), Some("v1"));
        let tagged = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(to_oci(&tagged, false).tag(), Some("v1"));
        assert_eq!(to_oci(&tagged, false).repository(), "a/b");
        assert_eq!(to_oci(&tagged, false).registry(), "127.0.0.1:5000");
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(to_oci(&hub, false).resolve_registry(), "index.docker.io");
        assert_eq!(to_oci(&hub, false).repository(), "library/busybox");
    }

    #[test]
    fn clients_and_streams_can_be_shared_across_tasks() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        fn streamed<T: Stream<Item = Result<Bytes, RegistryError>> + Send + Unpin + 'static>() {}
        shared::<RegistryClient>();
        streamed::<BlobStream>();
    }

    #[test]
    fn a_client_refuses_references_of_other_registries() {
        let reference = Reference::parse("127.0.0.1:5000/app").unwrap();
        let client = RegistryClient::new(&reference, RegistryOptions::default()).unwrap();
        assert_eq!(client.registry(), "127.0.0.1:5000");
        let other = Reference::parse("127.0.0.1:5001/app").unwrap();
        assert!(matches!(
            client.check_registry(&other),
            Err(RegistryError::InvalidReference { .. })
        ));
    }

    #[test]
    fn manifests_over_the_limit_are_refused() {
        assert!(check_manifest_size("m", MAX_MANIFEST_SIZE).is_ok());
        assert!(check_manifest_size("m", MAX_MANIFEST_SIZE + 1).is_err());
        let bytes = b"{}";
        assert!(verify_digest("m", &sha256_digest(bytes), bytes).is_ok());
        assert!(matches!(
            verify_digest("m", &sha256_digest(b"other"), bytes),
            Err(RegistryError::DigestMismatch { .. })
        ));
    }
}
