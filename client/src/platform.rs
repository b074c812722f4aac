//! Platforms (`linux/amd64`, `linux/arm64/v8`): the host's, parsing the `--platform`
//! form, and deciding which manifest of an index suits a platform.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// The platform an image manifest is built for, as an index entry or image config
/// states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's spelling (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, …).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required operating system features (Windows images).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7` for arm, `v8` for arm64), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Which manifests of an index an operation takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformSelection {
    /// The best manifest for this platform.
    Only(Platform),
    /// Every manifest.
    All,
}

impl Default for PlatformSelection {
    /// The host's platform.
    fn default() -> Self {
        PlatformSelection::Only(Platform::host())
    }
}

impl PlatformSelection {
    /// Whether a manifest for `candidate` is taken (an entry without a platform is
    /// taken only by [`PlatformSelection::All`]).
    pub fn takes(&self, candidate: Option<&Platform>) -> bool {
        match (self, candidate) {
            (PlatformSelection::All, _) => true,
            (PlatformSelection::Only(wanted), Some(candidate)) => wanted.matches(candidate),
            (PlatformSelection::Only(_), None) => false,
        }
    }
}

impl Platform {
    /// A platform of `os` and `architecture` without variant.
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            ..Platform::default()
        }
    }

    /// The platform this program runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// Parses `os[/arch[/variant]]` or a bare architecture (`arm64`, taken on the host's
    /// OS), as `--platform` flags give it.
    pub fn parse(text: &str) -> Result<Platform> {
        let invalid = || {
            ClientError::InvalidArgument(format!(
                "platform {text:?} is not of the form os[/arch[/variant]]"
            ))
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(invalid());
        }
        let host = Platform::host();
        let lower = |s: &str| s.to_ascii_lowercase();
        let platform = match parts.as_slice() {
            [one] if is_known_os(one) => Platform {
                os: lower(one),
                ..host
            },
            [one] => Platform::new(&host.os, &lower(one)),
            [os, arch] => Platform::new(&lower(os), &lower(arch)),
            [os, arch, variant] => Platform {
                variant: Some(lower(variant)),
                ..Platform::new(&lower(os), &lower(arch))
            },
            _ => return Err(invalid()),
        };
        Ok(platform.normalized())
    }

    /// The platform with architecture aliases resolved (`x86_64` → `amd64`, `aarch64` →
    /// `arm64`) and default variants made explicit (`arm64` → `v8`, `arm` → `v7`).
    pub fn normalized(&self) -> Platform {
        let mut p = self.clone();
        p.os = p.os.to_ascii_lowercase();
        let (architecture, default_variant) = match p.architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), None),
            "i386" | "386" => ("386".to_string(), None),
            "aarch64" | "arm64" => ("arm64".to_string(), Some("v8")),
            "armhf" => ("arm".to_string(), Some("v7")),
            "armel" => ("arm".to_string(), Some("v6")),
            "arm" => ("arm".to_string(), Some("v7")),
            other => (other.to_string(), None),
        };
        p.architecture = architecture;
        let variant = p
            .variant
            .take()
            .map(|v| v.to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        p.variant = match (variant, default_variant) {
            (Some(v), _) if p.architecture == "arm64" && v == "8" => Some("v8".to_string()),
            (Some(v), _) => Some(v),
            (None, default) => default.map(str::to_string),
        };
        p
    }

    /// Whether an image for `candidate` runs here, the way containerd matches one
    /// platform: same OS and architecture; for arm, any variant up to ours (a v7 CPU
    /// runs v6 and v5 code); otherwise the same variant, an absent variant matching any.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let want = self.normalized();
        let have = candidate.normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return false;
        }
        match (&want.variant, &have.variant) {
            (None, _) | (_, None) => true,
            (Some(w), Some(h)) if want.architecture == "arm" => {
                match (arm_version(w), arm_version(h)) {
                    (Some(w), Some(h)) => h <= w,
                    _ => w == h,
                }
            }
            (Some(w), Some(h)) => w == h,
        }
    }

    /// How well `candidate` suits this platform among several that match: higher is
    /// better (an exact variant beats an older one).
    pub fn preference(&self, candidate: &Platform) -> u32 {
        let want = self.normalized();
        let have = candidate.normalized();
        if want.variant == have.variant {
            return 100;
        }
        have.variant.as_deref().and_then(arm_version).unwrap_or(0)
    }
}

impl fmt::Display for Platform {
    /// `os/arch` or `os/arch/variant`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = if self.os.is_empty() {
            "unknown"
        } else {
            &self.os
        };
        let arch = if self.architecture.is_empty() {
            "unknown"
        } else {
            &self.architecture
        };
        write!(f, "{os}/{arch}")?;
        if let Some(variant) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The number of an arm variant (`v7` → 7).
fn arm_version(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

/// OS names a bare `--platform` value is taken as an OS rather than an architecture.
fn is_known_os(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "linux" | "windows" | "darwin" | "freebsd"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_takes_the_flag_forms() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap(),
            Platform::new("linux", "amd64")
        );
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(Platform::parse("arm64").unwrap().os, Platform::host().os);
        assert_eq!(Platform::parse("x86_64").unwrap().architecture, "amd64");
        for bad in ["", "/", "linux//amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_follows_os_arch_and_variant() {
        let amd64 = Platform::new("linux", "amd64");
        assert!(amd64.matches(&Platform::new("linux", "x86_64")));
        assert!(!amd64.matches(&Platform::new("linux", "arm64")));
        assert!(!amd64.matches(&Platform::new("windows", "amd64")));

        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(
            arm64.matches(&Platform::new("linux", "arm64")),
            "v8 is arm64's default"
        );
        assert!(arm64.matches(&Platform::parse("linux/arm64/v8").unwrap()));

        let armv7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(armv7.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert!(!Platform::parse("linux/arm/v6")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v7").unwrap()));
        assert!(
            armv7.preference(&Platform::parse("linux/arm/v7").unwrap())
                > armv7.preference(&Platform::parse("linux/arm/v6").unwrap())
        );
    }

    #[test]
    fn the_host_matches_itself_and_selection_needs_a_platform() {
        let host = Platform::host();
        assert!(host.matches(&host));
        let only = PlatformSelection::default();
        assert!(only.takes(Some(&host)));
        assert!(!only.takes(None));
        assert!(PlatformSelection::All.takes(None));
    }

    #[test]
    fn index_entries_round_trip_through_json() {
        let json = r#"{"architecture":"arm","os":"linux","variant":"v7"}"#;
        let p: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
    }
}
