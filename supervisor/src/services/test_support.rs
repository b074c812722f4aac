//! For service tests: a real daemon on a temporary root, and requests carrying a namespace.

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::Request;

use crate::config::{FileConfig, Flags, Settings};
use crate::request::NAMESPACE_KEY;
use crate::state::Daemon;

/// A daemon whose root and state live in a temporary directory removed on drop.
pub struct TestDaemon {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// Keeps the directory alive; declared last so it is removed after the daemon closes.
    pub dir: tempfile::TempDir,
}

/// Opens a fresh daemon on a new temporary root.
pub fn daemon() -> TestDaemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::merge(
        Flags {
            root: Some(dir.path().join("root")),
            state: Some(dir.path().join("state")),
            address: Some(dir.path().join("state/berthd.sock")),
            ..Flags::default()
        },
        FileConfig::default(),
    );
    let daemon = Daemon::open(settings).expect("opening daemon");
    // Nothing to recover on a fresh state directory.
    daemon.tasks.open_for_requests();
    TestDaemon { daemon, dir }
}

/// A request for `message` in namespace `ns`.
pub fn request<T>(ns: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert(
        NAMESPACE_KEY,
        MetadataValue::try_from(ns).expect("namespace is valid metadata"),
    );
    req
}
