//! The names imported images get, following `ctr images import`:
//!
//! - an index entry annotated `io.containerd.image.name` is named by it, as is;
//! - else its `org.opencontainers.image.ref.name`: a full reference (holding `/`, `:`
//!   or `@`) is taken as is, a bare tag is put after a base name (`<base>:<tag>`);
//! - the base name is the one given, and then full references that do not start with it
//!   are left out; without one it is `import-<YYYY-MM-DD>` (today's date);
//! - Docker archives name images by their `RepoTags`, made full (`busybox:1` →
//!   `docker.io/library/busybox:1`), then through the same rule.

use std::collections::BTreeMap;

use crate::oci::annotations::{IMAGE_NAME, REF_NAME};

/// How bare tags become names, and which full names are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    base: String,
    only_under_base: bool,
}

impl NameRule {
    /// The rule for an import with `base_name` (or ctr's dated default without one).
    pub fn new(base_name: Option<&str>) -> NameRule {
        match base_name {
            Some(base) if !base.is_empty() => NameRule {
                base: base.to_string(),
                only_under_base: true,
            },
            _ => NameRule {
                base: format!(
                    "import-{}",
                    &crate::labels::rfc3339(std::time::SystemTime::now())[..10]
                ),
                only_under_base: false,
            },
        }
    }

    /// The name of an image whose index entry carries `annotations`, if it gets one.
    pub fn name_of(&self, annotations: &BTreeMap<String, String>) -> Option<String> {
        if let Some(name) = annotations.get(IMAGE_NAME).filter(|n| !n.is_empty()) {
            return Some(name.clone());
        }
        let reference = annotations.get(REF_NAME).filter(|n| !n.is_empty())?;
        self.translate(reference)
    }

    /// A reference name through the rule: full references kept (when under the base),
    /// bare tags put after the base.
    pub fn translate(&self, reference: &str) -> Option<String> {
        if reference.contains(['/', ':', '@']) {
            if self.only_under_base && !is_under(reference, &self.base) {
                return None;
            }
            return Some(reference.to_string());
        }
        Some(format!("{}:{reference}", self.base))
    }
}

/// Whether `reference` names a tag or digest of the repository `base` (or one below it).
fn is_under(reference: &str, base: &str) -> bool {
    reference
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@', '/']))
}

/// A Docker `RepoTags` entry as a full name: the registry `docker.io` and, for one-part
/// repositories, `library/`, are added; a missing tag is `latest`.
pub fn full_docker_name(tag: &str) -> String {
    let (repository, suffix) = split_tag(tag);
    let first = repository.split('/').next().unwrap_or("");
    let has_registry = repository.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if has_registry {
        repository.to_string()
    } else if repository.contains('/') {
        format!("docker.io/{repository}")
    } else {
        format!("docker.io/library/{repository}")
    };
    format!("{repository}{suffix}")
}

/// Splits `name` into repository and `:tag` / `@digest` suffix (`:latest` if none).
fn split_tag(name: &str) -> (&str, String) {
    if let Some(at) = name.find('@') {
        return (&name[..at], name[at..].to_string());
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => {
            let split = last_slash + colon;
            (&name[..split], name[split..].to_string())
        }
        None => (name, ":latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_ctrs_import() {
        let default = NameRule::new(None);
        let dated = default
            .name_of(&annotations(&[(REF_NAME, "latest")]))
            .unwrap();
        assert!(
            dated.starts_with("import-20") && dated.ends_with(":latest"),
            "{dated}"
        );
        assert_eq!(dated.len(), "import-YYYY-MM-DD:latest".len());
        assert_eq!(
            default.name_of(&annotations(&[(REF_NAME, "localhost/x:1")])),
            Some("localhost/x:1".to_string())
        );
        assert_eq!(
            default.name_of(&annotations(&[
                (IMAGE_NAME, "localhost/y:2"),
                (REF_NAME, "2")
            ])),
            Some("localhost/y:2".to_string())
        );
        assert_eq!(default.name_of(&annotations(&[])), None);

        let based = NameRule::new(Some("foo/bar"));
        assert_eq!(
            based.name_of(&annotations(&[(REF_NAME, "latest")])),
            Some("foo/bar:latest".to_string())
        );
        assert_eq!(
            based.name_of(&annotations(&[(REF_NAME, "localhost/x:1")])),
            None
        );
        assert_eq!(
            based.name_of(&annotations(&[(REF_NAME, "foo/bar:2")])),
            Some("foo/bar:2".to_string())
        );
        assert_eq!(
            based.name_of(&annotations(&[(REF_NAME, "foo/barn:2")])),
            None
        );
        assert_eq!(
            based.name_of(&annotations(&[(IMAGE_NAME, "localhost/y:2")])),
            Some("localhost/y:2".to_string()),
            "the full image name annotation is taken as is"
        );
    }

    #[test]
    fn docker_tags_become_full_names() {
        assert_eq!(
            full_docker_name("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full_docker_name("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(full_docker_name("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(
            full_docker_name("localhost:5000/app:v1"),
            "localhost:5000/app:v1"
        );
        assert_eq!(
            full_docker_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(full_docker_name("quay.io/a/b"), "quay.io/a/b:latest");
    }
}
