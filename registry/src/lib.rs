//! berth-registry: the OCI distribution API, as a pull or a push of Berth needs it.
//!
//! It knows nothing of berthd: it resolves references, fetches manifests and blobs
//! (blobs as streams that can resume from an offset) and uploads them, and leaves
//! storing them to its caller. A pull goes:
//!
//! 1. [`Reference::parse`] the name, make a [`RegistryClient`] for its registry;
//! 2. [`RegistryClient::resolve`] it to a descriptor and the manifest or index bytes;
//! 3. for an index ([`media_types::is_index`]), [`select_platform`], then
//!    [`RegistryClient::fetch_manifest`];
//! 4. [`parse_manifest`], then [`RegistryClient::fetch_blob`] the config and layers.
//!
//! A push: [`RegistryClient::blob_exists`], [`RegistryClient::push_blob`] for each
//! missing blob, then [`RegistryClient::push_manifest`] under the tag.
//!
//! The HTTP work is done by the `oci-client` crate; none of its types appear here.

#![warn(missing_docs)]

mod auth_probe;
mod blob_stream;
mod client;
mod credentials;
mod descriptor;
mod digest;
mod error;
mod index;
mod manifest;
pub mod media_types;
mod oci_errors;
mod options;
mod platform;
mod reference;
mod upload;

pub use blob_stream::BlobStream;
pub use client::{read_blob_to_end, RegistryClient};
pub use credentials::Credentials;
pub use descriptor::Descriptor;
pub use digest::{check_digest_syntax, sha256_digest};
pub use error::RegistryError;
pub use index::{parse_index, select_platform, ImageIndex};
pub use manifest::{document_media_type, parse_manifest, ImageManifest, MAX_MANIFEST_SIZE};
pub use options::{RegistryOptions, DEFAULT_STALL_TIMEOUT};
pub use platform::Platform;
pub use reference::{Reference, DEFAULT_REGISTRY, DEFAULT_TAG};
