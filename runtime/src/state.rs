//! The state of a container as the runtime reports it (`runc state <id>`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Life-cycle status of a container, as named by the OCI runtime spec and runc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The runtime is still setting the container up.
    Creating,
    /// Created and waiting for `start`; its init process exists but has not exec'd yet.
    Created,
    /// The user process is running.
    Running,
    /// The freezer is being applied.
    Pausing,
    /// All processes are frozen.
    Paused,
    /// The init process has exited.
    Stopped,
    /// A status this crate does not know, kept verbatim.
    Other(String),
}

impl Status {
    fn from_runtime(word: &str) -> Status {
        match word {
            "creating" => Status::Creating,
            "created" => Status::Created,
            "running" => Status::Running,
            "pausing" => Status::Pausing,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            other => Status::Other(other.to_string()),
        }
    }

    /// The runtime's word for this status.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Other(word) => word,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The container id.
    pub id: String,
    /// Host pid of the container's init process (0 once stopped).
    pub pid: i32,
    /// Life-cycle status.
    pub status: Status,
    /// Absolute path of the bundle the container was created from.
    pub bundle: PathBuf,
    /// Creation time, RFC 3339 as the runtime printed it (e.g. `2024-01-01T00:00:00.123Z`).
    pub created: String,
    /// The annotations of the container's spec.
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    pid: i32,
    status: String,
    #[serde(default)]
    bundle: PathBuf,
    #[serde(default)]
    created: String,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

impl State {
    /// Parses the JSON printed by `runc state` / `crun state`.
    pub fn from_json(bytes: &[u8]) -> Result<State> {
        let raw: RawState =
            serde_json::from_slice(bytes).map_err(|e| Error::parse("runtime state output", e))?;
        Ok(State {
            id: raw.id,
            pid: raw.pid,
            status: Status::from_runtime(&raw.status),
            bundle: raw.bundle,
            created: raw.created,
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_state_output() {
        let json = br#"{
          "ociVersion": "1.0.2-dev", "id": "c1", "pid": 1290, "status": "created",
          "bundle": "/run/berth/tasks/default/c1", "rootfs": "/run/berth/tasks/default/c1/rootfs",
          "created": "2026-11-23T18:13:58.114603435Z", "owner": "",
          "annotations": {"io.berth.test": "yes"}
        }"#;
        let state = State::from_json(json).unwrap();
        assert_eq!(state.id, "c1");
        assert_eq!(state.pid, 1290);
        assert_eq!(state.status, Status::Created);
        assert_eq!(state.bundle, PathBuf::from("/run/berth/tasks/default/c1"));
        assert_eq!(state.created, "2026-11-23T18:13:58.114603435Z");
        assert_eq!(state.annotations["io.berth.test"], "yes");
    }

    #[test]
    fn every_status_word_round_trips_and_unknown_words_are_kept() {
        for word in [
            "creating", "created", "running", "pausing", "paused", "stopped", "odd",
        ] {
            assert_eq!(Status::from_runtime(word).as_str(), word);
        }
        assert_eq!(Status::from_runtime("odd"), Status::Other("odd".into()));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            State::from_json(b"not json"),
            Err(Error::Parse { .. })
        ));
        assert!(matches!(
            State::from_json(b"{\"pid\": 1}"),
            Err(Error::Parse { .. })
        ));
    }
}
