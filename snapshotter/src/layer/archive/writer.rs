//! A tar writer producing POSIX ustar headers, with a PAX extended header in front of an
//! entry only when something does not fit ustar (long names, extended attributes, large
//! ids or sizes).

use std::io::{self, Write};

use super::header::{self, field, Block, BLOCK};
use super::pax;
use super::reader::{Entry, EntryKind};

/// Largest uid/gid a 7-digit octal field holds.
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// Largest size or time an 11-digit octal field holds.
const MAX_OCTAL_NUMBER: u64 = 0o77_777_777_777;

/// Writes entries to a tar stream.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Writes the header(s) for `entry`; for a regular file, its `entry.size` bytes of data
    /// must follow through [`TarWriter::write_data`].
    pub fn write_header(&mut self, entry: &Entry) -> io::Result<()> {
        let records = pax_records(entry);
        if !records.is_empty() {
            let size = records.len() as u64;
            let pax_header = pax_header_block(size);
            self.out.write_all(&pax_header)?;
            self.out.write_all(&records)?;
            self.write_padding(size)?;
        }
        self.out.write_all(&ustar_block(entry))
    }

    /// Copies exactly `size` bytes of entry data from `data`, then the padding.
    pub fn write_data(&mut self, data: impl io::Read, size: u64) -> io::Result<()> {
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file shrank while being archived ({copied} of {size} bytes)"),
            ));
        }
        self.write_padding(size)
    }

    fn write_padding(&mut self, size: u64) -> io::Result<()> {
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.out.write_all(&[0u8; BLOCK][..padding as usize])
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

/// The PAX records `entry` needs (empty when ustar holds everything).
fn pax_records(entry: &Entry) -> Vec<u8> {
    let mut records = Vec::new();
    if entry.name.len() > field::NAME.len() {
        records.extend(pax::format_record(b"path", &entry.name));
    }
    if entry.link_name.len() > field::LINKNAME.len() {
        records.extend(pax::format_record(b"linkpath", &entry.link_name));
    }
    if entry.size > MAX_OCTAL_NUMBER {
        records.extend(pax::format_record(
            b"size",
            entry.size.to_string().as_bytes(),
        ));
    }
    if u64::from(entry.uid) > MAX_OCTAL_ID {
        records.extend(pax::format_record(b"uid", entry.uid.to_string().as_bytes()));
    }
    if u64::from(entry.gid) > MAX_OCTAL_ID {
        records.extend(pax::format_record(b"gid", entry.gid.to_string().as_bytes()));
    }
    if entry.mtime.seconds < 0 || entry.mtime.seconds as u64 > MAX_OCTAL_NUMBER {
        records.extend(pax::format_record(
            b"mtime",
            entry.mtime.seconds.to_string().as_bytes(),
        ));
    }
    for (name, value) in &entry.xattrs {
        let mut key = pax::XATTR_PREFIX.to_vec();
        key.extend_from_slice(name);
        records.extend(pax::format_record(&key, value));
    }
    records
}

fn pax_header_block(size: u64) -> Block {
    let mut block = [0u8; BLOCK];
    let name = b"././@PaxHeader";
    block[..name.len()].copy_from_slice(name);
    header::write_octal(&mut block[field::MODE], 0o644);
    header::write_octal(&mut block[field::UID], 0);
    header::write_octal(&mut block[field::GID], 0);
    header::write_octal(&mut block[field::SIZE], size);
    header::write_octal(&mut block[field::MTIME], 0);
    block[field::TYPEFLAG] = b'x';
    block[field::MAGIC].copy_from_slice(header::USTAR_MAGIC);
    block[field::VERSION].copy_from_slice(b"00");
    header::set_checksum(&mut block);
    block
}

/// The ustar header block for `entry`; fields that do not fit are truncated or zeroed
/// (the PAX records from [`pax_records`] carry their real values).
pub(crate) fn ustar_block(entry: &Entry) -> Block {
    let mut block = [0u8; BLOCK];
    let name_len = entry.name.len().min(field::NAME.len());
    block[..name_len].copy_from_slice(&entry.name[..name_len]);
    header::write_octal(&mut block[field::MODE], u64::from(entry.mode & 0o7777));
    header::write_octal(&mut block[field::UID], u64::from(entry.uid));
    header::write_octal(&mut block[field::GID], u64::from(entry.gid));
    let data_size = if entry.kind == EntryKind::Regular {
        entry.size
    } else {
        0
    };
    header::write_octal(&mut block[field::SIZE], data_size);
    header::write_octal(
        &mut block[field::MTIME],
        u64::try_from(entry.mtime.seconds).unwrap_or(0),
    );
    block[field::TYPEFLAG] = match entry.kind {
        EntryKind::Regular => b'0',
        EntryKind::HardLink => b'1',
        EntryKind::Symlink => b'2',
        EntryKind::CharDevice => b'3',
        EntryKind::BlockDevice => b'4',
        EntryKind::Directory => b'5',
        EntryKind::Fifo => b'6',
    };
    let link_len = entry.link_name.len().min(field::LINKNAME.len());
    block[field::LINKNAME.start..field::LINKNAME.start + link_len]
        .copy_from_slice(&entry.link_name[..link_len]);
    block[field::MAGIC].copy_from_slice(header::USTAR_MAGIC);
    block[field::VERSION].copy_from_slice(b"00");
    header::write_octal(&mut block[field::DEVMAJOR], u64::from(entry.device.0));
    header::write_octal(&mut block[field::DEVMINOR], u64::from(entry.device.1));
    header::set_checksum(&mut block);
    block
}
