//! The shim end to end (root only): `berth-shim start`, the task API over its socket with
//! real runc, real fifos and an overlay rootfs, and `berth-shim delete` after a shim dies.

mod common;

use std::time::Duration;

use berth_proto::containerd::task::v2::{
    CloseIoRequest, ConnectRequest, DeleteRequest, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, ResumeRequest, ShutdownRequest, StartRequest, StateRequest, StatsRequest,
    UpdateTaskRequest, WaitRequest,
};
use berth_proto::containerd::v1::types::Status;
use common::*;

const SIGKILL: u32 = 9;

/// An exec process spec as ctr sends it: OCI process JSON in an Any.
fn process_spec(args: &[&str]) -> prost_types::Any {
    let json = serde_json::json!({
        "args": args,
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    });
    prost_types::Any {
        type_url: berth_proto::type_urls::OCI_PROCESS.into(),
        value: serde_json::to_vec(&json).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_through_a_fifo_and_exit_code_3_through_wait() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("hello", |id| {
        spec_running(id, &["sh", "-c", "echo hello; exit 3"])
    });
    let _guard = fixture.start_shim();
    let shim_pid = fixture.shim_pid().expect("shim.pid written");
    let mut client = connect(&fixture.socket).await;

    let stdout = fixture.fifo("stdout");
    let output = read_fifo(&stdout);
    let mut request = fixture.create_request();
    request.stdout = stdout.display().to_string();
    let pid = client.create(request).await.unwrap().into_inner().pid;
    assert_eq!(Some(pid as i32), fixture.init_pid());
    assert_eq!(fixture.mounts_in_bundle().len(), 1, "rootfs mounted");

    let state = client
        .state(StateRequest {
            id: fixture.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status, Status::Created as i32);
    assert_eq!(state.stdout, stdout.display().to_string());

    // ctr sends Wait while Start is still in flight.
    let mut waiter = client.clone();
    let id = fixture.id.clone();
    let wait = tokio::spawn(async move {
        waiter
            .wait(WaitRequest {
                id,
                exec_id: String::new(),
            })
            .await
    });
    let started = client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.pid, pid);
    let waited = wait.await.unwrap().unwrap().into_inner();
    assert_eq!(waited.exit_status, 3);
    assert!(waited.exited_at.is_some());
    assert_eq!(
        output.recv_timeout(Duration::from_secs(10)).unwrap(),
        "hello\n"
    );

    let exit_file = std::fs::read_to_string(fixture.bundle.join("exit")).unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&exit_file).unwrap();
    assert_eq!(recorded["pid"], pid);
    assert_eq!(recorded["exit_status"], 3);

    let state = client
        .state(StateRequest {
            id: fixture.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status, Status::Stopped as i32);
    assert_eq!(state.exit_status, 3);

    let deleted = client
        .delete(DeleteRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 3));
    assert!(
        !fixture.bundle.join("exit").exists(),
        "delete removes the exit file"
    );
    assert!(fixture.mounts_in_bundle().is_empty(), "rootfs unmounted");

    client
        .shutdown(ShutdownRequest {
            id: fixture.id.clone(),
            now: false,
        })
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !process_alive(shim_pid)),
        "the shim exits after Shutdown"
    );
    assert!(!fixture.socket.exists(), "the shim removes its socket");
    // The runtime's delete of an exited container runs after the Delete reply; the shim
    // finishes it before it exits.
    assert!(!fixture.runtime_knows_container());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_pause_resume_kill_and_every_event_in_order() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("life", |id| spec_running(id, &["sleep", "1000"]));
    let (events, events_server) = serve_events(&fixture.publish_address);
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let id = fixture.id.clone();

    let pid = client
        .create(fixture.create_request())
        .await
        .unwrap()
        .into_inner()
        .pid;
    client
        .start(StartRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let state = |exec_id: &str| StateRequest {
        id: id.clone(),
        exec_id: exec_id.to_string(),
    };
    let running = client.state(state("")).await.unwrap().into_inner();
    assert_eq!((running.status, running.pid), (Status::Running as i32, pid));

    // An exec with its output on a fifo.
    let exec_out = fixture.fifo("exec-stdout");
    let listing = read_fifo(&exec_out);
    client
        .exec(ExecProcessRequest {
            id: id.clone(),
            exec_id: "e1".into(),
            stdout: exec_out.display().to_string(),
            spec: Some(process_spec(&["ls", "/"])),
            ..Default::default()
        })
        .await
        .unwrap();
    let duplicate = client
        .exec(ExecProcessRequest {
            id: id.clone(),
            exec_id: "e1".into(),
            spec: Some(process_spec(&["ls", "/"])),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), tonic::Code::AlreadyExists);
    let exec_pid = client
        .start(StartRequest {
            id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(exec_pid > 0 && exec_pid != pid);
    let exec_exit = client
        .wait(WaitRequest {
            id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec_exit.exit_status, 0);
    let listing = listing.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(listing.lines().any(|line| line == "bin"), "{listing:?}");
    client
        .delete(DeleteRequest {
            id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap();

    // An exec reading stdin until CloseIO.
    let exec_in = fixture.fifo("cat-stdin");
    let exec_cat_out = fixture.fifo("cat-stdout");
    let echoed = read_fifo(&exec_cat_out);
    client
        .exec(ExecProcessRequest {
            id: id.clone(),
            exec_id: "cat".into(),
            stdin: exec_in.display().to_string(),
            stdout: exec_cat_out.display().to_string(),
            spec: Some(process_spec(&["cat"])),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .start(StartRequest {
            id: id.clone(),
            exec_id: "cat".into(),
        })
        .await
        .unwrap();
    let pids = client
        .pids(PidsRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .processes;
    assert!(
        pids.iter().any(|p| p.pid == pid && p.info.is_none()),
        "{pids:?}"
    );
    assert!(
        pids.iter().any(|p| p.info.is_some()),
        "the exec is marked: {pids:?}"
    );
    {
        use std::io::Write;
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&exec_in)
            .unwrap();
        writer.write_all(b"ping\n").unwrap();
        // The client keeps its end open; CloseIO still ends cat's input.
        client
            .close_io(CloseIoRequest {
                id: id.clone(),
                exec_id: "cat".into(),
                stdin: true,
            })
            .await
            .unwrap();
        assert_eq!(
            echoed.recv_timeout(Duration::from_secs(10)).unwrap(),
            "ping\n"
        );
    }
    let cat_exit = client
        .wait(WaitRequest {
            id: id.clone(),
            exec_id: "cat".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cat_exit.exit_status, 0);
    client
        .delete(DeleteRequest {
            id: id.clone(),
            exec_id: "cat".into(),
        })
        .await
        .unwrap();

    // Pause and resume.
    client.pause(PauseRequest { id: id.clone() }).await.unwrap();
    let paused = client.state(state("")).await.unwrap().into_inner();
    assert_eq!(paused.status, Status::Paused as i32);
    client
        .resume(ResumeRequest { id: id.clone() })
        .await
        .unwrap();
    let resumed = client.state(state("")).await.unwrap().into_inner();
    assert_eq!(resumed.status, Status::Running as i32);

    let stats = client
        .stats(StatsRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let metrics: berth_proto::io::containerd::cgroups::v1::Metrics =
        berth_proto::any::unpack(&stats).unwrap();
    assert!(metrics.pids.unwrap().current >= 1);

    // New resources reach the container's cgroup.
    client
        .update(UpdateTaskRequest {
            id: id.clone(),
            resources: Some(prost_types::Any {
                type_url: berth_proto::type_urls::OCI_LINUX_RESOURCES.into(),
                value: br#"{"pids":{"limit":50}}"#.to_vec(),
            }),
            annotations: Default::default(),
        })
        .await
        .unwrap();
    let pids_max = std::path::Path::new("/sys/fs/cgroup/pids")
        .join(format!("berth-shim-test-{id}"))
        .join("pids.max");
    // Checked where the pids controller is a cgroup v1 hierarchy (as on the test hosts).
    if std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() {
        assert_eq!(std::fs::read_to_string(&pids_max).unwrap().trim(), "50");
    }

    let connected = client
        .connect(ConnectRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(Some(connected.shim_pid as i32), fixture.shim_pid());
    assert_eq!(connected.task_pid, pid);

    // A running task cannot be deleted; Shutdown without `now` keeps the shim.
    let refused = client
        .delete(DeleteRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    client
        .shutdown(ShutdownRequest {
            id: id.clone(),
            now: false,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(process_alive(fixture.shim_pid().unwrap()));

    client
        .kill(KillRequest {
            id: id.clone(),
            exec_id: String::new(),
            signal: SIGKILL,
            all: false,
        })
        .await
        .unwrap();
    let killed = client
        .wait(WaitRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(killed.exit_status, 137);
    let again = client
        .kill(KillRequest {
            id: id.clone(),
            exec_id: String::new(),
            signal: SIGKILL,
            all: false,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    assert!(again.message().contains("already finished"), "{again:?}");
    client
        .delete(DeleteRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();

    let expected = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        // Deleting an exec publishes nothing (containerd's shim does the same).
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    let topics = wait_for_events(&events, expected.len()).await;
    assert_eq!(topics, expected);
    let received = events.received.lock().unwrap().clone();
    assert!(received.iter().all(|event| event.namespace == NAMESPACE));
    assert_eq!(received[4].type_url, "containerd.events.TaskExit");
    let exec_exit: berth_proto::containerd::events::TaskExit =
        prost::Message::decode(received[4].value.as_slice()).unwrap();
    assert_eq!((exec_exit.id.as_str(), exec_exit.pid), ("e1", exec_pid));
    let init_exit: berth_proto::containerd::events::TaskExit =
        prost::Message::decode(received[10].value.as_slice()).unwrap();
    assert_eq!(
        (init_exit.id, init_exit.pid, init_exit.exit_status),
        (id.clone(), pid, 137)
    );

    client
        .shutdown(ShutdownRequest { id, now: false })
        .await
        .unwrap();
    events_server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_entrypoint_is_a_clear_error_and_the_fifo_reader_does_not_hang() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("noentry", |id| spec_running(id, &["/no/such/binary"]));
    let _guard = fixture.start_shim();
    let shim_pid = fixture.shim_pid().unwrap();
    let mut client = connect(&fixture.socket).await;
    let stdout = fixture.fifo("stdout");
    let stderr = fixture.fifo("stderr");
    let out_reader = read_fifo(&stdout);
    let err_reader = read_fifo(&stderr);
    let mut request = fixture.create_request();
    request.stdout = stdout.display().to_string();
    request.stderr = stderr.display().to_string();
    let error = client.create(request).await.unwrap_err();
    assert!(
        error.message().contains("/no/such/binary"),
        "the runtime's words reach the client: {error:?}"
    );
    // Both readers see end of file instead of hanging (stderr carries runc's complaint).
    assert_eq!(
        out_reader.recv_timeout(Duration::from_secs(10)).unwrap(),
        ""
    );
    let complaint = err_reader.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        complaint.is_empty() || complaint.contains("/no/such/binary"),
        "{complaint}"
    );
    assert!(fixture.mounts_in_bundle().is_empty(), "no mount left");
    assert!(!fixture.runtime_knows_container());

    // Nothing was created, so the shim may go.
    client
        .shutdown(ShutdownRequest {
            id: fixture.id.clone(),
            now: false,
        })
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || !process_alive(
        shim_pid
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shim_is_cleaned_up_by_berth_shim_delete() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("dead", |id| spec_running(id, &["sleep", "1000"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    client.create(fixture.create_request()).await.unwrap();
    client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let init_pid = fixture.init_pid().unwrap();
    let shim_pid = fixture.shim_pid().unwrap();
    // SAFETY: kill(2) on the shim this test started.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };
    assert!(eventually(Duration::from_secs(10), || !process_alive(
        shim_pid
    )));
    assert!(process_alive(init_pid), "the container outlives its shim");

    let output = fixture.run_delete();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // The init had not exited, so nothing was recorded: the synthetic status.
    assert_eq!(reply["pid"], 0);
    assert_eq!(reply["exit_status"], 255);
    assert!(reply["exited_at"].as_str().unwrap().ends_with('Z'));
    assert!(eventually(Duration::from_secs(10), || !process_alive(
        init_pid
    )));
    assert!(!fixture.bundle.exists(), "bundle removed");
    assert!(
        mounts_under(fixture.dir.path()).is_empty(),
        "no mounts left"
    );
    assert!(!fixture.runtime_knows_container(), "runtime state gone");
    assert!(!fixture.socket.exists(), "socket removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_a_shim_died_reports_the_recorded_exit() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("recorded", |id| spec_running(id, &["sh", "-c", "exit 7"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let pid = client
        .create(fixture.create_request())
        .await
        .unwrap()
        .into_inner()
        .pid;
    client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    client
        .wait(WaitRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let shim_pid = fixture.shim_pid().unwrap();
    // SAFETY: kill(2) on the shim this test started.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };
    assert!(eventually(Duration::from_secs(10), || !process_alive(
        shim_pid
    )));

    let output = fixture.run_delete();
    assert!(output.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (reply["pid"].as_u64(), reply["exit_status"].as_u64()),
        (Some(pid as u64), Some(7))
    );
    assert!(!fixture.bundle.exists());
    assert!(mounts_under(fixture.dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_berthd_that_starts_late() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("late", |id| spec_running(id, &["true"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    client.create(fixture.create_request()).await.unwrap();
    client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    client
        .wait(WaitRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    client
        .delete(DeleteRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    // The task API never waited for berthd; now it comes up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (events, server) = serve_events(&fixture.publish_address);
    let topics = wait_for_events(&events, 4).await;
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_idempotent_and_refuses_bad_input_clearly() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("again", |id| spec_running(id, &["true"]));
    let _guard = fixture.start_shim();
    let first_pid = fixture.shim_pid().unwrap();
    let again = fixture.run_start(&[]);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        fixture.socket.display().to_string()
    );
    assert_eq!(fixture.shim_pid(), Some(first_pid), "no second shim");

    let bad = std::process::Command::new(SHIM)
        .args(["start", "--namespace", "bad/ns", "--id", "x"])
        .args(["--bundle", "/nonexistent", "--socket", "/tmp/x.sock"])
        .args([
            "--publish-address",
            "/tmp/y.sock",
            "--runtime-root",
            "/tmp/r",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("namespace"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The socket and its directory are private.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fixture.socket), 0o600);
    assert_eq!(mode(fixture.socket.parent().unwrap()), 0o700);
    let log = std::fs::read_to_string(fixture.bundle.join("shim.log")).unwrap();
    assert!(
        log.contains(&format!("ns={NAMESPACE} id={}", fixture.id)),
        "{log}"
    );
}

/// runc's own view of the container, from `runc state`.
fn runc_status(fixture: &Fixture) -> String {
    let output = std::process::Command::new("runc")
        .arg("--root")
        .arg(&fixture.runtime_root)
        .args(["state", &fixture.id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    state["status"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_runc_start_leaves_runc_seeing_a_running_container() {
    if !can_run_containers() {
        return;
    }
    // The default runtime (plain runc, no hooks): the shim releases the init itself.
    let fixture = Fixture::new("fifo-start", |id| spec_running(id, &["sleep", "30"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    client.create(fixture.create_request()).await.unwrap();
    assert_eq!(runc_status(&fixture), "created");
    let id = fixture.id.clone();
    let start = StartRequest {
        id: id.clone(),
        exec_id: String::new(),
    };
    let pid = client.start(start.clone()).await.unwrap().into_inner().pid;
    assert_eq!(runc_status(&fixture), "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "sleep",
        "the init exec'd the container's process"
    );
    let again = client.start(start).await.unwrap_err();
    assert!(again.message().contains("already started"), "{again:?}");

    // runc itself still drives the running container: exec and kill work through it.
    client
        .exec(ExecProcessRequest {
            id: id.clone(),
            exec_id: "e1".into(),
            spec: Some(process_spec(&["true"])),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .start(StartRequest {
            id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap();
    client
        .kill(KillRequest {
            id: id.clone(),
            signal: SIGKILL,
            ..Default::default()
        })
        .await
        .unwrap();
    let exit = client
        .wait(WaitRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_status, 128 + SIGKILL);
    client
        .delete(DeleteRequest {
            id,
            exec_id: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_created_task_whose_init_was_killed_fails_clearly() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("dead-init", |id| spec_running(id, &["sleep", "30"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let pid = client
        .create(fixture.create_request())
        .await
        .unwrap()
        .into_inner()
        .pid;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !process_alive(
        pid as i32
    )));
    let failed = tokio::time::timeout(
        Duration::from_secs(10),
        client.start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        }),
    )
    .await
    .expect("start of a dead init must not hang")
    .unwrap_err();
    assert!(
        failed.message().contains("not running") || failed.message().contains("exited"),
        "{failed:?}"
    );
    client
        .delete(DeleteRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    assert!(fixture.mounts_in_bundle().is_empty());
}
