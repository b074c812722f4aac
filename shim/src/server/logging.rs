//! The shim's log: `bundle/shim.log`, one line per event, each carrying the task's
//! namespace and id so that logs of many shims can be merged and still be read:
//!
//! ```text
//! 2024-05-01T12:30:00.123456789Z INFO ns=default id=web task started pid=4242
//! ```
//!
//! A deliberately small `tracing` subscriber: no spans, no per-thread registries, one
//! line formatted and appended per event. An idle shim should cost almost nothing, and
//! its log needs no more than this.

use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::client::format_rfc3339;
use crate::server::{ShimError, TaskIdentity};

/// File name of the shim's log inside the bundle.
pub(crate) const LOG_FILE: &str = "shim.log";

/// Sends the tracing output of this process to `bundle/shim.log` (appended, mode 0600,
/// close-on-exec), at `level` and above; panics are logged there too.
pub(crate) fn init(task: &TaskIdentity, level: Level) -> Result<(), ShimError> {
    let path = task.bundle.join(LOG_FILE);
    let subscriber = LineLog {
        file: Mutex::new(open_log(&path)?),
        max_level: level,
        task: format!("ns={} id={}", task.namespace, task.id),
    };
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| ShimError::Internal(format!("logging already set up: {e}")))?;
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
    }));
    Ok(())
}

fn open_log(path: &Path) -> Result<std::fs::File, ShimError> {
    // std opens with O_CLOEXEC.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(ShimError::io("open log", path))
}

/// Writes each enabled event as one line; ignores spans.
struct LineLog {
    file: Mutex<std::fs::File>,
    max_level: Level,
    /// `ns=… id=…`.
    task: String,
}

impl LineLog {
    /// The line for an event, without its trailing newline.
    fn format(&self, at: SystemTime, event: &Event<'_>) -> String {
        let mut line = String::with_capacity(160);
        let _ = write!(
            line,
            "{} {} {}",
            format_rfc3339(at),
            event.metadata().level(),
            self.task
        );
        event.record(&mut Fields { line: &mut line });
        line
    }
}

impl Subscriber for LineLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater.
        *metadata.level() <= self.max_level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(
            self.max_level,
        ))
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = self.format(SystemTime::now(), event);
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A full disk must not take the shim down; the line is lost.
        let _ = file.write_all(line.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Appends an event's fields: the message as is, the others as ` name=value`.
struct Fields<'a> {
    line: &'a mut String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value}");
        } else {
            let _ = write!(self.line, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value:?}");
        } else {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_time_level_task_message_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let log = LineLog {
            file: Mutex::new(open_log(&path).unwrap()),
            max_level: Level::INFO,
            task: "ns=default id=web".into(),
        };
        tracing::subscriber::with_default(log, || {
            tracing::info!(pid = 42, exec_id = "e1", "process exited");
            tracing::debug!("not at info");
            tracing::warn!(error = %"boom", "request failed");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(
            rest,
            "INFO ns=default id=web process exited pid=42 exec_id=e1"
        );
        assert!(lines[1].ends_with("WARN ns=default id=web request failed error=boom"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
