//! PAX extended header records: `"<length> <key>=<value>\n"`, where `length` counts the
//! whole record including itself.

/// Prefix of the PAX keys that carry extended attributes (as GNU tar and Go write them).
pub(crate) const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// One PAX record: key and value.
pub(crate) type Record<'a> = (&'a [u8], &'a [u8]);

/// Splits a PAX extended header into `(key, value)` pairs; `Err` describes the first
/// malformed record.
pub(crate) fn parse_records(mut data: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut records = Vec::new();
    // Trailing NULs pad some writers' headers.
    while let [rest @ .., 0] = data {
        data = rest;
    }
    while !data.is_empty() {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let length: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a malformed length")?;
        if length <= space + 1 || length > data.len() {
            return Err(format!("PAX record length {length} is out of bounds"));
        }
        let record = &data[space + 1..length];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err("PAX record does not end with a newline".into());
        };
        let equals = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without '='")?;
        let key = &body[..equals];
        if key.is_empty() {
            return Err("PAX record with an empty key".into());
        }
        records.push((key, &body[equals + 1..]));
        data = &data[length..];
    }
    Ok(records)
}

/// Formats one PAX record.
pub(crate) fn format_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // " key=value\n" plus the length's own digits, which depend on the total.
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut length = body + 1;
    while length.to_string().len() + body != length {
        length = length.to_string().len() + body;
    }
    let mut record = Vec::with_capacity(length);
    record.extend_from_slice(length.to_string().as_bytes());
    record.push(b' ');
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    debug_assert_eq!(record.len(), length);
    record
}

/// Parses a decimal unsigned number from a PAX value.
pub(crate) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Parses a PAX time (`[-]seconds[.fraction]`) into seconds and nanoseconds.
pub(crate) fn parse_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if negative {
        // -1.25 is 1.25 s before the epoch: seconds -2, nanos 0.75e9.
        if nanos == 0 {
            Some((-seconds, 0))
        } else {
            Some((-seconds - 1, 1_000_000_000 - nanos))
        }
    } else {
        Some((seconds, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut data = format_record(b"path", b"a/very/long/name");
        data.extend(format_record(b"SCHILY.xattr.user.x", b"v\0with nul"));
        // A record whose length crosses a digit boundary.
        let long = vec![b'x'; 90];
        data.extend(format_record(b"linkpath", &long));
        let records = parse_records(&data).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0], (&b"path"[..], &b"a/very/long/name"[..]));
        assert_eq!(records[1].1, b"v\0with nul");
        assert_eq!(records[2].1, &long[..]);
    }

    #[test]
    fn malformed_records_are_rejected() {
        for bad in [
            &b"3 a=\n"[..],
            b"99 path=x\n",
            b"x path=y\n",
            b"11 path=abc",
            b"10 =value\n",
            b"8 pathx\n",
            b"nospace",
        ] {
            assert!(
                parse_records(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_time(b"x"), None);
        assert_eq!(parse_decimal(b"123"), Some(123));
        assert_eq!(parse_decimal(b"-1"), None);
    }
}
