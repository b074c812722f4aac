//! `containerd.services.diff.v1.Diff`: unpacking layer blobs onto snapshots (`Apply`) and
//! writing the change between two snapshots as a layer blob (`Diff`).
//!
//! The mounts a client passes must be those the Snapshots service handed out for a
//! snapshot of the same namespace (an active one for `Apply`; active or view for `Diff`):
//! this daemon writes only into its own snapshots, never into a directory named by a
//! request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_content::Digest;
use berth_proto::containerd::services::diff::v1::{
    diff_server::{Diff, DiffServer},
    ApplyRequest, ApplyResponse, DiffRequest, DiffResponse,
};
use berth_proto::containerd::types::{Descriptor, Mount as WireMount};
use berth_snapshot::layer::{self, ApplyOptions, Compression, DiffOptions};
use berth_snapshot::mount::Mount;
use berth_snapshot::overlay::Kind as SnapshotKind;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::metadata::{ContentRecord, Kind as RecordKind, LeaseResource};
use crate::request;
use crate::services::snapshots::{blocking, mount_from_wire};
use crate::services::MAX_MESSAGE_BYTES;
use crate::state::{self, Daemon};

/// Label (on a content record) or annotation (on a descriptor) holding a compressed
/// layer's diff id: the digest of its uncompressed tar stream.
pub const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// Most mounts accepted on one side of a request.
const MAX_MOUNTS: usize = 16;
/// Longest client ingest ref accepted, in bytes (the namespace is put in front of it).
const MAX_REF_LEN: usize = berth_content::MAX_REF_LEN - crate::ident::MAX_IDENTIFIER_LEN - 1;
/// Directory under `--state` where temporary mount points are made.
const TEMP_MOUNTS_DIR: &str = "tmpmounts";

/// The Diff service.
pub struct DiffService {
    daemon: Arc<Daemon>,
    /// Backend keys of the snapshots a layer is being applied to right now: two applies
    /// onto one snapshot at once would interleave their files.
    applying: Mutex<HashSet<String>>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> DiffServer<DiffService> {
    DiffServer::new(DiffService {
        daemon,
        applying: Mutex::new(HashSet::new()),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Marks a snapshot as being applied to until dropped.
struct ApplyingGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl<'a> ApplyingGuard<'a> {
    fn claim(set: &'a Mutex<HashSet<String>>, key: &str, client_key: &str) -> ApiResult<Self> {
        let mut keys = set.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.insert(key.to_string()) {
            return Err(ApiError::FailedPrecondition(format!(
                "a layer is already being applied to snapshot {client_key:?}"
            )));
        }
        Ok(ApplyingGuard {
            set,
            key: key.to_string(),
        })
    }
}

impl Drop for ApplyingGuard<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Converts one side's mounts from the wire, bounded in number.
fn mounts_from_wire(what: &str, mounts: Vec<WireMount>) -> ApiResult<Vec<Mount>> {
    if mounts.len() > MAX_MOUNTS {
        return Err(ApiError::InvalidArgument(format!(
            "{} {what} mounts given; at most {MAX_MOUNTS} are accepted",
            mounts.len()
        )));
    }
    mounts.into_iter().map(mount_from_wire).collect()
}

/// The backend key of the snapshot in `ns`, of one of `kinds`, whose mounts are exactly
/// `mounts`; `InvalidArgument` if there is none.
fn snapshot_of_mounts(
    daemon: &Daemon,
    ns: &str,
    mounts: &[Mount],
    kinds: &[SnapshotKind],
    what: &str,
) -> ApiResult<String> {
    for info in daemon.snapshots.list()? {
        if !kinds.contains(&info.kind) || state::client_snapshot_key(ns, &info.name).is_none() {
            continue;
        }
        match daemon.snapshots.mounts(&info.name) {
            Ok(found) if found == mounts => return Ok(info.name),
            // Removed meanwhile, or not mountable: not the one.
            _ => {}
        }
    }
    Err(ApiError::InvalidArgument(format!(
        "the {what} mounts are not those of {} snapshot in namespace {ns:?}; pass the mounts \
         the Snapshots service returned",
        match kinds {
            [SnapshotKind::Active] => "an active",
            _ => "an active or view",
        }
    )))
}

/// The directory a layer is written into for these (single, writable) mounts.
fn writable_dir(mounts: &[Mount]) -> Option<PathBuf> {
    let [mount] = mounts else {
        return None;
    };
    if mount.kind == "overlay" {
        mount
            .options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from)
    } else {
        Some(PathBuf::from(&mount.source))
    }
}

/// True if `dir` exists and holds nothing.
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Deletes everything inside `dir` (never following symlinks), leaving `dir` itself.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The diff id the layer must have, if the descriptor's annotations or the content
/// record's labels give one (the descriptor wins).
fn expected_diff_id(
    annotations: &HashMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    annotations
        .get(LABEL_UNCOMPRESSED)
        .or_else(|| labels.get(LABEL_UNCOMPRESSED))
        .cloned()
}

/// A layer error as the client sees it: problems with the layer name the blob.
fn layer_failure(digest: &Digest, e: berth_snapshot::Error) -> ApiError {
    let api = ApiError::from(e);
    if api.code() == tonic::Code::InvalidArgument {
        ApiError::InvalidArgument(format!("layer {digest}: {api}"))
    } else {
        api
    }
}

/// The compression and media type of the layer `Diff` is asked to write (tar+gzip when
/// the request names none).
fn diff_format(media_type: &str) -> ApiResult<(Compression, String)> {
    if media_type.is_empty() {
        return Ok((Compression::Gzip, layer::OCI_LAYER_TAR_GZIP.to_string()));
    }
    let compression = Compression::from_media_type(media_type)
        .map_err(|e| ApiError::InvalidArgument(format!("cannot write a diff as {e}")))?;
    Ok((compression, media_type.to_string()))
}

impl DiffService {
    /// Where temporary mount points go (created on first use).
    fn temp_dir(&self) -> ApiResult<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.daemon.settings.state.join(TEMP_MOUNTS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ApiError::Internal(format!("creating {}: {e}", dir.display())))?;
        Ok(dir)
    }

    async fn do_apply(&self, req: Request<ApplyRequest>) -> ApiResult<ApplyResponse> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        let desc = r.diff.ok_or_else(|| {
            ApiError::InvalidArgument("the layer descriptor is required".to_string())
        })?;
        let digest = Digest::parse(&desc.digest)?;
        let record: ContentRecord = self
            .daemon
            .meta
            .get(RecordKind::Content, &ns, &desc.digest)?
            .ok_or_else(|| {
                ApiError::NotFound(format!("content {digest} not found in namespace {ns:?}"))
            })?;
        let blob = self.daemon.content.info(&digest)?;
        if desc.size != 0 && u64::try_from(desc.size).ok() != Some(blob.size) {
            return Err(ApiError::InvalidArgument(format!(
                "layer {digest} is {} bytes, but the descriptor says {}",
                blob.size, desc.size
            )));
        }
        if !r.payloads.is_empty() {
            tracing::debug!(namespace = %ns, %digest, payloads = ?r.payloads.keys().collect::<Vec<_>>(),
                "apply payloads ignored");
        }
        let mounts = mounts_from_wire("apply", r.mounts)?;
        let key = snapshot_of_mounts(&self.daemon, &ns, &mounts, &[SnapshotKind::Active], "apply")?;
        let client_key = state::client_snapshot_key(&ns, &key)
            .unwrap_or(&key)
            .to_string();
        let _applying = ApplyingGuard::claim(&self.applying, &key, &client_key)?;

        let options = ApplyOptions {
            expected_diff_id: expected_diff_id(&desc.annotations, &record.labels),
            // Snapshots.Commit flushes the filesystem before it records the commit, which
            // is when the files must be durable; flushing here too would only cost time.
            sync: false,
            temp_dir: self.temp_dir()?,
            ..ApplyOptions::default()
        };
        let content = self.daemon.content.clone();
        let media_type = desc.media_type.clone();
        let started = std::time::Instant::now();
        let applied = blocking(move || -> ApiResult<layer::Applied> {
            let target = writable_dir(&mounts);
            let was_empty = target.as_deref().is_some_and(is_empty_dir);
            let blob = content.open_blob(&digest)?;
            match layer::apply_layer(blob, &media_type, &mounts, &options) {
                Ok(applied) => Ok(applied),
                Err(e) => {
                    // Leave the snapshot as it was found when that is known (empty), so
                    // that nothing half-applied can be committed by mistake.
                    if let (true, Some(dir)) = (was_empty, &target) {
                        if let Err(clean) = empty_dir(dir) {
                            tracing::warn!(dir = %dir.display(), error = %clean,
                                "could not empty a snapshot after a failed apply");
                        }
                    }
                    Err(layer_failure(&digest, berth_snapshot::Error::Layer(e)))
                }
            }
        })
        .await??;
        tracing::info!(namespace = %ns, key = %client_key, layer = %digest, diff_id = %applied.diff_id,
            size = applied.size, took = ?started.elapsed(), "layer applied");
        Ok(ApplyResponse {
            applied: Some(Descriptor {
                media_type: layer::OCI_LAYER_TAR.to_string(),
                digest: applied.diff_id,
                size: i64::try_from(applied.size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
        })
    }

    async fn do_diff(&self, req: Request<DiffRequest>) -> ApiResult<DiffResponse> {
        let ns = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let r = req.into_inner();
        let (compression, media_type) = diff_format(&r.media_type)?;
        let mut labels: BTreeMap<String, String> = r.labels.into_iter().collect();
        crate::services::labels::validate(&labels)?;
        let reference = if r.r#ref.is_empty() {
            format!("diff-{:032x}", rand::random::<u128>())
        } else {
            r.r#ref
        };
        if reference.len() > MAX_REF_LEN {
            return Err(ApiError::InvalidArgument(format!(
                "ref is {} bytes long; at most {MAX_REF_LEN} are allowed",
                reference.len()
            )));
        }
        let either = [SnapshotKind::Active, SnapshotKind::View];
        let left = mounts_from_wire("left", r.left)?;
        let right = mounts_from_wire("right", r.right)?;
        if right.is_empty() {
            return Err(ApiError::InvalidArgument(
                "the right (newer) mounts are required".to_string(),
            ));
        }
        if !left.is_empty() {
            snapshot_of_mounts(&self.daemon, &ns, &left, &either, "left")?;
        }
        snapshot_of_mounts(&self.daemon, &ns, &right, &either, "right")?;

        // Write the layer into an ingest (nothing the collector deletes while it is young).
        let options = DiffOptions {
            compression,
            temp_dir: self.temp_dir()?,
            ..DiffOptions::default()
        };
        let content = self.daemon.content.clone();
        let ingest = state::ingest_ref(&ns, &reference);
        let started = std::time::Instant::now();
        let (writer, written) = blocking(move || -> ApiResult<_> {
            let mut writer = content.writer(&ingest, None, None)?;
            if writer.offset() > 0 {
                writer.write(0, &[])?; // start over: an old ingest of this ref is stale
            }
            let result = {
                let mut out = BufWriter::with_capacity(1 << 20, &mut writer);
                layer::write_diff(&left, &right, &mut out, &options).and_then(|written| {
                    out.flush()
                        .map_err(|e| berth_snapshot::layer::LayerError::Io {
                            context: "write the diff into the content store".to_string(),
                            source: e,
                        })?;
                    Ok(written)
                })
            };
            match result {
                Ok(written) => Ok((writer, written)),
                Err(e) => {
                    drop(writer);
                    if let Err(abort) = content.abort(&ingest) {
                        tracing::warn!(%ingest, error = %abort, "could not abort a failed diff's ingest");
                    }
                    Err(berth_snapshot::Error::Layer(e).into())
                }
            }
        })
        .await??;
        let digest = Digest::parse(&written.digest)?;
        let size = i64::try_from(written.size).unwrap_or(i64::MAX);
        labels.insert(LABEL_UNCOMPRESSED.to_string(), written.diff_id.clone());

        // From the blob's commit until its record exists, no collection may run.
        {
            let _no_gc = self.daemon.gc.writer().await;
            blocking(
                move || match writer.commit(Some(written.size), Some(digest)) {
                    Ok(_) | Err(berth_content::Error::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(ApiError::from(e)),
                },
            )
            .await??;
            let now = SystemTime::now();
            let name = digest.to_string();
            self.daemon
                .meta
                .write(|meta, batch| -> ApiResult<()> {
                    state::ensure_namespace(meta, batch, &ns)?;
                    if meta
                        .get::<ContentRecord>(RecordKind::Content, &ns, &name)?
                        .is_none()
                    {
                        let record = ContentRecord {
                            size,
                            labels,
                            created_at: now,
                            updated_at: now,
                        };
                        batch.put(RecordKind::Content, &ns, &name, &record)?;
                    }
                    if let Some(lease) = &lease {
                        let resource = LeaseResource {
                            kind: "content".to_string(),
                            id: name.clone(),
                        };
                        state::add_to_lease(meta, batch, &ns, lease, resource)?;
                    }
                    Ok(())
                })
                .await?;
        }
        tracing::info!(namespace = %ns, %digest, diff_id = %written.diff_id, size, %media_type,
            took = ?started.elapsed(), "diff written");
        Ok(DiffResponse {
            diff: Some(Descriptor {
                media_type,
                digest: digest.to_string(),
                size,
                annotations: HashMap::new(),
            }),
        })
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        Ok(Response::new(self.do_apply(req).await?))
    }

    async fn diff(&self, req: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        Ok(Response::new(self.do_diff(req).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.to_string(),
            source: source.to_string(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    use crate::services::test_support::{self, TestDaemon};
    use sha2::Digest as _;

    /// Appends one ustar entry (`kind` b'0' file, b'5' directory) to `out`.
    fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, data: &[u8]) {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(
            &mut header[100..108],
            if kind == b'5' { 0o755 } else { 0o644 },
        );
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 1_700_000_000);
        header[148..156].copy_from_slice(b"        ");
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            tar_entry(&mut out, name, *kind, data);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn sha256(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// Stores `bytes` as a blob visible in `ns`, with `labels`.
    async fn put_blob(
        t: &TestDaemon,
        ns: &str,
        bytes: &[u8],
        labels: &[(&str, &str)],
    ) -> Descriptor {
        let mut writer = t
            .daemon
            .content
            .writer(&format!("test-{}", sha256(bytes)), None, None)
            .unwrap();
        writer.write(0, bytes).unwrap();
        let digest = match writer.commit(None, None) {
            Ok(d) => d.to_string(),
            Err(berth_content::Error::AlreadyExists { .. }) => sha256(bytes),
            Err(e) => panic!("{e}"),
        };
        let record = ContentRecord {
            size: bytes.len() as i64,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        };
        t.daemon
            .meta
            .write(|_, batch| -> ApiResult<()> {
                Ok(batch.put(RecordKind::Content, ns, &digest, &record)?)
            })
            .await
            .unwrap();
        Descriptor {
            media_type: layer::OCI_LAYER_TAR.to_string(),
            digest,
            size: bytes.len() as i64,
            annotations: HashMap::new(),
        }
    }

    fn svc(t: &TestDaemon) -> DiffService {
        DiffService {
            daemon: t.daemon.clone(),
            applying: Mutex::new(HashSet::new()),
        }
    }

    fn wire(mounts: Vec<Mount>) -> Vec<WireMount> {
        mounts
            .into_iter()
            .map(crate::services::snapshots::mount_to_wire)
            .collect()
    }

    async fn apply(
        t: &TestDaemon,
        ns: &str,
        desc: &Descriptor,
        mounts: &[Mount],
    ) -> ApiResult<Descriptor> {
        let req = ApplyRequest {
            diff: Some(desc.clone()),
            mounts: wire(mounts.to_vec()),
            payloads: HashMap::new(),
        };
        Ok(svc(t)
            .do_apply(test_support::request(ns, req))
            .await?
            .applied
            .unwrap())
    }

    fn prepare(t: &TestDaemon, key: &str, parent: Option<&str>) -> Vec<Mount> {
        t.daemon
            .snapshots
            .prepare(key, parent, BTreeMap::new())
            .unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn apply_then_diff_then_apply_again_round_trips() {
        let t = test_support::daemon();
        let layer_tar = tar(&[("a/", b'5', b""), ("a/f", b'0', b"hello")]);
        let desc = put_blob(&t, "ns", &layer_tar, &[]).await;

        let mounts = prepare(&t, "ns/extract", None);
        let applied = apply(&t, "ns", &desc, &mounts).await.unwrap();
        assert_eq!(
            applied.digest,
            sha256(&layer_tar),
            "the diff id of a plain tar is its digest"
        );
        assert_eq!(applied.size, layer_tar.len() as i64);
        assert_eq!(applied.media_type, "application/vnd.oci.image.layer.v1.tar");
        let base_dir = writable_dir(&mounts).unwrap();
        assert_eq!(std::fs::read(base_dir.join("a/f")).unwrap(), b"hello");
        t.daemon
            .snapshots
            .commit("ns/base", "ns/extract", BTreeMap::new())
            .unwrap();

        // A change on top, written as a diff into the content store.
        let upper = prepare(&t, "ns/work", Some("ns/base"));
        std::fs::write(writable_dir(&upper).unwrap().join("new"), b"world").unwrap();
        let lower = t
            .daemon
            .snapshots
            .view("ns/base-view", Some("ns/base"), BTreeMap::new())
            .unwrap();
        let req = DiffRequest {
            left: wire(lower),
            right: wire(upper),
            media_type: String::new(),
            r#ref: "my-diff".to_string(),
            labels: HashMap::from([("purpose".to_string(), "test".to_string())]),
        };
        let diff = svc(&t)
            .do_diff(test_support::request("ns", req))
            .await
            .unwrap()
            .diff
            .unwrap();
        assert_eq!(
            diff.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let digest = Digest::parse(&diff.digest).unwrap();
        assert_eq!(
            t.daemon.content.info(&digest).unwrap().size as i64,
            diff.size
        );
        let record: ContentRecord = t
            .daemon
            .meta
            .get(RecordKind::Content, "ns", &diff.digest)
            .unwrap()
            .expect("the diff is visible in its namespace");
        assert_eq!(
            record.labels.get("purpose").map(String::as_str),
            Some("test")
        );
        let diff_id = record
            .labels
            .get(LABEL_UNCOMPRESSED)
            .expect("diff id label")
            .clone();
        assert!(
            t.daemon.content.list_statuses().unwrap().is_empty(),
            "the ingest is gone"
        );

        // Applying the diff onto the base again reproduces the change, and the diff id
        // label is checked along the way.
        let again = prepare(&t, "ns/again", Some("ns/base"));
        let applied = apply(&t, "ns", &diff, &again).await.unwrap();
        assert_eq!(applied.digest, diff_id);
        assert_eq!(entries(&writable_dir(&again).unwrap()), ["new"]);
    }

    #[tokio::test]
    async fn a_hostile_or_corrupt_layer_is_refused_and_the_snapshot_left_empty() {
        let t = test_support::daemon();
        let hostile = tar(&[("good", b'0', b"ok"), ("x/../../evil", b'0', b"pwned")]);
        let mut corrupt_gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff];
        corrupt_gzip.extend_from_slice(&[0x55; 300]);
        let good = tar(&[("f", b'0', b"x")]);
        type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (hostile, vec![], "unsafe path"),
            (corrupt_gzip, vec![], "gzip"),
            (
                good,
                vec![(
                    LABEL_UNCOMPRESSED,
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                )],
                "diff id",
            ),
        ];
        for (i, (bytes, labels, message)) in cases.into_iter().enumerate() {
            let mut desc = put_blob(&t, "ns", &bytes, &labels).await;
            if message == "gzip" {
                desc.media_type = layer::OCI_LAYER_TAR_GZIP.to_string();
            }
            let mounts = prepare(&t, &format!("ns/k{i}"), None);
            let err = apply(&t, "ns", &desc, &mounts).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.to_string().contains(message), "{err}");
            assert!(err.to_string().contains(&desc.digest), "{err}");
            assert!(
                entries(&writable_dir(&mounts).unwrap()).is_empty(),
                "case {i} left files"
            );
        }
        assert!(!t.dir.path().join("root/snapshots/overlayfs/evil").exists());
        assert!(!t
            .dir
            .path()
            .join("root/snapshots/overlayfs/snapshots/evil")
            .exists());
    }

    #[tokio::test]
    async fn apply_needs_content_of_the_namespace_and_mounts_of_its_own_snapshots() {
        let t = test_support::daemon();
        let layer_tar = tar(&[("f", b'0', b"x")]);
        let desc = put_blob(&t, "a", &layer_tar, &[]).await;
        let in_a = prepare(&t, "a/k", None);
        let in_b = prepare(&t, "b/k", None);

        let err = apply(&t, "b", &desc, &in_b).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
        let err = apply(&t, "a", &desc, &in_b).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

        let elsewhere = tempfile::tempdir().unwrap();
        let bind = Mount {
            kind: "bind".to_string(),
            source: elsewhere.path().to_string_lossy().into_owned(),
            options: vec!["rw".to_string(), "rbind".to_string()],
        };
        let err = apply(&t, "a", &desc, &[bind]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(entries(elsewhere.path()).is_empty());

        t.daemon
            .snapshots
            .commit("a/c", "a/k", BTreeMap::new())
            .unwrap();
        let view = t
            .daemon
            .snapshots
            .view("a/v", Some("a/c"), BTreeMap::new())
            .unwrap();
        let err = apply(&t, "a", &desc, &view).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(in_a.len() == 1);
    }

    #[test]
    fn the_written_directory_is_the_upper_or_the_bind_source() {
        let overlay = mount(
            "overlay",
            "overlay",
            &["workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"],
        );
        assert_eq!(
            writable_dir(std::slice::from_ref(&overlay)),
            Some(PathBuf::from("/s/2/fs"))
        );
        let bind = mount("bind", "/s/1/fs", &["rw", "rbind"]);
        assert_eq!(
            writable_dir(std::slice::from_ref(&bind)),
            Some(PathBuf::from("/s/1/fs"))
        );
        assert_eq!(writable_dir(&[]), None);
        assert_eq!(writable_dir(&[bind, overlay]), None);
    }

    #[test]
    fn the_descriptor_annotation_wins_over_the_content_label() {
        let annotations = HashMap::from([(LABEL_UNCOMPRESSED.to_string(), "sha256:a".to_string())]);
        let labels = BTreeMap::from([(LABEL_UNCOMPRESSED.to_string(), "sha256:b".to_string())]);
        assert_eq!(
            expected_diff_id(&annotations, &labels).as_deref(),
            Some("sha256:a")
        );
        assert_eq!(
            expected_diff_id(&HashMap::new(), &labels).as_deref(),
            Some("sha256:b")
        );
        assert_eq!(expected_diff_id(&HashMap::new(), &BTreeMap::new()), None);
    }

    #[test]
    fn diffs_default_to_gzip_and_refuse_non_layer_types() {
        let (compression, media_type) = diff_format("").unwrap();
        assert_eq!(compression, Compression::Gzip);
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        let docker = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert_eq!(
            diff_format(docker).unwrap(),
            (Compression::Gzip, docker.to_string())
        );
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        assert_eq!(diff_format(zstd).unwrap().0, Compression::Zstd);
        assert!(matches!(
            diff_format("application/vnd.oci.image.manifest.v1+json"),
            Err(ApiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn emptying_a_directory_keeps_it_and_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert!(is_empty_dir(dir.path()));
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/link")).unwrap();
        assert!(!is_empty_dir(dir.path()));
        empty_dir(dir.path()).unwrap();
        assert!(is_empty_dir(dir.path()));
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn only_one_apply_per_snapshot_at_a_time() {
        let set = Mutex::new(HashSet::new());
        let first = ApplyingGuard::claim(&set, "ns/k", "k").unwrap();
        assert!(matches!(
            ApplyingGuard::claim(&set, "ns/k", "k"),
            Err(ApiError::FailedPrecondition(_))
        ));
        let other = ApplyingGuard::claim(&set, "ns/j", "j").unwrap();
        drop(first);
        assert!(ApplyingGuard::claim(&set, "ns/k", "k").is_ok());
        drop(other);
    }
}
