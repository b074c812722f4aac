//! OCI and overlayfs whiteouts.
//!
//! In an OCI layer, `dir/.wh.name` deletes `dir/name` of the layers below, and
//! `dir/.wh..wh..opq` hides everything `dir` held below (an opaque directory). overlayfs
//! spells the same things as a character device 0:0 named `name`, and as the xattr
//! `trusted.overlay.opaque=y` on `dir`.

use super::error::LayerError;

/// Prefix of a whiteout file's name.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of AUFS bookkeeping files, which carry nothing to extract.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// The xattr overlayfs reads to make a directory opaque.
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefixes of xattrs that steer overlayfs; they are never taken from, nor put into, a
/// layer as ordinary attributes.
pub(crate) const OVERLAY_XATTR_PREFIXES: &[&[u8]] = &[b"trusted.overlay.", b"user.overlay."];

/// What an entry's last path component says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WhiteoutKind<'a> {
    /// An ordinary entry.
    NotWhiteout,
    /// The opaque marker of its directory.
    Opaque,
    /// Deletes the sibling with this name.
    Remove(&'a [u8]),
    /// AUFS bookkeeping (`.wh..wh.plnk` and the like), skipped.
    AufsMeta,
}

/// Classifies an entry by its last path component. `entry` is the full name, for errors.
pub(crate) fn classify<'a>(entry: &[u8], base: &'a [u8]) -> Result<WhiteoutKind<'a>, LayerError> {
    if !base.starts_with(WHITEOUT_PREFIX) {
        return Ok(WhiteoutKind::NotWhiteout);
    }
    if base == OPAQUE_MARKER {
        return Ok(WhiteoutKind::Opaque);
    }
    if base.starts_with(AUFS_META_PREFIX) {
        return Ok(WhiteoutKind::AufsMeta);
    }
    match &base[WHITEOUT_PREFIX.len()..] {
        b"" => Err(LayerError::unsafe_path(entry, "whiteout names no file")),
        b"." | b".." => Err(LayerError::unsafe_path(entry, "whiteout names `.` or `..`")),
        target => Ok(WhiteoutKind::Remove(target)),
    }
}

/// True for xattr names that belong to overlayfs itself.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_are_classified() {
        assert_eq!(classify(b"a/b", b"b").unwrap(), WhiteoutKind::NotWhiteout);
        assert_eq!(
            classify(b"a/.wh.b", b".wh.b").unwrap(),
            WhiteoutKind::Remove(b"b")
        );
        assert_eq!(
            classify(b"a/.wh..wh..opq", b".wh..wh..opq").unwrap(),
            WhiteoutKind::Opaque
        );
        assert_eq!(
            classify(b".wh..wh.plnk", b".wh..wh.plnk").unwrap(),
            WhiteoutKind::AufsMeta
        );
        assert_eq!(
            classify(b".wh..hidden", b".wh..hidden").unwrap(),
            WhiteoutKind::Remove(b".hidden")
        );
    }

    #[test]
    fn escaping_whiteouts_are_refused() {
        for base in [&b".wh."[..], b".wh..", b".wh..."] {
            let err = classify(base, base).unwrap_err();
            assert!(matches!(err, LayerError::UnsafePath { .. }), "{err}");
        }
    }

    #[test]
    fn overlay_xattrs_are_recognised() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.redirect"));
        assert!(!is_overlay_xattr(b"security.capability"));
    }
}
