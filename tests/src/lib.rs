//! berth-tests: the end-to-end test harness and the test image fixtures.
//!
//! The tests in `tests/` start a real daemon per test ([`daemon::Daemon`]: berthd by
//! default, or the reference containerd with `BERTH_E2E_DAEMON=containerd`, which is how
//! the tests themselves are proved) and drive it with Debian's unchanged `ctr`
//! ([`ctr`]). Images are built locally and reproducibly by [`fixtures`].

#![warn(missing_docs)]

pub mod berthctl;
pub mod berthctl_tasks;
pub mod cleanup;
pub mod containerd_config;
pub mod ctr;
pub mod daemon;
pub mod events;
pub mod fixtures;
pub mod ids;
pub mod processes;
pub mod registry;
pub mod snapshot_mount;
pub mod steps;
pub mod tasks;
pub mod terminal;
pub mod token_proxy;

pub use ctr::{ctr, ctr_fails, ctr_ok};
pub use daemon::{Daemon, DaemonKind};
pub use events::EventWatcher;
pub use ids::unique_id;
