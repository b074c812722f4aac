//! The seam between this crate and the registry client (berth-registry): descriptor and
//! platform conversions, registry errors as this crate's, and a registry blob as a
//! resumable ingest source.

use futures::future::BoxFuture;
use futures::StreamExt;

use berth_registry::{Reference, RegistryClient, RegistryError};

use crate::content::{BlobSource, SourceStream};
use crate::error::{ClientError, Result};
use crate::oci::Descriptor;
use crate::platform::Platform;

/// A descriptor from the registry client as this crate's.
pub fn from_registry(descriptor: &berth_registry::Descriptor) -> Descriptor {
    Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        platform: descriptor.platform.as_ref().map(|p| Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone(),
            ..Platform::default()
        }),
        annotations: descriptor.annotations.clone(),
    }
}

/// This crate's descriptor as the registry client's.
pub fn to_registry(descriptor: &Descriptor) -> berth_registry::Descriptor {
    berth_registry::Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        platform: descriptor
            .platform
            .as_ref()
            .map(|p| berth_registry::Platform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            }),
        annotations: descriptor.annotations.clone(),
    }
}

/// A registry error as this crate's: bytes that do not match their digest or size are
/// [`ClientError::DigestMismatch`] (so an ingest of them is thrown away), the rest
/// [`ClientError::Registry`].
pub fn registry_error(error: RegistryError) -> ClientError {
    match error {
        RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => {
            let detail = error.to_string();
            let what = match &error {
                RegistryError::DigestMismatch { what, .. }
                | RegistryError::SizeMismatch { what, .. } => what.clone(),
                _ => String::new(),
            };
            ClientError::DigestMismatch { what, detail }
        }
        other => ClientError::Registry(other),
    }
}

/// The repository of `reference` pinned to `digest`, without a tag: how manifests an
/// index lists are pushed.
pub fn by_digest(reference: &Reference, digest: &str) -> Result<Reference> {
    Ok(Reference::parse(&format!("{}@{digest}", reference.name()))?)
}

/// A blob of a registry repository, fetched from any offset (a `Range` request), so
/// that an interrupted ingest continues where it stopped.
pub struct RegistrySource {
    client: RegistryClient,
    reference: Reference,
    descriptor: berth_registry::Descriptor,
}

impl RegistrySource {
    /// The blob `descriptor` of `reference`'s repository.
    pub fn new(client: &RegistryClient, reference: &Reference, descriptor: &Descriptor) -> Self {
        RegistrySource {
            client: client.clone(),
            reference: reference.clone(),
            descriptor: to_registry(descriptor),
        }
    }
}

impl BlobSource for RegistrySource {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<SourceStream>> {
        Box::pin(async move {
            let stream = self
                .client
                .fetch_blob(&self.reference, &self.descriptor, offset)
                .await
                .map_err(registry_error)?;
            Ok(SourceStream {
                start: offset,
                bytes: stream.map(|chunk| chunk.map_err(registry_error)).boxed(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{media_types, sha256_digest};

    #[test]
    fn descriptors_convert_both_ways() {
        let mut ours = Descriptor::of_bytes(media_types::OCI_MANIFEST, b"m");
        ours.platform = Some(Platform::parse("linux/arm/v7").unwrap());
        ours.annotations.insert("a".to_string(), "b".to_string());
        let theirs = to_registry(&ours);
        assert_eq!(
            theirs.platform.as_ref().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(from_registry(&theirs), ours);
    }

    #[test]
    fn wrong_bytes_from_a_registry_are_digest_mismatches() {
        let error = registry_error(RegistryError::DigestMismatch {
            what: "blob x".to_string(),
            expected: sha256_digest(b"a"),
            actual: sha256_digest(b"b"),
        });
        assert!(matches!(error, ClientError::DigestMismatch { ref what, .. } if what == "blob x"));
        let other = registry_error(RegistryError::NotFound {
            what: "blob y".to_string(),
        });
        assert!(matches!(other, ClientError::Registry(_)));
        assert_eq!(other.to_string(), "blob y: not found");
    }

    #[test]
    fn digest_references_drop_the_tag() {
        let reference = Reference::parse("127.0.0.1:5000/busybox:latest").unwrap();
        let digest = sha256_digest(b"m");
        let pinned = by_digest(&reference, &digest).unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        assert_eq!(pinned.name(), reference.name());
    }
}
