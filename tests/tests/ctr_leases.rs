//! `ctr leases create/ls/rm`.

use berth_tests::ctr::table_rows;
use berth_tests::{ctr_fails, ctr_ok, unique_id, Daemon};

/// `(id, labels)` of each lease in `ctr leases ls`.
fn leases(daemon: &Daemon, ns: &str) -> Vec<(String, String)> {
    table_rows(&ctr_ok(daemon, &["-n", ns, "leases", "ls"]))
        .into_iter()
        .map(|r| (r[0].clone(), r.last().cloned().unwrap_or_default()))
        .collect()
}

#[test]
fn leases_are_created_listed_and_removed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);

    let generated = ctr_ok(&daemon, &["-n", &ns, "leases", "create"])
        .trim()
        .to_string();
    assert!(!generated.is_empty());
    let named = unique_id("lease");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "leases",
            "create",
            "--id",
            &named,
            "--expires",
            "1h",
        ],
    );
    assert_eq!(printed.trim(), named);
    ctr_fails(&daemon, &["-n", &ns, "leases", "create", "--id", &named]);

    let listed = leases(&daemon, &ns);
    let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        ids.contains(&generated.as_str()) && ids.contains(&named.as_str()),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 2);
    let labels = &listed.iter().find(|(id, _)| *id == named).unwrap().1;
    assert!(
        labels.contains("containerd.io/gc.expire="),
        "expiry label missing: {labels}"
    );

    // Leases belong to their namespace.
    let other = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &other]);
    assert!(leases(&daemon, &other).is_empty());

    ctr_ok(&daemon, &["-n", &ns, "leases", "rm", &named]);
    let listed = leases(&daemon, &ns);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, generated);
    ctr_ok(&daemon, &["-n", &ns, "leases", "rm", &generated]);
    assert!(leases(&daemon, &ns).is_empty());
}
