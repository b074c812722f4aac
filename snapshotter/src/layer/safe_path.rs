//! Turning archive entry names into safe relative paths.
//!
//! An entry name is accepted only if it stays below the root by its very spelling: no
//! leading `/`, no `..` component, no NUL byte. `.` components, repeated slashes and a
//! trailing slash are dropped. What symlinks inside the root may do to the path is handled
//! later, by resolving it inside the root (see `root_dir`).

use super::error::LayerError;

/// Normalises an entry name (or a hard link's target) to `a/b/c` form; the root itself is
/// the empty path.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, LayerError> {
    if raw.contains(&0) {
        return Err(LayerError::unsafe_path(raw, "it contains a NUL byte"));
    }
    if raw.starts_with(b"/") {
        return Err(LayerError::unsafe_path(raw, "it is an absolute path"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => {
                return Err(LayerError::unsafe_path(raw, "it has a `..` component"));
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
    Ok(out)
}

/// Splits a normalised path into its parent (possibly empty: the root) and last component.
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

/// Joins a normalised parent path and a component.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The proper ancestors of a normalised path, nearest first (`a/b/c` → `a/b`, `a`).
pub(crate) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let slash = rest.iter().rposition(|&b| b == b'/')?;
        rest = &rest[..slash];
        Some(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        String::from_utf8(normalize(raw.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(ok("./usr/bin/"), "usr/bin");
        assert_eq!(ok("usr//lib/./x"), "usr/lib/x");
        assert_eq!(ok("./"), "");
        assert_eq!(ok("."), "");
        assert_eq!(ok("a..b/..c"), "a..b/..c");
    }

    #[test]
    fn escaping_names_are_refused() {
        for bad in ["../x", "a/../../x", "a/..", "/etc/passwd", "..", "a/\0b"] {
            let err = normalize(bad.as_bytes()).unwrap_err();
            assert!(matches!(err, LayerError::UnsafePath { .. }), "{bad}: {err}");
        }
        let err = normalize(b"a/../b").unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
        let err = normalize(b"/abs").unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn paths_split_and_join() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"c"), b"c");
        assert_eq!(join(b"a", b"c"), b"a/c");
        let all: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(all, vec![&b"a/b"[..], &b"a"[..]]);
        assert_eq!(ancestors(b"a").count(), 0);
    }
}
