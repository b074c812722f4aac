//! Images in the store: image records (name → target descriptor) over the Images
//! service, and the walk from a target through indexes to the manifest for a platform,
//! its config and its layers, all read from the content store.

use std::collections::HashMap;
use std::time::SystemTime;

use berth_proto::containerd::services::images::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use berth_proto::containerd::services::snapshots::v1::StatSnapshotRequest;

use crate::connection::Api;
use crate::content::{read_blob, Labels};
use crate::error::{ClientError, Result};
use crate::oci::{
    parse_config, parse_index, parse_manifest, sha256_digest, Descriptor, ImageConfig, Index,
    Manifest, ObjectKind, MAX_INDEX_DEPTH, MAX_JSON_BYTES,
};
use crate::platform::{Platform, PlatformSelection};

/// An image record: a name and the descriptor of its index or manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image's name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The index or manifest the name points at.
    pub target: Descriptor,
    /// The record's labels.
    pub labels: Labels,
    /// When the record was created (set by the daemon).
    pub created_at: Option<SystemTime>,
    /// When the record was last changed (set by the daemon).
    pub updated_at: Option<SystemTime>,
}

impl ImageRecord {
    /// A new record naming `target`, without labels.
    pub fn new(name: &str, target: Descriptor) -> ImageRecord {
        ImageRecord {
            name: name.to_string(),
            target,
            labels: Labels::new(),
            created_at: None,
            updated_at: None,
        }
    }

    fn from_wire(image: Image) -> Result<ImageRecord> {
        let target = image.target.as_ref().ok_or_else(|| {
            ClientError::image(format!("image record {:?}", image.name), "it has no target")
        })?;
        Ok(ImageRecord {
            target: Descriptor::from_wire(target)?,
            labels: image.labels.into_iter().collect(),
            created_at: image.created_at.and_then(|t| SystemTime::try_from(t).ok()),
            updated_at: image.updated_at.and_then(|t| SystemTime::try_from(t).ok()),
            name: image.name,
        })
    }

    fn to_wire(&self) -> Image {
        Image {
            name: self.name.clone(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target: Some(self.target.to_wire()),
            created_at: None,
            updated_at: None,
        }
    }
}

/// The image record `name`; [`ClientError::NotFound`] if there is none.
pub async fn get_image(api: &Api, name: &str) -> Result<ImageRecord> {
    let request = GetImageRequest {
        name: name.to_string(),
    };
    match api.images().get(request).await {
        Ok(reply) => match reply.into_inner().image {
            Some(image) => ImageRecord::from_wire(image),
            None => Err(image_not_found(name)),
        },
        Err(status) if status.code() == tonic::Code::NotFound => Err(image_not_found(name)),
        Err(status) => Err(ClientError::rpc(format!("getting image {name:?}"))(status)),
    }
}

/// Every image record matching any of `filters` (all records without filters).
pub async fn list_images(api: &Api, filters: &[String]) -> Result<Vec<ImageRecord>> {
    let request = ListImagesRequest {
        filters: filters.to_vec(),
    };
    let images = api
        .images()
        .list(request)
        .await
        .map_err(ClientError::rpc("listing images"))?
        .into_inner()
        .images;
    images.into_iter().map(ImageRecord::from_wire).collect()
}

/// Creates the record, or replaces the target and labels of an existing one of that
/// name, as containerd's client does after a pull or import.
pub async fn save_image(api: &Api, record: &ImageRecord) -> Result<ImageRecord> {
    let created = api
        .images()
        .create(CreateImageRequest {
            image: Some(record.to_wire()),
        })
        .await;
    let image = match created {
        Ok(reply) => reply.into_inner().image,
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            api.images()
                .update(UpdateImageRequest {
                    image: Some(record.to_wire()),
                    update_mask: None,
                })
                .await
                .map_err(ClientError::rpc(format!(
                    "updating image {:?}",
                    record.name
                )))?
                .into_inner()
                .image
        }
        Err(status) => {
            return Err(ClientError::rpc(format!(
                "creating image {:?}",
                record.name
            ))(status))
        }
    };
    match image {
        Some(image) => ImageRecord::from_wire(image),
        None => Ok(record.clone()),
    }
}

/// Deletes the image record `name` (its blobs go once nothing else references them;
/// with `sync`, the daemon collects them before answering).
pub async fn delete_image(api: &Api, name: &str, sync: bool) -> Result<()> {
    let request = DeleteImageRequest {
        name: name.to_string(),
        sync,
    };
    match api.images().delete(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Err(image_not_found(name)),
        Err(status) => Err(ClientError::rpc(format!("deleting image {name:?}"))(status)),
    }
}

fn image_not_found(name: &str) -> ClientError {
    ClientError::NotFound {
        what: format!("image {name:?}"),
    }
}

/// One image (one platform) read from the store: manifest, config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The indexes walked from the target to the manifest, outermost first.
    pub indexes: Vec<Descriptor>,
    /// The manifest's descriptor (with the platform its index gave it, if any).
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The image config.
    pub config: ImageConfig,
    /// The platform the image is for (from the config, else the index).
    pub platform: Platform,
}

impl ResolvedImage {
    /// The config blob's descriptor.
    pub fn config_descriptor(&self) -> &Descriptor {
        &self.manifest.config
    }

    /// Digests of the uncompressed layers, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        &self.config.rootfs.diff_ids
    }

    /// The layers' chain IDs, bottom first: the names of their committed snapshots.
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(self.diff_ids())
    }

    /// The chain ID of the top layer: the snapshot a container of this image starts
    /// from (`None` for an image without layers).
    pub fn top_chain_id(&self) -> Option<String> {
        self.chain_ids().pop()
    }

    /// Each layer's blob descriptor with its diff id, bottom first.
    pub fn layers(&self) -> Vec<(Descriptor, String)> {
        self.manifest
            .layers
            .iter()
            .cloned()
            .zip(self.diff_ids().iter().cloned())
            .collect()
    }

    /// The image's size as `ctr images ls` reports it: every index walked, the
    /// manifest, the config and the (compressed) layers.
    pub fn size(&self) -> u64 {
        self.indexes.iter().map(|d| d.size).sum::<u64>()
            + self.manifest_descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|d| d.size).sum::<u64>()
    }
}

/// The chain IDs of a layer stack: `chain[0] = diff_id[0]`,
/// `chain[i] = sha256(chain[i-1] + " " + diff_id[i])` (the OCI image spec's rule).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The manifests of the image `target` an operation takes, and the indexes on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageTree {
    /// Every index walked with its parsed form, outermost first.
    pub indexes: Vec<(Descriptor, Index)>,
    /// The manifests selected, each with the platform its index gave it.
    pub manifests: Vec<Descriptor>,
}

/// Walks from `target` through its indexes to the manifests `selection` takes: every
/// one for [`PlatformSelection::All`], else the single best match for the platform.
/// Indexes are read from the store; manifests are not.
pub async fn select_manifests(
    api: &Api,
    target: &Descriptor,
    selection: &PlatformSelection,
) -> Result<ImageTree> {
    let mut tree = ImageTree::default();
    let mut candidates: Vec<Descriptor> = Vec::new();
    let mut pending = vec![(target.clone(), 0usize)];
    while let Some((descriptor, depth)) = pending.pop() {
        match descriptor.kind() {
            ObjectKind::Index => {
                if depth > MAX_INDEX_DEPTH {
                    return Err(ClientError::image(
                        format!("index {}", descriptor.digest),
                        format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                    ));
                }
                let what = format!("index {}", descriptor.digest);
                let bytes = read_blob(api, &descriptor.digest, MAX_JSON_BYTES).await?;
                let index = parse_index(&what, &bytes)?;
                // Children are visited in index order (the stack pops the last first).
                for child in index.manifests.iter().rev() {
                    pending.push((child.clone(), depth + 1));
                }
                tree.indexes.push((descriptor, index));
            }
            ObjectKind::Manifest => candidates.push(descriptor),
            // Attestations and other artifacts listed in an index are not images.
            _ if depth > 0 => {}
            _ => {
                return Err(ClientError::image(
                    format!("image target {}", descriptor.digest),
                    format!(
                        "media type {:?} is not an index or manifest",
                        descriptor.media_type
                    ),
                ))
            }
        }
    }
    tree.manifests = match selection {
        PlatformSelection::All => candidates,
        PlatformSelection::Only(platform) => {
            let best = if target.kind() == ObjectKind::Manifest {
                candidates.into_iter().next()
            } else {
                best_for_platform(candidates, platform)
            };
            best.into_iter().collect()
        }
    };
    Ok(tree)
}

/// The candidate that suits `platform` best (the first among equals); entries without
/// a platform only when no entry names one that matches.
pub fn best_for_platform(candidates: Vec<Descriptor>, platform: &Platform) -> Option<Descriptor> {
    let mut best: Option<(u32, Descriptor)> = None;
    let mut unnamed: Option<Descriptor> = None;
    for candidate in candidates {
        match &candidate.platform {
            Some(p) if platform.matches(p) => {
                let score = platform.preference(p);
                let better = match &best {
                    Some((best_score, _)) => score > *best_score,
                    None => true,
                };
                if better {
                    best = Some((score, candidate));
                }
            }
            Some(_) => {}
            None => {
                unnamed.get_or_insert(candidate);
            }
        }
    }
    best.map(|(_, d)| d).or(unnamed)
}

/// Reads the manifest and config of `manifest_descriptor` from the store; the layer
/// count must match the config's diff ids.
pub async fn read_manifest_and_config(
    api: &Api,
    manifest_descriptor: &Descriptor,
) -> Result<(Manifest, ImageConfig)> {
    let what = format!("manifest {}", manifest_descriptor.digest);
    let bytes = read_blob(api, &manifest_descriptor.digest, MAX_JSON_BYTES).await?;
    let manifest = parse_manifest(&what, &bytes)?;
    let config_what = format!("image config {}", manifest.config.digest);
    let config_bytes = read_blob(api, &manifest.config.digest, MAX_JSON_BYTES).await?;
    let config = parse_config(&config_what, &config_bytes)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ClientError::image(
            what,
            format!(
                "it lists {} layers but its config {} lists {} diff ids",
                manifest.layers.len(),
                manifest.config.digest,
                config.rootfs.diff_ids.len()
            ),
        ));
    }
    Ok((manifest, config))
}

/// Reads the image `target` for `platform`: through its indexes to the best manifest,
/// then that manifest and its config. A lone manifest whose config names another
/// platform is refused, as containerd does.
pub async fn resolve_image(
    api: &Api,
    image: &str,
    target: &Descriptor,
    platform: &Platform,
) -> Result<ResolvedImage> {
    let selection = PlatformSelection::Only(platform.clone());
    let tree = select_manifests(api, target, &selection).await?;
    let no_match = || ClientError::NoMatchingPlatform {
        image: image.to_string(),
        platform: platform.to_string(),
    };
    let manifest_descriptor = tree.manifests.into_iter().next().ok_or_else(no_match)?;
    let (manifest, config) = read_manifest_and_config(api, &manifest_descriptor).await?;
    let config_platform = config.platform();
    if !config_platform.os.is_empty()
        && !config_platform.architecture.is_empty()
        && manifest_descriptor.platform.is_none()
        && !platform.matches(&config_platform)
    {
        return Err(no_match());
    }
    let platform = match (&manifest_descriptor.platform, config_platform.os.is_empty()) {
        (_, false) => config_platform,
        (Some(p), true) => p.clone(),
        (None, true) => Platform::default(),
    };
    Ok(ResolvedImage {
        indexes: tree.indexes.into_iter().map(|(d, _)| d).collect(),
        manifest_descriptor,
        manifest,
        config,
        platform,
    })
}

/// Reads the image record `name` and resolves it for `platform`.
pub async fn resolve_named_image(
    api: &Api,
    name: &str,
    platform: &Platform,
) -> Result<(ImageRecord, ResolvedImage)> {
    let record = get_image(api, name).await?;
    let resolved = resolve_image(api, name, &record.target, platform).await?;
    Ok((record, resolved))
}

/// Whether the image's top layer is committed in `snapshotter` (all layers below it
/// are then too): what `ctr images check` calls unpacked.
pub async fn is_unpacked(api: &Api, image: &ResolvedImage, snapshotter: &str) -> Result<bool> {
    let Some(top) = image.top_chain_id() else {
        return Ok(true);
    };
    snapshot_exists(api, snapshotter, &top).await
}

/// Whether the snapshot `key` exists in `snapshotter`.
pub async fn snapshot_exists(api: &Api, snapshotter: &str, key: &str) -> Result<bool> {
    let request = StatSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    };
    match api.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(ClientError::rpc(format!("looking up snapshot {key:?}"))(
            status,
        )),
    }
}

/// The image's size for `platform` as `ctr images ls` reports it.
pub async fn image_size(api: &Api, record: &ImageRecord, platform: &Platform) -> Result<u64> {
    Ok(resolve_image(api, &record.name, &record.target, platform)
        .await?
        .size())
}

/// The tag part of an image name, as the `org.opencontainers.image.ref.name`
/// annotation of an exported archive holds it: the tag, or the digest for a name
/// pinned by digest, or `latest`.
pub fn ref_name_of(name: &str) -> String {
    if let Some((_, digest)) = name.split_once('@') {
        return digest.to_string();
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag.to_string(),
        None => "latest".to_string(),
    }
}

/// The labels of the record as a map the gRPC API carries.
pub fn wire_labels(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let c = sha256_digest(b"c");
        let chain = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chain[0], a);
        let ab = sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(chain[1], ab);
        assert_eq!(chain[2], sha256_digest(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    fn entry(name: &str, platform: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: crate::oci::media_types::OCI_MANIFEST.to_string(),
            digest: sha256_digest(name.as_bytes()),
            size: 1,
            platform: platform.map(|p| Platform::parse(p).unwrap()),
            ..Descriptor::default()
        }
    }

    #[test]
    fn the_best_platform_wins_and_unnamed_entries_are_a_fallback() {
        let arm = Platform::parse("linux/arm/v7").unwrap();
        let pick = |entries: Vec<Descriptor>, p: &Platform| {
            best_for_platform(entries, p).map(|d| d.digest)
        };
        let entries = vec![
            entry("amd64", Some("linux/amd64")),
            entry("v6", Some("linux/arm/v6")),
            entry("v7", Some("linux/arm/v7")),
        ];
        assert_eq!(pick(entries.clone(), &arm), Some(entry("v7", None).digest));
        assert_eq!(
            pick(entries.clone(), &Platform::parse("linux/amd64").unwrap()),
            Some(entry("amd64", None).digest)
        );
        assert_eq!(
            pick(entries, &Platform::parse("linux/s390x").unwrap()),
            None
        );
        let with_unnamed = vec![entry("any", None), entry("amd64", Some("linux/amd64"))];
        assert_eq!(
            pick(
                with_unnamed.clone(),
                &Platform::parse("linux/amd64").unwrap()
            ),
            Some(entry("amd64", None).digest)
        );
        assert_eq!(pick(with_unnamed, &arm), Some(entry("any", None).digest));
    }

    #[test]
    fn ref_names_are_the_tag_or_digest() {
        assert_eq!(ref_name_of("localhost/busybox:latest"), "latest");
        assert_eq!(ref_name_of("localhost:5000/busybox"), "latest");
        assert_eq!(ref_name_of("localhost:5000/busybox:1.36"), "1.36");
        let digest = sha256_digest(b"x");
        assert_eq!(ref_name_of(&format!("r/busybox@{digest}")), digest);
    }

    #[test]
    fn size_adds_indexes_manifest_config_and_layers() {
        let mut manifest = Manifest::default();
        manifest.config.size = 10;
        manifest.layers = vec![
            Descriptor {
                size: 100,
                ..Descriptor::default()
            },
            Descriptor {
                size: 1000,
                ..Descriptor::default()
            },
        ];
        let image = ResolvedImage {
            indexes: vec![Descriptor {
                size: 3,
                ..Descriptor::default()
            }],
            manifest_descriptor: Descriptor {
                size: 7,
                ..Descriptor::default()
            },
            manifest,
            config: ImageConfig::default(),
            platform: Platform::default(),
        };
        assert_eq!(image.size(), 1120);
    }
}
