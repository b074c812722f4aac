//! Image archives: importing OCI image layouts and `docker save` tars into the store,
//! and exporting images as OCI image layouts, both interchangeable with `ctr images
//! import` / `ctr images export`.
//!
//! - [`entries`]: reading the tar stream on a blocking thread, names checked
//! - [`names`]: the names imported images get (ctr's rules)
//! - [`docker`]: `docker save`'s `manifest.json`
//! - [`import`](mod@import) and [`export`](mod@export): the two directions

pub mod docker;
pub mod entries;
pub mod export;
pub mod import;
pub mod names;

pub use export::{export, ExportOptions, ExportSummary};
pub use import::{import, ImportOptions};
