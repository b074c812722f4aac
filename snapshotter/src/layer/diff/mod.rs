//! `write_diff`: the change from one mount set to another, written as a layer.
//!
//! Fast path: when `upper` is an overlay whose lower directories are exactly what `lower`
//! shows, its upper directory is the change, written as is with whiteouts converted (see
//! `tree`); a parentless snapshot against nothing is written whole. Otherwise both sides
//! are viewed read-only (a directory used directly, or a temporary read-only mount) and
//! compared (see `compare`).

mod compare;
mod emit;
mod tree;

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::Mode;

use crate::mount::Mount;

use super::archive::TarWriter;
use super::compression::{Compression, Compressor};
use super::digest::HashingWriter;
use super::error::LayerError;
use super::root_dir::dir_flags;
use super::target::{layer_dirs, overlay_parts, TempMount};
use emit::Emitter;
use tree::TreeKind;

/// How [`write_diff`] writes the layer.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Compression of the written layer (gzip unless asked otherwise).
    pub compression: Compression,
    /// Compression level (gzip 0-9, zstd 1-19); `None` picks a fast default.
    pub level: Option<u32>,
    /// Where temporary mount points are made when a side has to be mounted.
    pub temp_dir: PathBuf,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            compression: Compression::Gzip,
            level: None,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// What [`write_diff`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffResult {
    /// `sha256:<hex>` of the bytes written (the compressed layer blob).
    pub digest: String,
    /// Number of bytes written.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// The OCI media type of what was written.
    pub media_type: String,
}

/// One side of a diff, readable as a directory.
enum View {
    Dir(PathBuf),
    Mounted(TempMount),
}

impl View {
    /// A read-only view of `mounts`, or `None` for an empty list.
    fn of(mounts: &[Mount], temp_dir: &Path) -> Result<Option<View>, LayerError> {
        if mounts.is_empty() {
            return Ok(None);
        }
        let view = match layer_dirs(mounts) {
            Some(dirs) if dirs.len() == 1 => View::Dir(dirs[0].clone()),
            // Several layers: a lower-only overlay shows them merged without touching
            // any upper or work directory that may be in use by a running container.
            Some(dirs) => {
                let lowerdir = dirs
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(":");
                let overlay = Mount {
                    kind: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![format!("lowerdir={lowerdir}")],
                };
                View::Mounted(TempMount::new(&[overlay], temp_dir, true)?)
            }
            None => View::Mounted(TempMount::new(mounts, temp_dir, true)?),
        };
        Ok(Some(view))
    }

    fn path(&self) -> &Path {
        match self {
            View::Dir(dir) => dir,
            View::Mounted(mount) => mount.path(),
        }
    }

    fn close(self) -> Result<(), LayerError> {
        match self {
            View::Dir(_) => Ok(()),
            View::Mounted(mount) => mount.close(),
        }
    }
}

/// The directory to write whole, when the diff has a fast path.
fn fast_path(lower: &[Mount], upper: &[Mount]) -> Option<(PathBuf, TreeKind)> {
    let [upper_mount] = upper else {
        return None;
    };
    if let Some(parts) = overlay_parts(upper_mount) {
        if let Some(upper_dir) = parts.upper {
            if layer_dirs(lower).as_ref() == Some(&parts.lowers) && !parts.lowers.is_empty() {
                return Some((upper_dir, TreeKind::OverlayUpper));
            }
        }
    }
    if lower.is_empty() {
        if let Some(dirs) = layer_dirs(upper) {
            if let [dir] = dirs.as_slice() {
                return Some((dir.clone(), TreeKind::Plain));
            }
        }
    }
    None
}

fn open_root(path: &Path) -> Result<std::os::fd::OwnedFd, LayerError> {
    rustix::fs::open(path, dir_flags(), Mode::empty())
        .map_err(|e| LayerError::io(format!("open {}", path.display()), e))
}

/// Writes the change from `lower` to `upper` to `out` as a tar layer (gzip-compressed by
/// default) with OCI whiteouts, entries in sorted order, and returns the digest and size
/// of what was written and the layer's diff id.
pub fn write_diff(
    lower: &[Mount],
    upper: &[Mount],
    out: impl Write,
    options: &DiffOptions,
) -> Result<DiffResult, LayerError> {
    let compressed = HashingWriter::new(out);
    let compressor = Compressor::new(compressed, options.compression, options.level)
        .map_err(|e| LayerError::io("start compressing the diff", e))?;
    let uncompressed = HashingWriter::new(compressor);
    let mut emitter = Emitter::new(TarWriter::new(BufWriter::with_capacity(
        256 * 1024,
        uncompressed,
    )));

    match fast_path(lower, upper) {
        Some((dir, kind)) => {
            let root = open_root(&dir)?;
            tree::write_tree(&mut emitter, root.as_fd(), kind)?;
        }
        None => {
            let upper_view = View::of(upper, &options.temp_dir)?
                .ok_or_else(|| LayerError::UnsupportedMounts("no upper mounts to diff".into()))?;
            let lower_view = View::of(lower, &options.temp_dir)?;
            let result = (|| {
                let upper_root = open_root(upper_view.path())?;
                let lower_root = lower_view
                    .as_ref()
                    .map(|v| open_root(v.path()))
                    .transpose()?;
                compare::write_changes(
                    &mut emitter,
                    lower_root.as_ref().map(|fd| fd.as_fd()),
                    upper_root.as_fd(),
                )
            })();
            let closed_lower = lower_view.map(View::close).unwrap_or(Ok(()));
            let closed_upper = upper_view.close();
            result?;
            closed_lower?;
            closed_upper?;
        }
    }

    let buffered = emitter.finish()?;
    let uncompressed = buffered
        .into_inner()
        .map_err(|e| LayerError::io("write the diff", e.into_error()))?;
    let (compressor, diff_id, _) = uncompressed.finish();
    let compressed = compressor
        .finish()
        .map_err(|e| LayerError::io("finish compressing the diff", e))?;
    let (mut out, digest, size) = compressed.finish();
    out.flush()
        .map_err(|e| LayerError::io("flush the diff", e))?;
    Ok(DiffResult {
        digest,
        size,
        diff_id,
        media_type: options.compression.oci_media_type().to_string(),
    })
}
