//! Pushing an image from the store to a registry: every blob the registry lacks is
//! uploaded straight from the content store (streamed, never whole in memory), then the
//! manifests, and the index last, under the tag.
//!
//! An index is pushed whole when every manifest it lists is in the store (or when all
//! platforms are asked for), so the pushed image has the same digest as the local one;
//! otherwise only the platform's manifest is pushed, under the tag.

use std::collections::BTreeMap;

use berth_registry::{Reference, RegistryClient, RegistryOptions};
use futures::StreamExt;

use crate::connection::Api;
use crate::content::{blob_info, read_blob, read_stream};
use crate::error::{ClientError, Result};
use crate::image::{get_image, select_manifests, ImageTree};
use crate::oci::{media_types, parse_manifest, Descriptor, ObjectKind, MAX_JSON_BYTES};
use crate::platform::{Platform, PlatformSelection};
use crate::progress::{ItemState, Progress};
use crate::pull::DEFAULT_CONCURRENT_FETCHES;
use crate::remote::{by_digest, registry_error, to_registry};

/// How an image is pushed.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The platform pushed when the local index is not complete.
    pub platform: Platform,
    /// Push every platform's manifest (all must be in the store).
    pub all_platforms: bool,
    /// Most blobs uploaded at once.
    pub max_concurrent: usize,
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Where progress goes.
    pub progress: Progress,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            platform: Platform::host(),
            all_platforms: false,
            max_concurrent: DEFAULT_CONCURRENT_FETCHES,
            registry: RegistryOptions::default(),
            progress: Progress::none(),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// What the tag now points at (its digest is the pushed image's).
    pub target: Descriptor,
    /// Blobs uploaded.
    pub uploaded: Vec<String>,
    /// Blobs the registry had already.
    pub already_there: Vec<String>,
}

/// Pushes the local image `local` to the registry reference `remote`
/// (`registry/repository:tag`).
pub async fn push(
    api: &Api,
    local: &str,
    remote: &str,
    options: &PushOptions,
) -> Result<PushOutcome> {
    let record = get_image(api, local).await?;
    let reference = Reference::parse(remote)?;
    let client = RegistryClient::new(&reference, options.registry.clone())?;
    let (target, tree) = what_to_push(api, local, &record.target, options).await?;

    // Every blob of every manifest, once.
    let mut manifests = Vec::with_capacity(tree.manifests.len());
    let mut blobs: BTreeMap<String, Descriptor> = BTreeMap::new();
    for descriptor in &tree.manifests {
        let bytes = read_blob(api, &descriptor.digest, MAX_JSON_BYTES).await?;
        let manifest = parse_manifest(&format!("manifest {}", descriptor.digest), &bytes)?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            blobs
                .entry(blob.digest.clone())
                .or_insert_with(|| blob.clone());
        }
        manifests.push((descriptor.clone(), bytes));
    }
    let progress = &options.progress;
    for blob in blobs.values() {
        progress.item(
            &blob.digest,
            blob.kind().progress_kind(),
            ItemState::Waiting,
            0,
            blob.size,
        );
    }
    let mut uploads = futures::stream::iter(blobs.into_values())
        .map(|blob| {
            let (client, reference) = (&client, &reference);
            async move {
                let uploaded = upload_blob(api, client, reference, &blob, progress).await?;
                Ok::<_, ClientError>((blob.digest, uploaded))
            }
        })
        .buffer_unordered(options.max_concurrent.max(1));
    let mut outcome = PushOutcome {
        target: target.clone(),
        uploaded: Vec::new(),
        already_there: Vec::new(),
    };
    while let Some(result) = uploads.next().await {
        let (digest, uploaded) = result?;
        if uploaded {
            outcome.uploaded.push(digest);
        } else {
            outcome.already_there.push(digest);
        }
    }

    // Manifests an index lists go by digest; the target goes last, under the tag.
    for (descriptor, bytes) in manifests {
        if descriptor.digest != target.digest {
            push_document(
                &client,
                &by_digest(&reference, &descriptor.digest)?,
                &descriptor,
                bytes,
                progress,
            )
            .await?;
        }
    }
    for (descriptor, _) in tree.indexes.iter().rev() {
        let bytes = read_blob(api, &descriptor.digest, MAX_JSON_BYTES).await?;
        let to = if descriptor.digest == target.digest {
            reference.clone()
        } else {
            by_digest(&reference, &descriptor.digest)?
        };
        push_document(&client, &to, descriptor, bytes, progress).await?;
    }
    if target.kind() != ObjectKind::Index {
        let bytes = read_blob(api, &target.digest, MAX_JSON_BYTES).await?;
        push_document(&client, &reference, &target, bytes, progress).await?;
    }
    progress.note(format!("pushed {remote} ({})", target.digest));
    Ok(outcome)
}

/// The descriptor the tag will point at, and the indexes and manifests to push.
async fn what_to_push(
    api: &Api,
    local: &str,
    target: &Descriptor,
    options: &PushOptions,
) -> Result<(Descriptor, ImageTree)> {
    let everything = select_manifests(api, target, &PlatformSelection::All).await?;
    if target.kind() != ObjectKind::Index {
        return Ok((target.clone(), everything));
    }
    let mut missing = Vec::new();
    for manifest in &everything.manifests {
        if blob_info(api, &manifest.digest).await?.is_none() {
            missing.push(manifest.digest.clone());
        }
    }
    if missing.is_empty() {
        return Ok((target.clone(), everything));
    }
    if options.all_platforms {
        return Err(ClientError::NotFound {
            what: format!(
                "manifests {} of image {local:?} (pull it with all platforms first)",
                missing.join(", ")
            ),
        });
    }
    let only = PlatformSelection::Only(options.platform.clone());
    let chosen = select_manifests(api, target, &only).await?;
    let manifest =
        chosen
            .manifests
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NoMatchingPlatform {
                image: local.to_string(),
                platform: options.platform.to_string(),
            })?;
    let manifest = Descriptor {
        platform: None,
        annotations: BTreeMap::new(),
        ..manifest
    };
    Ok((
        manifest.clone(),
        ImageTree {
            indexes: Vec::new(),
            manifests: vec![manifest],
        },
    ))
}

/// Uploads one blob unless the registry has it; true if it was uploaded.
async fn upload_blob(
    api: &Api,
    client: &RegistryClient,
    reference: &Reference,
    blob: &Descriptor,
    progress: &Progress,
) -> Result<bool> {
    let kind = blob.kind().progress_kind();
    if client
        .blob_exists(reference, &blob.digest)
        .await
        .map_err(registry_error)?
    {
        progress.item(&blob.digest, kind, ItemState::Exists, blob.size, blob.size);
        return Ok(false);
    }
    let digest = blob.digest.clone();
    let total = blob.size;
    let watcher = progress.clone();
    let mut done = 0u64;
    let data = read_stream(api, &blob.digest, 0).await?.map(move |chunk| {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
        done += chunk.len() as u64;
        watcher.item(&digest, kind, ItemState::Transferring, done, total);
        Ok(chunk)
    });
    let result = client
        .push_blob(reference, &to_registry(blob), data)
        .await
        .map_err(registry_error);
    match result {
        Ok(()) => {
            progress.item(&blob.digest, kind, ItemState::Done, blob.size, blob.size);
            Ok(true)
        }
        Err(e) => {
            progress.item(&blob.digest, kind, ItemState::Failed, 0, blob.size);
            Err(e)
        }
    }
}

/// Pushes a manifest or index under `to`, checking the registry stored the same
/// digest.
async fn push_document(
    client: &RegistryClient,
    to: &Reference,
    descriptor: &Descriptor,
    bytes: bytes::Bytes,
    progress: &Progress,
) -> Result<()> {
    let media_type = if descriptor.media_type.is_empty() {
        match descriptor.kind() {
            ObjectKind::Index => media_types::OCI_INDEX,
            _ => media_types::OCI_MANIFEST,
        }
    } else {
        descriptor.media_type.as_str()
    };
    let kind = descriptor.kind().progress_kind();
    progress.item(
        &descriptor.digest,
        kind,
        ItemState::Transferring,
        0,
        descriptor.size,
    );
    let digest = client
        .push_manifest(to, media_type, bytes)
        .await
        .map_err(registry_error)?;
    if digest != descriptor.digest {
        return Err(ClientError::DigestMismatch {
            what: format!("manifest pushed to {to}"),
            detail: format!(
                "the registry stored {digest}, expected {}",
                descriptor.digest
            ),
        });
    }
    progress.item(
        &descriptor.digest,
        kind,
        ItemState::Done,
        descriptor.size,
        descriptor.size,
    );
    Ok(())
}
