//! The 512-byte tar header block: field offsets, number formats and the checksum.
//!
//! Numbers are octal ASCII (padded with spaces or NULs) or, for values that do not fit,
//! GNU's base-256 form (high bit of the first byte set).

/// Size of a tar block; headers and the padding of entry data are multiples of it.
pub(crate) const BLOCK: usize = 512;

/// One raw header block.
pub(crate) type Block = [u8; BLOCK];

/// Byte ranges of the ustar header fields.
pub(crate) mod field {
    use std::ops::Range;
    pub const NAME: Range<usize> = 0..100;
    pub const MODE: Range<usize> = 100..108;
    pub const UID: Range<usize> = 108..116;
    pub const GID: Range<usize> = 116..124;
    pub const SIZE: Range<usize> = 124..136;
    pub const MTIME: Range<usize> = 136..148;
    pub const CHECKSUM: Range<usize> = 148..156;
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: Range<usize> = 157..257;
    pub const MAGIC: Range<usize> = 257..263;
    pub const VERSION: Range<usize> = 263..265;
    pub const DEVMAJOR: Range<usize> = 329..337;
    pub const DEVMINOR: Range<usize> = 337..345;
    pub const PREFIX: Range<usize> = 345..500;
}

/// The magic of POSIX ustar (and PAX) headers.
pub(crate) const USTAR_MAGIC: &[u8; 6] = b"ustar\0";

/// True if the block is all zeros (the end-of-archive marker).
pub(crate) fn is_zero_block(block: &Block) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Bytes of a NUL-terminated (or full-width) string field.
pub(crate) fn c_string(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// Parses a numeric field: octal (surrounded by spaces/NULs) or GNU base-256.
/// Returns `None` for a malformed field. Empty fields are zero.
pub(crate) fn parse_number(bytes: &[u8]) -> Option<i128> {
    if let Some(&first) = bytes.first() {
        if first & 0x80 != 0 {
            return parse_base256(bytes);
        }
    }
    let text = c_string(bytes);
    let trimmed = trim_spaces(text);
    if trimmed.is_empty() {
        return Some(0);
    }
    let mut value: i128 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(value)
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' '] = bytes {
        bytes = rest;
    }
    bytes
}

/// GNU base-256: the first byte is 0x80 (positive) or 0xff (negative), the rest a
/// big-endian two's complement number.
fn parse_base256(bytes: &[u8]) -> Option<i128> {
    let negative = bytes[0] == 0xff;
    if !negative && bytes[0] != 0x80 {
        return None;
    }
    let digits = &bytes[1..];
    if digits.len() > 15 {
        return None;
    }
    let mut value: i128 = 0;
    for &b in digits {
        value = (value << 8) | i128::from(b);
    }
    if negative {
        value -= 1i128 << (8 * digits.len());
    }
    Some(value)
}

/// Checks the header checksum (the sum of all bytes with the checksum field taken as
/// spaces; some old writers summed signed bytes, which is accepted too).
pub(crate) fn checksum_ok(block: &Block) -> bool {
    let Some(stored) = parse_number(&block[field::CHECKSUM]) else {
        return false;
    };
    let mut unsigned: i128 = 0;
    let mut signed: i128 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if field::CHECKSUM.contains(&i) {
            b' '
        } else {
            b
        };
        unsigned += i128::from(b);
        signed += i128::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// Fills in the checksum field of a header being written.
pub(crate) fn set_checksum(block: &mut Block) {
    block[field::CHECKSUM].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[field::CHECKSUM].copy_from_slice(text.as_bytes());
}

/// Writes `value` as zero-padded octal with a trailing NUL into `out`; false if it does
/// not fit (the caller then uses a PAX record).
pub(crate) fn write_octal(out: &mut [u8], value: u64) -> bool {
    let digits = out.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        out.fill(b'0');
        out[digits] = 0;
        return false;
    }
    out[..digits].copy_from_slice(text.as_bytes());
    out[digits] = 0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_parse_with_padding() {
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(parse_number(b"   755 \0"), Some(0o755));
        assert_eq!(parse_number(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_number(b"00000000012 "), Some(10));
        assert_eq!(parse_number(b"0009\0"), None);
        assert_eq!(parse_number(b"12x\0"), None);
    }

    #[test]
    fn base256_fields_parse() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&0x1_0000_0000u64.to_be_bytes()[..]);
        assert_eq!(parse_number(&field), Some(0x1_0000_0000));
        let negative = [0xffu8; 12];
        assert_eq!(parse_number(&negative), Some(-1));
    }

    #[test]
    fn checksum_round_trips() {
        let mut block = [0u8; BLOCK];
        block[..5].copy_from_slice(b"hello");
        set_checksum(&mut block);
        assert!(checksum_ok(&block));
        block[0] = b'j';
        assert!(!checksum_ok(&block));
    }

    #[test]
    fn octal_writing_reports_overflow() {
        let mut field = [0u8; 8];
        assert!(write_octal(&mut field, 0o644));
        assert_eq!(&field, b"0000644\0");
        assert!(!write_octal(&mut field, 0o100000000));
    }
}
