//! How a task's init process ended, as `berth-shim delete` reports it: the JSON line
//! `{"pid":N,"exit_status":N,"exited_at":"<RFC 3339>"}`.

use std::time::SystemTime;

use serde::Deserialize;

use crate::client::rfc3339::parse_rfc3339;

/// Exit status reported when nothing recorded how a task ended (its shim died before the
/// init process exited, or before it could write the status down).
pub const UNKNOWN_EXIT_STATUS: u32 = 255;

/// How a task's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The process id it had (0 if unknown).
    pub pid: u32,
    /// Its exit status: the exit code, or 128 + signal number when killed by a signal.
    pub exit_status: u32,
    /// When it ended (or was found gone).
    pub exited_at: SystemTime,
}

/// The JSON shape on the wire; `exited_at` is text.
#[derive(Deserialize)]
struct ExitLine {
    pid: u32,
    exit_status: u32,
    exited_at: String,
}

impl ExitInfo {
    /// The status reported for a task whose end nobody recorded: pid 0, exit status 255,
    /// found gone `now`.
    pub fn unknown(now: SystemTime) -> Self {
        Self {
            pid: 0,
            exit_status: UNKNOWN_EXIT_STATUS,
            exited_at: now,
        }
    }

    /// Reads one exit JSON line; the error says what is wrong with it.
    pub fn from_json(line: &str) -> Result<Self, String> {
        let parsed: ExitLine = serde_json::from_str(line.trim())
            .map_err(|e| format!("{:?} is not an exit record: {e}", truncate(line)))?;
        let exited_at = parse_rfc3339(&parsed.exited_at).ok_or_else(|| {
            format!(
                "exited_at {:?} is not an RFC 3339 time",
                truncate(&parsed.exited_at)
            )
        })?;
        Ok(Self {
            pid: parsed.pid,
            exit_status: parsed.exit_status,
            exited_at,
        })
    }
}

/// At most 200 characters of `text`, for error messages.
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn reads_the_delete_reply() {
        let info = ExitInfo::from_json(
            "{\"pid\":4242,\"exit_status\":137,\"exited_at\":\"2024-02-29T12:34:56.5Z\"}\n",
        )
        .unwrap();
        assert_eq!(
            info,
            ExitInfo {
                pid: 4242,
                exit_status: 137,
                exited_at: UNIX_EPOCH + Duration::new(1_709_210_096, 500_000_000),
            }
        );
    }

    #[test]
    fn refuses_other_shapes_with_a_message() {
        let missing = ExitInfo::from_json("{\"pid\":1}").unwrap_err();
        assert!(missing.contains("not an exit record"), "{missing}");
        let bad_time =
            ExitInfo::from_json("{\"pid\":1,\"exit_status\":0,\"exited_at\":\"yesterday\"}")
                .unwrap_err();
        assert!(bad_time.contains("yesterday"), "{bad_time}");
        assert!(ExitInfo::from_json("").is_err());
    }

    #[test]
    fn unknown_exit_is_the_synthetic_status() {
        let now = SystemTime::now();
        let info = ExitInfo::unknown(now);
        assert_eq!((info.pid, info.exit_status, info.exited_at), (0, 255, now));
    }
}
