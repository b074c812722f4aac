//! Client-side building blocks over berthd's public gRPC API (the containerd v1 API).
//!
//! Everything here is what a client does, not what the daemon does: `berthctl` and the
//! CRI adapter use it, and it works against any daemon that speaks the containerd v1
//! API. Nothing in this crate reaches into berthd's state on disk.
//!
//! - [`connection`]: dialing the daemon's unix socket, the namespace on every call
//! - [`progress`]: the events a long transfer reports, for a display to render
//! - [`error`]: [`ClientError`], the one error type
//! - [`oci`], [`platform`], [`labels`]: the image format, platforms, and the labels
//!   containerd clients put on what they store
//! - [`content`]: resumable, de-duplicated ingest of blobs; reading blobs
//! - [`lease`]: temporary leases that keep half-done work from the collector
//! - [`image`]: image records, and walking index → manifest → config in the store
//! - [`archive`]: importing and exporting image archives (OCI layout, docker save)
//! - [`owner`]: who holds an extraction snapshot, and whether they still live
//! - [`pull`], [`push`], [`remote`]: images from and to registries (through
//!   berth-registry)
//! - [`unpack`]: layers into snapshots, each layer applied once however many clients
//!   unpack the same image at once

#![warn(missing_docs)]

pub mod archive;
pub mod connection;
pub mod content;
pub mod error;
pub mod image;
pub mod labels;
pub mod lease;
pub mod oci;
pub mod owner;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod remote;
pub mod unpack;

pub use berth_proto as proto;
pub use connection::{connect, Api, ConnectError};
pub use error::ClientError;
