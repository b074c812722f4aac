//! `apply_layer`: extracting a (compressed) layer tarball onto a snapshot's mounts.
//!
//! Where the files go depends on the mounts:
//! - one `overlay` mount with an `upperdir` (an active snapshot on parents): straight into
//!   the upper directory, whiteouts written the overlayfs way; nothing is mounted, so this
//!   is fast and works for any number of lower layers;
//! - one `bind` mount (a snapshot without parent): straight into its directory,
//!   whiteouts as deletions;
//! - anything else: the mounts are mounted on a temporary directory, the layer is
//!   extracted there with whiteouts as deletions, and everything is unmounted again.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::mount::Mount;

use super::archive::{Limits, TarReader};
use super::compression::{open_decompressor, Compression};
use super::digest::{validate_sha256_digest, HashingInput};
use super::error::LayerError;
use super::file_workers::FilePool;
use super::metadata::Creator;
use super::root_dir::{dir_flags, RootDir};
use super::target::{bind_source, overlay_parts, TempMount};
use super::unpack::{Unpacker, WhiteoutStyle};

/// How [`apply_layer`] works.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The diff id (`sha256:…` of the uncompressed tar) the layer must have; the apply
    /// fails with [`LayerError::DiffIdMismatch`] otherwise.
    pub expected_diff_id: Option<String>,
    /// Most uncompressed bytes accepted (a guard against decompression bombs).
    pub max_uncompressed_size: u64,
    /// Threads that create regular files while the calling thread decompresses and
    /// parses the layer; 0 writes everything on the calling thread. One is the default:
    /// it overlaps decompression with file creation, and more creators in the same
    /// directories mostly contend for the same inode allocator.
    pub workers: usize,
    /// Flush the target filesystem (`syncfs`) before returning, so that a snapshot
    /// committed afterwards is durable.
    pub sync: bool,
    /// Where temporary mount points are made when the mounts have to be mounted.
    pub temp_dir: PathBuf,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            expected_diff_id: None,
            max_uncompressed_size: 256 << 30,
            workers: 1,
            sync: true,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// What [`apply_layer`] found in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `sha256:<hex>` of the whole uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Length of the uncompressed tar stream in bytes.
    pub size: u64,
}

/// Where the layer's files go.
enum Target {
    /// An overlay's upper directory, with its lower directories (topmost first).
    Upper {
        upper: PathBuf,
        lowers: Vec<PathBuf>,
    },
    /// A plain directory.
    Plain(PathBuf),
    /// The mounts, mounted on a temporary directory.
    Mounted(TempMount),
}

impl Target {
    fn choose(mounts: &[Mount], options: &ApplyOptions) -> Result<Self, LayerError> {
        if let [mount] = mounts {
            if let Some(parts) = overlay_parts(mount) {
                if let Some(upper) = parts.upper {
                    if mount.options.iter().any(|o| o == "ro") {
                        return Err(LayerError::UnsupportedMounts(
                            "the overlay is read-only".into(),
                        ));
                    }
                    return Ok(Target::Upper {
                        upper,
                        lowers: parts.lowers,
                    });
                }
            }
            if let Some((dir, read_only)) = bind_source(mount) {
                if read_only {
                    return Err(LayerError::UnsupportedMounts(
                        "the bind mount is read-only".into(),
                    ));
                }
                return Ok(Target::Plain(dir));
            }
        }
        if mounts.is_empty() {
            return Err(LayerError::UnsupportedMounts(
                "no mounts to apply the layer onto".into(),
            ));
        }
        Ok(Target::Mounted(TempMount::new(
            mounts,
            &options.temp_dir,
            false,
        )?))
    }

    fn root(&self) -> &Path {
        match self {
            Target::Upper { upper, .. } => upper,
            Target::Plain(dir) => dir,
            Target::Mounted(mount) => mount.path(),
        }
    }

    fn style(&self) -> Result<WhiteoutStyle, LayerError> {
        match self {
            Target::Upper { lowers, .. } => {
                let lowers = lowers
                    .iter()
                    .map(|dir| {
                        rustix::fs::open(dir, dir_flags() | OFlags::PATH, Mode::empty()).map_err(
                            |e| {
                                LayerError::io(format!("open lower directory {}", dir.display()), e)
                            },
                        )
                    })
                    .collect::<Result<Vec<OwnedFd>, _>>()?;
                Ok(WhiteoutStyle::Overlay { lowers })
            }
            Target::Plain(_) | Target::Mounted(_) => Ok(WhiteoutStyle::Delete),
        }
    }

    fn close(self) -> Result<(), LayerError> {
        match self {
            Target::Mounted(mount) => mount.close(),
            Target::Upper { .. } | Target::Plain(_) => Ok(()),
        }
    }
}

/// Applies the layer read from `reader` (of OCI or Docker layer media type `media_type`,
/// plain, gzip or zstd — the stream's magic bytes decide) onto `mounts`, and returns its
/// diff id and uncompressed size. See the module documentation for where files go.
///
/// Entries that would write outside the mounts' root (absolute names, `..`, escapes
/// through symlinks or hard links, escaping whiteouts) fail the apply with
/// [`LayerError::UnsafePath`] and friends; nothing is ever written outside the root. On
/// error the target may hold part of the layer: the caller discards the snapshot.
pub fn apply_layer(
    reader: impl Read,
    media_type: &str,
    mounts: &[Mount],
    options: &ApplyOptions,
) -> Result<Applied, LayerError> {
    if let Some(expected) = &options.expected_diff_id {
        validate_sha256_digest(expected)?;
    }
    let (decoder, compression) = open_decompressor(reader, media_type)?;
    let target = Target::choose(mounts, options)?;
    let result = extract(decoder, compression, &target, options);
    let closed = target.close();
    let applied = result?;
    closed?;
    Ok(applied)
}

fn extract(
    decoder: Box<dyn Read + '_>,
    compression: Compression,
    target: &Target,
    options: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let root_path = target.root();
    let root = RootDir::open(root_path)
        .map_err(|e| LayerError::io(format!("open target directory {}", root_path.display()), e))?;
    let root_fd = root
        .fd()
        .try_clone_to_owned()
        .map_err(|e| LayerError::io("duplicate the target directory fd", e))?;
    let style = target.style()?;
    let input = HashingInput::new(decoder, compression, options.max_uncompressed_size);
    let mut reader = TarReader::new(input, Limits::default());
    let creator = Creator::current();

    std::thread::scope(|scope| {
        let pool = (options.workers > 0).then(|| FilePool::start(scope, options.workers, creator));
        let mut unpacker = Unpacker::new(root, style, creator, pool.as_ref());
        let result = unpacker.run(&mut reader);
        drop(unpacker);
        let stopped = match pool {
            Some(pool) => pool.shutdown(result.is_err()),
            None => Ok(()),
        };
        result.and(stopped)
    })?;

    let (diff_id, size) = reader.finish()?;
    if let Some(expected) = &options.expected_diff_id {
        if *expected != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    if options.sync {
        rustix::fs::syncfs(root_fd.as_fd()).map_err(|e| {
            LayerError::io(format!("sync the filesystem of {}", root_path.display()), e)
        })?;
    }
    tracing::debug!(root = %root_path.display(), %diff_id, size, compression = compression.name(),
        "applied layer");
    Ok(Applied { diff_id, size })
}
