//! Extracting the runtime's own error message from its log or its stderr.
//!
//! runc and crun write `--log-format json` logs as one object per line
//! (`{"level":"error","msg":"...","time":"..."}`). On stderr runc prints logrus text lines
//! (`time="..." level=error msg="..."`) and the bare message; crun prints the bare message.
//! The message a user should see is the last error-level one.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How much of a log's tail is read to find the last error (older lines are not needed).
const MAX_TAIL_BYTES: u64 = 1024 * 1024;

/// The last error-level message in a JSON-lines runtime log, if any.
pub fn last_error_in_json_log(text: &str) -> Option<String> {
    text.lines().filter_map(error_in_json_line).next_back()
}

/// The last error message in a runtime's stderr: error-level JSON or logrus lines, or plain
/// non-empty lines (which runtimes only print for errors).
pub fn last_error_in_stderr(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() {
                None
            } else if line.starts_with('{') {
                error_in_json_line(line)
            } else if line.starts_with("time=") || line.starts_with("level=") {
                error_in_logrus_line(line)
            } else {
                Some(line.to_string())
            }
        })
        .next_back()
}

fn is_error_level(level: &str) -> bool {
    matches!(level, "error" | "fatal" | "panic")
}

fn error_in_json_line(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        level: Option<String>,
        msg: Option<String>,
    }
    let entry: Entry = serde_json::from_str(line.trim()).ok()?;
    let message = entry.msg?.trim().to_string();
    (is_error_level(entry.level.as_deref()?) && !message.is_empty()).then_some(message)
}

/// Parses `key=value key="quoted value"` pairs of a logrus text line.
fn error_in_logrus_line(line: &str) -> Option<String> {
    let mut level = None;
    let mut message = None;
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let (value, len) = unquote_go_string(quoted);
            (value, &quoted[len..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        match key {
            "level" => level = Some(value),
            "msg" => message = Some(value),
            _ => {}
        }
        rest = remaining;
    }
    let message = message?;
    (is_error_level(level.as_deref()?) && !message.is_empty()).then_some(message)
}

/// Reads a Go-quoted string body (after the opening quote); returns the text and how many
/// bytes were consumed, closing quote included.
fn unquote_go_string(quoted: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return (out, index + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    (out, quoted.len())
}

/// A runtime log file as it was before a command ran, so that only what that command appended
/// is searched for its error (the file may hold the history of many earlier commands).
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    start: u64,
}

impl LogTail {
    /// Remembers the current end of the log at `path` (0 if it does not exist yet).
    pub fn mark(path: &Path) -> LogTail {
        let start = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
        LogTail {
            path: path.to_path_buf(),
            start,
        }
    }

    /// The last error-level message appended since [`LogTail::mark`], if any.
    pub fn last_error(&self) -> Option<String> {
        let mut file = std::fs::File::open(&self.path).ok()?;
        let end = file.metadata().ok()?.len();
        if end < self.start {
            // Truncated or replaced meanwhile: everything in it is new.
            return last_error_in_json_log(&read_from(
                &mut file,
                end.saturating_sub(MAX_TAIL_BYTES),
            )?);
        }
        let from = self.start.max(end.saturating_sub(MAX_TAIL_BYTES));
        last_error_in_json_log(&read_from(&mut file, from)?)
    }
}

fn read_from(file: &mut std::fs::File, offset: u64) -> Option<String> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_TAIL_BYTES).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn json_log_yields_the_last_error_and_ignores_other_levels() {
        let log = concat!(
            "{\"level\":\"error\",\"msg\":\"first failure\",\"time\":\"t\"}\n",
            "{\"level\":\"warning\",\"msg\":\"just a warning\",\"time\":\"t\"}\n",
            "not json at all\n",
            "{\"msg\":\"container does not exist\",\"level\":\"error\",\"time\":\"t\"}\n",
            "{\"level\":\"info\",\"msg\":\"bye\"}\n",
        );
        assert_eq!(
            last_error_in_json_log(log).as_deref(),
            Some("container does not exist")
        );
        assert_eq!(
            last_error_in_json_log("{\"level\":\"info\",\"msg\":\"x\"}"),
            None
        );
    }

    #[test]
    fn stderr_understands_logrus_lines_and_plain_lines() {
        let runc = "time=\"2024-01-01T00:00:00Z\" level=error msg=\"runc create failed: exec: \\\"/nope\\\": no such file\"\n";
        assert_eq!(
            last_error_in_stderr(runc).as_deref(),
            Some("runc create failed: exec: \"/nope\": no such file")
        );
        let warning_then_plain =
            "time=\"t\" level=warning msg=\"deprecated\"\ncontainer does not exist\n\n";
        assert_eq!(
            last_error_in_stderr(warning_then_plain).as_deref(),
            Some("container does not exist")
        );
        assert_eq!(
            last_error_in_stderr("time=\"t\" level=info msg=\"hi\"\n"),
            None
        );
        assert_eq!(last_error_in_stderr("  \n"), None);
    }

    #[test]
    fn log_tail_only_sees_what_was_appended_after_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(&path, "{\"level\":\"error\",\"msg\":\"old failure\"}\n").unwrap();

        let tail = LogTail::mark(&path);
        assert_eq!(tail.last_error(), None);

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(file, "{{\"level\":\"error\",\"msg\":\"new failure\"}}").unwrap();
        assert_eq!(tail.last_error().as_deref(), Some("new failure"));

        let missing = LogTail::mark(&dir.path().join("absent.json"));
        assert_eq!(missing.last_error(), None);
    }
}
