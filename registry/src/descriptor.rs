//! Content descriptors: what a manifest or index says about a blob it points at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::check_digest_syntax;
use crate::error::RegistryError;
use crate::platform::Platform;

/// A pointer to content by digest, with its media type and size (the OCI descriptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content, e.g. [`crate::media_types::OCI_MANIFEST`].
    #[serde(default)]
    pub media_type: String,
    /// Digest of the content (`sha256:<hex>`).
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// The platform, for manifests listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Checks that the digest is one this crate can verify (and so safe to use as a
    /// content-store key); `what` names the document the descriptor came from.
    pub fn check(&self, what: &str) -> Result<(), RegistryError> {
        check_digest_syntax(&self.digest)
            .map_err(|reason| RegistryError::protocol(what, format!("bad descriptor: {reason}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_oci_json_field_names() {
        let text = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "size":42,"platform":{"architecture":"arm","os":"linux","variant":"v7"},
            "annotations":{"a":"b"},"urls":["ignored"]}"#;
        let d: Descriptor = serde_json::from_str(text).unwrap();
        assert_eq!(d.size, 42);
        assert_eq!(d.platform.as_ref().unwrap().to_string(), "linux/arm/v7");
        assert_eq!(d.annotations["a"], "b");
        assert!(d.check("test").is_ok());
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["mediaType"], d.media_type.as_str());
        assert!(back.get("urls").is_none());

        let bad = Descriptor {
            digest: "sha256:../../etc".into(),
            ..d
        };
        assert!(matches!(
            bad.check("test"),
            Err(RegistryError::Protocol { .. })
        ));
    }
}
