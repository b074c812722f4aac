//! `ctr events` reports the life of a task, its exec and its pause, in order.

use std::time::Duration;

use berth_tests::steps::BUSYBOX_NAME;
use berth_tests::tasks::{
    daemon_with_busybox, exec, run_detached, wait_for_task_status, TaskCleanup,
};
use berth_tests::{ctr_ok, EventWatcher};

#[test]
fn events_follow_a_task_from_create_to_delete_in_order() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let watcher = EventWatcher::start(&daemon);

    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "ev",
        &["sleep", "1000"],
    );
    let out = exec(&daemon, &ns, "ev", "x1", &["sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    ctr_ok(&daemon, &["-n", &ns, "tasks", "pause", "ev"]);
    ctr_ok(&daemon, &["-n", &ns, "tasks", "resume", "ev"]);
    ctr_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "ev"],
    );
    wait_for_task_status(&daemon, &ns, "ev", "STOPPED", Duration::from_secs(20));
    ctr_ok(&daemon, &["-n", &ns, "tasks", "rm", "ev"]);
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "ev"]);
    let arrived = watcher.wait_for_event(
        |e| e.topic == "/containers/delete" && e.payload.contains("\"ev\""),
        Duration::from_secs(20),
    );
    assert!(
        arrived,
        "no /containers/delete in {:#?}",
        watcher.raw_lines()
    );

    let pid = format!("\"pid\":{}", task.init.pid);
    let container = "\"container_id\":\"ev\"";
    let wanted: Vec<(&str, Vec<&str>)> = vec![
        ("/containers/create", vec!["\"id\":\"ev\""]),
        ("/tasks/create", vec![container, &pid]),
        ("/tasks/start", vec![container, &pid]),
        ("/tasks/exec-added", vec![container, "\"exec_id\":\"x1\""]),
        ("/tasks/exec-started", vec![container, "\"exec_id\":\"x1\""]),
        (
            "/tasks/exit",
            vec![container, "\"id\":\"x1\"", "\"exit_status\":4"],
        ),
        ("/tasks/paused", vec![container]),
        ("/tasks/resumed", vec![container]),
        (
            "/tasks/exit",
            vec![container, "\"id\":\"ev\"", &pid, "\"exit_status\":137"],
        ),
        (
            "/tasks/delete",
            vec![container, &pid, "\"exit_status\":137"],
        ),
        ("/containers/delete", vec!["\"id\":\"ev\""]),
    ];
    let events = watcher.events();
    // Each wanted event appears in this namespace, in this order; other events (the
    // snapshots') may come in between.
    let mut position = 0;
    for (topic, mentions) in wanted {
        let found = events[position..].iter().position(|e| {
            e.topic == topic && e.namespace == ns && mentions.iter().all(|m| e.payload.contains(m))
        });
        match found {
            Some(offset) => position += offset + 1,
            None => panic!("{topic} {mentions:?} missing or out of order in:\n{events:#?}"),
        }
    }
    // Nothing about the task is published twice. Like containerd, /tasks/delete is the
    // deletion of the task itself: removing an exec process publishes nothing.
    for topic in ["/tasks/create", "/tasks/start", "/tasks/delete"] {
        let seen: Vec<_> = events.iter().filter(|e| e.topic == topic).collect();
        assert_eq!(
            seen.len(),
            1,
            "{topic} seen {} times: {seen:#?}",
            seen.len()
        );
    }
}
