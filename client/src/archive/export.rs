//! Exporting images as an OCI image layout tar, laid out as `ctr images export` writes
//! it: `blobs/sha256/<hex>` (read-only), `index.json` with one entry per image name
//! (annotated `io.containerd.image.name` and `org.opencontainers.image.ref.name`), a
//! Docker-compatible `manifest.json`, and `oci-layout`; entries sorted by name, owned by
//! root, dated 1970. Blobs stream from the content store into the tar; none is held in
//! memory whole.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::connection::Api;
use crate::content::{blob_info, read_stream};
use crate::error::{ClientError, Result};
use crate::image::{get_image, read_manifest_and_config, ref_name_of, select_manifests};
use crate::oci::annotations::{IMAGE_NAME, REF_NAME};
use crate::oci::{digest_hex, Descriptor, Index};
use crate::platform::PlatformSelection;
use crate::progress::{ItemState, Progress};

/// The `oci-layout` file's content.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Chunks buffered between the content store and the tar writer.
const CHUNKS_BUFFERED: usize = 4;

/// How images are exported.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Which manifests of an index go in (the host's by default).
    pub platforms: PlatformSelection,
    /// Where progress goes.
    pub progress: Progress,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Blobs written.
    pub blobs: usize,
    /// Bytes of blobs written.
    pub blob_bytes: u64,
}

/// Writes the images `names` as an OCI image layout tar to `writer`.
pub async fn export<W: Write + Send + 'static>(
    api: &Api,
    names: &[String],
    writer: W,
    options: &ExportOptions,
) -> Result<ExportSummary> {
    if names.is_empty() {
        return Err(ClientError::InvalidArgument(
            "name at least one image to export".to_string(),
        ));
    }
    let plan = plan_export(api, names, &options.platforms).await?;
    let (items, receiver) = mpsc::channel::<TarItem>(1);
    let writing = tokio::task::spawn_blocking(move || write_tar(writer, receiver));
    let sent = send_items(api, &plan, &items, &options.progress).await;
    drop(items);
    let written = writing
        .await
        .map_err(|e| ClientError::io("writing the archive")(std::io::Error::other(e)))?;
    match (sent, written) {
        (Ok(()), Ok(())) => {}
        // The writer stopped first (a full disk, a closed pipe): its error says why.
        (Err(ClientError::Io { .. }), Err(e)) | (Ok(()), Err(e)) => {
            return Err(ClientError::io("writing the archive")(e))
        }
        // Reading the store failed; the writer only saw the data stop.
        (Err(e), _) => return Err(e),
    }
    Ok(ExportSummary {
        blobs: plan.blobs.len(),
        blob_bytes: plan.blobs.values().map(|d| d.size).sum(),
    })
}

/// Everything an export writes, gathered before the first byte.
#[derive(Debug, Default)]
struct ExportPlan {
    /// Every blob by digest (sorted, so the tar is too).
    blobs: BTreeMap<String, Descriptor>,
    index_json: Vec<u8>,
    manifest_json: Vec<u8>,
}

/// Reads the images from the store and lists every blob they need, checking each is
/// there; builds `index.json` and `manifest.json`.
async fn plan_export(
    api: &Api,
    names: &[String],
    selection: &PlatformSelection,
) -> Result<ExportPlan> {
    let mut plan = ExportPlan::default();
    let mut index = Index {
        schema_version: 2,
        media_type: None,
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let mut docker_entries = Vec::new();
    for name in names {
        let record = get_image(api, name).await?;
        let tree = select_manifests(api, &record.target, selection).await?;
        if tree.manifests.is_empty() {
            return Err(ClientError::NoMatchingPlatform {
                image: name.clone(),
                platform: match selection {
                    PlatformSelection::Only(p) => p.to_string(),
                    PlatformSelection::All => "any".to_string(),
                },
            });
        }
        for (descriptor, _) in &tree.indexes {
            plan.blobs
                .insert(descriptor.digest.clone(), plain(descriptor));
        }
        let single = tree.manifests.len() == 1;
        for descriptor in &tree.manifests {
            let (manifest, _) = read_manifest_and_config(api, descriptor).await?;
            plan.blobs
                .insert(descriptor.digest.clone(), plain(descriptor));
            plan.blobs
                .insert(manifest.config.digest.clone(), plain(&manifest.config));
            for layer in &manifest.layers {
                plan.blobs.insert(layer.digest.clone(), plain(layer));
            }
            if single {
                docker_entries.push(serde_json::json!({
                    "Config": blob_path(&manifest.config.digest),
                    "RepoTags": [name],
                    "Layers": manifest.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
                }));
            }
        }
        let mut entry = Descriptor {
            platform: None,
            annotations: BTreeMap::new(),
            ..record.target.clone()
        };
        entry
            .annotations
            .insert(IMAGE_NAME.to_string(), name.clone());
        entry
            .annotations
            .insert(REF_NAME.to_string(), ref_name_of(name));
        index.manifests.push(entry);
    }
    for descriptor in plan.blobs.values() {
        match blob_info(api, &descriptor.digest).await? {
            Some(info) if info.size == descriptor.size => {}
            Some(info) => {
                return Err(ClientError::DigestMismatch {
                    what: format!("blob {}", descriptor.digest),
                    detail: format!(
                        "the store holds {} bytes, its descriptor says {}",
                        info.size, descriptor.size
                    ),
                })
            }
            None => {
                return Err(ClientError::NotFound {
                    what: format!("blob {} ({})", descriptor.digest, descriptor.media_type),
                })
            }
        }
    }
    plan.index_json = serde_json::to_vec(&index).unwrap_or_default();
    plan.manifest_json = serde_json::to_vec(&docker_entries).unwrap_or_default();
    Ok(plan)
}

/// The descriptor without platform and annotations (the blob list needs only the
/// digest, size and type).
fn plain(descriptor: &Descriptor) -> Descriptor {
    Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

/// The archive path of a blob.
fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest_hex(digest))
}

/// One entry for the tar writer.
enum TarItem {
    /// A directory.
    Directory { path: String },
    /// A file whose bytes follow on `data` (exactly `size` of them).
    File {
        path: String,
        mode: u32,
        size: u64,
        data: mpsc::Receiver<std::io::Result<Bytes>>,
    },
}

/// Feeds the writer every entry in order, streaming each blob from the store.
async fn send_items(
    api: &Api,
    plan: &ExportPlan,
    items: &mpsc::Sender<TarItem>,
    progress: &Progress,
) -> Result<()> {
    let closed = || {
        ClientError::io("writing the archive")(std::io::Error::other("the archive writer stopped"))
    };
    for path in ["blobs", "blobs/sha256"] {
        items
            .send(TarItem::Directory {
                path: path.to_string(),
            })
            .await
            .map_err(|_| closed())?;
    }
    for descriptor in plan.blobs.values() {
        let kind = descriptor.kind().progress_kind();
        let report =
            |state, done| progress.item(&descriptor.digest, kind, state, done, descriptor.size);
        report(ItemState::Transferring, 0);
        let (data_sender, data) = mpsc::channel(CHUNKS_BUFFERED);
        items
            .send(TarItem::File {
                path: blob_path(&descriptor.digest),
                mode: 0o444,
                size: descriptor.size,
                data,
            })
            .await
            .map_err(|_| closed())?;
        let mut stream = read_stream(api, &descriptor.digest, 0).await?;
        let mut done = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    report(ItemState::Failed, done);
                    let _ = data_sender
                        .send(Err(std::io::Error::other(e.to_string())))
                        .await;
                    return Err(e);
                }
            };
            done += chunk.len() as u64;
            data_sender.send(Ok(chunk)).await.map_err(|_| closed())?;
            report(ItemState::Transferring, done);
        }
        report(ItemState::Done, done);
    }
    let metadata: [(&str, u32, &[u8]); 3] = [
        ("index.json", 0o644, &plan.index_json),
        ("manifest.json", 0o644, &plan.manifest_json),
        ("oci-layout", 0o444, OCI_LAYOUT),
    ];
    for (path, mode, bytes) in metadata {
        let (data_sender, data) = mpsc::channel(1);
        data_sender
            .send(Ok(Bytes::copy_from_slice(bytes)))
            .await
            .map_err(|_| closed())?;
        drop(data_sender);
        items
            .send(TarItem::File {
                path: path.to_string(),
                mode,
                size: bytes.len() as u64,
                data,
            })
            .await
            .map_err(|_| closed())?;
    }
    Ok(())
}

/// Writes the tar on a blocking thread as the items arrive.
fn write_tar<W: Write>(writer: W, mut items: mpsc::Receiver<TarItem>) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, writer));
    while let Some(item) = items.blocking_recv() {
        match item {
            TarItem::Directory { path } => {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            TarItem::File {
                path,
                mode,
                size,
                data,
            } => {
                let mut header = header(tar::EntryType::Regular, mode, size);
                let reader = ExactReader {
                    data,
                    current: Bytes::new(),
                    remaining: size,
                };
                builder.append_data(&mut header, &path, reader)?;
            }
        }
    }
    let mut buffered = builder.into_inner()?;
    buffered.flush()?;
    buffered.into_inner().map_err(|e| e.into_error())?.flush()
}

/// A ustar header as ctr writes them: root-owned, dated 1970.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Reads exactly `remaining` bytes from a channel of chunks; fewer or more is an
/// error (a short entry would corrupt the tar).
struct ExactReader {
    data: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    remaining: u64,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.data.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None if self.remaining == 0 => return Ok(0),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("a blob ended {} bytes short", self.remaining),
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        if n as u64 > self.remaining {
            return Err(std::io::Error::other(
                "a blob is longer than its descriptor says",
            ));
        }
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (sender, receiver) = mpsc::channel(parts.len().max(1));
        for part in parts {
            sender.try_send(Ok(Bytes::from_static(part))).unwrap();
        }
        receiver
    }

    #[test]
    fn exact_readers_refuse_short_and_long_blobs() {
        let mut out = Vec::new();
        let mut ok = ExactReader {
            data: chunks(&[b"ab", b"cd"]),
            current: Bytes::new(),
            remaining: 4,
        };
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");

        let mut short = ExactReader {
            data: chunks(&[b"ab"]),
            current: Bytes::new(),
            remaining: 4,
        };
        assert!(short.read_to_end(&mut Vec::new()).is_err());

        let mut long = ExactReader {
            data: chunks(&[b"abcdef"]),
            current: Bytes::new(),
            remaining: 4,
        };
        assert!(long.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn the_tar_is_laid_out_as_ctr_writes_it() {
        let (sender, receiver) = mpsc::channel(8);
        sender
            .try_send(TarItem::Directory {
                path: "blobs".to_string(),
            })
            .unwrap();
        sender
            .try_send(TarItem::File {
                path: "oci-layout".to_string(),
                mode: 0o444,
                size: OCI_LAYOUT.len() as u64,
                data: chunks(&[OCI_LAYOUT]),
            })
            .unwrap();
        drop(sender);
        let mut out = Vec::new();
        write_tar(&mut out, receiver).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("blobs/".to_string(), 0o755, 0),
                ("oci-layout".to_string(), 0o444, 0)
            ]
        );
    }
}
