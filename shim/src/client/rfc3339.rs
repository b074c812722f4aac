//! RFC 3339 timestamps, the form the shim's `exit` file and `berth-shim delete` use for
//! `exited_at` (e.g. `2024-05-01T12:30:00.123456789Z`).
//!
//! Only instants from 1970 on are handled: exits never happen before the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian calendar).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count years from March so that the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month, day) of a day count from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats `at` in UTC, with nanoseconds when it has any: `2024-05-01T12:30:00.5Z` style
/// (always nine fraction digits when a fraction is present).
pub fn format_rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs() as i64;
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    let in_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (hour, minute, second) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    let nanos = since.subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}")
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// Reads `N` ASCII digits at `text[at..]` as a number.
fn digits(text: &[u8], at: usize, count: usize) -> Option<u32> {
    let part = text.get(at..at + count)?;
    part.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parses an RFC 3339 date-time (`T`, `t` or a space between date and time; `Z`, `z` or a
/// `±HH:MM` offset; any number of fraction digits, nanoseconds kept). `None` if malformed
/// or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let used = at - start;
        if used == 0 {
            return None;
        }
        for _ in used..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let hours = i64::from(digits(b, at + 1, 2)?);
            let minutes = i64::from(digits(b, at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 3600 + minutes * 60;
            if sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    // A leap second (:60) is read as the first second of the next minute.
    let local = days_from_civil(i64::from(year), month, day) * SECONDS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let utc = local - offset_seconds;
    let utc = u64::try_from(utc).ok()?;
    Some(UNIX_EPOCH + Duration::new(utc, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(seconds, nanos)
    }

    #[test]
    fn known_instants_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0, 0)));
        // 2024-02-29 (a leap day) 12:34:56 UTC.
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56Z"),
            Some(at(1_709_210_096, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.5Z"),
            Some(at(1_709_210_096, 500_000_000))
        );
        // Same instant written in another zone.
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56.000000001+02:00"),
            Some(at(1_709_210_096, 1))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29t07:04:56-05:30"),
            Some(at(1_709_210_096, 0))
        );
        // Digits past nanoseconds are dropped, not rounded into the seconds.
        assert_eq!(
            parse_rfc3339("2000-01-01T00:00:00.9999999999Z"),
            Some(at(946_684_800, 999_999_999))
        );
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "",
            "2024-02-29",
            "2024-02-29T12:34:56",
            "2024-02-30T12:34:56Z",
            "2023-02-29T12:34:56Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for instant in [
            at(0, 0),
            at(951_782_400, 0), // 2000-02-29
            at(1_709_210_096, 123_456_789),
            at(4_102_444_799, 1), // 2099-12-31T23:59:59
        ] {
            let text = format_rfc3339(instant);
            assert_eq!(parse_rfc3339(&text), Some(instant), "{text}");
        }
        assert_eq!(format_rfc3339(at(1_709_210_096, 0)), "2024-02-29T12:34:56Z");
        assert_eq!(
            format_rfc3339(at(1_709_210_096, 500_000_000)),
            "2024-02-29T12:34:56.500000000Z"
        );
    }
}
