//! `ctr events` reports what happened, in order.

use std::time::Duration;

use berth_tests::steps::{import_busybox, pinned_snapshot, BUSYBOX_NAME};
use berth_tests::{ctr_ok, unique_id, Daemon, EventWatcher};

#[test]
fn events_follow_an_import_and_a_removal_in_order() {
    let daemon = Daemon::start();
    let watcher = EventWatcher::start(&daemon);
    let ns = unique_id("ns");

    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    pinned_snapshot(&daemon, &ns, "prepare", "work", None);
    ctr_ok(&daemon, &["-n", &ns, "snapshots", "rm", "work"]);
    ctr_ok(
        &daemon,
        &["-n", &ns, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    let arrived = watcher.wait_for_event(|e| e.topic == "/images/delete", Duration::from_secs(10));
    assert!(arrived, "no /images/delete in {:#?}", watcher.raw_lines());

    let events = watcher.events();
    let wanted: [(&str, &str, &str); 7] = [
        ("/namespaces/create", "", &ns),
        ("/images/create", &ns, BUSYBOX_NAME),
        ("/snapshot/prepare", &ns, ""),
        ("/snapshot/commit", &ns, &image.chain_ids()[0]),
        ("/snapshot/prepare", &ns, "\"work\""),
        ("/snapshot/remove", &ns, "\"work\""),
        ("/images/delete", &ns, BUSYBOX_NAME),
    ];
    // Each wanted event appears, in this order (other events may come in between).
    let mut position = 0;
    for (topic, namespace, mentions) in wanted {
        let found = events[position..].iter().position(|e| {
            e.topic == topic
                && (namespace.is_empty() || e.namespace == namespace)
                && e.payload.contains(mentions)
        });
        match found {
            Some(offset) => position += offset + 1,
            None => panic!("{topic} ({mentions}) missing or out of order in:\n{events:#?}"),
        }
    }
}
