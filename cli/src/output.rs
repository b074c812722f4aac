//! Printing listings: aligned tables for people, JSON for scripts.

use std::io::Write;

/// How a listing is printed (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// One JSON array of objects (or one object), for scripts.
    Json,
}

/// A table built row by row and printed with each column as wide as its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends one row (cells in header order).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table to stdout, columns separated by at least three spaces.
    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = std::io::stdout().lock();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Prints a value as one compact JSON line on stdout (for streams such as `events`),
/// flushing so a reader sees each line as it happens.
pub fn print_json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}

/// A byte count in binary units with one decimal, as ctr prints sizes in its tables
/// (`405.0 B`, `1008.8 KiB`, `3.0 MiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Labels as one `key=value,key=value` cell (sorted by key), or `-` when there are none.
pub fn labels_cell<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if pairs.is_empty() {
        return "-".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// Labels as a JSON object (keys sorted), for `--format json`.
pub fn labels_json<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> serde_json::Value {
    let sorted: std::collections::BTreeMap<&String, &String> = labels.into_iter().collect();
    serde_json::json!(sorted)
}

/// A protobuf timestamp as RFC 3339 in UTC (`2024-05-01T12:00:00.123456789Z`), or an
/// empty string when the daemon sent none.
pub fn timestamp_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    match timestamp {
        Some(ts) => rfc3339(ts.seconds, ts.nanos.clamp(0, 999_999_999) as u32),
        None => String::new(),
    }
}

/// Seconds since the Unix epoch (and nanoseconds) as an RFC 3339 UTC time.
pub fn rfc3339(seconds: i64, nanos: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60,
        secs_of_day % 60,
    );
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// well-known days-to-civil arithmetic).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// How long ago `timestamp` was, in the coarse words a person reads in a table
/// (`12 seconds`, `3 minutes`, `2 days`), or `-` when unknown.
pub fn age_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = timestamp else {
        return "-".to_string();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let elapsed = (now - ts.seconds).max(0) as u64;
    let (value, unit) = match elapsed {
        0 => return "Less than a second".to_string(),
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 30 => (s / 86_400, "day"),
        s if s < 86_400 * 365 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    if value == 1 {
        format!("1 {unit}")
    } else {
        format!("{value} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_one_decimal() {
        assert_eq!(human_size(0), "0.0 B");
        assert_eq!(human_size(405), "405.0 B");
        assert_eq!(human_size(1_033_010), "1008.8 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(timestamp_text(None), "");
    }

    #[test]
    fn labels_are_sorted_in_one_cell() {
        let labels: std::collections::HashMap<String, String> = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(labels_cell(&labels), "a=1,b=2");
        assert_eq!(labels_cell(&std::collections::HashMap::new()), "-");
        assert_eq!(
            labels_json(&labels),
            serde_json::json!({"a": "1", "b": "2"})
        );
    }

    #[test]
    fn ages_are_coarse_words() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ago = |secs: i64| prost_types::Timestamp {
            seconds: now - secs,
            nanos: 0,
        };
        assert_eq!(age_text(Some(&ago(90))), "1 minute");
        assert_eq!(age_text(Some(&ago(3 * 86_400 + 5))), "3 days");
        assert_eq!(age_text(None), "-");
    }
}
