//! Values given on the command line that need more than clap's parsing: `key=value`
//! labels and Go-style durations (`24h`, `1m30s`).
//!
//! As in ctr, for labels `key=` (or a bare `key`) carries an empty value, which on a label command
//! clears that label. Updates name each label as its own field path (`labels.<key>`), so
//! labels not mentioned on the command line are left alone.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::CliError;

/// Parses `key=value` arguments into a map; a later duplicate key wins.
pub fn parse_labels<S: AsRef<str>>(args: &[S]) -> Result<HashMap<String, String>, CliError> {
    let mut labels = HashMap::new();
    for arg in args {
        let arg = arg.as_ref();
        let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
        if key.is_empty() {
            return Err(CliError::Usage(format!(
                "label {arg:?} has no key: write key=value"
            )));
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// The update-mask paths that set (or clear) exactly these labels, one per key. Prefer
/// [`label_update`], which also leaves cleared labels out of what is sent.
pub fn label_paths(labels: &HashMap<String, String>) -> Vec<String> {
    let mut paths: Vec<String> = labels.keys().map(|key| format!("labels.{key}")).collect();
    paths.sort();
    paths
}

/// An Update call's labels and field paths that set exactly these labels and remove
/// those given an empty value: each key is its own path (`labels.<key>`), and a removed
/// key is left out of the labels sent, which every daemon reads as "remove".
pub fn label_update(labels: HashMap<String, String>) -> (HashMap<String, String>, Vec<String>) {
    let mut paths: Vec<String> = labels.keys().map(|key| format!("labels.{key}")).collect();
    paths.sort();
    let kept = labels
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    (kept, paths)
}

/// Parses a duration written as numbers with units (`h`, `m`, `s`, `ms`), e.g. `24h`,
/// `1m30s`, `500ms`; a bare `0` is zero. Used as a clap value parser.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{text:?} is not a duration: write e.g. 30s, 5m, 24h or 1m30s");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| bad())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "5x", "h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let labels = parse_labels(&["a=1", "url=http://x/?q=2", "cleared=", "bare"]).unwrap();
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["url"], "http://x/?q=2");
        assert_eq!(labels["cleared"], "");
        assert_eq!(labels["bare"], "");
    }

    #[test]
    fn an_empty_key_is_refused() {
        let err = parse_labels(&["=value"]).unwrap_err();
        assert!(err.to_string().contains("no key"), "{err}");
    }

    #[test]
    fn each_label_is_its_own_update_path_and_cleared_ones_are_not_sent() {
        let labels = parse_labels(&["b=2", "a="]).unwrap();
        let (sent, paths) = label_update(labels);
        assert_eq!(paths, vec!["labels.a", "labels.b"]);
        assert_eq!(sent, HashMap::from([("b".to_string(), "2".to_string())]));
    }
}
