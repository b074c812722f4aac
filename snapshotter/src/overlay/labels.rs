//! Label rules and the field-path update containerd clients send.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Largest key plus value of one label, in bytes (containerd's limit).
pub(crate) const MAX_LABEL_SIZE: usize = 4096;

/// Checks every label: a non-empty key, and key plus value within [`MAX_LABEL_SIZE`].
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in labels {
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "label key must not be empty".to_string(),
            ));
        }
        if key.len() + value.len() > MAX_LABEL_SIZE {
            return Err(Error::InvalidArgument(format!(
                "label {key:?} is {} bytes with its value; at most {MAX_LABEL_SIZE} are allowed",
                key.len() + value.len()
            )));
        }
    }
    Ok(())
}

/// Applies an update to `labels` the way containerd does:
/// - no field paths: the labels become `requested`;
/// - `labels`: the same;
/// - `labels.<key>`: that one label is set from `requested`, or removed if absent there.
///
/// Any other path names a field that cannot change: `InvalidArgument`, nothing changed.
pub(crate) fn apply_label_update(
    labels: &BTreeMap<String, String>,
    requested: &BTreeMap<String, String>,
    fieldpaths: &[String],
) -> Result<BTreeMap<String, String>> {
    if fieldpaths.is_empty() {
        return Ok(requested.clone());
    }
    let mut updated = labels.clone();
    for path in fieldpaths {
        if let Some(key) = path.strip_prefix("labels.") {
            // An empty value removes the label, as `ctr snapshots label <key> <name>=` means
            // and as containerd stores it (it never keeps an empty label).
            match requested.get(key).filter(|value| !value.is_empty()) {
                Some(value) => updated.insert(key.to_string(), value.clone()),
                None => updated.remove(key),
            };
        } else if path == "labels" {
            updated = requested.clone();
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot update field {path:?} of a snapshot; only labels can change"
            )));
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn no_paths_replaces_all_labels() {
        let now = map(&[("a", "1"), ("b", "2")]);
        let out = apply_label_update(&now, &map(&[("c", "3")]), &[]).unwrap();
        assert_eq!(out, map(&[("c", "3")]));
    }

    #[test]
    fn one_label_path_sets_or_removes_only_that_label() {
        let now = map(&[("a", "1"), ("b", "2")]);
        let requested = map(&[("a", "9"), ("z", "ignored")]);
        let out = apply_label_update(&now, &requested, &paths(&["labels.a", "labels.b"])).unwrap();
        assert_eq!(out, map(&[("a", "9")]));
    }

    #[test]
    fn an_empty_value_removes_the_label() {
        let now = map(&[("a", "1"), ("b", "2")]);
        let out = apply_label_update(&now, &map(&[("a", "")]), &paths(&["labels.a"])).unwrap();
        assert_eq!(out, map(&[("b", "2")]));
    }

    #[test]
    fn label_keys_may_contain_dots_and_slashes() {
        let key = "containerd.io/gc.ref.snapshot.overlayfs";
        let out = apply_label_update(
            &BTreeMap::new(),
            &map(&[(key, "x")]),
            &paths(&[&format!("labels.{key}")]),
        )
        .unwrap();
        assert_eq!(out, map(&[(key, "x")]));
    }

    #[test]
    fn other_fields_are_refused() {
        let err = apply_label_update(&BTreeMap::new(), &BTreeMap::new(), &paths(&["name"]));
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        let err = apply_label_update(&BTreeMap::new(), &BTreeMap::new(), &paths(&["parent"]));
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn bad_labels_are_refused() {
        assert!(validate_labels(&map(&[("", "x")])).is_err());
        let big = "v".repeat(MAX_LABEL_SIZE);
        assert!(validate_labels(&map(&[("k", &big)])).is_err());
        assert!(validate_labels(&map(&[("k", &big[1..])])).is_ok());
    }
}
