//! Docker's `docker save` archives: `manifest.json` lists each image's config, tags and
//! layer files. The importer stores those files as blobs and writes a Docker schema2
//! manifest for each image, as containerd does, so the image is then like any other.

use serde::Deserialize;

use crate::error::{ClientError, Result};
use crate::oci::media_types::{
    DOCKER_CONFIG, DOCKER_LAYER_TAR, DOCKER_LAYER_TAR_GZIP, DOCKER_MANIFEST, OCI_LAYER_TAR_ZSTD,
};
use crate::oci::{Descriptor, MAX_LAYERS};

/// Most images one `manifest.json` may list.
pub const MAX_IMAGES: usize = 1024;

/// One image of a `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerImage {
    /// The archive entry holding the image config.
    pub config: String,
    /// The image's names (`busybox:latest`); may be absent.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The archive entries holding the layers, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
}

/// Parses `manifest.json`, bounded in images and layers.
pub fn parse_docker_manifest(bytes: &[u8]) -> Result<Vec<DockerImage>> {
    let images: Vec<DockerImage> = serde_json::from_slice(bytes)
        .map_err(|e| ClientError::archive(format!("manifest.json: {e}")))?;
    if images.len() > MAX_IMAGES {
        return Err(ClientError::archive(format!(
            "manifest.json lists {} images; at most {MAX_IMAGES} are accepted",
            images.len()
        )));
    }
    if let Some(image) = images.iter().find(|i| i.layers.len() > MAX_LAYERS) {
        return Err(ClientError::archive(format!(
            "manifest.json: image {} has {} layers; at most {MAX_LAYERS} are accepted",
            image.config,
            image.layers.len()
        )));
    }
    Ok(images)
}

/// The media type of a Docker layer file, from its first bytes (its compression).
pub fn layer_media_type(first_bytes: &[u8]) -> &'static str {
    match first_bytes {
        [0x1f, 0x8b, ..] => DOCKER_LAYER_TAR_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => OCI_LAYER_TAR_ZSTD,
        _ => DOCKER_LAYER_TAR,
    }
}

/// The bytes of a Docker schema2 manifest for a config and layers.
pub fn schema2_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let entry = |media_type: &str, d: &Descriptor| serde_json::json!({ "mediaType": media_type, "digest": d.digest, "size": d.size });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": entry(DOCKER_CONFIG, config),
        "layers": layers.iter().map(|l| entry(&l.media_type, l)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{parse_manifest, sha256_digest};

    #[test]
    fn manifest_json_is_parsed_and_bounded() {
        let json =
            br#"[{"Config":"c.json","RepoTags":["busybox:latest"],"Layers":["a/layer.tar"]}]"#;
        let images = parse_docker_manifest(json).unwrap();
        assert_eq!(images[0].layers, ["a/layer.tar"]);
        assert_eq!(
            images[0].repo_tags.as_deref(),
            Some(&["busybox:latest".to_string()][..])
        );
        assert!(parse_docker_manifest(b"{}").is_err());
        let many: Vec<_> = (0..=MAX_IMAGES)
            .map(|_| serde_json::json!({"Config": "c", "Layers": []}))
            .collect();
        assert!(parse_docker_manifest(&serde_json::to_vec(&many).unwrap()).is_err());
    }

    #[test]
    fn layer_types_follow_compression() {
        assert_eq!(layer_media_type(&[0x1f, 0x8b, 8, 0]), DOCKER_LAYER_TAR_GZIP);
        assert_eq!(
            layer_media_type(&[0x28, 0xb5, 0x2f, 0xfd]),
            OCI_LAYER_TAR_ZSTD
        );
        assert_eq!(layer_media_type(b"bin/"), DOCKER_LAYER_TAR);
        assert_eq!(layer_media_type(b""), DOCKER_LAYER_TAR);
    }

    #[test]
    fn written_manifests_parse_back() {
        let config = Descriptor::of_bytes(DOCKER_CONFIG, b"{}");
        let layer = Descriptor::of_bytes(DOCKER_LAYER_TAR, b"tar");
        let bytes = schema2_manifest(&config, std::slice::from_ref(&layer));
        let manifest = parse_manifest("m", &bytes).unwrap();
        assert_eq!(manifest.media_type.as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(manifest.config.digest, config.digest);
        assert_eq!(manifest.layers[0].digest, sha256_digest(b"tar"));
        assert_eq!(manifest.layers[0].media_type, DOCKER_LAYER_TAR);
    }
}
