//! The labels containerd clients put on content, snapshots and leases, so that the
//! daemon's garbage collector keeps what an image needs and nothing else.
//!
//! The collector starts from image records and leases and follows
//! `containerd.io/gc.ref.*` labels: index → manifests, manifest → config and layers,
//! config → the unpacked snapshot. The same labels, spelled the same way, make images
//! stored by this client look to `ctr` exactly like its own.

use std::collections::BTreeMap;

use crate::oci::{Index, Manifest};

/// Label on a blob naming its uncompressed digest (the layer's diff id).
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Label on a prepared snapshot naming the committed snapshot it is meant to become.
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
/// Lease label holding the time the lease expires (RFC 3339).
pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// Label prefix on a blob naming a blob it references.
pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Label prefix on a blob naming a snapshot it references (`….<snapshotter>`).
pub const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
/// Label prefix on a blob naming the repository it came from (`….<registry host>`).
pub const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source";

/// Labels of an index blob: one `gc.ref.content.m.<i>` per listed manifest, `i` being
/// its position in the index. Only the entries `keep` accepts are referenced (a
/// platform-filtered pull stores only some of them).
pub fn index_labels(index: &Index, keep: impl Fn(usize) -> bool) -> BTreeMap<String, String> {
    index
        .manifests
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, m)| (format!("{GC_REF_CONTENT}.m.{i}"), m.digest.clone()))
        .collect()
}

/// Labels of a manifest blob: `gc.ref.content.config` and one `gc.ref.content.l.<i>` per
/// layer.
pub fn manifest_labels(manifest: &Manifest) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(
        format!("{GC_REF_CONTENT}.config"),
        manifest.config.digest.clone(),
    );
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(format!("{GC_REF_CONTENT}.l.{i}"), layer.digest.clone());
    }
    labels
}

/// The config blob's label pointing at the top snapshot of the unpacked image in
/// `snapshotter`.
pub fn snapshot_ref_label(snapshotter: &str) -> String {
    format!("{GC_REF_SNAPSHOT}.{snapshotter}")
}

/// The label naming where a blob was pulled from: `distribution.source.<host>` =
/// `<repository>`.
pub fn distribution_source(host: &str, repository: &str) -> (String, String) {
    (
        format!("{DISTRIBUTION_SOURCE}.{host}"),
        repository.to_string(),
    )
}

/// The lease expiry label value `from_now` in the future, in RFC 3339 UTC.
pub fn expiry_in(from_now: std::time::Duration) -> String {
    let at = std::time::SystemTime::now() + from_now;
    rfc3339(at)
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{sha256_digest, Descriptor};

    fn desc(name: &str) -> Descriptor {
        Descriptor {
            digest: sha256_digest(name.as_bytes()),
            ..Descriptor::default()
        }
    }

    #[test]
    fn manifest_labels_reference_config_and_each_layer_by_position() {
        let manifest = Manifest {
            schema_version: 2,
            config: desc("c"),
            layers: vec![desc("a"), desc("b")],
            ..Manifest::default()
        };
        let labels = manifest_labels(&manifest);
        assert_eq!(labels.len(), 3);
        assert_eq!(
            labels["containerd.io/gc.ref.content.config"],
            desc("c").digest
        );
        assert_eq!(labels["containerd.io/gc.ref.content.l.0"], desc("a").digest);
        assert_eq!(labels["containerd.io/gc.ref.content.l.1"], desc("b").digest);
    }

    #[test]
    fn index_labels_keep_positions_of_kept_entries() {
        let index = Index {
            schema_version: 2,
            manifests: vec![desc("x"), desc("y"), desc("z")],
            ..Index::default()
        };
        let labels = index_labels(&index, |i| i != 1);
        assert_eq!(
            labels.keys().collect::<Vec<_>>(),
            [
                "containerd.io/gc.ref.content.m.0",
                "containerd.io/gc.ref.content.m.2"
            ]
        );
    }

    #[test]
    fn other_label_names_are_containerds() {
        assert_eq!(
            snapshot_ref_label("overlayfs"),
            "containerd.io/gc.ref.snapshot.overlayfs"
        );
        assert_eq!(
            distribution_source("127.0.0.1:5000", "library/busybox"),
            (
                "containerd.io/distribution.source.127.0.0.1:5000".to_string(),
                "library/busybox".to_string()
            )
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}
