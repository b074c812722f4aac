//! Media types of the OCI image spec and of Docker's image manifest schema 2, and the
//! questions the pull and push code asks about them.

/// OCI image index (a list of manifests, one per platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Docker manifest list (schema 2), the Docker counterpart of [`OCI_INDEX`].
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image manifest, schema 1 (unsigned); not supported.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker image manifest, schema 1 (signed); not supported.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Gzip-compressed Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Uncompressed Docker layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer that must be fetched from elsewhere than the registry.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The manifest and index types a pull accepts, in the order they are offered in the
/// `Accept` header.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Whether `media_type` is an image index or a Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a single-platform image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` is an image config.
pub fn is_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// Whether `media_type` is an image layer (OCI or Docker, any compression).
pub fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// Whether `media_type` is a Docker schema 1 manifest, which this crate refuses.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_V1 || media_type == DOCKER_MANIFEST_V1_SIGNED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_do_not_overlap() {
        for index in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
            assert!(is_index(index) && !is_manifest(index) && !is_layer(index));
        }
        for manifest in [OCI_MANIFEST, DOCKER_MANIFEST] {
            assert!(is_manifest(manifest) && !is_index(manifest));
        }
        for layer in [
            OCI_LAYER_TAR,
            OCI_LAYER_GZIP,
            OCI_LAYER_ZSTD,
            DOCKER_LAYER_GZIP,
            DOCKER_LAYER_TAR,
            DOCKER_FOREIGN_LAYER,
        ] {
            assert!(is_layer(layer) && !is_manifest(layer) && !is_config(layer));
        }
        assert!(is_config(OCI_CONFIG) && is_config(DOCKER_CONFIG));
        assert!(is_schema1(DOCKER_MANIFEST_V1) && !is_manifest(DOCKER_MANIFEST_V1));
    }
}
