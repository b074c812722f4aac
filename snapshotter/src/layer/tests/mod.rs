//! Tests of apply and diff on real files (and, where a test needs one, real mounts),
//! with hand-made archives.

mod apply_behaviour;
mod apply_safety;
mod diff_round_trip;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::header::{self, field};
use super::archive::writer::ustar_block;
use super::archive::{pax, Entry, EntryKind, TarWriter, Timestamp};
use super::compression::{Compression, Compressor, OCI_LAYER_TAR};
use super::{apply_layer, Applied, ApplyOptions, LayerError};
use crate::mount::Mount;

/// A fixed time for test entries.
pub(super) const T0: i64 = 1_600_000_000;

/// A test entry with plain defaults.
pub(super) fn entry(name: &str, kind: EntryKind) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        kind,
        mode: if kind == EntryKind::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        size: 0,
        mtime: Timestamp {
            seconds: T0,
            nanos: 0,
        },
        atime: None,
        link_name: Vec::new(),
        device: (0, 0),
        xattrs: Vec::new(),
    }
}

/// Builds tar streams entry by entry, including malformed ones.
#[derive(Default)]
pub(super) struct TarBuilder {
    bytes: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `entry` with `data` (its size is set from the data).
    pub fn entry(mut self, mut entry: Entry, data: &[u8]) -> Self {
        entry.size = data.len() as u64;
        let mut writer = TarWriter::new(&mut self.bytes);
        writer.write_header(&entry).unwrap();
        if entry.kind == EntryKind::Regular {
            writer.write_data(data, data.len() as u64).unwrap();
        }
        self
    }

    pub fn dir(self, name: &str, mode: u32) -> Self {
        let mut e = entry(name, EntryKind::Directory);
        e.mode = mode;
        self.entry(e, b"")
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(entry(name, EntryKind::Regular), data)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        let mut e = entry(name, EntryKind::Symlink);
        e.mode = 0o777;
        e.link_name = target.as_bytes().to_vec();
        self.entry(e, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        let mut e = entry(name, EntryKind::HardLink);
        e.link_name = target.as_bytes().to_vec();
        self.entry(e, b"")
    }

    /// A PAX extended header with these records, for the next entry.
    pub fn pax(mut self, records: &[(&[u8], &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend(pax::format_record(key, value));
        }
        let mut header = ustar_block(&entry("././@PaxHeader", EntryKind::Regular));
        header::write_octal(&mut header[field::SIZE], data.len() as u64);
        header[field::TYPEFLAG] = b'x';
        header::set_checksum(&mut header);
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(&data);
        self.pad();
        self
    }

    /// A bare ustar header claiming `size` bytes of data, followed by `data` as given.
    pub fn raw_header(mut self, e: &Entry, typeflag: u8, size: u64, data: &[u8]) -> Self {
        let mut header = ustar_block(e);
        header::write_octal(&mut header[field::SIZE], size);
        header[field::TYPEFLAG] = typeflag;
        header::set_checksum(&mut header);
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let len = self.bytes.len().div_ceil(512) * 512;
        self.bytes.resize(len, 0);
    }

    /// The archive with its end marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

/// Compresses `data`.
pub(super) fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    let mut compressor = Compressor::new(Vec::new(), compression, None).unwrap();
    compressor.write_all(data).unwrap();
    compressor.finish().unwrap()
}

/// A temporary workspace: `root` to extract into and `outside`, a directory next to it
/// holding a file `secret` that no layer may touch.
pub(super) struct Workspace {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        std::fs::set_permissions(
            outside.join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        Workspace { dir, root, outside }
    }

    /// `outside` as a string, for symlink targets.
    pub fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }

    /// Asserts that nothing outside the root changed: `outside` holds exactly `secret`,
    /// unchanged, with one link and mode 0600, and the workspace holds only `root` and
    /// `outside`.
    pub fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        let meta = std::fs::symlink_metadata(self.outside.join("secret")).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "mode of the outside file changed"
        );
        assert_eq!(meta.nlink(), 1, "the outside file gained a hard link");
        assert_eq!(
            std::fs::read(self.outside.join("secret")).unwrap(),
            b"secret"
        );
        let mut top: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, vec!["outside", "root"]);
    }
}

/// Options for tests: no `syncfs` (slow and irrelevant to what is checked), `workers`
/// file threads.
pub(super) fn options(workers: usize) -> ApplyOptions {
    ApplyOptions {
        workers,
        sync: false,
        ..ApplyOptions::default()
    }
}

/// A bind mount of `dir`, as the snapshotter hands out for a snapshot without parent.
pub(super) fn bind(dir: &Path, read_only: bool) -> Mount {
    Mount {
        kind: "bind".into(),
        source: dir.to_str().unwrap().into(),
        options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
    }
}

/// An overlay mount as the snapshotter hands out for an active snapshot.
pub(super) fn overlay(upper: &Path, work: &Path, lowers: &[&Path]) -> Mount {
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={lowerdir}"),
        ],
    }
}

/// Applies a plain tar onto a directory (bind mount) with `workers` file threads.
pub(super) fn apply_plain(root: &Path, tar: &[u8], workers: usize) -> Result<Applied, LayerError> {
    apply_layer(tar, OCI_LAYER_TAR, &[bind(root, false)], &options(workers))
}

/// A description of every object below `root` (not the root): type, mode, owner, size,
/// mtime, link target, device, content digest and xattrs (overlayfs' own excluded).
pub(super) fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    describe_into(root, root, &mut out);
    out
}

fn describe_into(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for child in std::fs::read_dir(dir).unwrap() {
        let path = child.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let link = if ft.is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        let content = if ft.is_file() {
            hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))[..12].to_string()
        } else {
            String::new()
        };
        let mut xattrs: Vec<String> = xattr_names(&path)
            .into_iter()
            .filter(|n| !n.starts_with("trusted.overlay."))
            .collect();
        xattrs.sort();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        out.insert(
            rel,
            format!(
                "{kind} {:o} {}:{} size={} mtime={} link={link} rdev={} content={content} xattrs={xattrs:?}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                if ft.is_file() { meta.size() } else { 0 },
                meta.mtime(),
                meta.rdev(),
            ),
        );
        if ft.is_dir() {
            describe_into(root, &path, out);
        }
    }
}

/// The xattr names of `path` itself.
pub(super) fn xattr_names(path: &Path) -> Vec<String> {
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let name = std::ffi::CString::new(path.file_name().unwrap().as_encoded_bytes()).unwrap();
    super::sys::list_xattrs_at(std::os::fd::AsFd::as_fd(&dir), &name)
        .unwrap()
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect()
}

/// An xattr value of `path` itself.
pub(super) fn xattr(path: &Path, attr: &str) -> Option<Vec<u8>> {
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let name = std::ffi::CString::new(path.file_name().unwrap().as_encoded_bytes()).unwrap();
    let attr = std::ffi::CString::new(attr).unwrap();
    super::sys::get_xattr_at(std::os::fd::AsFd::as_fd(&dir), &name, &attr).ok()
}

/// Reads the entries of an uncompressed or compressed layer: (name, kind).
pub(super) fn list_layer(layer: &[u8]) -> Vec<(String, EntryKind)> {
    use super::archive::{Limits, TarReader};
    use super::compression::open_decompressor;
    use super::digest::HashingInput;
    let (decoder, compression) = open_decompressor(layer, OCI_LAYER_TAR).unwrap();
    let input = HashingInput::new(decoder, compression, u64::MAX);
    let mut reader = TarReader::new(input, Limits::default());
    let mut names = Vec::new();
    while let Some(e) = reader.next_entry().unwrap() {
        names.push((e.display_name(), e.kind));
    }
    names
}
