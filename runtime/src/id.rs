//! The container id check applied before any runtime command runs.
//!
//! The id becomes a directory name in the runtime's root and an argument on its command line,
//! so it must not contain a path separator, must not look like a flag, and must be short enough
//! for a file name. The accepted characters are those runc and crun both accept.

use crate::error::{Error, Result};

/// Longest container id accepted, in bytes (a file name in the runtime's root).
pub const MAX_ID_LEN: usize = 255;

/// Checks that `id` is a container id the runtime can use; [`Error::InvalidArgument`] otherwise.
pub fn validate_container_id(id: &str) -> Result<()> {
    let invalid = |why: &str| Err(Error::InvalidArgument(format!("container id {id:?} {why}")));
    if id.is_empty() {
        return invalid("is empty");
    }
    if id.len() > MAX_ID_LEN {
        return invalid(&format!("is longer than {MAX_ID_LEN} bytes"));
    }
    if id.contains('/') {
        return invalid("contains '/'");
    }
    if id.starts_with('-') || id.starts_with('.') {
        return invalid("starts with '-' or '.'");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+');
    if !id.chars().all(allowed) {
        return invalid("may only contain letters, digits, '_', '-', '.' and '+'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in [
            "t1",
            "redis-0",
            "a.b_c+d",
            "0123456789abcdef",
            &"x".repeat(MAX_ID_LEN),
        ] {
            validate_container_id(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn rejects_ids_that_could_escape_or_confuse_the_runtime() {
        let too_long = "x".repeat(MAX_ID_LEN + 1);
        for id in [
            "", "a/b", "/x", "..", ".", "-x", "--all", "a b", "a\0b", "ä", &too_long,
        ] {
            assert!(
                matches!(validate_container_id(id), Err(Error::InvalidArgument(_))),
                "{id:?} accepted"
            );
        }
    }
}
