//! Image indexes and Docker manifest lists: reading them and choosing the manifest for
//! a platform.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::descriptor::Descriptor;
use crate::error::RegistryError;
use crate::manifest::document_media_type;
use crate::media_types;
use crate::platform::Platform;

/// An image index (or Docker manifest list): one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    /// [`media_types::OCI_INDEX`] or [`media_types::DOCKER_MANIFEST_LIST`].
    pub media_type: String,
    /// The manifests it lists, in its order.
    pub manifests: Vec<Descriptor>,
    /// The index's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The index document as it is on the wire.
#[derive(Deserialize)]
struct IndexDocument {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses an OCI image index or a Docker manifest list.
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, RegistryError> {
    const WHAT: &str = "image index";
    let media_type = document_media_type(bytes, WHAT)?;
    if !media_types::is_index(&media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            what: WHAT.to_string(),
            media_type: format!("{media_type} (a manifest, not an index)"),
        });
    }
    let document: IndexDocument = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::protocol(WHAT, format!("malformed: {e}")))?;
    for manifest in &document.manifests {
        manifest.check(WHAT)?;
    }
    Ok(ImageIndex {
        media_type,
        manifests: document.manifests,
        annotations: document.annotations,
    })
}

/// Chooses the manifest for `wanted` from the index or manifest list in `index_bytes`:
/// the first entry of exactly that platform, else the first one `wanted` can run (see
/// [`Platform::matches`]). The error lists the platforms the index has.
pub fn select_platform(index_bytes: &[u8], wanted: &Platform) -> Result<Descriptor, RegistryError> {
    let index = parse_index(index_bytes)?;
    let candidates = || {
        index
            .manifests
            .iter()
            .filter(|d| d.media_type.is_empty() || media_types::is_manifest(&d.media_type))
    };
    let exact = candidates().find(|d| d.platform.as_ref().is_some_and(|p| wanted.same_as(p)));
    let compatible =
        || candidates().find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)));
    if let Some(found) = exact.or_else(compatible) {
        return Ok(found.clone());
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.normalized().to_string()))
        .collect();
    available.dedup();
    Err(RegistryError::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    fn entry(platform: serde_json::Value, seed: &str) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_types::OCI_MANIFEST,
            "digest": sha256_digest(seed.as_bytes()),
            "size": 100,
            "platform": platform,
        })
    }

    fn index(media_type: &str, entries: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type, "manifests": entries,
        }))
        .unwrap()
    }

    fn sample() -> Vec<u8> {
        index(
            media_types::OCI_INDEX,
            vec![
                entry(
                    serde_json::json!({"os": "linux", "architecture": "amd64"}),
                    "amd64",
                ),
                entry(
                    serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"}),
                    "armv6",
                ),
                entry(
                    serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"}),
                    "armv7",
                ),
                entry(
                    serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
                    "arm64",
                ),
                entry(
                    serde_json::json!({"os": "unknown", "architecture": "unknown"}),
                    "att",
                ),
            ],
        )
    }

    fn pick(bytes: &[u8], wanted: &str) -> Result<Descriptor, RegistryError> {
        select_platform(bytes, &Platform::parse(wanted).unwrap())
    }

    #[test]
    fn picks_the_entry_of_the_wanted_platform() {
        let bytes = sample();
        assert_eq!(
            pick(&bytes, "linux/amd64").unwrap().digest,
            sha256_digest(b"amd64")
        );
        assert_eq!(
            pick(&bytes, "linux/arm64").unwrap().digest,
            sha256_digest(b"arm64")
        );
        assert_eq!(
            pick(&bytes, "linux/arm/v7").unwrap().digest,
            sha256_digest(b"armv7")
        );
        assert_eq!(
            pick(&bytes, "linux/arm/v6").unwrap().digest,
            sha256_digest(b"armv6")
        );
        let chosen = pick(&bytes, "linux/arm64").unwrap();
        assert_eq!(chosen.platform.unwrap().architecture, "arm64");
    }

    #[test]
    fn an_older_arm_variant_is_taken_when_the_exact_one_is_missing() {
        let bytes = index(
            media_types::OCI_INDEX,
            vec![entry(
                serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"}),
                "armv6",
            )],
        );
        assert_eq!(
            pick(&bytes, "linux/arm/v7").unwrap().digest,
            sha256_digest(b"armv6")
        );
        assert!(pick(&bytes, "linux/arm/v5").is_err());
    }

    #[test]
    fn docker_manifest_lists_work_the_same() {
        let bytes = index(
            media_types::DOCKER_MANIFEST_LIST,
            vec![serde_json::json!({
                "mediaType": media_types::DOCKER_MANIFEST,
                "digest": sha256_digest(b"d"),
                "size": 5,
                "platform": {"os": "linux", "architecture": "amd64"},
            })],
        );
        let d = pick(&bytes, "linux/amd64").unwrap();
        assert_eq!(d.media_type, media_types::DOCKER_MANIFEST);
        assert_eq!(
            parse_index(&bytes).unwrap().media_type,
            media_types::DOCKER_MANIFEST_LIST
        );
    }

    #[test]
    fn no_match_lists_what_is_available() {
        match pick(&sample(), "linux/s390x") {
            Err(RegistryError::NoMatchingPlatform { wanted, available }) => {
                assert_eq!(wanted, "linux/s390x");
                assert_eq!(
                    available,
                    "linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64, unknown/unknown"
                );
            }
            other => panic!("{other:?}"),
        }
        let empty = index(media_types::OCI_INDEX, vec![]);
        match pick(&empty, "linux/amd64") {
            Err(RegistryError::NoMatchingPlatform { available, .. }) => {
                assert_eq!(available, "none")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_manifest_is_not_an_index() {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
            "config": {"mediaType": media_types::OCI_CONFIG, "digest": sha256_digest(b"c"), "size": 1},
            "layers": [],
        }))
        .unwrap();
        assert!(matches!(
            pick(&manifest, "linux/amd64"),
            Err(RegistryError::UnsupportedMediaType { .. })
        ));
    }
}
