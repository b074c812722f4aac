//! Applying layer tarballs onto mounts, and writing the difference between two mount sets
//! as a layer.
//!
//! - [`apply_layer`] extracts an OCI/Docker layer (tar, tar+gzip, tar+zstd) onto a
//!   snapshot's mounts, turning OCI whiteouts into overlayfs whiteouts when it writes into
//!   an overlay's upper directory, and returns the layer's diff id.
//! - [`write_diff`] compares two mount sets and writes the change as a layer with OCI
//!   whiteouts.
//!
//! Safety first: the archive is parsed by our own bounded tar codec (`archive`), every
//! entry name is checked (`safe_path`), and every file is created relative to a
//! directory resolved inside the target root (`root_dir`), never through a path on the
//! host.

mod apply;
mod archive;
mod compression;
mod diff;
mod digest;
mod error;
mod file_workers;
mod metadata;
mod root_dir;
mod safe_path;
mod sys;
mod target;
mod unpack;
mod whiteout;

#[cfg(test)]
mod tests;

pub use apply::{apply_layer, Applied, ApplyOptions};
pub use compression::{
    Compression, DOCKER_LAYER_TAR_GZIP, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_LAYER_TAR_ZSTD,
};
pub use diff::{write_diff, DiffOptions, DiffResult};
pub use error::LayerError;
