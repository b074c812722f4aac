//! Watching `ctr events` in the background while a test acts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ctr::{ctr_command, ctr_ok};
use crate::daemon::Daemon;
use crate::ids::unique_id;

/// One line of `ctr events`: `<date> <time> <zone> <zone> <namespace> <topic> <json>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// Namespace the event was published in.
    pub namespace: String,
    /// Topic, e.g. `/images/create`.
    pub topic: String,
    /// The event body as ctr prints it (JSON), possibly empty.
    pub payload: String,
}

impl EventLine {
    /// Parses one output line: the topic is the first field starting with `/`, the
    /// namespace the field before it, the payload the rest.
    pub fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(' ').collect();
        let topic_at = fields.iter().position(|f| f.starts_with('/'))?;
        if topic_at == 0 {
            return None;
        }
        Some(EventLine {
            namespace: fields[topic_at - 1].to_string(),
            topic: fields[topic_at].to_string(),
            payload: fields[topic_at + 1..].join(" "),
        })
    }
}

/// A running `ctr events` whose output is collected; the process is killed on drop.
#[derive(Debug)]
pub struct EventWatcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    barrier_namespace: String,
}

impl EventWatcher {
    /// Starts `ctr events` and returns once it is subscribed: it creates and removes a
    /// throw-away namespace until that creation shows up in the stream. Events of that
    /// namespace are left out of [`EventWatcher::events`].
    pub fn start(daemon: &Daemon) -> Self {
        let mut cmd = ctr_command(daemon);
        cmd.arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawning ctr events");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("event lines lock").push(line);
            }
        });
        let barrier_namespace = unique_id("evsync");
        let watcher = EventWatcher {
            child,
            lines,
            barrier_namespace,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            ctr_ok(
                daemon,
                &["namespaces", "create", &watcher.barrier_namespace],
            );
            let seen = watcher.wait_for(
                |e| {
                    e.topic == "/namespaces/create"
                        && e.payload.contains(&watcher.barrier_namespace)
                },
                Duration::from_millis(500),
                true,
            );
            ctr_ok(daemon, &["namespaces", "rm", &watcher.barrier_namespace]);
            if seen {
                return watcher;
            }
        }
        panic!(
            "ctr events never reported a namespace creation; daemon log:\n{}",
            daemon.log_tail(40)
        );
    }

    /// Every event seen so far, in order, without the subscription barrier's own.
    pub fn events(&self) -> Vec<EventLine> {
        self.parsed(false)
    }

    /// The raw output lines seen so far.
    pub fn raw_lines(&self) -> Vec<String> {
        self.lines.lock().expect("event lines lock").clone()
    }

    /// Waits up to `timeout` for an event matching `wanted`; returns whether one came.
    pub fn wait_for_event(&self, wanted: impl Fn(&EventLine) -> bool, timeout: Duration) -> bool {
        self.wait_for(wanted, timeout, false)
    }

    fn wait_for(
        &self,
        wanted: impl Fn(&EventLine) -> bool,
        timeout: Duration,
        include_barrier: bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.parsed(include_barrier).iter().any(&wanted) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn parsed(&self, include_barrier: bool) -> Vec<EventLine> {
        self.raw_lines()
            .iter()
            .filter_map(|l| EventLine::parse(l))
            .filter(|e| include_barrier || !e.payload.contains(&self.barrier_namespace))
            .collect()
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_around_the_topic() {
        let line = "2026-11-23 17:44:03.64 +0000 UTC default /namespaces/create {\"name\":\"n1\"}";
        let event = EventLine::parse(line).unwrap();
        assert_eq!(event.namespace, "default");
        assert_eq!(event.topic, "/namespaces/create");
        assert_eq!(event.payload, "{\"name\":\"n1\"}");
        assert_eq!(EventLine::parse("no topic here"), None);
    }
}
