//! Labels as clients send them: the size rules every labelled record obeys, and the
//! `labels` / `labels.<key>` field paths of Update calls (namespaces, images).
//!
//! As in containerd, a label with an empty value is the same as no label: creating or
//! updating with `key=""` removes `key`.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};
use crate::metadata::Labels;

/// Most bytes a label's key and value may hold together (containerd's limit).
pub const MAX_LABEL_BYTES: usize = 4096;
/// Most labels one record may carry.
pub const MAX_LABELS: usize = 1024;
/// Most bytes all labels of one record may add up to (keys plus values).
pub const MAX_LABELS_TOTAL_BYTES: usize = 256 << 10;

/// Field path that replaces all labels.
pub const LABELS_PATH: &str = "labels";
/// Prefix of a field path that sets or removes one label.
pub const LABEL_PATH_PREFIX: &str = "labels.";

/// Checks one label: a non-empty key, key and value together within [`MAX_LABEL_BYTES`].
pub fn validate_label(key: &str, value: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Err(ApiError::InvalidArgument(
            "label keys must not be empty".to_string(),
        ));
    }
    if key.len() + value.len() > MAX_LABEL_BYTES {
        let shown: String = key.chars().take(64).collect();
        return Err(ApiError::InvalidArgument(format!(
            "label {shown:?}: key and value together are {} bytes, the limit is {MAX_LABEL_BYTES}",
            key.len() + value.len()
        )));
    }
    Ok(())
}

/// Checks a whole label set: every label, how many there are and their total size.
pub fn validate(labels: &Labels) -> ApiResult<()> {
    check_set(labels)
}

fn check_set<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> ApiResult<()> {
    let (mut count, mut total) = (0usize, 0usize);
    for (key, value) in labels {
        validate_label(key, value)?;
        count += 1;
        total += key.len() + value.len();
    }
    if count > MAX_LABELS {
        return Err(ApiError::InvalidArgument(format!(
            "{count} labels given, the limit is {MAX_LABELS}"
        )));
    }
    if total > MAX_LABELS_TOTAL_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "labels add up to {total} bytes, the limit is {MAX_LABELS_TOTAL_BYTES}"
        )));
    }
    Ok(())
}

/// Converts labels from the wire: checks them and drops those with an empty value.
pub fn from_wire(labels: HashMap<String, String>) -> ApiResult<Labels> {
    check_set(&labels)?;
    Ok(labels.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

/// Converts stored labels to the wire form.
pub fn to_wire(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Applies one Update field path to `current` from the labels the client sent.
///
/// Returns `false` if `path` is not a label path (the caller handles or refuses it).
/// `labels` replaces every label; `labels.<key>` sets `key` to the sent value, or removes
/// it when the client sent none or an empty one.
pub fn apply_path(current: &mut Labels, sent: &HashMap<String, String>, path: &str) -> bool {
    if path == LABELS_PATH {
        *current = sent
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        return true;
    }
    let Some(key) = path.strip_prefix(LABEL_PATH_PREFIX) else {
        return false;
    };
    match sent.get(key) {
        Some(value) if !value.is_empty() => {
            current.insert(key.to_string(), value.clone());
        }
        _ => {
            current.remove(key);
        }
    }
    true
}

/// Checks every label the client sent, also those only named by a field path.
pub fn validate_sent(sent: &HashMap<String, String>) -> ApiResult<()> {
    check_set(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_values_are_dropped_and_bad_labels_refused() {
        let labels = from_wire(map(&[("a", "1"), ("b", "")])).unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["a"], "1");
        assert!(from_wire(map(&[("", "x")])).is_err());
        let big = "v".repeat(MAX_LABEL_BYTES);
        assert!(from_wire(map(&[("k", &big)])).is_err());
        assert!(from_wire(map(&[("k", &big[1..])])).is_ok());
    }

    #[test]
    fn too_many_labels_are_refused() {
        let many: HashMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(from_wire(many).is_err());
        let heavy: HashMap<String, String> = (0..100)
            .map(|i| (format!("k{i}"), "v".repeat(3000)))
            .collect();
        assert!(from_wire(heavy).is_err(), "over the total size limit");
    }

    #[test]
    fn field_paths_set_remove_and_replace() {
        let mut current = Labels::from([
            ("keep".to_string(), "1".to_string()),
            ("gone".to_string(), "2".to_string()),
        ]);
        let sent = map(&[("new", "3"), ("gone", "")]);
        assert!(apply_path(&mut current, &sent, "labels.new"));
        assert!(apply_path(&mut current, &sent, "labels.gone"));
        assert_eq!(
            current,
            Labels::from([
                ("keep".to_string(), "1".to_string()),
                ("new".to_string(), "3".to_string()),
            ])
        );
        // A key named by a path but not sent is removed.
        assert!(apply_path(&mut current, &sent, "labels.keep"));
        assert!(!current.contains_key("keep"));
        // `labels` replaces everything, dropping empty values.
        assert!(apply_path(&mut current, &sent, "labels"));
        assert_eq!(
            current,
            Labels::from([("new".to_string(), "3".to_string())])
        );
        // Other paths are not ours.
        assert!(!apply_path(&mut current, &sent, "target"));
        assert!(!apply_path(&mut current, &sent, "labelsx"));
    }
}
