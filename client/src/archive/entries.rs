//! Reading an image archive (a tar stream) on a blocking thread and handing its entries
//! to the async importer one at a time: small JSON files whole, blobs as a stream of
//! chunks, links as names. Nothing is written to the local filesystem, so entry names
//! are never paths here; names that would escape the archive are refused all the same,
//! as a sign of a hostile archive.

use std::io::Read;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{ClientError, Result};
use crate::oci::MAX_JSON_BYTES;

/// Files read whole into memory (all of them JSON metadata), bounded in size.
pub const METADATA_FILES: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
/// Bytes per chunk of a streamed entry.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks buffered between the reading thread and the importer.
const CHUNKS_BUFFERED: usize = 4;
/// Most entries an archive may have (blobs, directories, links, metadata).
pub const MAX_ENTRIES: usize = 100_000;

/// One entry of the archive, as the importer gets it.
#[derive(Debug)]
pub enum ArchiveEntry {
    /// A metadata file, read whole.
    Metadata {
        /// Its normalized name.
        name: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Any other regular file, streamed: drop `data` to skip it.
    File {
        /// Its normalized name.
        name: String,
        /// Its size from the tar header.
        size: u64,
        /// Its bytes in chunks; an error ends the stream.
        data: mpsc::Receiver<std::io::Result<Bytes>>,
    },
    /// A symbolic or hard link, resolved to the name of the entry it points at.
    Link {
        /// Its normalized name.
        name: String,
        /// The normalized name it points at.
        target: String,
    },
}

/// Starts reading `reader` as a tar stream on a blocking thread. Entries arrive on the
/// returned channel in archive order; the first error ends it.
pub fn read_entries<R: Read + Send + 'static>(reader: R) -> mpsc::Receiver<Result<ArchiveEntry>> {
    let (sender, receiver) = mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = read_all(reader, &sender) {
            let _ = sender.blocking_send(Err(e));
        }
    });
    receiver
}

fn read_all<R: Read>(reader: R, sender: &mpsc::Sender<Result<ArchiveEntry>>) -> Result<()> {
    // Headers are read 512 bytes at a time; entry data in chunks that bypass the buffer.
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(64 << 10, reader));
    let entries = archive
        .entries()
        .map_err(|e| ClientError::archive(format!("not a tar stream: {e}")))?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(ClientError::archive(format!(
                "it has more than {MAX_ENTRIES} entries"
            )));
        }
        let mut entry = entry.map_err(|e| ClientError::archive(format!("bad tar entry: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| ClientError::archive(format!("bad entry name: {e}")))?;
        let raw = raw
            .to_str()
            .ok_or_else(|| ClientError::archive(format!("entry name {raw:?} is not UTF-8")))?;
        let Some(name) = normalize_name(raw)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        let event = if kind.is_dir() {
            continue;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| ClientError::archive(format!("entry {name:?}: bad link: {e}")))?
                .ok_or_else(|| ClientError::archive(format!("link {name:?} has no target")))?;
            let target = target.to_str().ok_or_else(|| {
                ClientError::archive(format!("link {name:?}: target is not UTF-8"))
            })?;
            let target = if kind.is_symlink() {
                resolve_symlink(&name, target)?
            } else {
                normalize_name(target)?.unwrap_or_default()
            };
            ArchiveEntry::Link { name, target }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.size();
            if METADATA_FILES.contains(&name.as_str()) {
                if size > MAX_JSON_BYTES {
                    return Err(ClientError::archive(format!(
                        "{name} is {size} bytes; at most {MAX_JSON_BYTES} are accepted"
                    )));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| ClientError::archive(format!("reading {name}: {e}")))?;
                ArchiveEntry::Metadata { name, bytes }
            } else {
                let (data_sender, data) = mpsc::channel(CHUNKS_BUFFERED);
                if sender
                    .blocking_send(Ok(ArchiveEntry::File { name, size, data }))
                    .is_err()
                {
                    return Ok(()); // the importer stopped
                }
                stream_entry(&mut entry, &data_sender);
                continue;
            }
        } else {
            // Devices, fifos and extension headers are not part of an image archive.
            continue;
        };
        if sender.blocking_send(Ok(event)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends the entry's bytes in chunks until its end, or until the importer drops the
/// receiver (then the rest is skipped when the next entry is read).
fn stream_entry<R: Read>(entry: &mut R, data: &mpsc::Sender<std::io::Result<Bytes>>) {
    loop {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let mut filled = 0;
        while filled < CHUNK_BYTES {
            match entry.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = data.blocking_send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        chunk.truncate(filled);
        if data.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            return;
        }
    }
}

/// The entry name without `./` prefixes or trailing `/`; `None` for the archive root.
/// Absolute names and names with `..` are refused.
pub fn normalize_name(raw: &str) -> Result<Option<String>> {
    if raw.starts_with('/') {
        return Err(ClientError::archive(format!(
            "entry {raw:?} has an absolute name"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ClientError::archive(format!(
                    "entry {raw:?} points outside the archive"
                )))
            }
            other => parts.push(other),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The name a symbolic link at `name` pointing at `target` refers to, inside the
/// archive; a target outside the archive is refused.
pub fn resolve_symlink(name: &str, target: &str) -> Result<String> {
    if target.starts_with('/') {
        return Err(ClientError::archive(format!(
            "link {name:?} points at the absolute path {target:?}"
        )));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ClientError::archive(format!(
                        "link {name:?} points outside the archive ({target:?})"
                    )));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_escapes_refused() {
        assert_eq!(
            normalize_name("./blobs/sha256/ab").unwrap().as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize_name("blobs/").unwrap().as_deref(), Some("blobs"));
        assert_eq!(normalize_name("./").unwrap(), None);
        for bad in ["/etc/passwd", "../x", "blobs/../../x", "a/.."] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_symlink("b/layer.tar", "../a/layer.tar").unwrap(),
            "a/layer.tar"
        );
        assert_eq!(resolve_symlink("x", "y").unwrap(), "y");
        assert!(resolve_symlink("b/layer.tar", "../../etc/passwd").is_err());
        assert!(resolve_symlink("x", "/etc/passwd").is_err());
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    async fn collect(bytes: Vec<u8>) -> Vec<Result<(String, Vec<u8>)>> {
        let mut entries = read_entries(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        while let Some(entry) = entries.recv().await {
            out.push(match entry {
                Ok(ArchiveEntry::Metadata { name, bytes }) => Ok((name, bytes)),
                Ok(ArchiveEntry::File { name, mut data, .. }) => {
                    let mut bytes = Vec::new();
                    while let Some(chunk) = data.recv().await {
                        bytes.extend_from_slice(&chunk.unwrap());
                    }
                    Ok((name, bytes))
                }
                Ok(ArchiveEntry::Link { name, target }) => Ok((name, target.into_bytes())),
                Err(e) => Err(e),
            });
        }
        out
    }

    #[tokio::test]
    async fn entries_arrive_in_order_with_their_bytes() {
        let big = vec![7u8; CHUNK_BYTES * 2 + 5];
        let archive = tar_of(&[("index.json", b"{}"), ("./blobs/sha256/x", &big)]);
        let entries = collect(archive).await;
        assert_eq!(entries.len(), 2);
        let (name, bytes) = entries[0].as_ref().unwrap();
        assert_eq!(
            (name.as_str(), bytes.as_slice()),
            ("index.json", &b"{}"[..])
        );
        let (name, bytes) = entries[1].as_ref().unwrap();
        assert_eq!(name, "blobs/sha256/x");
        assert_eq!(bytes, &big);
    }

    #[tokio::test]
    async fn oversized_metadata_and_junk_are_refused() {
        let huge = vec![b' '; MAX_JSON_BYTES as usize + 1];
        let entries = collect(tar_of(&[("index.json", &huge)])).await;
        let error = entries.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(error.contains("index.json is"), "{error}");

        let entries = collect(b"this is not a tar archive at all".repeat(40)).await;
        assert!(entries.iter().any(|e| e.is_err()), "{entries:?}");
    }

    #[tokio::test]
    async fn skipped_entries_do_not_stall_the_reader() {
        let big = vec![1u8; CHUNK_BYTES * 8];
        let archive = tar_of(&[("a", &big), ("index.json", b"[]")]);
        let mut entries = read_entries(std::io::Cursor::new(archive));
        let first = entries.recv().await.unwrap().unwrap();
        assert!(matches!(first, ArchiveEntry::File { .. }));
        drop(first); // skip its bytes
        let second = entries.recv().await.unwrap().unwrap();
        assert!(matches!(second, ArchiveEntry::Metadata { ref name, .. } if name == "index.json"));
    }
}
