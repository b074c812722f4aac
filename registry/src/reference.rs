//! Image references (`[host[:port]/]repository[:tag][@digest]`), normalised the way the
//! Docker tooling does: `busybox` means `docker.io/library/busybox:latest`.

use std::fmt;

use crate::digest::check_digest_syntax;
use crate::error::RegistryError;

/// The registry an image name without a host refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The repository prefix single-component names get on [`DEFAULT_REGISTRY`].
const OFFICIAL_PREFIX: &str = "library/";
/// The tag a reference with neither tag nor digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Longest `host/repository` accepted, as the reference grammar limits it.
const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses `s`, filling in the defaults: no host means [`DEFAULT_REGISTRY`] (where a
    /// one-component name goes under `library/`), and neither tag nor digest means
    /// [`DEFAULT_TAG`].
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        if let Some(digest) = digest {
            check_digest_syntax(digest).map_err(|reason| invalid(&reason))?;
        }
        // A tag is what follows the last ':' after the last '/' (a ':' before that
        // separates a host from its port).
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        let (registry, repository) = split_registry(name);
        check_registry(registry).map_err(|reason| invalid(&reason))?;
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_PREFIX}{repository}")
        } else {
            repository.to_string()
        };
        check_repository(&repository).map_err(|reason| invalid(&reason))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "name longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// The registry host, with its port when it has one (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `host/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest` (the tag, if any, is kept for display);
    /// how a manifest found in an index is fetched.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The same repository with `tag` and no digest; how a pushed manifest is named.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, RegistryError> {
        check_tag(tag).map_err(|reason| RegistryError::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name` into registry host and repository. The first component is a host
/// when it looks like one (has a '.', a ':', is `localhost` or has capitals, which a
/// repository cannot have); otherwise the whole name is a repository on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// Checks a `host[:port]` (a DNS name, an IPv4 address or a bracketed IPv6 address).
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in host {registry:?}"))?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("bad IPv6 address in host {registry:?}"));
        }
        match after {
            "" => (inside, None),
            _ => (
                inside,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("bad host {registry:?}"))?,
                ),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("bad port in host {registry:?}"));
        }
    }
    if !registry.starts_with('[') {
        let good_label = |label: &str| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(good_label) {
            return Err(format!("bad host {registry:?}"));
        }
    }
    Ok(())
}

/// Checks a repository path: lowercase components of `[a-z0-9]` runs joined by one
/// `.`, one or two `_`, or any number of `-`, separated by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("empty repository name".to_string());
    }
    for component in repository.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 joined by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// Whether `component` is one valid repository path component.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or '-'+, always followed by an alphanumeric.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return false;
        }
    }
    true
}

/// Checks a tag: a word character, then up to 127 word characters, dots or dashes.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let valid = match chars.next() {
        Some(first) => word(first) && chars.all(|c| word(c) || c == '.' || c == '-'),
        None => false,
    };
    if !valid || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-', \
             not starting with '.' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap();
        (
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(str::to_string),
        )
    }

    #[test]
    fn short_names_go_to_docker_hub_under_library() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            Reference::parse("user/app:v1").unwrap().to_string(),
            "docker.io/user/app:v1"
        );
        assert_eq!(
            Reference::parse("index.docker.io/busybox:1")
                .unwrap()
                .to_string(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            Reference::parse("docker.io/library/busybox").unwrap(),
            Reference::parse("busybox:latest").unwrap()
        );
    }

    #[test]
    fn hosts_with_ports_are_told_apart_from_tags() {
        assert_eq!(
            parts("127.0.0.1:5000/app"),
            (
                "127.0.0.1:5000".into(),
                "app".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost/a/b:v2"),
            ("localhost".into(), "a/b".into(), Some("v2".into()), None)
        );
        assert_eq!(
            parts("[::1]:5000/app:x"),
            ("[::1]:5000".into(), "app".into(), Some("x".into()), None)
        );
        // A one-component name with a port-like suffix is a tag on Docker Hub.
        assert_eq!(
            parts("busybox:5000"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Some("5000".into()),
                None
            )
        );
    }

    #[test]
    fn digests_pin_the_reference_and_keep_a_tag_when_given() {
        let by_digest = Reference::parse(&format!("example.com/app@{DIGEST}")).unwrap();
        assert_eq!(by_digest.tag(), None);
        assert_eq!(by_digest.digest(), Some(DIGEST));
        assert_eq!(by_digest.to_string(), format!("example.com/app@{DIGEST}"));

        let both = Reference::parse(&format!("example.com/app:v1@{DIGEST}")).unwrap();
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(both.to_string(), format!("example.com/app:v1@{DIGEST}"));

        let pinned = Reference::parse("example.com/app:v1")
            .unwrap()
            .with_digest(DIGEST);
        assert_eq!(pinned, both);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "docker.io/library/busybox:latest",
            "127.0.0.1:5000/a/b-c/d__e:v1.2-rc_3",
            &format!("quay.io/x/y@{DIGEST}"),
        ] {
            assert_eq!(Reference::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-tag",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "example.com/app/",
            "example.com//app",
            "example.com/a..b",
            "example.com/a___b",
            "example.com:port/app",
            "exa_mple.com/app",
            "example.com/App",
            "busybox tag",
        ] {
            match Reference::parse(bad) {
                Err(RegistryError::InvalidReference { reference, .. }) => {
                    assert_eq!(reference, bad)
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let long = format!("example.com/{}", "a".repeat(300));
        assert!(Reference::parse(&long).is_err());
        let long_tag = format!("busybox:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }

    #[test]
    fn with_tag_drops_the_digest() {
        let r = Reference::parse(&format!("example.com/app@{DIGEST}")).unwrap();
        let tagged = r.with_tag("v2").unwrap();
        assert_eq!(tagged.to_string(), "example.com/app:v2");
        assert!(r.with_tag("bad tag").is_err());
    }
}
