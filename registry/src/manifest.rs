//! Reading manifest and index documents: which kind a document is, and the config and
//! layers of an image manifest (OCI or Docker schema 2).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::descriptor::Descriptor;
use crate::error::RegistryError;
use crate::media_types;

/// Largest manifest or index accepted, in bytes (real ones are a few KiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// An image manifest: the config and the layers (bottom first) of one platform's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// [`media_types::OCI_MANIFEST`] or [`media_types::DOCKER_MANIFEST`].
    pub media_type: String,
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// Sum of the config and layer sizes: the bytes a pull of this image fetches
    /// besides the manifest itself.
    pub fn content_size(&self) -> u64 {
        self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// The fields every manifest-like document shares, enough to tell which kind it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// The media type of the manifest or index in `bytes`: its `mediaType` field, or for
/// OCI documents that leave it out, the kind its fields show. `what` names the
/// document in errors. Docker schema 1 and non-image types are refused.
pub fn document_media_type(bytes: &[u8], what: &str) -> Result<String, RegistryError> {
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::protocol(what, format!("not a manifest document: {e}")))?;
    let unsupported = |media_type: String| RegistryError::UnsupportedMediaType {
        what: what.to_string(),
        media_type,
    };
    match envelope.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(unsupported(format!(
                "{} (Docker schema 1 images are not supported)",
                media_types::DOCKER_MANIFEST_V1
            )))
        }
        Some(other) => {
            return Err(RegistryError::protocol(
                what,
                format!("unsupported schemaVersion {other}"),
            ))
        }
        None => return Err(RegistryError::protocol(what, "no schemaVersion")),
    }
    match envelope.media_type {
        Some(mt) if media_types::is_schema1(&mt) => Err(unsupported(format!(
            "{mt} (Docker schema 1 images are not supported)"
        ))),
        Some(mt) if media_types::is_index(&mt) || media_types::is_manifest(&mt) => Ok(mt),
        Some(mt) if !mt.is_empty() => Err(unsupported(mt)),
        _ if envelope.manifests.is_some() => Ok(media_types::OCI_INDEX.to_string()),
        _ if envelope.config.is_some() => Ok(media_types::OCI_MANIFEST.to_string()),
        _ => Err(RegistryError::protocol(
            what,
            "neither an image manifest nor an index",
        )),
    }
}

/// The manifest document as it is on the wire.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDocument {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses an image manifest (OCI or Docker schema 2) into its config and layers.
/// An index gets an error saying a platform must be chosen first; Docker schema 1 an
/// [`RegistryError::UnsupportedMediaType`].
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, RegistryError> {
    const WHAT: &str = "image manifest";
    let media_type = document_media_type(bytes, WHAT)?;
    if media_types::is_index(&media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            what: WHAT.to_string(),
            media_type: format!("{media_type} (an index: select a platform first)"),
        });
    }
    let document: ManifestDocument = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::protocol(WHAT, format!("malformed: {e}")))?;
    document.config.check(WHAT)?;
    for layer in &document.layers {
        layer.check(WHAT)?;
    }
    Ok(ImageManifest {
        media_type,
        config: document.config,
        layers: document.layers,
        annotations: document.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    fn oci_manifest(with_media_type: bool) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": media_types::OCI_CONFIG, "digest": sha256_digest(b"c"), "size": 1},
            "layers": [
                {"mediaType": media_types::OCI_LAYER_GZIP, "digest": sha256_digest(b"l1"), "size": 2},
                {"mediaType": media_types::OCI_LAYER_TAR, "digest": sha256_digest(b"l2"), "size": 3},
            ],
            "annotations": {"k": "v"},
        });
        if with_media_type {
            doc["mediaType"] = media_types::OCI_MANIFEST.into();
        }
        serde_json::to_vec(&doc).unwrap()
    }

    #[test]
    fn oci_manifests_parse_with_or_without_media_type() {
        for with in [true, false] {
            let m = parse_manifest(&oci_manifest(with)).unwrap();
            assert_eq!(m.media_type, media_types::OCI_MANIFEST);
            assert_eq!(m.config.digest, sha256_digest(b"c"));
            assert_eq!(m.layers.len(), 2);
            assert_eq!(m.layers[1].media_type, media_types::OCI_LAYER_TAR);
            assert_eq!(m.annotations["k"], "v");
            assert_eq!(m.content_size(), 6);
        }
    }

    #[test]
    fn docker_schema2_manifests_parse() {
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST,
            "config": {"mediaType": media_types::DOCKER_CONFIG, "digest": sha256_digest(b"c"), "size": 7},
            "layers": [{"mediaType": media_types::DOCKER_LAYER_GZIP, "digest": sha256_digest(b"l"), "size": 9}],
        });
        let m = parse_manifest(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(m.media_type, media_types::DOCKER_MANIFEST);
        assert_eq!(m.config.media_type, media_types::DOCKER_CONFIG);
        assert_eq!(m.layers[0].size, 9);
    }

    #[test]
    fn schema1_indexes_and_junk_get_clear_errors() {
        let v1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        match parse_manifest(v1) {
            Err(RegistryError::UnsupportedMediaType { media_type, .. }) => {
                assert!(media_type.contains("schema 1"), "{media_type}")
            }
            other => panic!("{other:?}"),
        }
        let signed = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
            media_types::DOCKER_MANIFEST_V1_SIGNED
        );
        assert!(matches!(
            parse_manifest(signed.as_bytes()),
            Err(RegistryError::UnsupportedMediaType { .. })
        ));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        match parse_manifest(index) {
            Err(RegistryError::UnsupportedMediaType { media_type, .. }) => {
                assert!(media_type.contains("select a platform"))
            }
            other => panic!("{other:?}"),
        }
        for junk in [&b"not json"[..], b"{}", b"[]", br#"{"schemaVersion":3}"#] {
            assert!(parse_manifest(junk).is_err());
        }
        let artifact = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            parse_manifest(artifact),
            Err(RegistryError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn a_layer_with_a_bad_digest_is_refused() {
        let mut doc: serde_json::Value = serde_json::from_slice(&oci_manifest(true)).unwrap();
        doc["layers"][0]["digest"] = "sha256:../../../etc/passwd".into();
        assert!(matches!(
            parse_manifest(&serde_json::to_vec(&doc).unwrap()),
            Err(RegistryError::Protocol { .. })
        ));
    }

    #[test]
    fn document_kinds_are_told_apart() {
        assert_eq!(
            document_media_type(br#"{"schemaVersion":2,"manifests":[]}"#, "x").unwrap(),
            media_types::OCI_INDEX
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media_types::DOCKER_MANIFEST_LIST
        );
        assert_eq!(
            document_media_type(list.as_bytes(), "x").unwrap(),
            media_types::DOCKER_MANIFEST_LIST
        );
    }
}
