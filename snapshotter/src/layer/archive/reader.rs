//! A streaming tar reader that yields one entry header at a time.
//!
//! It understands ustar, PAX (`x` headers; `g` headers are read and ignored) and GNU long
//! names (`L`, `K`). It is strict where leniency lets two readers disagree about an
//! archive: header checksums must match, numbers must be well formed, and a PAX `size`
//! must agree with the ustar header. Every extension header is bounded in size.

use super::header::{self, field, Block, BLOCK};
use super::pax;
use crate::layer::digest::HashingInput;
use crate::layer::error::{display_name, LayerError};

/// The largest value an 11-digit octal size field holds; a PAX size above it cannot be
/// repeated in the ustar header, so the two may differ only then.
const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;

/// What kind of file an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file; its data follows the header.
    Regular,
    /// A hard link to an earlier entry (`link_name`).
    HardLink,
    /// A symbolic link to `link_name`.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
}

/// A point in time as stored in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// One archive entry's header, with PAX and GNU extensions folded in.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The name as stored (not yet checked or normalised).
    pub name: Vec<u8>,
    /// The file type.
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes of data that follow the header.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time, when the archive records one.
    pub atime: Option<Timestamp>,
    /// Target of a symlink or hard link.
    pub link_name: Vec<u8>,
    /// Major and minor number of a device node.
    pub device: (u32, u32),
    /// Extended attributes (name, value), from `SCHILY.xattr.*` PAX records.
    pub xattrs: Vec<Xattr>,
}

/// An extended attribute: name and value.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

impl Entry {
    /// The name, printable.
    pub fn display_name(&self) -> String {
        display_name(&self.name)
    }
}

/// Bounds on the extension headers an archive may carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest PAX extended header (all `x` headers before one entry together), and
    /// largest global header.
    pub max_pax_bytes: u64,
    /// Longest GNU long name or long link name.
    pub max_long_name: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pax_bytes: 1 << 20,
            max_long_name: 64 << 10,
        }
    }
}

/// Extension data gathered from headers that precede an entry.
#[derive(Default)]
struct Pending {
    pax_bytes: u64,
    path: Option<Vec<u8>>,
    link_path: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timestamp>,
    atime: Option<Timestamp>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    sparse: bool,
}

/// Reads entries from an uncompressed tar stream.
pub(crate) struct TarReader<'a> {
    input: HashingInput<'a>,
    limits: Limits,
    /// Unread data bytes of the current entry.
    data_left: u64,
    /// Padding after the current entry's data.
    padding: u64,
    ended: bool,
}

fn padding_for(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

impl<'a> TarReader<'a> {
    /// Reads from `input`.
    pub fn new(input: HashingInput<'a>, limits: Limits) -> Self {
        TarReader {
            input,
            limits,
            data_left: 0,
            padding: 0,
            ended: false,
        }
    }

    /// The next entry, or `None` at the end of the archive. Unread data of the previous
    /// entry is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_data()?;
        let mut pending = Pending::default();
        loop {
            let offset = self.input.offset();
            let mut block: Block = [0u8; BLOCK];
            let got = self.input.read_up_to(&mut block)?;
            if got == 0 {
                // A stream that stops at a header boundary without the end marker is
                // accepted, as other readers do; the diff id still covers all of it.
                return self.end(&pending, offset);
            }
            if got < BLOCK {
                return Err(LayerError::corrupt_tar(
                    offset,
                    "stream ends inside a header",
                ));
            }
            if header::is_zero_block(&block) {
                return self.end(&pending, offset);
            }
            if !header::checksum_ok(&block) {
                return Err(LayerError::corrupt_tar(offset, "header checksum mismatch"));
            }
            let size = number(&block, field::SIZE, offset, "size")?;
            let size = u64::try_from(size)
                .map_err(|_| LayerError::corrupt_tar(offset, "negative size"))?;
            match block[field::TYPEFLAG] {
                b'x' => self.read_pax(&mut pending, size, offset)?,
                b'g' => {
                    // Global headers are read (bounded) and ignored.
                    check_limit("PAX global header", size, self.limits.max_pax_bytes)?;
                    self.input
                        .skip(size + padding_for(size), "PAX global header")?;
                }
                b'L' => {
                    let name = self.read_long_name(size, "GNU long name")?;
                    pending.long_name = Some(name);
                }
                b'K' => {
                    let name = self.read_long_name(size, "GNU long link name")?;
                    pending.long_link = Some(name);
                }
                b'V' => {
                    // A GNU volume label carries nothing to extract.
                    self.input.skip(size + padding_for(size), "volume label")?;
                }
                _ => return self.finish_entry(&block, pending, size, offset).map(Some),
            }
        }
    }

    fn end(&mut self, pending: &Pending, offset: u64) -> Result<Option<Entry>, LayerError> {
        if pending.pax_bytes > 0 || pending.long_name.is_some() || pending.long_link.is_some() {
            return Err(LayerError::corrupt_tar(
                offset,
                "archive ends after an extension header with no entry",
            ));
        }
        self.ended = true;
        Ok(None)
    }

    fn read_pax(
        &mut self,
        pending: &mut Pending,
        size: u64,
        offset: u64,
    ) -> Result<(), LayerError> {
        pending.pax_bytes += size;
        check_limit(
            "PAX extended header",
            pending.pax_bytes,
            self.limits.max_pax_bytes,
        )?;
        let data = self.input.read_vec(size as usize, "PAX extended header")?;
        self.input.skip(padding_for(size), "PAX extended header")?;
        let records =
            pax::parse_records(&data).map_err(|reason| LayerError::corrupt_tar(offset, reason))?;
        for (key, value) in records {
            let bad = |what: &str| {
                LayerError::corrupt_tar(offset, format!("malformed PAX {what} record"))
            };
            match key {
                b"path" => pending.path = Some(value.to_vec()),
                b"linkpath" => pending.link_path = Some(value.to_vec()),
                b"size" => {
                    pending.size = Some(pax::parse_decimal(value).ok_or_else(|| bad("size"))?)
                }
                b"uid" => pending.uid = Some(pax::parse_decimal(value).ok_or_else(|| bad("uid"))?),
                b"gid" => pending.gid = Some(pax::parse_decimal(value).ok_or_else(|| bad("gid"))?),
                b"mtime" => {
                    let (seconds, nanos) = pax::parse_time(value).ok_or_else(|| bad("mtime"))?;
                    pending.mtime = Some(Timestamp { seconds, nanos });
                }
                b"atime" => {
                    let (seconds, nanos) = pax::parse_time(value).ok_or_else(|| bad("atime"))?;
                    pending.atime = Some(Timestamp { seconds, nanos });
                }
                _ if key.starts_with(pax::XATTR_PREFIX) => {
                    let name = key[pax::XATTR_PREFIX.len()..].to_vec();
                    pending.xattrs.retain(|(existing, _)| *existing != name);
                    pending.xattrs.push((name, value.to_vec()));
                }
                _ if key.starts_with(b"GNU.sparse.") => pending.sparse = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn read_long_name(&mut self, size: u64, what: &str) -> Result<Vec<u8>, LayerError> {
        check_limit(what, size, self.limits.max_long_name)?;
        let mut name = self.input.read_vec(size as usize, what)?;
        self.input.skip(padding_for(size), what)?;
        while name.last() == Some(&0) {
            name.pop();
        }
        Ok(name)
    }

    fn finish_entry(
        &mut self,
        block: &Block,
        pending: Pending,
        header_size: u64,
        offset: u64,
    ) -> Result<Entry, LayerError> {
        let ustar = &block[field::MAGIC] == header::USTAR_MAGIC;
        let name = match (pending.path, pending.long_name) {
            (Some(path), _) => path,
            (None, Some(long)) => long,
            (None, None) => {
                let name = header::c_string(&block[field::NAME]);
                let prefix = header::c_string(&block[field::PREFIX]);
                if ustar && !prefix.is_empty() {
                    let mut joined = prefix.to_vec();
                    joined.push(b'/');
                    joined.extend_from_slice(name);
                    joined
                } else {
                    name.to_vec()
                }
            }
        };
        let link_name = match (pending.link_path, pending.long_link) {
            (Some(path), _) => path,
            (None, Some(long)) => long,
            (None, None) => header::c_string(&block[field::LINKNAME]).to_vec(),
        };
        let typeflag = block[field::TYPEFLAG];
        let unsupported = |kind: String| LayerError::UnsupportedEntry {
            entry: display_name(&name),
            kind,
        };
        if pending.sparse || typeflag == b'S' {
            return Err(unsupported("GNU sparse file".into()));
        }
        let kind = match typeflag {
            b'0' | b'\0' | b'7' if name.ends_with(b"/") => EntryKind::Directory,
            b'0' | b'\0' | b'7' => EntryKind::Regular,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' | b'D' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => return Err(unsupported(format!("{:?}", other as char))),
        };

        let size = match pending.size {
            Some(pax_size) if pax_size != header_size && pax_size <= MAX_OCTAL_SIZE => {
                return Err(LayerError::PaxSizeMismatch {
                    entry: display_name(&name),
                    pax_size,
                    header_size,
                });
            }
            Some(pax_size) => pax_size,
            None => header_size,
        };
        let id = |pax_value: Option<u64>, range, what: &str| -> Result<u32, LayerError> {
            let value = match pax_value {
                Some(value) => i128::from(value),
                None => number(block, range, offset, what)?,
            };
            u32::try_from(value).map_err(|_| {
                LayerError::corrupt_tar(offset, format!("{what} {value} out of range"))
            })
        };
        let uid = id(pending.uid, field::UID, "uid")?;
        let gid = id(pending.gid, field::GID, "gid")?;
        let mode = number(block, field::MODE, offset, "mode")?;
        let mode = u32::try_from(mode & 0o7777).unwrap_or(0);
        let mtime = match pending.mtime {
            Some(mtime) => mtime,
            None => {
                let seconds = number(block, field::MTIME, offset, "mtime")?;
                Timestamp {
                    seconds: i64::try_from(seconds)
                        .map_err(|_| LayerError::corrupt_tar(offset, "mtime out of range"))?,
                    nanos: 0,
                }
            }
        };
        let device = if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            let major = number(block, field::DEVMAJOR, offset, "device major")?;
            let minor = number(block, field::DEVMINOR, offset, "device minor")?;
            let convert = |v: i128| {
                u32::try_from(v)
                    .map_err(|_| LayerError::corrupt_tar(offset, "device number out of range"))
            };
            (convert(major)?, convert(minor)?)
        } else {
            (0, 0)
        };

        self.data_left = size;
        self.padding = padding_for(size);
        Ok(Entry {
            name,
            kind,
            mode,
            uid,
            gid,
            size,
            mtime,
            atime: pending.atime,
            link_name,
            device,
            xattrs: pending.xattrs,
        })
    }

    /// Reads all of the current entry's data (its size must be `len`).
    pub fn read_data(&mut self, what: &str) -> Result<Vec<u8>, LayerError> {
        let len = usize::try_from(self.data_left).map_err(|_| LayerError::TooLarge {
            what: what.to_string(),
            size: self.data_left,
            limit: usize::MAX as u64,
        })?;
        let data = self.input.read_vec(len, what)?;
        self.data_left = 0;
        Ok(data)
    }

    /// Copies all of the current entry's data to `out`.
    pub fn copy_data(
        &mut self,
        out: &mut impl std::io::Write,
        what: &str,
    ) -> Result<(), LayerError> {
        let len = self.data_left;
        self.input.copy_to(len, out, what)?;
        self.data_left = 0;
        Ok(())
    }

    /// Skips what is left of the current entry's data and its padding.
    fn skip_data(&mut self) -> Result<(), LayerError> {
        let len = self.data_left + self.padding;
        self.data_left = 0;
        self.padding = 0;
        self.input.skip(len, "entry data")
    }

    /// Reads the stream to its end and returns its digest and length.
    pub fn finish(mut self) -> Result<(String, u64), LayerError> {
        if !self.ended {
            while self.next_entry()?.is_some() {}
        }
        self.input.finish()
    }
}

fn number(
    block: &Block,
    range: std::ops::Range<usize>,
    offset: u64,
    what: &str,
) -> Result<i128, LayerError> {
    header::parse_number(&block[range])
        .ok_or_else(|| LayerError::corrupt_tar(offset, format!("malformed {what} field")))
}

fn check_limit(what: &str, size: u64, limit: u64) -> Result<(), LayerError> {
    if size > limit {
        return Err(LayerError::TooLarge {
            what: what.to_string(),
            size,
            limit,
        });
    }
    Ok(())
}
