//! The runtime's version, parsed from `<runtime> --version`.

use crate::error::{Error, Result};

/// What `runc --version` / `crun --version` says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The runtime's name from the first line, e.g. `runc` or `crun`.
    pub runtime: String,
    /// Its version, e.g. `1.1.5+ds1`.
    pub version: String,
    /// The source commit, if printed.
    pub commit: Option<String>,
    /// The OCI runtime spec version it implements, if printed.
    pub spec: Option<String>,
}

impl Version {
    /// Parses the text printed by `--version` (first line `<name> version <version>`,
    /// then `key: value` lines).
    pub fn parse(text: &str) -> Result<Version> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let (runtime, version) = first
            .split_once(" version ")
            .ok_or_else(|| Error::parse("runtime --version output", format!("{first:?}")))?;
        let mut parsed = Version {
            runtime: runtime.trim().to_string(),
            version: version.trim().to_string(),
            commit: None,
            spec: None,
        };
        for line in lines {
            if let Some((key, value)) = line.split_once(':') {
                let value = Some(value.trim().to_string());
                match key.trim() {
                    "commit" => parsed.commit = value,
                    "spec" => parsed.spec = value,
                    _ => {}
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_and_crun() {
        let runc = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8\nlibseccomp: 2.5.4\n";
        let version = Version::parse(runc).unwrap();
        assert_eq!(version.runtime, "runc");
        assert_eq!(version.version, "1.1.5+ds1");
        assert_eq!(version.commit.as_deref(), Some("1.1.5+ds1-1+deb12u1"));
        assert_eq!(version.spec.as_deref(), Some("1.0.2-dev"));

        let crun = "crun version 1.8.1\ncommit: f8a096be\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD +SELINUX\n";
        let version = Version::parse(crun).unwrap();
        assert_eq!(
            (version.runtime.as_str(), version.version.as_str()),
            ("crun", "1.8.1")
        );
        assert_eq!(version.spec.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn rejects_text_without_a_version_line() {
        assert!(matches!(
            Version::parse("hello\n"),
            Err(Error::Parse { .. })
        ));
    }
}
