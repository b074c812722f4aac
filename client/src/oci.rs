//! The OCI image format as this client reads and writes it: media types, descriptors,
//! indexes, manifests and image configs (Docker schema2 is read alongside OCI, since
//! its JSON has the same shape), and digest checks.
//!
//! Only the fields a client acts on are modelled; blobs are always stored and pushed as
//! the bytes they arrived as, never re-serialized from these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{ClientError, Result};
use crate::platform::Platform;

/// Media types of image objects (OCI and Docker schema2).
pub mod media_types {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed OCI layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// Gzip-compressed OCI layer.
    pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Zstd-compressed OCI layer.
    pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker manifest list (the Docker form of an index).
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema2 image manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Uncompressed Docker layer.
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Gzip-compressed Docker layer.
    pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Gzip-compressed Docker layer that registries must not redistribute.
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// Annotations and labels with a meaning to containerd clients.
pub mod annotations {
    /// Index annotation naming the full image name (`io.containerd.image.name`).
    pub const IMAGE_NAME: &str = "io.containerd.image.name";
    /// Standard OCI annotation holding the reference name (usually the tag).
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
}

/// Largest index, manifest or config this client reads into memory.
pub const MAX_JSON_BYTES: u64 = 8 << 20;
/// Most manifests one index may list.
pub const MAX_INDEX_ENTRIES: usize = 4096;
/// Most layers one manifest may list (the overlay stack has a lower limit anyway).
pub const MAX_LAYERS: usize = 1024;
/// How deep indexes may nest inside indexes.
pub const MAX_INDEX_DEPTH: usize = 4;

/// What an object is, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An image index or Docker manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer (any compression).
    Layer,
    /// Anything else (attestations, artifacts, unknown types).
    Other,
}

impl ObjectKind {
    /// The kind of the object with `media_type`.
    pub fn of(media_type: &str) -> ObjectKind {
        use media_types::*;
        match media_type {
            OCI_INDEX | DOCKER_MANIFEST_LIST => ObjectKind::Index,
            OCI_MANIFEST | DOCKER_MANIFEST => ObjectKind::Manifest,
            OCI_CONFIG | DOCKER_CONFIG => ObjectKind::Config,
            t if t.starts_with("application/vnd.oci.image.layer.")
                || t.starts_with("application/vnd.docker.image.rootfs.") =>
            {
                ObjectKind::Layer
            }
            _ => ObjectKind::Other,
        }
    }

    /// The progress kind a display shows for this object.
    pub fn progress_kind(self) -> crate::progress::ItemKind {
        use crate::progress::ItemKind;
        match self {
            ObjectKind::Index => ItemKind::Index,
            ObjectKind::Manifest => ItemKind::Manifest,
            ObjectKind::Config => ItemKind::Config,
            ObjectKind::Layer | ObjectKind::Other => ItemKind::Layer,
        }
    }

    /// The prefix containerd clients give the ingest ref of such a blob
    /// (`<prefix>-sha256:<hex>`), so that a pull interrupted by any of them resumes.
    pub fn ingest_prefix(self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::Manifest => "manifest",
            ObjectKind::Config => "config",
            ObjectKind::Layer => "layer",
            ObjectKind::Other => "unknown",
        }
    }
}

/// A content descriptor: what a blob is, its digest and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The platform of the manifest this entry of an index points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations (image names in an archive's index, for one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes` with `media_type`.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// What the descriptor points at, by its media type.
    pub fn kind(&self) -> ObjectKind {
        ObjectKind::of(&self.media_type)
    }

    /// The descriptor as the gRPC API carries it.
    pub fn to_wire(&self) -> berth_proto::containerd::types::Descriptor {
        berth_proto::containerd::types::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// A descriptor from the gRPC API (e.g. an image record's target); a negative size
    /// is refused.
    pub fn from_wire(wire: &berth_proto::containerd::types::Descriptor) -> Result<Descriptor> {
        let size = u64::try_from(wire.size).map_err(|_| {
            ClientError::image(
                format!("descriptor of {}", wire.digest),
                format!("negative size {}", wire.size),
            )
        })?;
        Ok(Descriptor {
            media_type: wire.media_type.clone(),
            digest: wire.digest.clone(),
            size,
            platform: None,
            annotations: wire
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes) it lists.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config a client acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (`amd64`, `arm64`, …).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8`), if any.
    #[serde(default)]
    pub variant: Option<String>,
    /// How a container of the image runs.
    #[serde(default)]
    pub config: Option<ProcessConfig>,
    /// The uncompressed layers.
    pub rootfs: RootFs,
}

impl ImageConfig {
    /// The platform the config says the image is for (empty fields when it says none).
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
            ..Platform::default()
        }
    }
}

/// The `config` section of an image config: the process defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessConfig {
    /// User (name or uid, with optional `:group`) the process runs as.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment, `KEY=value` each.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (or command, without an entrypoint).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Image labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Signal that stops the container.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// The `rootfs` section of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digests of the uncompressed layers, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `digest` is `sha256:` and 64 lowercase hex digits: the only form this
/// client puts in a path, a ref or a request.
pub fn check_digest(digest: &str) -> Result<()> {
    let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if valid {
        Ok(())
    } else {
        let shown: String = digest.chars().take(80).collect();
        Err(ClientError::InvalidArgument(format!(
            "{shown:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        )))
    }
}

/// The 64 hex digits of a checked digest.
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Checks that `bytes` are what `descriptor` announces (size and digest).
pub fn verify_bytes(descriptor: &Descriptor, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != descriptor.size {
        return Err(ClientError::DigestMismatch {
            what: format!("blob {}", descriptor.digest),
            detail: format!("expected {} bytes, got {}", descriptor.size, bytes.len()),
        });
    }
    let actual = sha256_digest(bytes);
    if actual != descriptor.digest {
        return Err(ClientError::DigestMismatch {
            what: format!("blob {}", descriptor.digest),
            detail: format!("the bytes have digest {actual}"),
        });
    }
    Ok(())
}

/// Parses an index (or Docker manifest list), bounded in entries, every digest checked.
pub fn parse_index(what: &str, bytes: &[u8]) -> Result<Index> {
    let index: Index =
        serde_json::from_slice(bytes).map_err(|e| ClientError::image(what, e.to_string()))?;
    if index.manifests.len() > MAX_INDEX_ENTRIES {
        return Err(ClientError::image(
            what,
            format!(
                "lists {} manifests; at most {MAX_INDEX_ENTRIES} are accepted",
                index.manifests.len()
            ),
        ));
    }
    for entry in &index.manifests {
        check_digest(&entry.digest).map_err(|e| ClientError::image(what, e.to_string()))?;
    }
    Ok(index)
}

/// Parses a manifest, bounded in layers, every digest checked.
pub fn parse_manifest(what: &str, bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| ClientError::image(what, e.to_string()))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(ClientError::image(
            what,
            format!(
                "lists {} layers; at most {MAX_LAYERS} are accepted",
                manifest.layers.len()
            ),
        ));
    }
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        check_digest(&descriptor.digest).map_err(|e| ClientError::image(what, e.to_string()))?;
    }
    Ok(manifest)
}

/// Parses an image config; every diff id is checked.
pub fn parse_config(what: &str, bytes: &[u8]) -> Result<ImageConfig> {
    let config: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| ClientError::image(what, e.to_string()))?;
    if config.rootfs.diff_ids.len() > MAX_LAYERS {
        return Err(ClientError::image(what, "too many diff ids"));
    }
    for diff_id in &config.rootfs.diff_ids {
        check_digest(diff_id).map_err(|e| ClientError::image(what, e.to_string()))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_media_types_of_both_formats() {
        use media_types::*;
        assert_eq!(ObjectKind::of(OCI_INDEX), ObjectKind::Index);
        assert_eq!(ObjectKind::of(DOCKER_MANIFEST_LIST), ObjectKind::Index);
        assert_eq!(ObjectKind::of(DOCKER_MANIFEST), ObjectKind::Manifest);
        assert_eq!(ObjectKind::of(DOCKER_CONFIG), ObjectKind::Config);
        assert_eq!(ObjectKind::of(OCI_LAYER_TAR_ZSTD), ObjectKind::Layer);
        assert_eq!(ObjectKind::of(DOCKER_LAYER_FOREIGN_GZIP), ObjectKind::Layer);
        assert_eq!(
            ObjectKind::of("application/vnd.in-toto+json"),
            ObjectKind::Other
        );
        assert_eq!(ObjectKind::Layer.ingest_prefix(), "layer");
    }

    #[test]
    fn digests_are_checked_strictly() {
        let good = sha256_digest(b"x");
        assert!(check_digest(&good).is_ok());
        for bad in [
            "sha256:",
            "sha512:00",
            "sha256:../../etc/passwd",
            &good.to_uppercase(),
            &format!("{good}0"),
            &good[..good.len() - 1],
        ] {
            assert!(check_digest(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bytes_are_verified_against_their_descriptor() {
        let d = Descriptor::of_bytes(media_types::OCI_CONFIG, b"{}");
        assert!(verify_bytes(&d, b"{}").is_ok());
        let wrong_size = verify_bytes(&d, b"{ }").unwrap_err();
        assert!(
            wrong_size.to_string().contains("expected 2 bytes"),
            "{wrong_size}"
        );
        let wrong_digest = verify_bytes(&d, b"[]").unwrap_err();
        assert!(matches!(wrong_digest, ClientError::DigestMismatch { .. }));
    }

    #[test]
    fn manifests_with_bad_digests_or_too_many_layers_are_refused() {
        let layer = |digest: &str| serde_json::json!({"mediaType": media_types::OCI_LAYER_TAR, "digest": digest, "size": 1});
        let good = sha256_digest(b"l");
        let manifest = |layers: Vec<serde_json::Value>| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "config": {"mediaType": media_types::OCI_CONFIG, "digest": good, "size": 2},
                "layers": layers,
            }))
            .unwrap()
        };
        assert_eq!(
            parse_manifest("m", &manifest(vec![layer(&good)]))
                .unwrap()
                .layers
                .len(),
            1
        );
        let bad = parse_manifest("m", &manifest(vec![layer("sha256:../x")])).unwrap_err();
        assert!(bad.to_string().starts_with("invalid m:"), "{bad}");
        let many = manifest((0..=MAX_LAYERS).map(|_| layer(&good)).collect());
        assert!(parse_manifest("m", &many).is_err());
        let negative = br#"{"schemaVersion":2,"config":{"digest":"x","size":-1}}"#;
        assert!(parse_manifest("m", negative).is_err());
    }

    #[test]
    fn configs_give_process_defaults_and_diff_ids() {
        let diff = sha256_digest(b"tar");
        let json = serde_json::json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"], "Env": ["A=1"],
                       "User": "1000:1000", "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
        });
        let config = parse_config("c", &serde_json::to_vec(&json).unwrap()).unwrap();
        let process = config.config.clone().unwrap();
        assert_eq!(process.entrypoint.unwrap(), ["/bin/sh"]);
        assert_eq!(process.user.as_deref(), Some("1000:1000"));
        assert_eq!(process.working_dir.as_deref(), Some("/w"));
        assert_eq!(config.rootfs.diff_ids, [diff]);
        assert_eq!(config.platform().to_string(), "linux/arm64/v8");
    }
}
