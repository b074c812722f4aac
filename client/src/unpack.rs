//! Unpacking an image into a snapshotter over the API, the way containerd clients do, so
//! that `ctr` and this client each see the other's work: for each layer, the committed
//! snapshot is named by the layer's chain ID; a missing one is made by preparing an
//! extraction snapshot on its parent, applying the layer (Diff.Apply) and committing it
//! under the chain ID.
//!
//! Each layer is applied once, however many clients unpack the same image at once: the
//! extraction snapshot has one key per chain ID ([`extract_key`]), labelled with its
//! owner ([`OWNER_LABEL`]). A second unpacker finds the key taken, reports
//! `WaitingForOther` and waits for the commit; if the key goes away without a commit, or
//! its owner died, it removes what is left and takes over.
//!
//! Layers may arrive while the unpack runs (a pull downloading them): the unpacker claims
//! layer `i` at once, and applies it when its blob is announced on the arrivals channel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_proto::containerd::services::diff::v1::ApplyRequest;
use berth_proto::containerd::services::snapshots::v1::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use berth_proto::containerd::types::Mount;
use tokio::sync::mpsc;

use crate::connection::Api;
use crate::content::{update_labels, Labels};
use crate::error::{ClientError, Result};
use crate::image::{chain_ids, snapshot_exists, ResolvedImage};
use crate::labels::{snapshot_ref_label, SNAPSHOT_REF, UNCOMPRESSED};
use crate::lease::{lease_snapshot, LeaseScope};
use crate::oci::Descriptor;
use crate::owner::{OwnerGuard, UnpackOwner};
use crate::progress::{ItemKind, ItemState, Progress};

/// The snapshotter images are unpacked into unless told otherwise.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// Label on an extraction snapshot naming the unpack that owns it
/// (see [`UnpackOwner::to_label`]).
pub const OWNER_LABEL: &str = "io.berth.unpack.owner";
/// How long to wait for another unpacker that holds a layer before giving up.
pub const OTHER_UNPACKER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Pause between looks at a layer another unpacker holds.
const OTHER_UNPACKER_POLL: Duration = Duration::from_millis(100);

/// The key of the extraction snapshot of the layer with chain ID `chain_id`: the same in
/// every unpacker, so that two of them meet on it. Starts with `extract-`, like
/// containerd's extraction keys.
pub fn extract_key(chain_id: &str) -> String {
    format!("extract-shared {chain_id}")
}

/// What to unpack: the layers (blob and diff id, bottom first), the config blob that will
/// reference the top snapshot, and the snapshotter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackPlan {
    /// The snapshotter, e.g. `overlayfs`.
    pub snapshotter: String,
    /// The image config blob (labelled with the top snapshot when done).
    pub config: Descriptor,
    /// Each layer's blob descriptor with its diff id, bottom first.
    pub layers: Vec<(Descriptor, String)>,
}

impl UnpackPlan {
    /// The plan for a resolved image.
    pub fn of(image: &ResolvedImage, snapshotter: &str) -> UnpackPlan {
        UnpackPlan {
            snapshotter: snapshotter.to_string(),
            config: image.config_descriptor().clone(),
            layers: image.layers(),
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOutcome {
    /// The chain ID of the top layer (`None` for an image without layers).
    pub top_chain_id: Option<String>,
    /// Layers this unpack applied.
    pub applied: usize,
    /// Layers that were unpacked already.
    pub already_unpacked: usize,
    /// Layers another unpacker applied while this one waited for it.
    pub unpacked_by_other: usize,
}

/// Unpacks an image whose blobs are all in the store.
pub async fn unpack_image(
    api: &Api,
    image: &ResolvedImage,
    snapshotter: &str,
    progress: &Progress,
) -> Result<UnpackOutcome> {
    unpack_layers(api, &UnpackPlan::of(image, snapshotter), None, progress).await
}

/// Unpacks the layers of `plan`. With `arrivals`, layer `i` is applied only once the
/// `i`-th descriptor has been received (its blob is then in the store); a channel that
/// closes early fails the unpack. Without, every blob is in the store already.
///
/// Runs in the lease of `api`, or in a temporary one of its own.
pub async fn unpack_layers(
    api: &Api,
    plan: &UnpackPlan,
    arrivals: Option<mpsc::Receiver<Descriptor>>,
    progress: &Progress,
) -> Result<UnpackOutcome> {
    let scope = LeaseScope::enter(api).await?;
    let guard = OwnerGuard::register().map_err(ClientError::io("identifying this unpacker"))?;
    let mut unpacker = Unpacker {
        api: scope.api().clone(),
        plan,
        owner: guard.owner(),
        arrivals: Arrivals {
            receiver: arrivals,
            received: 0,
        },
        progress,
    };
    let result = unpacker.run().await;
    drop(guard);
    scope.finish(result.is_ok()).await;
    result
}

/// Layers announced so far.
struct Arrivals {
    receiver: Option<mpsc::Receiver<Descriptor>>,
    received: usize,
}

impl Arrivals {
    /// Waits until layer `index` (whose blob is `expected`) has arrived.
    async fn wait_for(&mut self, index: usize, expected: &Descriptor) -> Result<()> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Ok(());
        };
        while self.received <= index {
            let Some(arrived) = receiver.recv().await else {
                return Err(ClientError::Source {
                    what: format!("layer {}", expected.digest),
                    detail: "its transfer stopped before the blob arrived".to_string(),
                });
            };
            if self.received == index && arrived.digest != expected.digest {
                return Err(ClientError::InvalidArgument(format!(
                    "layer {index} arrived as {}, the plan expects {}",
                    arrived.digest, expected.digest
                )));
            }
            self.received += 1;
        }
        Ok(())
    }
}

/// How one layer ended up unpacked.
enum LayerResult {
    Applied,
    AlreadyThere,
    ByOther,
}

/// One run of an unpack.
struct Unpacker<'a> {
    api: Api,
    plan: &'a UnpackPlan,
    owner: UnpackOwner,
    arrivals: Arrivals,
    progress: &'a Progress,
}

impl Unpacker<'_> {
    async fn run(&mut self) -> Result<UnpackOutcome> {
        let diff_ids: Vec<String> = self.plan.layers.iter().map(|(_, d)| d.clone()).collect();
        let chain = chain_ids(&diff_ids);
        let mut outcome = UnpackOutcome {
            top_chain_id: chain.last().cloned(),
            ..UnpackOutcome::default()
        };
        for index in 0..self.plan.layers.len() {
            let parent = if index == 0 { "" } else { &chain[index - 1] };
            let result = self.layer(index, &chain[index], parent).await;
            let (layer, _) = &self.plan.layers[index];
            match result {
                Ok(LayerResult::Applied) => outcome.applied += 1,
                Ok(LayerResult::AlreadyThere) => outcome.already_unpacked += 1,
                Ok(LayerResult::ByOther) => outcome.unpacked_by_other += 1,
                Err(e) => {
                    self.report(layer, ItemState::Failed);
                    return Err(e);
                }
            }
            self.report(layer, ItemState::Unpacked);
        }
        if let Some(top) = &outcome.top_chain_id {
            let labels = Labels::from([(snapshot_ref_label(&self.plan.snapshotter), top.clone())]);
            update_labels(&self.api, &self.plan.config.digest, &labels).await?;
        }
        Ok(outcome)
    }

    fn report(&self, layer: &Descriptor, state: ItemState) {
        self.progress.item(
            &layer.digest,
            ItemKind::Layer,
            state,
            layer.size,
            layer.size,
        );
    }

    /// Makes sure the snapshot `chain_id` exists, applying layer `index` if nobody has.
    async fn layer(&mut self, index: usize, chain_id: &str, parent: &str) -> Result<LayerResult> {
        let key = extract_key(chain_id);
        let mut waiting_since: Option<Instant> = None;
        loop {
            if snapshot_exists(&self.api, &self.plan.snapshotter, chain_id).await? {
                self.hold(chain_id).await?;
                return Ok(match waiting_since {
                    Some(_) => LayerResult::ByOther,
                    None => LayerResult::AlreadyThere,
                });
            }
            match self.prepare(&key, parent, chain_id).await {
                Ok(mounts) => {
                    let applied = self.apply_and_commit(index, chain_id, &key, mounts).await;
                    if applied.is_err() {
                        self.remove_quietly(&key).await;
                    }
                    return applied;
                }
                Err(status) if status.code() == tonic::Code::AlreadyExists => {
                    // The chain ID was committed meanwhile (looked at again above), or
                    // the key is taken: by a live unpacker, or left by a dead one.
                    if snapshot_exists(&self.api, &self.plan.snapshotter, chain_id).await? {
                        continue;
                    }
                    match self.owner_of(&key).await? {
                        None => continue, // gone meanwhile: try to take it
                        Some(Some(owner)) if owner.is_alive() => {
                            let since = *waiting_since.get_or_insert_with(|| {
                                let (layer, _) = &self.plan.layers[index];
                                self.report(layer, ItemState::WaitingForOther);
                                Instant::now()
                            });
                            if since.elapsed() > OTHER_UNPACKER_TIMEOUT {
                                return Err(ClientError::WaitTimeout {
                                    what: format!("unpacking layer {chain_id}"),
                                    waited: OTHER_UNPACKER_TIMEOUT,
                                });
                            }
                            tokio::time::sleep(OTHER_UNPACKER_POLL).await;
                        }
                        Some(owner) => {
                            tracing::info!(key = %key, owner = ?owner,
                                "taking over an extraction snapshot whose unpacker is gone");
                            waiting_since.get_or_insert_with(Instant::now);
                            self.remove_quietly(&key).await;
                        }
                    }
                }
                Err(status) => {
                    return Err(ClientError::rpc(format!(
                        "preparing snapshot {key:?} on parent {parent:?}"
                    ))(status))
                }
            }
        }
    }

    /// Prepares the extraction snapshot `key`, labelled with its target and owner.
    async fn prepare(
        &self,
        key: &str,
        parent: &str,
        chain_id: &str,
    ) -> std::result::Result<Vec<Mount>, tonic::Status> {
        let labels = HashMap::from([
            (SNAPSHOT_REF.to_string(), chain_id.to_string()),
            (OWNER_LABEL.to_string(), self.owner.to_label()),
        ]);
        let request = PrepareSnapshotRequest {
            snapshotter: self.plan.snapshotter.clone(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels,
        };
        Ok(self
            .api
            .snapshots()
            .prepare(request)
            .await?
            .into_inner()
            .mounts)
    }

    /// The owner of the extraction snapshot `key`: `None` if the key is gone,
    /// `Some(None)` if it has no (readable) owner label.
    async fn owner_of(&self, key: &str) -> Result<Option<Option<UnpackOwner>>> {
        let request = StatSnapshotRequest {
            snapshotter: self.plan.snapshotter.clone(),
            key: key.to_string(),
        };
        match self.api.snapshots().stat(request).await {
            Ok(reply) => Ok(Some(reply.into_inner().info.and_then(|info| {
                info.labels
                    .get(OWNER_LABEL)
                    .and_then(|label| UnpackOwner::parse(label))
            }))),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(ClientError::rpc(format!("looking up snapshot {key:?}"))(
                status,
            )),
        }
    }

    /// Waits for layer `index`, applies it onto the prepared `mounts` and commits it
    /// under `chain_id`.
    async fn apply_and_commit(
        &mut self,
        index: usize,
        chain_id: &str,
        key: &str,
        mounts: Vec<Mount>,
    ) -> Result<LayerResult> {
        let (layer, diff_id) = self.plan.layers[index].clone();
        self.arrivals.wait_for(index, &layer).await?;
        self.report(&layer, ItemState::Unpacking);
        let mut descriptor = layer.to_wire();
        descriptor
            .annotations
            .insert(UNCOMPRESSED.to_string(), diff_id.clone());
        let applied = self
            .api
            .diff()
            .apply(ApplyRequest {
                diff: Some(descriptor),
                mounts,
                payloads: HashMap::new(),
            })
            .await
            .map_err(ClientError::rpc(format!("applying layer {}", layer.digest)))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(ClientError::DigestMismatch {
                what: format!("layer {}", layer.digest),
                detail: format!("it unpacks to {applied}, the image config says {diff_id}"),
            });
        }
        let commit = CommitSnapshotRequest {
            snapshotter: self.plan.snapshotter.clone(),
            name: chain_id.to_string(),
            key: key.to_string(),
            labels: HashMap::from([(SNAPSHOT_REF.to_string(), chain_id.to_string())]),
        };
        let result = match self.api.snapshots().commit(commit).await {
            Ok(_) => LayerResult::Applied,
            // Committed meanwhile by a client that does not share our keys (`ctr`).
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                self.remove_quietly(key).await;
                self.hold(chain_id).await?;
                LayerResult::ByOther
            }
            Err(status) => {
                return Err(ClientError::rpc(format!(
                    "committing snapshot {chain_id:?}"
                ))(status))
            }
        };
        let labels = Labels::from([(UNCOMPRESSED.to_string(), diff_id)]);
        update_labels(&self.api, &layer.digest, &labels).await?;
        Ok(result)
    }

    /// Puts a snapshot someone else committed into our lease, so that it stays until the
    /// image that needs it references it.
    async fn hold(&self, chain_id: &str) -> Result<()> {
        match self.api.lease() {
            Some(lease) => lease_snapshot(&self.api, lease, &self.plan.snapshotter, chain_id).await,
            None => Ok(()),
        }
    }

    /// Removes the snapshot `key`; failing (or finding it gone) is only logged.
    async fn remove_quietly(&self, key: &str) {
        let request = RemoveSnapshotRequest {
            snapshotter: self.plan.snapshotter.clone(),
            key: key.to_string(),
        };
        if let Err(status) = self.api.snapshots().remove(request).await {
            if status.code() != tonic::Code::NotFound {
                tracing::warn!(key, error = %status.message(), "could not remove an extraction snapshot");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::sha256_digest;

    #[test]
    fn extraction_keys_are_deterministic_and_look_like_containerds() {
        let chain = sha256_digest(b"layer");
        assert_eq!(extract_key(&chain), extract_key(&chain));
        assert!(extract_key(&chain).starts_with("extract-"));
        assert!(extract_key(&chain).ends_with(&chain));
        assert_ne!(extract_key(&chain), extract_key(&sha256_digest(b"other")));
    }

    #[tokio::test]
    async fn arrivals_wait_for_the_layer_and_refuse_a_wrong_one() {
        let a = Descriptor::of_bytes("l", b"a");
        let b = Descriptor::of_bytes("l", b"b");
        let (sender, receiver) = mpsc::channel(4);
        let mut arrivals = Arrivals {
            receiver: Some(receiver),
            received: 0,
        };
        sender.send(a.clone()).await.unwrap();
        sender.send(b.clone()).await.unwrap();
        arrivals.wait_for(1, &b).await.unwrap();
        assert_eq!(arrivals.received, 2);
        arrivals.wait_for(0, &a).await.unwrap();

        sender.send(a.clone()).await.unwrap();
        let wrong = arrivals.wait_for(2, &b).await.unwrap_err();
        assert!(wrong.to_string().contains("arrived as"), "{wrong}");

        drop(sender);
        let stopped = arrivals.wait_for(5, &b).await.unwrap_err();
        assert!(stopped.to_string().contains("stopped"), "{stopped}");
    }

    #[tokio::test]
    async fn without_a_channel_every_layer_is_there() {
        let mut arrivals = Arrivals {
            receiver: None,
            received: 0,
        };
        arrivals
            .wait_for(9, &Descriptor::of_bytes("l", b"x"))
            .await
            .unwrap();
    }
}
