//! Identifiers unique to one test run, so parallel tests never share a name.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new identifier `<prefix>-<pid>-<n>`, unique across the processes and threads of
/// a test run, and valid as a containerd identifier (letters, digits, `-`).
pub fn unique_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat() {
        let a = unique_id("ns");
        let b = unique_id("ns");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("ns-{}-", std::process::id())));
    }
}
