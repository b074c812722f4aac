//! The one identifier grammar: namespaces, container ids, lease ids and snapshot names
//! used as paths are all checked here before they touch disk.
//!
//! The grammar is containerd's, so names valid there are valid here: one or more runs of
//! ASCII letters and digits, separated by a single `.`, `_` or `-`, at most
//! [`MAX_IDENTIFIER_LEN`] bytes. This rules out `/`, `..`, empty names and anything a
//! shell or a path would treat specially.

/// Longest identifier accepted, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 76;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The identifier is empty.
    #[error("identifier must not be empty")]
    Empty,
    /// The identifier is longer than the limit.
    #[error("identifier {0:?} is longer than {MAX_IDENTIFIER_LEN} characters")]
    TooLong(String),
    /// The identifier does not match the grammar.
    #[error("identifier {0:?} must be letters and digits separated by single '.', '_' or '-'")]
    Invalid(String),
    /// The lease id has characters outside letters, digits, `.`, `_`, `-`, or a `..`.
    #[error("lease id {0:?} must be letters, digits, '.', '_' or '-', not starting with '.' nor holding '..'")]
    InvalidLease(String),
}

/// Checks `id` against the identifier grammar.
pub fn validate(id: &str) -> Result<(), IdentError> {
    if id.is_empty() {
        return Err(IdentError::Empty);
    }
    if id.len() > MAX_IDENTIFIER_LEN {
        let shown: String = id.chars().take(MAX_IDENTIFIER_LEN).collect();
        return Err(IdentError::TooLong(format!("{shown}…")));
    }
    let mut previous_was_separator = true; // a leading separator is refused
    for c in id.chars() {
        if c.is_ascii_alphanumeric() {
            previous_was_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return Err(IdentError::Invalid(id.to_string()));
        }
    }
    if previous_was_separator {
        return Err(IdentError::Invalid(id.to_string()));
    }
    Ok(())
}

/// Checks a lease id. Leases are metadata records only, never paths, and containerd
/// clients name them themselves: ctr makes `<nanoseconds>-<4 base64url characters>`, such
/// as `291608516-s_-K`, which [`validate`] would refuse one time in fifteen. So a lease id
/// may be any run of ASCII letters, digits, `.`, `_` and `-` up to
/// [`MAX_IDENTIFIER_LEN`] bytes, except that it may not start with `.` or contain `..`.
pub fn validate_lease_id(id: &str) -> Result<(), IdentError> {
    if id.is_empty() {
        return Err(IdentError::Empty);
    }
    if id.len() > MAX_IDENTIFIER_LEN {
        let shown: String = id.chars().take(MAX_IDENTIFIER_LEN).collect();
        return Err(IdentError::TooLong(format!("{shown}…")));
    }
    let allowed = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !allowed || id.starts_with('.') || id.contains("..") {
        return Err(IdentError::InvalidLease(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_names() {
        for id in ["default", "k8s.io", "moby", "a", "my_ns-1.2", "A9"] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn refuses_paths_and_junk() {
        for id in [
            "", "..", ".", "a/b", "/a", "a..b", "-a", "a-", "a b", "a\0b", "ü", "a:b", "../x",
        ] {
            assert!(validate(id).is_err(), "{id:?} should be refused");
        }
    }

    #[test]
    fn refuses_too_long() {
        assert!(validate(&"a".repeat(MAX_IDENTIFIER_LEN)).is_ok());
        assert!(matches!(
            validate(&"a".repeat(MAX_IDENTIFIER_LEN + 1)),
            Err(IdentError::TooLong(_))
        ));
    }

    #[test]
    fn lease_ids_accept_what_ctr_generates() {
        for id in [
            "291608516-s_-K",
            "1-_abc",
            "12-abc_",
            "x",
            "my-lease",
            "a.b",
        ] {
            assert_eq!(validate_lease_id(id), Ok(()), "{id}");
        }
        for id in ["", ".", "..", ".a", "a..b", "a/b", "a b", "a:b", "ü"] {
            assert!(validate_lease_id(id).is_err(), "{id:?} should be refused");
        }
        assert!(validate_lease_id(&"a".repeat(MAX_IDENTIFIER_LEN + 1)).is_err());
    }
}
