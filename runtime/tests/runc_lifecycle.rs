//! A container's whole life under the real runc (root only): create, start, state, ps, pause,
//! resume, stats, update, exec, kill, delete, with stdio passed through.

mod common;

use std::io::Write;

use berth_runtime::oci_spec::runtime::LinuxResources;
use berth_runtime::{
    read_pid_file, write_json_atomically, write_process_json, CreateOpts, Error, ExecOpts, Status,
    Stdio,
};
use common::{can_run_containers, pipe, read_to_end, unique_id, wait_for_status, Fixture};

#[test]
fn create_start_ps_pause_resume_stats_update_kill_delete() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let runtime = &fixture.runtime;
    let id = unique_id("life");
    let spec = fixture.spec(&id, &["sleep", "1000"]);
    let bundle = fixture.bundle(&id, &spec);
    let _guard = fixture.guard(&id);

    let pid_file = fixture.dir.path().join("init.pid");
    let opts = CreateOpts {
        pid_file: Some(pid_file.clone()),
        ..CreateOpts::default()
    };
    runtime.create(&id, &bundle, &opts).unwrap();
    let pid = read_pid_file(&pid_file).unwrap();
    let state = runtime.state(&id).unwrap();
    assert_eq!(state.status, Status::Created);
    assert_eq!((state.id.as_str(), state.pid), (id.as_str(), pid));
    assert_eq!(state.bundle, bundle);
    assert!(!state.created.is_empty());

    runtime.start(&id).unwrap();
    assert_eq!(runtime.state(&id).unwrap().status, Status::Running);
    assert!(runtime.ps(&id).unwrap().contains(&pid));

    runtime.pause(&id).unwrap();
    assert_eq!(runtime.state(&id).unwrap().status, Status::Paused);
    runtime.resume(&id).unwrap();
    assert_eq!(runtime.state(&id).unwrap().status, Status::Running);

    let stats = runtime.stats(&id).unwrap();
    assert!(stats.pids.current >= 1, "{stats:?}");
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert!(stats.cpu.usage.total > 0, "{stats:?}");

    let resources: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":50}}"#).unwrap();
    let resources_path = fixture.dir.path().join("resources.json");
    write_json_atomically(&resources_path, &resources).unwrap();
    runtime.update(&id, &resources_path).unwrap();
    assert_eq!(runtime.stats(&id).unwrap().pids.limit, 50);

    // A detached exec whose output comes back through the stdio we gave it.
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec!["sh".into(), "-c".into(), "echo exec-out".into()]));
    let process_path = fixture.dir.path().join("exec.json");
    write_process_json(&process_path, &process).unwrap();
    let (reader, writer) = pipe();
    let exec_pid_file = fixture.dir.path().join("exec.pid");
    let mut exec = ExecOpts::new(&process_path);
    exec.pid_file = Some(exec_pid_file.clone());
    exec.stdio.stdout = Some(writer);
    runtime.exec(&id, &exec).unwrap();
    drop(exec);
    assert!(read_pid_file(&exec_pid_file).unwrap() > 0);
    assert_eq!(read_to_end(reader), "exec-out\n");

    // A non-detached exec reports the process's exit code.
    process.set_args(Some(vec!["sh".into(), "-c".into(), "exit 3".into()]));
    write_process_json(&process_path, &process).unwrap();
    let mut exec = ExecOpts::new(&process_path);
    exec.detach = false;
    match runtime.exec(&id, &exec) {
        Err(Error::Failed { code: Some(3), .. }) => {}
        other => panic!("expected exit code 3, got {other:?}"),
    }

    runtime.kill(&id, libc::SIGKILL, false).unwrap();
    let state = wait_for_status(runtime, &id, Status::Stopped);
    assert_eq!(state.pid, 0);
    let not_running =
        |result: berth_runtime::Result<()>| matches!(result, Err(Error::NotRunning { .. }));
    assert!(not_running(runtime.kill(&id, libc::SIGTERM, false)));
    assert!(not_running(runtime.pause(&id)));
    assert!(not_running(runtime.start(&id)));
    runtime.delete(&id, false).unwrap();
    assert!(matches!(runtime.state(&id), Err(Error::NotFound { .. })));
}

#[test]
fn echo_hello_goes_through_the_stdio_fds() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let id = unique_id("echo");
    let spec = fixture.spec(
        &id,
        &["sh", "-c", "read name; echo hello $name; echo oops >&2"],
    );
    let bundle = fixture.bundle(&id, &spec);
    let _guard = fixture.guard(&id);

    let (stdin_reader, stdin_writer) = pipe();
    let (stdout_reader, stdout_writer) = pipe();
    let (stderr_reader, stderr_writer) = pipe();
    let opts = CreateOpts {
        stdio: Stdio {
            stdin: Some(stdin_reader),
            stdout: Some(stdout_writer),
            stderr: Some(stderr_writer),
        },
        ..CreateOpts::default()
    };
    fixture.runtime.create(&id, &bundle, &opts).unwrap();
    // Only the container may hold the other ends now, so end of file means it exited.
    drop(opts);
    fixture.runtime.start(&id).unwrap();
    std::fs::File::from(stdin_writer)
        .write_all(b"world\n")
        .unwrap();

    assert_eq!(read_to_end(stdout_reader), "hello world\n");
    assert_eq!(read_to_end(stderr_reader), "oops\n");
    wait_for_status(&fixture.runtime, &id, Status::Stopped);
    fixture.runtime.delete(&id, false).unwrap();
}

#[test]
fn kill_all_stops_every_process() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let id = unique_id("kill-all");
    let spec = fixture.spec(&id, &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let bundle = fixture.bundle(&id, &spec);
    let _guard = fixture.guard(&id);
    fixture
        .runtime
        .create(&id, &bundle, &CreateOpts::default())
        .unwrap();
    fixture.runtime.start(&id).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fixture.runtime.ps(&id).unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "children never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fixture.runtime.kill(&id, libc::SIGKILL, true).unwrap();
    wait_for_status(&fixture.runtime, &id, Status::Stopped);
    fixture.runtime.delete(&id, false).unwrap();
}

#[test]
fn version_names_runc() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let version = fixture.runtime.version().unwrap();
    assert_eq!(version.runtime, "runc");
    assert!(version.version.starts_with(char::is_numeric), "{version:?}");
}
