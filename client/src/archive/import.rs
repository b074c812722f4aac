//! Importing an image archive: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`, as `ctr images export` writes it) or a `docker save` archive
//! (`manifest.json`).
//!
//! The tar is read once, as a stream: every blob is streamed into the content store as
//! it comes by (verified against the digest its name gives), JSON metadata is kept in
//! memory (bounded). Once the whole archive is in, the images are checked (every blob
//! they need is there), labelled for the collector, unpacked, and only then named. All
//! of it runs in a lease: a failed import deletes the lease and with it every blob it
//! stored, so nothing of a broken or hostile archive stays visible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::docker::{layer_media_type, parse_docker_manifest, schema2_manifest};
use super::entries::{read_entries, ArchiveEntry};
use super::names::{full_docker_name, NameRule};
use crate::connection::Api;
use crate::content::{
    blob_info, ingest, ingest_ref, ingest_unnamed, read_blob, read_bytes, update_labels,
    BlobSource, ByteStream, Labels, MemorySource, SourceStream,
};
use crate::error::{ClientError, Result};
use crate::image::{
    read_manifest_and_config, resolve_image, save_image, select_manifests, ImageRecord,
};
use crate::labels::{index_labels, manifest_labels};
use crate::lease::LeaseScope;
use crate::oci::media_types::{DOCKER_CONFIG, OCI_INDEX};
use crate::oci::{parse_config, parse_index, Descriptor, Index, MAX_JSON_BYTES};
use crate::platform::{Platform, PlatformSelection};
use crate::progress::Progress;
use crate::unpack::{unpack_image, DEFAULT_SNAPSHOTTER};

/// How an archive is imported.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Names images whose index entry carries only a tag (`<base>:<tag>`), and keeps
    /// only full names under it; without it, bare tags go under `import-<date>`.
    pub base_name: Option<String>,
    /// Also names the archive's whole index with this name.
    pub index_name: Option<String>,
    /// Check and keep every platform's manifests, not only `platform`'s.
    pub all_platforms: bool,
    /// The platform images are checked and unpacked for.
    pub platform: Platform,
    /// The snapshotter to unpack into.
    pub snapshotter: String,
    /// Unpack the images (for `platform`) after the import.
    pub unpack: bool,
    /// Where progress goes.
    pub progress: Progress,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            base_name: None,
            index_name: None,
            all_platforms: false,
            platform: Platform::host(),
            snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
            unpack: true,
            progress: Progress::none(),
        }
    }
}

/// Imports the image archive read from `reader` and returns the image records made.
pub async fn import<R: Read + Send + 'static>(
    api: &Api,
    reader: R,
    options: &ImportOptions,
) -> Result<Vec<ImageRecord>> {
    let scope = LeaseScope::enter(api).await?;
    let result = import_in_lease(scope.api(), reader, options).await;
    scope.finish(result.is_ok()).await;
    result
}

/// What the archive held, once read.
#[derive(Debug, Default)]
struct Collected {
    index_json: Option<Vec<u8>>,
    manifest_json: Option<Vec<u8>>,
    /// Stored blobs by archive entry name.
    files: HashMap<String, Descriptor>,
    /// Links: entry name → the entry name it points at.
    links: HashMap<String, String>,
}

impl Collected {
    /// The blob stored from the entry `name` (following links).
    fn file(&self, name: &str) -> Result<&Descriptor> {
        let mut current = super::entries::normalize_name(name)?.unwrap_or_default();
        for _ in 0..16 {
            if let Some(found) = self.files.get(&current) {
                return Ok(found);
            }
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => break,
            }
        }
        Err(ClientError::archive(format!(
            "manifest.json names {name:?}, which is not a file in the archive"
        )))
    }
}

async fn import_in_lease<R: Read + Send + 'static>(
    api: &Api,
    reader: R,
    options: &ImportOptions,
) -> Result<Vec<ImageRecord>> {
    let collected = read_archive(api, reader, &options.progress).await?;
    let selection = if options.all_platforms {
        PlatformSelection::All
    } else {
        PlatformSelection::Only(options.platform.clone())
    };
    let rule = NameRule::new(options.base_name.as_deref());
    let images = if let Some(index_json) = &collected.index_json {
        oci_images(api, index_json, &rule, options).await?
    } else if let Some(manifest_json) = &collected.manifest_json {
        docker_images(api, &collected, manifest_json, &rule, options).await?
    } else {
        return Err(ClientError::archive(
            "it has neither index.json (OCI layout) nor manifest.json (docker save)",
        ));
    };
    if images.is_empty() {
        return Err(ClientError::archive(
            "no image in it has a name: give a base name or an index name",
        ));
    }
    let mut prepared = HashSet::new();
    for image in &images {
        if prepared.insert(image.target.digest.clone()) {
            prepare_tree(api, image, &selection).await?;
        }
    }
    if options.unpack {
        let mut unpacked = HashSet::new();
        for image in &images {
            if unpacked.insert(image.target.digest.clone()) {
                unpack_for_platform(api, image, options).await?;
            }
        }
    }
    let mut records = Vec::with_capacity(images.len());
    for image in &images {
        records.push(save_image(api, image).await?);
    }
    Ok(records)
}

/// Reads the whole archive: blobs into the content store, metadata into memory.
async fn read_archive<R: Read + Send + 'static>(
    api: &Api,
    reader: R,
    progress: &Progress,
) -> Result<Collected> {
    let mut entries = read_entries(reader);
    let mut collected = Collected::default();
    while let Some(entry) = entries.recv().await {
        match entry? {
            ArchiveEntry::Metadata { name, bytes } => {
                let slot = match name.as_str() {
                    "index.json" => &mut collected.index_json,
                    "manifest.json" => &mut collected.manifest_json,
                    _ => continue,
                };
                if slot.replace(bytes).is_some() {
                    return Err(ClientError::archive(format!("it holds {name} twice")));
                }
            }
            ArchiveEntry::Link { name, target } => {
                collected.links.insert(name, target);
            }
            ArchiveEntry::File { name, size, data } => {
                let source = EntrySource::new(&name, data);
                let stored = if let Some(digest) = digest_named_by(&name) {
                    let descriptor = Descriptor {
                        digest,
                        size,
                        ..Descriptor::default()
                    };
                    ingest(
                        api,
                        &ingest_ref(&descriptor),
                        &descriptor,
                        &Labels::new(),
                        &source,
                        progress,
                    )
                    .await
                    .map_err(|e| entry_error(&name, e))?;
                    descriptor
                } else if name.ends_with("/layer.tar") {
                    // An old `docker save` layer, named by an id rather than its digest.
                    ingest_unnamed(api, &name, size, "", &Labels::new(), &source, progress)
                        .await
                        .map_err(|e| entry_error(&name, e))?
                } else {
                    continue; // not a blob (e.g. an old docker save's per-layer json)
                };
                collected.files.insert(name, stored);
            }
        }
    }
    Ok(collected)
}

/// A failed ingest of an archive entry: wrong bytes are a broken archive.
fn entry_error(name: &str, error: ClientError) -> ClientError {
    match error {
        ClientError::DigestMismatch { detail, .. } => {
            ClientError::archive(format!("entry {name:?}: {detail}"))
        }
        ClientError::Source { detail, .. } => {
            ClientError::archive(format!("entry {name:?}: {detail}"))
        }
        other => other,
    }
}

/// The digest an entry's name gives: `blobs/sha256/<hex>`, or, at the top of a docker
/// archive, `<hex>.json` / `<hex>.tar`.
fn digest_named_by(name: &str) -> Option<String> {
    let hex = match name.strip_prefix("blobs/sha256/") {
        Some(hex) => hex,
        None if !name.contains('/') => name
            .strip_suffix(".json")
            .or_else(|| name.strip_suffix(".tar"))?,
        None => return None,
    };
    let digest = format!("sha256:{hex}");
    crate::oci::check_digest(&digest).ok()?;
    Some(digest)
}

/// The images an OCI layout names: its `index.json` entries with a name, and the whole
/// index under `index_name`.
async fn oci_images(
    api: &Api,
    index_json: &[u8],
    rule: &NameRule,
    options: &ImportOptions,
) -> Result<Vec<ImageRecord>> {
    let index = parse_index("index.json", index_json).map_err(to_archive_error)?;
    let mut images = Vec::new();
    for entry in &index.manifests {
        if let Some(name) = rule.name_of(&entry.annotations) {
            images.push(ImageRecord::new(&name, entry.clone()));
        }
    }
    if let Some(index_name) = &options.index_name {
        let media_type = index.media_type.clone().unwrap_or(OCI_INDEX.to_string());
        let descriptor = store_json(api, &media_type, index_json, &options.progress).await?;
        images.push(ImageRecord::new(index_name, descriptor));
    }
    Ok(images)
}

/// The images a `docker save` archive names: a schema2 manifest is written for each.
async fn docker_images(
    api: &Api,
    collected: &Collected,
    manifest_json: &[u8],
    rule: &NameRule,
    options: &ImportOptions,
) -> Result<Vec<ImageRecord>> {
    let mut images = Vec::new();
    let mut manifests = Vec::new();
    for image in parse_docker_manifest(manifest_json)? {
        let config = Descriptor {
            media_type: DOCKER_CONFIG.to_string(),
            ..collected.file(&image.config)?.clone()
        };
        let config_bytes = read_blob(api, &config.digest, MAX_JSON_BYTES).await?;
        let what = format!("image config {:?}", image.config);
        let parsed = parse_config(&what, &config_bytes).map_err(to_archive_error)?;
        if parsed.rootfs.diff_ids.len() != image.layers.len() {
            return Err(ClientError::archive(format!(
                "manifest.json lists {} layers for {:?}, its config lists {} diff ids",
                image.layers.len(),
                image.config,
                parsed.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let stored = collected.file(layer)?.clone();
            let first = read_bytes(api, &stored.digest, 0, 4).await?;
            layers.push(Descriptor {
                media_type: layer_media_type(&first).to_string(),
                ..stored
            });
        }
        let bytes = schema2_manifest(&config, &layers);
        let descriptor = store_json(
            api,
            crate::oci::media_types::DOCKER_MANIFEST,
            &bytes,
            &options.progress,
        )
        .await?;
        for tag in image.repo_tags.iter().flatten() {
            if let Some(name) = rule.translate(&full_docker_name(tag)) {
                images.push(ImageRecord::new(&name, descriptor.clone()));
            }
        }
        manifests.push(Descriptor {
            platform: Some(parsed.platform()),
            ..descriptor
        });
    }
    if let Some(index_name) = &options.index_name {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        let descriptor = store_json(api, OCI_INDEX, &bytes, &options.progress).await?;
        images.push(ImageRecord::new(index_name, descriptor));
    }
    Ok(images)
}

/// Stores a JSON document made or kept in memory; returns its descriptor.
async fn store_json(
    api: &Api,
    media_type: &str,
    bytes: &[u8],
    progress: &Progress,
) -> Result<Descriptor> {
    let descriptor = Descriptor::of_bytes(media_type, bytes);
    let source = MemorySource(Bytes::copy_from_slice(bytes));
    ingest(
        api,
        &ingest_ref(&descriptor),
        &descriptor,
        &Labels::new(),
        &source,
        progress,
    )
    .await?;
    Ok(descriptor)
}

/// Checks that every blob the image needs for `selection` is in the store with the
/// size its descriptor gives, and labels indexes and manifests so the collector keeps
/// their children.
async fn prepare_tree(api: &Api, image: &ImageRecord, selection: &PlatformSelection) -> Result<()> {
    let in_image = |e: ClientError| match e {
        e @ ClientError::InvalidArchive { .. } => e,
        other => ClientError::archive(format!("image {:?}: {other}", image.name)),
    };
    require_blob(api, &image.target, "the archive's index").await?;
    let tree = select_manifests(api, &image.target, selection)
        .await
        .map_err(in_image)?;
    if tree.manifests.is_empty() {
        return Err(ClientError::NoMatchingPlatform {
            image: image.name.clone(),
            platform: match selection {
                PlatformSelection::Only(p) => p.to_string(),
                PlatformSelection::All => "any".to_string(),
            },
        });
    }
    let mut kept: HashSet<&str> = tree.manifests.iter().map(|d| d.digest.as_str()).collect();
    kept.extend(tree.indexes.iter().map(|(d, _)| d.digest.as_str()));
    for (descriptor, index) in &tree.indexes {
        for child in &index.manifests {
            if kept.contains(child.digest.as_str()) {
                require_blob(api, child, &format!("index {}", descriptor.digest)).await?;
            }
        }
        let labels = index_labels(index, |i| kept.contains(index.manifests[i].digest.as_str()));
        update_labels(api, &descriptor.digest, &labels).await?;
    }
    for descriptor in &tree.manifests {
        let (manifest, _) = read_manifest_and_config(api, descriptor)
            .await
            .map_err(in_image)?;
        let referrer = format!("manifest {}", descriptor.digest);
        require_blob(api, &manifest.config, &referrer).await?;
        for layer in &manifest.layers {
            require_blob(api, layer, &referrer).await?;
        }
        update_labels(api, &descriptor.digest, &manifest_labels(&manifest)).await?;
    }
    Ok(())
}

/// Checks that the blob of `descriptor` (named by `referrer`) is in the store with the
/// descriptor's size.
async fn require_blob(api: &Api, descriptor: &Descriptor, referrer: &str) -> Result<()> {
    crate::oci::check_digest(&descriptor.digest).map_err(to_archive_error)?;
    match blob_info(api, &descriptor.digest).await? {
        None => Err(ClientError::archive(format!(
            "blob {} named by {referrer} is not in the archive",
            descriptor.digest
        ))),
        Some(info) if info.size != descriptor.size => Err(ClientError::archive(format!(
            "blob {} is {} bytes, but {referrer} says {}",
            descriptor.digest, info.size, descriptor.size
        ))),
        Some(_) => Ok(()),
    }
}

/// Unpacks the image for the import's platform; an image without a manifest for it
/// is left packed, as `ctr` leaves it.
async fn unpack_for_platform(
    api: &Api,
    image: &ImageRecord,
    options: &ImportOptions,
) -> Result<()> {
    let resolved = match resolve_image(api, &image.name, &image.target, &options.platform).await {
        Ok(resolved) => resolved,
        Err(ClientError::NoMatchingPlatform { .. }) => {
            options.progress.note(format!(
                "not unpacking {}: it has no manifest for {}",
                image.name, options.platform
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    options.progress.note(format!(
        "unpacking {} ({})...",
        image.name, image.target.digest
    ));
    unpack_image(api, &resolved, &options.snapshotter, &options.progress).await?;
    Ok(())
}

/// An error about the archive's JSON, as an archive error.
fn to_archive_error(error: ClientError) -> ClientError {
    match error {
        ClientError::InvalidImage { what, detail } => {
            ClientError::archive(format!("{what}: {detail}"))
        }
        ClientError::InvalidArgument(detail) => ClientError::archive(detail),
        other => other,
    }
}

/// An archive entry's bytes as a blob source: readable once, from any offset (the
/// bytes before it are read and dropped, which is how a resumed ingest skips them).
struct EntrySource {
    name: String,
    data: Mutex<Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>>,
}

impl EntrySource {
    fn new(name: &str, data: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        EntrySource {
            name: name.to_string(),
            data: Mutex::new(Some(data)),
        }
    }
}

impl BlobSource for EntrySource {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<SourceStream>> {
        let data = self
            .data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let name = self.name.clone();
        Box::pin(async move {
            let data = data.ok_or_else(|| ClientError::Source {
                what: format!("archive entry {name:?}"),
                detail: "it can be read only once".to_string(),
            })?;
            Ok(SourceStream {
                start: offset,
                bytes: skip_bytes(ReceiverStream::new(data), offset, name),
            })
        })
    }
}

/// The stream without its first `skip` bytes, errors restated as source errors.
fn skip_bytes(
    stream: ReceiverStream<std::io::Result<Bytes>>,
    skip: u64,
    name: String,
) -> ByteStream {
    let mut to_skip = skip;
    stream
        .filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(ClientError::Source {
                    what: format!("archive entry {name:?}"),
                    detail: e.to_string(),
                })),
                Ok(mut chunk) => {
                    let len = chunk.len() as u64;
                    if to_skip >= len {
                        to_skip -= len;
                        None
                    } else {
                        let rest = chunk.split_off(to_skip as usize);
                        to_skip = 0;
                        Some(Ok(rest))
                    }
                }
            };
            std::future::ready(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::sha256_digest;

    #[test]
    fn blob_names_give_digests() {
        let digest = sha256_digest(b"x");
        let hex = &digest[7..];
        assert_eq!(
            digest_named_by(&format!("blobs/sha256/{hex}")),
            Some(digest.clone())
        );
        assert_eq!(
            digest_named_by(&format!("{hex}.json")),
            Some(digest.clone())
        );
        assert_eq!(digest_named_by(&format!("{hex}.tar")), Some(digest.clone()));
        assert_eq!(digest_named_by(&format!("x/{hex}.tar")), None);
        assert_eq!(digest_named_by("blobs/sha256/xyz"), None);
        assert_eq!(digest_named_by(&format!("blobs/sha512/{hex}")), None);
        assert_eq!(digest_named_by("index.json"), None);
    }

    #[tokio::test]
    async fn entry_sources_skip_to_the_offset_once() {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        for part in [&b"abc"[..], b"defg", b"h"] {
            sender.send(Ok(Bytes::from_static(part))).await.unwrap();
        }
        drop(sender);
        let source = EntrySource::new("e", receiver);
        let opened = source.open(5).await.unwrap();
        assert_eq!(opened.start, 5);
        let bytes: Vec<Bytes> = opened.bytes.map(|b| b.unwrap()).collect().await;
        assert_eq!(bytes.concat(), b"fgh");
        assert!(source.open(0).await.is_err(), "a second read is refused");
    }

    #[test]
    fn docker_files_are_found_through_links() {
        let mut collected = Collected::default();
        let blob = Descriptor::of_bytes("", b"layer");
        collected
            .files
            .insert("a/layer.tar".to_string(), blob.clone());
        collected
            .links
            .insert("b/layer.tar".to_string(), "a/layer.tar".to_string());
        assert_eq!(collected.file("b/layer.tar").unwrap(), &blob);
        assert_eq!(collected.file("./a/layer.tar").unwrap(), &blob);
        let missing = collected.file("c/layer.tar").unwrap_err();
        assert!(matches!(missing, ClientError::InvalidArchive { .. }));
        collected
            .links
            .insert("loop".to_string(), "loop".to_string());
        assert!(collected.file("loop").is_err());
    }
}
