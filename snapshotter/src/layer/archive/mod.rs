//! The tar format, read and written by our own small codec so that every bound and every
//! ambiguity (PAX vs. ustar sizes, long names) is decided here.

pub(crate) mod header;
pub(crate) mod pax;
pub(crate) mod reader;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

pub(crate) use reader::{Entry, EntryKind, Limits, TarReader, Timestamp, Xattr};
pub(crate) use writer::TarWriter;
