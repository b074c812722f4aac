//! Reader and writer tests on hand-made archives.

use super::header::{self, field, BLOCK};
use super::writer::ustar_block;
use super::*;
use crate::layer::compression::Compression;
use crate::layer::digest::HashingInput;
use crate::layer::error::LayerError;

fn entry(name: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        mtime: Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        },
        atime: None,
        link_name: Vec::new(),
        device: (0, 0),
        xattrs: Vec::new(),
    }
}

/// Reads every entry with its data.
fn read_all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, LayerError> {
    let input = HashingInput::new(Box::new(bytes), Compression::None, u64::MAX);
    let mut reader = TarReader::new(input, Limits::default());
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let data = reader.read_data("test data")?;
        out.push((entry, data));
    }
    reader.finish()?;
    Ok(out)
}

fn pax_block(records: &[u8]) -> Vec<u8> {
    let mut header_entry = entry("././@PaxHeader", EntryKind::Regular, records.len() as u64);
    header_entry.mode = 0o644;
    let mut block = ustar_block(&header_entry);
    block[field::TYPEFLAG] = b'x';
    header::set_checksum(&mut block);
    let mut out = block.to_vec();
    out.extend_from_slice(records);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

#[test]
fn written_entries_read_back_identically() {
    let long_name = format!("{}/file", "d".repeat(150));
    let mut file = entry(&long_name, EntryKind::Regular, 5);
    file.uid = 3_000_000;
    file.gid = 12;
    file.mode = 0o4755;
    file.xattrs = vec![(b"security.capability".to_vec(), vec![1, 0, 0, 2])];
    let mut link = entry("link", EntryKind::Symlink, 0);
    link.link_name = "t".repeat(120).into_bytes();
    let mut dev = entry("dev/null", EntryKind::CharDevice, 0);
    dev.device = (1, 3);

    let mut writer = TarWriter::new(Vec::new());
    writer.write_header(&file).unwrap();
    writer.write_data(&mut &b"hello"[..], 5).unwrap();
    writer.write_header(&link).unwrap();
    writer.write_header(&dev).unwrap();
    let bytes = writer.finish().unwrap();

    let entries = read_all(&bytes).unwrap();
    assert_eq!(entries.len(), 3);
    let (got, data) = &entries[0];
    assert_eq!(got.name, long_name.as_bytes());
    assert_eq!((got.uid, got.gid, got.mode), (3_000_000, 12, 0o4755));
    assert_eq!(got.xattrs, file.xattrs);
    assert_eq!(data, b"hello");
    assert_eq!(entries[1].0.link_name, link.link_name);
    assert_eq!(entries[1].0.kind, EntryKind::Symlink);
    assert_eq!(entries[2].0.device, (1, 3));
}

#[test]
fn ustar_prefix_and_gnu_long_names_are_joined() {
    let mut block = ustar_block(&entry("name", EntryKind::Regular, 0));
    block[field::PREFIX][..6].copy_from_slice(b"prefix");
    header::set_checksum(&mut block);
    let mut bytes = block.to_vec();

    let long = "l".repeat(300);
    let mut long_header = ustar_block(&entry("././@LongLink", EntryKind::Regular, 301));
    long_header[field::TYPEFLAG] = b'L';
    header::set_checksum(&mut long_header);
    bytes.extend_from_slice(&long_header);
    let mut name_data = long.clone().into_bytes();
    name_data.push(0);
    name_data.resize(BLOCK, 0);
    bytes.extend_from_slice(&name_data);
    bytes.extend_from_slice(&ustar_block(&entry("short", EntryKind::Regular, 0)));
    bytes.extend_from_slice(&[0u8; 1024]);

    let entries = read_all(&bytes).unwrap();
    assert_eq!(entries[0].0.name, b"prefix/name");
    assert_eq!(entries[1].0.name, long.as_bytes());
}

#[test]
fn pax_size_disagreeing_with_the_header_is_rejected() {
    let mut bytes = pax_block(&pax::format_record(b"size", b"1024"));
    bytes.extend_from_slice(&ustar_block(&entry("smuggler", EntryKind::Regular, 0)));
    bytes.extend_from_slice(&[0u8; 2048]);
    let err = read_all(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::PaxSizeMismatch {
                pax_size: 1024,
                header_size: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("smuggler"), "{err}");
}

#[test]
fn pax_size_agreeing_with_the_header_is_accepted() {
    let mut bytes = pax_block(&pax::format_record(b"size", b"3"));
    bytes.extend_from_slice(&ustar_block(&entry("ok", EntryKind::Regular, 3)));
    let mut data = b"abc".to_vec();
    data.resize(BLOCK, 0);
    bytes.extend_from_slice(&data);
    bytes.extend_from_slice(&[0u8; 1024]);
    let entries = read_all(&bytes).unwrap();
    assert_eq!(entries[0].1, b"abc");
}

#[test]
fn huge_pax_headers_and_long_names_are_bounded() {
    let huge = vec![b'a'; 2 << 20];
    let mut bytes = pax_block(&pax::format_record(b"path", &huge));
    bytes.extend_from_slice(&ustar_block(&entry("x", EntryKind::Regular, 0)));
    let err = read_all(&bytes).unwrap_err();
    assert!(matches!(err, LayerError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("PAX extended header"), "{err}");

    let mut long_header = ustar_block(&entry("././@LongLink", EntryKind::Regular, 1 << 20));
    long_header[field::TYPEFLAG] = b'L';
    header::set_checksum(&mut long_header);
    let err = read_all(&long_header).unwrap_err();
    assert!(
        err.to_string().contains("GNU long name is too large"),
        "{err}"
    );
}

#[test]
fn many_pax_headers_before_one_entry_are_bounded_together() {
    let mut bytes = Vec::new();
    for i in 0..8 {
        let key = format!("SCHILY.xattr.user.{i}");
        bytes.extend(pax_block(&pax::format_record(
            key.as_bytes(),
            &[b'v'; 200_000],
        )));
    }
    bytes.extend_from_slice(&ustar_block(&entry("x", EntryKind::Regular, 0)));
    let err = read_all(&bytes).unwrap_err();
    assert!(matches!(err, LayerError::TooLarge { .. }), "{err}");
}

#[test]
fn bad_checksums_and_truncation_are_reported() {
    let mut block = ustar_block(&entry("file", EntryKind::Regular, 0));
    block[0] = b'g';
    let err = read_all(&block).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    let block = ustar_block(&entry("file", EntryKind::Regular, 100));
    let mut bytes = block.to_vec();
    bytes.extend_from_slice(&[1u8; 10]);
    let err = read_all(&bytes).unwrap_err();
    assert!(err.to_string().contains("stream ends inside"), "{err}");

    let err = read_all(&block[..300]).unwrap_err();
    assert!(err.to_string().contains("inside a header"), "{err}");
}

#[test]
fn sparse_files_are_unsupported() {
    let mut block = ustar_block(&entry("sparse", EntryKind::Regular, 0));
    block[field::TYPEFLAG] = b'S';
    header::set_checksum(&mut block);
    let err = read_all(&block).unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedEntry { .. }), "{err}");
}

#[test]
fn data_after_the_end_marker_counts_towards_the_digest() {
    let writer = TarWriter::new(Vec::new());
    let mut bytes = writer.finish().unwrap();
    let plain = {
        let input = HashingInput::new(Box::new(&bytes[..]), Compression::None, u64::MAX);
        TarReader::new(input, Limits::default()).finish().unwrap()
    };
    bytes.extend_from_slice(&[0u8; 4096]);
    let padded = {
        let input = HashingInput::new(Box::new(&bytes[..]), Compression::None, u64::MAX);
        TarReader::new(input, Limits::default()).finish().unwrap()
    };
    assert_eq!(plain.1, 1024);
    assert_eq!(padded.1, 1024 + 4096);
    assert_ne!(plain.0, padded.0);
}
