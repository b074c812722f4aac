//! `berthctl events`: the stream as lines for people and as JSON lines for scripts,
//! filters, and a clean exit on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::berthctl::{berthctl_command, berthctl_ok, ChildGuard};
use berth_tests::{unique_id, Daemon};

/// A running `berthctl events` whose stdout lines are collected.
struct Watcher {
    child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    /// Starts `berthctl <global args> events <filters>` and returns once it is
    /// subscribed: namespaces are created (and removed) until one shows in the stream.
    fn start(daemon: &Daemon, global: &[&str], filters: &[&str]) -> Watcher {
        let mut cmd = berthctl_command(daemon);
        cmd.args(global)
            .arg("events")
            .args(filters)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = ChildGuard::new(cmd.spawn().expect("spawning berthctl events"));
        let stdout = child.stdout().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let watcher = Watcher { child, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let barrier = unique_id("evsync");
            berthctl_ok(daemon, &["namespaces", "create", &barrier]);
            berthctl_ok(daemon, &["namespaces", "rm", &barrier]);
            if watcher.wait_for(|l| l.contains(&barrier), Duration::from_millis(500)) {
                return watcher;
            }
        }
        panic!(
            "berthctl events never showed an event; daemon log:\n{}",
            daemon.log_tail(40)
        );
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lines().iter().any(|l| wanted(l)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn events_print_time_namespace_topic_and_payload() {
    let daemon = Daemon::start();
    let watcher = Watcher::start(&daemon, &[], &[]);
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns, "k=v"]);
    assert!(
        watcher.wait_for(|l| l.contains(&ns), Duration::from_secs(10)),
        "{:#?}",
        watcher.lines()
    );
    let line = watcher
        .lines()
        .into_iter()
        .find(|l| l.contains(&ns))
        .unwrap();
    // `<RFC 3339 time> <namespace> <topic> <payload JSON>`
    let mut fields = line.splitn(4, ' ');
    let time = fields.next().unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{line}");
    assert_eq!(fields.next(), Some("default"), "{line}");
    assert_eq!(fields.next(), Some("/namespaces/create"), "{line}");
    let payload: serde_json::Value = serde_json::from_str(fields.next().unwrap()).unwrap();
    assert_eq!(payload["name"], ns.as_str(), "{line}");
    assert_eq!(payload["labels"]["k"], "v", "{line}");
}

#[test]
fn json_events_are_one_object_per_line_and_filters_select() {
    let daemon = Daemon::start();
    // Only deletions: the barrier's own creations are filtered out, its removals pass.
    let watcher = Watcher::start(
        &daemon,
        &["--format", "json"],
        &[r#"topic=="/namespaces/delete""#],
    );
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    berthctl_ok(&daemon, &["namespaces", "rm", &ns]);
    assert!(
        watcher.wait_for(|l| l.contains(&ns), Duration::from_secs(10)),
        "{:#?}",
        watcher.lines()
    );
    for line in watcher.lines() {
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(event["topic"], "/namespaces/delete", "{line}");
        // (containerd files a namespace's deletion under that namespace, berthd under
        // the caller's; either way it is named.)
        assert!(
            event["namespace"].as_str().is_some_and(|n| !n.is_empty()),
            "{line}"
        );
        assert!(
            event["timestamp"].as_str().unwrap().ends_with('Z'),
            "{line}"
        );
        assert_eq!(event["type"], "containerd.events.NamespaceDelete", "{line}");
    }
    let ours = watcher
        .lines()
        .into_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap())
        .find(|e| e["event"]["name"] == ns.as_str());
    assert!(ours.is_some(), "{:#?}", watcher.lines());
}

#[test]
fn ctrl_c_ends_the_stream_with_exit_code_0() {
    let daemon = Daemon::start();
    let mut watcher = Watcher::start(&daemon, &[], &[]);
    watcher.child.signal(rustix::process::Signal::INT);
    let status = watcher
        .child
        .wait_timeout(Duration::from_secs(10))
        .expect("berthctl events exits on SIGINT");
    assert_eq!(status.code(), Some(0));
}
