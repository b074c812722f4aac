//! Finding the runtime binary once, up front, so a missing `runc` is a clear typed error at
//! start-up rather than a confusing failure on the first container.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Resolves `binary` to an executable file: a name without '/' is searched on `PATH`
/// (`search_path`), a path is checked as given. [`Error::MissingBinary`] if nothing fits.
pub fn resolve_binary(binary: &Path, search_path: Option<&OsStr>) -> Result<PathBuf> {
    let missing = || Error::MissingBinary {
        binary: binary.to_path_buf(),
    };
    if binary.as_os_str().is_empty() {
        return Err(missing());
    }
    if binary.components().count() > 1 || binary.is_absolute() {
        return if is_executable_file(binary) {
            Ok(binary.to_path_buf())
        } else {
            Err(missing())
        };
    }
    let search_path = search_path.ok_or_else(missing)?;
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(missing)
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_a_name_on_the_search_path_and_skips_non_executables() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let not_executable = first.path().join("fake-runc");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let executable = second.path().join("fake-runc");
        std::fs::write(&executable, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755)).unwrap();

        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        let found = resolve_binary(Path::new("fake-runc"), Some(&path)).unwrap();
        assert_eq!(found, executable);
    }

    #[test]
    fn missing_binary_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().as_os_str();
        for binary in ["no-such-runtime", "/no/such/runc", ""] {
            let err = resolve_binary(Path::new(binary), Some(path)).unwrap_err();
            assert!(
                matches!(err, Error::MissingBinary { .. }),
                "{binary}: {err}"
            );
        }
        // A directory is not a binary.
        let err = resolve_binary(dir.path(), Some(path)).unwrap_err();
        assert!(matches!(err, Error::MissingBinary { .. }));
    }
}
