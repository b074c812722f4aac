//! Layer media types and the (de)compressors they call for.
//!
//! The media type says which layer formats are acceptable at all; the first bytes of the
//! stream decide how it is decompressed, because registries and tools sometimes label a
//! plain tar as gzip or the other way round.

use std::io::{self, BufReader, Cursor, Read, Write};

use super::error::LayerError;

/// How a layer's tar stream is (or is to be) compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952), possibly several members back to back.
    Gzip,
    /// Zstandard, possibly several frames back to back.
    Zstd,
}

/// OCI layer, plain tar.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 layer (always gzip).
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every media type `apply_layer` accepts, with the compression it announces.
const KNOWN_MEDIA_TYPES: &[(&str, Compression)] = &[
    (OCI_LAYER_TAR, Compression::None),
    (OCI_LAYER_TAR_GZIP, Compression::Gzip),
    (OCI_LAYER_TAR_ZSTD, Compression::Zstd),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        Compression::None,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        Compression::Zstd,
    ),
    (DOCKER_LAYER_TAR_GZIP, Compression::Gzip),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar",
        Compression::None,
    ),
];

impl Compression {
    /// The compression a layer media type announces, or an error for a type that is not a
    /// layer. Parameters after `;` are ignored.
    pub fn from_media_type(media_type: &str) -> Result<Self, LayerError> {
        let bare = media_type.split(';').next().unwrap_or("").trim();
        KNOWN_MEDIA_TYPES
            .iter()
            .find(|(known, _)| *known == bare)
            .map(|(_, compression)| *compression)
            .ok_or_else(|| LayerError::UnsupportedMediaType(media_type.to_string()))
    }

    /// The compression whose magic number starts `head` (`1f 8b` for gzip, `28 b5 2f fd`
    /// for zstd); anything else is taken to be a plain tar.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Short name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_TAR_GZIP,
            Compression::Zstd => OCI_LAYER_TAR_ZSTD,
        }
    }
}

/// Size of the buffer between the raw layer reader and the decompressor.
const INPUT_BUFFER: usize = 256 * 1024;

/// Wraps `reader` in the decompressor its first bytes call for and returns it with the
/// compression found. `media_type` must be a known layer type.
pub(crate) fn open_decompressor<'a, R: Read + 'a>(
    mut reader: R,
    media_type: &str,
) -> Result<(Box<dyn Read + 'a>, Compression), LayerError> {
    Compression::from_media_type(media_type)?;
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(LayerError::io("read layer", err)),
        }
    }
    let compression = Compression::sniff(&head[..filled]);
    let whole = Cursor::new(head).take(filled as u64).chain(reader);
    let buffered = BufReader::with_capacity(INPUT_BUFFER, whole);
    let decoder: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(
            |err| LayerError::CorruptCompression {
                compression: "zstd",
                source: err,
            },
        )?),
    };
    Ok((decoder, compression))
}

/// A compressing writer whose compressed stream can be finished explicitly.
pub(crate) enum Compressor<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Starts compressing into `out`. `level` is the codec's level (gzip 0-9, zstd 1-19);
    /// `None` picks a fast default.
    pub fn new(out: W, compression: Compression, level: Option<u32>) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::Plain(out),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.unwrap_or(6).min(9)),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(
                out,
                level.unwrap_or(3).clamp(1, 19) as i32,
            )?),
        })
    }

    /// Writes the compressed stream's trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(out) => Ok(out),
            Compressor::Gzip(encoder) => encoder.finish(),
            Compressor::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(out) => out.write(buf),
            Compressor::Gzip(encoder) => encoder.write(buf),
            Compressor::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(out) => out.flush(),
            Compressor::Gzip(encoder) => encoder.flush(),
            Compressor::Zstd(encoder) => encoder.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_their_compression() {
        assert_eq!(
            Compression::from_media_type(OCI_LAYER_TAR_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            )
            .unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::from_media_type(DOCKER_LAYER_TAR_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type(OCI_LAYER_TAR).unwrap(),
            Compression::None
        );
    }

    #[test]
    fn other_media_types_are_refused() {
        let err =
            Compression::from_media_type("application/vnd.oci.image.config.v1+json").unwrap_err();
        assert!(matches!(err, LayerError::UnsupportedMediaType(_)), "{err}");
        assert!(err.to_string().contains("config.v1+json"));
    }

    #[test]
    fn magic_bytes_are_recognised() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"usr/"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn a_gzip_stream_labelled_as_plain_tar_is_still_decompressed() {
        let mut compressor = Compressor::new(Vec::new(), Compression::Gzip, None).unwrap();
        compressor.write_all(b"hello layer").unwrap();
        let gz = compressor.finish().unwrap();
        let (mut reader, found) = open_decompressor(&gz[..], OCI_LAYER_TAR).unwrap();
        assert_eq!(found, Compression::Gzip);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello layer");
    }

    #[test]
    fn a_short_plain_stream_is_read_whole() {
        let (mut reader, found) = open_decompressor(&b"ab"[..], OCI_LAYER_TAR).unwrap();
        assert_eq!(found, Compression::None);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
