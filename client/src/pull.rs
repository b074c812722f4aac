//! Pulling an image from a registry into the store, the way containerd's client does,
//! so `ctr` sees the result as its own:
//!
//! 1. resolve the reference (index or manifest), choose the platform's manifest (or
//!    all of them), fetch manifests and configs;
//! 2. fetch the layers, a few at a time, each through a resumable ingest (a blob
//!    already stored is not fetched; an interrupted one continues where it stopped),
//!    while the unpacker applies layer `i` as soon as layers `0..=i` are in;
//! 3. store manifests and indexes with the `containerd.io/gc.ref.*` labels that tie the
//!    image together, then create the image record — last, so a failed pull leaves no
//!    record.
//!
//! Everything runs in a lease; a failed pull deletes it, and with it what it stored.

use std::collections::HashSet;

use berth_registry::{Reference, RegistryClient, RegistryOptions};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::connection::Api;
use crate::content::{ingest, ingest_ref, IngestOutcome, Labels, MemorySource};
use crate::error::{ClientError, Result};
use crate::image::{best_for_platform, save_image, ImageRecord};
use crate::labels::{distribution_source, index_labels, manifest_labels};
use crate::lease::LeaseScope;
use crate::oci::{
    parse_config, parse_index, parse_manifest, Descriptor, ImageConfig, Index, Manifest,
    ObjectKind, MAX_INDEX_DEPTH, MAX_JSON_BYTES,
};
use crate::platform::Platform;
use crate::progress::{ItemState, Progress};
use crate::remote::{from_registry, registry_error, to_registry, RegistrySource};
use crate::unpack::{unpack_layers, UnpackOutcome, UnpackPlan, DEFAULT_SNAPSHOTTER};

/// Layers fetched at once unless told otherwise.
pub const DEFAULT_CONCURRENT_FETCHES: usize = 3;

/// How an image is pulled.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform whose manifest is pulled (and unpacked).
    pub platform: Platform,
    /// Pull every platform's manifest of an index (only `platform`'s is unpacked).
    pub all_platforms: bool,
    /// Unpack the image for `platform` into `snapshotter`.
    pub unpack: bool,
    /// The snapshotter to unpack into.
    pub snapshotter: String,
    /// Most layers fetched at once.
    pub max_concurrent: usize,
    /// How to reach the registry (plain HTTP, credentials, stall timeout).
    pub registry: RegistryOptions,
    /// Where progress goes.
    pub progress: Progress,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            all_platforms: false,
            unpack: true,
            snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
            max_concurrent: DEFAULT_CONCURRENT_FETCHES,
            registry: RegistryOptions::default(),
            progress: Progress::none(),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// The image record created (or updated).
    pub image: ImageRecord,
    /// How each blob got into the store, by digest, in the order they finished.
    pub transfers: Vec<(String, IngestOutcome)>,
    /// What the unpack did, if the image was unpacked.
    pub unpacked: Option<UnpackOutcome>,
}

impl PullOutcome {
    /// Bytes sent to the daemon by this pull (not counting what was there before).
    pub fn bytes_fetched(&self) -> u64 {
        self.transfers
            .iter()
            .map(|(_, outcome)| match outcome {
                IngestOutcome::Written { sent, .. } => *sent,
                _ => 0,
            })
            .sum()
    }
}

/// Pulls the image `name` (`[registry/]repository[:tag][@digest]`) into the store and
/// names it by its full reference (`docker.io/library/busybox:latest`).
pub async fn pull(api: &Api, name: &str, options: &PullOptions) -> Result<PullOutcome> {
    let reference = Reference::parse(name)?;
    let client = RegistryClient::new(&reference, options.registry.clone())?;
    let scope = LeaseScope::enter(api).await?;
    let puller = Puller {
        api: scope.api().clone(),
        client,
        image_name: reference.to_string(),
        source_labels: Labels::from([distribution_source(
            reference.registry(),
            reference.repository(),
        )]),
        reference,
        options,
    };
    let result = puller.run().await;
    scope.finish(result.is_ok()).await;
    result
}

/// One manifest chosen for the pull, with what it says.
struct ChosenManifest {
    descriptor: Descriptor,
    bytes: Bytes,
    manifest: Manifest,
    config_bytes: Bytes,
    config: ImageConfig,
}

/// One pull in progress.
struct Puller<'a> {
    api: Api,
    client: RegistryClient,
    reference: Reference,
    image_name: String,
    source_labels: Labels,
    options: &'a PullOptions,
}

impl Puller<'_> {
    async fn run(&self) -> Result<PullOutcome> {
        let progress = &self.options.progress;
        let (root, root_bytes) = self
            .client
            .resolve(&self.reference)
            .await
            .map_err(registry_error)?;
        let root = from_registry(&root);
        progress.note(format!("{}: resolved to {}", self.image_name, root.digest));

        let (indexes, candidates) = self.walk(&root, root_bytes.clone()).await?;
        let chosen_descriptors = self.choose(&root, candidates)?;
        let mut chosen = Vec::with_capacity(chosen_descriptors.len());
        for descriptor in chosen_descriptors {
            let bytes = if descriptor.digest == root.digest {
                root_bytes.clone()
            } else {
                self.fetch_manifest(&descriptor).await?
            };
            chosen.push(self.read_manifest(descriptor, bytes).await?);
        }
        let to_unpack = self.manifest_to_unpack(&root, &chosen);

        let mut transfers = Vec::new();
        for manifest in &chosen {
            let config = &manifest.manifest.config;
            let outcome = self
                .store(config, manifest.config_bytes.clone(), &self.source_labels)
                .await?;
            transfers.push((config.digest.clone(), outcome));
        }
        let (fetched, unpacked) = self.fetch_layers_and_unpack(&chosen, to_unpack).await?;
        transfers.extend(fetched);
        for manifest in &chosen {
            let mut labels = manifest_labels(&manifest.manifest);
            labels.extend(self.source_labels.clone());
            let outcome = self
                .store(&manifest.descriptor, manifest.bytes.clone(), &labels)
                .await?;
            transfers.push((manifest.descriptor.digest.clone(), outcome));
        }
        let mut kept: HashSet<String> =
            chosen.iter().map(|m| m.descriptor.digest.clone()).collect();
        kept.extend(indexes.iter().map(|(d, _, _)| d.digest.clone()));
        for (descriptor, index, bytes) in indexes.iter().rev() {
            let mut labels = index_labels(index, |i| kept.contains(&index.manifests[i].digest));
            labels.extend(self.source_labels.clone());
            let outcome = self.store(descriptor, bytes.clone(), &labels).await?;
            transfers.push((descriptor.digest.clone(), outcome));
        }

        let record = ImageRecord::new(&self.image_name, plain_target(&root));
        let image = save_image(&self.api, &record).await?;
        progress.note(format!("{}: pulled {}", self.image_name, root.digest));
        Ok(PullOutcome {
            image,
            transfers,
            unpacked,
        })
    }

    /// Walks the indexes from the root (fetching nested ones); returns them with their
    /// bytes, and every manifest they list (or the root, if it is a manifest).
    async fn walk(
        &self,
        root: &Descriptor,
        root_bytes: Bytes,
    ) -> Result<(Vec<(Descriptor, Index, Bytes)>, Vec<Descriptor>)> {
        let mut indexes = Vec::new();
        let mut manifests = Vec::new();
        let mut pending = vec![(root.clone(), Some(root_bytes), 0usize)];
        while let Some((descriptor, bytes, depth)) = pending.pop() {
            match descriptor.kind() {
                ObjectKind::Manifest => manifests.push(descriptor),
                ObjectKind::Index if depth <= MAX_INDEX_DEPTH => {
                    let bytes = match bytes {
                        Some(bytes) => bytes,
                        None => self.fetch_manifest(&descriptor).await?,
                    };
                    let what = format!("index {}", descriptor.digest);
                    let index = parse_index(&what, &bytes)?;
                    for child in index.manifests.iter().rev() {
                        pending.push((child.clone(), None, depth + 1));
                    }
                    indexes.push((descriptor, index, bytes));
                }
                ObjectKind::Index => {
                    return Err(ClientError::image(
                        format!("index {}", descriptor.digest),
                        format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                    ))
                }
                // Attestations and other artifacts an index lists are not pulled.
                _ if depth > 0 => {}
                _ => {
                    return Err(ClientError::image(
                        format!("{} ({})", self.image_name, descriptor.digest),
                        format!("media type {:?} is not an image", descriptor.media_type),
                    ))
                }
            }
        }
        Ok((indexes, manifests))
    }

    /// The manifests to pull: all of them, or the platform's best one.
    fn choose(&self, root: &Descriptor, candidates: Vec<Descriptor>) -> Result<Vec<Descriptor>> {
        if self.options.all_platforms || root.kind() == ObjectKind::Manifest {
            return Ok(candidates);
        }
        best_for_platform(candidates, &self.options.platform)
            .map(|d| vec![d])
            .ok_or_else(|| ClientError::NoMatchingPlatform {
                image: self.image_name.clone(),
                platform: self.options.platform.to_string(),
            })
    }

    /// Fetches a manifest or index by digest (checked by the registry client), or reads it
    /// from the content store when an earlier pull already stored it.
    async fn fetch_manifest(&self, descriptor: &Descriptor) -> Result<Bytes> {
        if let Some(stored) = self.stored_json(descriptor).await? {
            return Ok(stored);
        }
        self.client
            .fetch_manifest(&self.reference, &to_registry(descriptor))
            .await
            .map_err(registry_error)
    }

    /// The bytes of a small JSON blob (manifest, index, config) if the content store
    /// already holds it: a blob already there is not fetched again. The store checked
    /// its digest when it was committed; the check here guards against a size mismatch.
    async fn stored_json(&self, descriptor: &Descriptor) -> Result<Option<Bytes>> {
        if crate::content::blob_info(&self.api, &descriptor.digest)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let bytes =
            crate::content::read_blob(&self.api, &descriptor.digest, MAX_JSON_BYTES).await?;
        crate::oci::verify_bytes(descriptor, &bytes)?;
        Ok(Some(bytes))
    }

    /// Parses a manifest and fetches and parses its config.
    async fn read_manifest(&self, descriptor: Descriptor, bytes: Bytes) -> Result<ChosenManifest> {
        let what = format!("manifest {}", descriptor.digest);
        let manifest = parse_manifest(&what, &bytes)?;
        let config_descriptor = &manifest.config;
        if config_descriptor.size > MAX_JSON_BYTES {
            return Err(ClientError::TooLarge {
                what: format!("image config {}", config_descriptor.digest),
                limit: MAX_JSON_BYTES,
            });
        }
        let config_bytes = match self.stored_json(config_descriptor).await? {
            Some(stored) => stored,
            None => {
                let stream = self
                    .client
                    .fetch_blob(&self.reference, &to_registry(config_descriptor), 0)
                    .await
                    .map_err(registry_error)?;
                let fetched = berth_registry::read_blob_to_end(stream)
                    .await
                    .map_err(registry_error)?;
                crate::oci::verify_bytes(config_descriptor, &fetched)?;
                fetched
            }
        };
        let config_what = format!("image config {}", config_descriptor.digest);
        let config = parse_config(&config_what, &config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ClientError::image(
                what,
                format!(
                    "it lists {} layers but its config lists {} diff ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        Ok(ChosenManifest {
            descriptor,
            bytes,
            manifest,
            config_bytes,
            config,
        })
    }

    /// Which chosen manifest is unpacked: the one for the pull's platform (a lone
    /// manifest whose config names another platform is not).
    fn manifest_to_unpack(&self, root: &Descriptor, chosen: &[ChosenManifest]) -> Option<usize> {
        if !self.options.unpack {
            return None;
        }
        let platform = &self.options.platform;
        if root.kind() == ObjectKind::Manifest {
            let own = chosen.first()?.config.platform();
            let runs_here =
                own.os.is_empty() || own.architecture.is_empty() || platform.matches(&own);
            return runs_here.then_some(0);
        }
        let descriptors: Vec<Descriptor> = chosen.iter().map(|m| m.descriptor.clone()).collect();
        let best = best_for_platform(descriptors, platform)?;
        chosen
            .iter()
            .position(|m| m.descriptor.digest == best.digest)
    }

    /// Fetches every layer of the chosen manifests (each once), a few at a time, and
    /// unpacks `to_unpack`'s layers as they arrive in order.
    async fn fetch_layers_and_unpack(
        &self,
        chosen: &[ChosenManifest],
        to_unpack: Option<usize>,
    ) -> Result<(Vec<(String, IngestOutcome)>, Option<UnpackOutcome>)> {
        let progress = &self.options.progress;
        let plan = to_unpack.map(|i| UnpackPlan {
            snapshotter: self.options.snapshotter.clone(),
            config: chosen[i].manifest.config.clone(),
            layers: chosen[i]
                .manifest
                .layers
                .iter()
                .cloned()
                .zip(chosen[i].config.rootfs.diff_ids.iter().cloned())
                .collect(),
        });
        // Every layer once, the unpacked image's first and bottom first.
        let mut seen = HashSet::new();
        let order = to_unpack.into_iter().chain(0..chosen.len());
        let layers: Vec<Descriptor> = order
            .flat_map(|i| chosen[i].manifest.layers.iter().cloned())
            .filter(|layer| seen.insert(layer.digest.clone()))
            .collect();
        for layer in &layers {
            progress.item(
                &layer.digest,
                layer.kind().progress_kind(),
                ItemState::Waiting,
                0,
                layer.size,
            );
        }

        let (arrivals, arrived) = mpsc::channel(layers.len().max(1));
        let fetching = {
            let plan = plan.as_ref();
            async move {
                let mut stored = HashSet::new();
                let mut next = 0;
                let mut outcomes = Vec::with_capacity(layers.len());
                let mut fetches = futures::stream::iter(layers)
                    .map(|layer| async move {
                        let source = RegistrySource::new(&self.client, &self.reference, &layer);
                        let outcome = ingest(
                            &self.api,
                            &ingest_ref(&layer),
                            &layer,
                            &self.source_labels,
                            &source,
                            &self.options.progress,
                        )
                        .await?;
                        Ok::<_, ClientError>((layer.digest, outcome))
                    })
                    .buffer_unordered(self.options.max_concurrent.max(1));
                loop {
                    let fetched = if plan.is_some() {
                        tokio::select! {
                            fetched = fetches.next() => fetched,
                            // The unpacker failed and went: stop; its error is reported.
                            () = arrivals.closed() => break,
                        }
                    } else {
                        fetches.next().await
                    };
                    let Some(fetched) = fetched else { break };
                    let (digest, outcome) = fetched?;
                    stored.insert(digest.clone());
                    outcomes.push((digest, outcome));
                    if let Some(plan) = plan {
                        while next < plan.layers.len()
                            && stored.contains(&plan.layers[next].0.digest)
                        {
                            // The unpacker may have failed and gone; its error is reported.
                            let _ = arrivals.send(plan.layers[next].0.clone()).await;
                            next += 1;
                        }
                    }
                }
                Ok::<_, ClientError>(outcomes)
            }
        };
        let unpacking = async {
            match &plan {
                Some(plan) => unpack_layers(&self.api, plan, Some(arrived), progress)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        // Both run to their end: a failed fetch closes the arrivals, and the unpacker
        // then removes what it prepared before the lease goes; no call is left in flight.
        let (fetched, unpacked) = tokio::join!(fetching, unpacking);
        match (fetched, unpacked) {
            (Ok(fetched), Ok(unpacked)) => Ok((fetched, unpacked)),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Stores a manifest, index or config held in memory.
    async fn store(
        &self,
        descriptor: &Descriptor,
        bytes: Bytes,
        labels: &Labels,
    ) -> Result<IngestOutcome> {
        ingest(
            &self.api,
            &ingest_ref(descriptor),
            descriptor,
            labels,
            &MemorySource(bytes),
            &self.options.progress,
        )
        .await
    }
}

/// The image record's target: the root descriptor without platform or annotations.
fn plain_target(root: &Descriptor) -> Descriptor {
    Descriptor {
        platform: None,
        annotations: Default::default(),
        ..root.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_hosts_platform_unpacked_three_at_a_time() {
        let options = PullOptions::default();
        assert_eq!(options.platform, Platform::host());
        assert!(options.unpack && !options.all_platforms);
        assert_eq!(options.max_concurrent, 3);
        assert_eq!(options.snapshotter, "overlayfs");
    }

    #[test]
    fn bytes_fetched_counts_only_what_was_sent() {
        let outcome = PullOutcome {
            image: ImageRecord::new("x", Descriptor::default()),
            transfers: vec![
                ("a".to_string(), IngestOutcome::Exists),
                (
                    "b".to_string(),
                    IngestOutcome::Written {
                        resumed_from: 10,
                        sent: 90,
                    },
                ),
                ("c".to_string(), IngestOutcome::WrittenByOther),
            ],
            unpacked: None,
        };
        assert_eq!(outcome.bytes_fetched(), 90);
    }
}
