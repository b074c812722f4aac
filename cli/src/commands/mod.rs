//! One file per command group, named as in ctr.

pub mod completion;
pub mod containers;
pub mod content;
pub mod events;
pub mod images;
pub mod leases;
pub mod namespaces;
pub mod plugins;
pub mod run;
pub mod snapshots;
pub mod tasks;
pub mod version;
