//! Platforms (`os/architecture[/variant]`, with Go's architecture names as image
//! indexes use them) and how a wanted platform is matched against what an index offers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// Operating systems recognised when a platform string has a single component.
const KNOWN_OS: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "illumos", "solaris",
];

/// A platform an image manifest is built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's naming: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, ...
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`; `None` when there is none or it is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine (`linux/amd64` on x86-64 Linux).
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
        .normalized()
    }

    /// Parses `os/arch`, `os/arch/variant`, or a lone OS (on this machine's
    /// architecture) or architecture (on Linux). Common aliases are accepted and
    /// normalised: `x86_64` is `amd64`, `aarch64` is `arm64`, `armhf` is `arm/v7`.
    pub fn parse(s: &str) -> Result<Platform, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let lower = s.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let good = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !parts.iter().all(good) {
            return Err(invalid(
                "expected os/arch[/variant] made of letters, digits, '_', '-' and '.'",
            ));
        }
        let platform = match parts.as_slice() {
            [single] if KNOWN_OS.contains(single) => Platform {
                os: single.to_string(),
                ..Platform::host()
            },
            [arch] => Platform {
                os: "linux".to_string(),
                architecture: arch.to_string(),
                variant: None,
            },
            [os, arch] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            },
            [os, arch, variant] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            },
            _ => return Err(invalid("expected os/arch[/variant]")),
        };
        Ok(platform.normalized())
    }

    /// This platform with architecture aliases and default variants spelled the one way
    /// image indexes use: `arm64/v8` is `arm64`, a bare `arm` is `arm/v7`.
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
            ("i386", v) => ("386".to_string(), v.map(str::to_string)),
            ("x86_64" | "x86-64" | "amd64", Some("v1") | None) => ("amd64".to_string(), None),
            ("x86_64" | "x86-64" | "amd64", Some(v)) => ("amd64".to_string(), Some(v.to_string())),
            ("aarch64" | "arm64", Some("8" | "v8" | "v8.0") | None) => ("arm64".to_string(), None),
            ("aarch64" | "arm64", Some(v)) => ("arm64".to_string(), Some(v.to_string())),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("arm", None) => ("arm".to_string(), Some("v7".to_string())),
            ("arm", Some(v)) if v.len() == 1 && v.as_bytes()[0].is_ascii_digit() => {
                ("arm".to_string(), Some(format!("v{v}")))
            }
            (a, v) => (a.to_string(), v.map(str::to_string)),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Whether an image built for `other` runs on this platform: same OS and
    /// architecture, and the same variant, or (for 32-bit ARM) an older one. A platform
    /// without a variant accepts any variant. Both sides are normalised first.
    pub fn matches(&self, other: &Platform) -> bool {
        let wanted = self.normalized();
        let offered = other.normalized();
        if wanted.os != offered.os || wanted.architecture != offered.architecture {
            return false;
        }
        match (wanted.variant.as_deref(), offered.variant.as_deref()) {
            (None, _) => true,
            (Some(w), Some(o)) if w == o => true,
            (Some(w), Some(o)) if wanted.architecture == "arm" => {
                matches!((arm_level(w), arm_level(o)), (Some(w), Some(o)) if o <= w)
            }
            _ => false,
        }
    }

    /// Whether `other` is exactly this platform once both are normalised.
    pub fn same_as(&self, other: &Platform) -> bool {
        self.normalized() == other.normalized()
    }
}

/// The number of an ARM variant (`v7` → 7).
fn arm_level(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn host_is_linux_amd64_on_this_machine() {
        // The test machines are x86-64 Linux.
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(Platform::host().to_string(), "linux/amd64");
        }
        assert!(Platform::host().matches(&Platform::host()));
    }

    #[test]
    fn parse_normalises_aliases_and_default_variants() {
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/aarch64/v8").to_string(), "linux/arm64");
        assert_eq!(p("Linux/X86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux").architecture, Platform::host().architecture);
        assert_eq!(p("windows").os, "windows");
    }

    #[test]
    fn parse_refuses_malformed_platforms() {
        for bad in ["", "linux/", "/amd64", "linux/arm/v7/extra", "linux/am d64"] {
            assert!(
                matches!(
                    Platform::parse(bad),
                    Err(RegistryError::InvalidPlatform { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn matching_is_by_os_arch_and_compatible_variant() {
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        let offered_v8 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert!(p("linux/arm64").matches(&offered_v8));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        let amd64_v3 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: Some("v3".into()),
        };
        assert!(p("linux/amd64").matches(&amd64_v3));
        assert!(!p("linux/amd64").same_as(&amd64_v3));
    }
}
