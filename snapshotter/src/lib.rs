//! berth-snapshot: the overlayfs snapshotter and the layer applier/differ.
//!
//! This crate knows nothing of gRPC, namespaces or the supervisor's metadata: it takes
//! paths and plain Rust types and returns [`Error`].
//!
//! - [`overlay`]: snapshots (prepare/view/commit/remove/mounts/usage) stored under
//!   `<root>/snapshots/overlayfs`.
//! - [`mount`]: the [`mount::Mount`] type handed to clients and the code that performs
//!   such mounts on the host (including overlays with more lower layers than fit in one
//!   page of mount options).
//! - [`layer`]: applying OCI/Docker layer tarballs onto mounts and computing diffs.

pub mod error;
pub mod layer;
pub mod mount;
pub mod overlay;

pub use error::{Error, Result};
pub use mount::{Mount, MountGuard};
pub use overlay::{Info, Kind, OverlaySnapshotter, SnapshotterOptions, Usage};
