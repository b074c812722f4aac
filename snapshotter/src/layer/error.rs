//! Errors of the layer applier and differ.

/// Why a layer could not be applied or a diff could not be produced.
///
/// Every variant that concerns one archive entry names it, so an operator can find the
/// offending file in the layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A system call failed; `context` says what was being done and to which path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `create file usr/bin/env`.
        context: String,
        /// The error from the kernel or the standard library.
        #[source]
        source: std::io::Error,
    },

    /// The layer's media type is not one of the OCI or Docker layer types.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),

    /// The compressed stream is truncated or corrupt (bad header, bad data, bad checksum).
    #[error("corrupt or truncated {compression} stream: {source}")]
    CorruptCompression {
        /// `gzip` or `zstd`.
        compression: &'static str,
        /// What the decompressor reported.
        #[source]
        source: std::io::Error,
    },

    /// The tar stream itself is malformed (bad header checksum, bad number, truncated).
    #[error("corrupt tar stream at byte {offset}: {reason}")]
    CorruptTar {
        /// Offset in the uncompressed stream of the header at fault.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A PAX `size` record disagrees with the size in the entry's ustar header. Readers
    /// that believe different sizes see different files, so such archives are refused.
    #[error("tar entry {entry:?}: PAX size {pax_size} disagrees with header size {header_size}")]
    PaxSizeMismatch {
        /// The entry's name.
        entry: String,
        /// The size in the PAX record.
        pax_size: u64,
        /// The size in the ustar header.
        header_size: u64,
    },

    /// An entry's name (or link target) would reach outside the target root: it is absolute,
    /// has a `..` component, or is an empty or escaping whiteout.
    #[error("unsafe path in layer entry {entry:?}: {reason}")]
    UnsafePath {
        /// The entry's name as found in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// An entry cannot be placed because a component of its parent path exists and is not a
    /// directory (or is a symlink to nothing).
    #[error("layer entry {entry:?}: parent component {component:?} is not a directory")]
    NotADirectory {
        /// The entry's name.
        entry: String,
        /// The path of the component at fault, relative to the root.
        component: String,
    },

    /// A hardlink names a target that does not exist in the target root.
    #[error("layer entry {entry:?}: hardlink target {target:?} does not exist")]
    MissingLinkTarget {
        /// The hardlink's name.
        entry: String,
        /// The target it names.
        target: String,
    },

    /// The archive holds an entry type that cannot be extracted (e.g. GNU sparse files).
    #[error("layer entry {entry:?}: unsupported tar entry type {kind:?}")]
    UnsupportedEntry {
        /// The entry's name.
        entry: String,
        /// The tar type flag, or a short description.
        kind: String,
    },

    /// Something in the layer exceeds a limit: a PAX header, a long name, the whole stream.
    #[error("{what} is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// What was measured.
        what: String,
        /// Its size (or the size reached when the limit was crossed).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// The uncompressed layer's digest is not the expected diff id.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff id the caller expected.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },

    /// A digest given by the caller is not of the form `sha256:<64 hex digits>`.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),

    /// The mounts cannot be used as asked (e.g. a read-only target for apply).
    #[error("unsupported mounts: {0}")]
    UnsupportedMounts(String),

    /// Mounting or unmounting a temporary view of the mounts failed.
    #[error("mount for layer operation: {0}")]
    Mount(#[source] Box<crate::Error>),

    /// A worker thread panicked while writing files.
    #[error("a layer worker thread panicked")]
    WorkerPanicked,
}

impl LayerError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        LayerError::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A malformed tar stream at `offset`.
    pub(crate) fn corrupt_tar(offset: u64, reason: impl Into<String>) -> Self {
        LayerError::CorruptTar {
            offset,
            reason: reason.into(),
        }
    }

    /// An unsafe entry name.
    pub(crate) fn unsafe_path(entry: &[u8], reason: &'static str) -> Self {
        LayerError::UnsafePath {
            entry: display_name(entry),
            reason,
        }
    }
}

/// A printable rendering of a (possibly non-UTF-8) entry name.
pub(crate) fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
