//! Reading the pid file a runtime writes for `create --pid-file` and `exec --pid-file`.

use std::path::Path;

use crate::error::{Error, Result};

/// The positive pid written in `path`.
pub fn read_pid_file(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read pid file", path))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(Error::parse(
            format!("pid file {}", path.display()),
            format!("{:?} is not a positive pid", text.trim()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pid_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.pid");
        std::fs::write(&path, "4242").unwrap();
        assert_eq!(read_pid_file(&path).unwrap(), 4242);
        for bad in ["", "0", "-1", "12x"] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(read_pid_file(&path), Err(Error::Parse { .. })),
                "{bad:?}"
            );
        }
        let missing = dir.path().join("absent.pid");
        assert!(matches!(read_pid_file(&missing), Err(Error::Io { .. })));
    }
}
