//! Stdio kinds, terminals, descriptor hygiene and the choice of runtime binary, end to end
//! through the real shim (root only).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_proto::containerd::runc::v1::Options;
use berth_proto::containerd::task::v2::task_client::TaskClient;
use berth_proto::containerd::task::v2::{
    CreateTaskRequest, DeleteRequest, ResizePtyRequest, ShutdownRequest, StartRequest, WaitRequest,
};
use berth_runtime::spec::with_tty;
use common::*;
use tonic::transport::Channel;

/// Creates, starts, waits for and deletes the task; returns its exit status.
async fn run_to_completion(client: &mut TaskClient<Channel>, request: CreateTaskRequest) -> u32 {
    let id = request.id.clone();
    client.create(request).await.unwrap();
    client
        .start(StartRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let status = client
        .wait(WaitRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .exit_status;
    client
        .delete(DeleteRequest {
            id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    client
        .shutdown(ShutdownRequest { id, now: false })
        .await
        .unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containers_pid_1_holds_only_its_stdio() {
    if !can_run_containers() {
        return;
    }
    // `; true` keeps the shell as PID 1 instead of exec'ing ls.
    let fixture = Fixture::new("fds", |id| {
        spec_running(id, &["sh", "-c", "ls /proc/1/fd; true"])
    });
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let stdin = fixture.fifo("stdin");
    let stdout = fixture.fifo("stdout");
    let stderr = fixture.fifo("stderr");
    let output = read_fifo(&stdout);
    let _errors = read_fifo(&stderr);
    // The client's stdin writer, opened as ctr does (it blocks until the shim reads).
    let stdin_path = stdin.clone();
    let writer =
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(stdin_path));
    let mut request = fixture.create_request();
    request.stdin = stdin.display().to_string();
    request.stdout = stdout.display().to_string();
    request.stderr = stderr.display().to_string();
    assert_eq!(run_to_completion(&mut client, request).await, 0);
    drop(writer.join().unwrap());
    assert_eq!(
        output.recv_timeout(Duration::from_secs(10)).unwrap(),
        "0\n1\n2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_comes_through_the_console_socket_to_the_stdout_fifo() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("tty", |id| {
        let mut spec = spec_running(
            id,
            &["sh", "-c", "sleep 0.5; [ -t 0 ] && [ -t 1 ] && echo tty-ok"],
        );
        with_tty(&mut spec, true);
        spec
    });
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let stdout = fixture.fifo("stdout");
    let output = read_fifo(&stdout);
    let mut request = fixture.create_request();
    request.terminal = true;
    request.stdout = stdout.display().to_string();
    client.create(request).await.unwrap();
    client
        .resize_pty(ResizePtyRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
            width: 120,
            height: 40,
        })
        .await
        .unwrap();
    client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let status = client
        .wait(WaitRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .exit_status;
    assert_eq!(status, 0);
    let text = output.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(text.contains("tty-ok"), "{text:?}");
    client
        .delete(DeleteRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(fixture.socket.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the shim socket, no console socket: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_binary_uris_receive_the_output() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("uris", |id| {
        spec_running(id, &["sh", "-c", "echo to-out; echo to-err >&2"])
    });
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let log = fixture.dir.path().join("logs/out.log");
    let mut request = fixture.create_request();
    request.stdout = format!("file://{}", log.display());
    request.stderr = request.stdout.clone();
    assert_eq!(run_to_completion(&mut client, request).await, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("to-out") && text.contains("to-err"),
        "{text:?}"
    );

    // A logging binary: reads fd 3 (stdout) and 4 (stderr), closes fd 5 when ready.
    let second = Fixture::new("logger", |id| {
        spec_running(id, &["sh", "-c", "echo to-out; echo to-err >&2"])
    });
    let _second_guard = second.start_shim();
    let mut client = connect(&second.socket).await;
    let logged = second.dir.path().join("logged");
    let logger = second.dir.path().join("logger.sh");
    std::fs::write(
        &logger,
        format!(
            "#!/bin/sh\nexec 5>&-\n{{ echo \"$CONTAINER_NAMESPACE $CONTAINER_ID $1=$2\"; cat <&3; cat <&4; }} > {0}.tmp\nmv {0}.tmp {0}\n",
            logged.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut request = second.create_request();
    request.stdout = format!("binary://{}?tag=web", logger.display());
    request.stderr = request.stdout.clone();
    assert_eq!(run_to_completion(&mut client, request).await, 0);
    assert!(eventually(Duration::from_secs(10), || logged.exists()));
    assert_eq!(
        std::fs::read_to_string(&logged).unwrap(),
        format!("{NAMESPACE} {} tag=web\nto-out\nto-err\n", second.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_runtime_binary_is_used_and_a_missing_one_is_a_clear_error() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("wrapped", |id| spec_running(id, &["true"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let calls = fixture.dir.path().join("calls.log");
    let wrapper = fixture.dir.path().join("runc-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec runc \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut request = fixture.create_request();
    request.options = Some(berth_proto::any::pack(&Options {
        binary_name: wrapper.display().to_string(),
        ..Options::default()
    }));
    assert_eq!(run_to_completion(&mut client, request).await, 0);
    // The runtime's delete of an exited container runs just after the Delete reply.
    let logged_delete = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .any(|line| line.contains(" delete "))
    };
    eventually(Duration::from_secs(10), logged_delete);
    let calls = std::fs::read_to_string(&calls).unwrap();
    for subcommand in ["create", "start", "delete"] {
        assert!(
            calls
                .lines()
                .any(|line| line.contains(&format!(" {subcommand} "))),
            "no {subcommand} in {calls}"
        );
    }

    let missing = Fixture::new("nobinary", |id| spec_running(id, &["true"]));
    let _missing_guard = missing.start_shim();
    let mut client = connect(&missing.socket).await;
    let mut request = missing.create_request();
    request.options = Some(berth_proto::any::pack(&Options {
        binary_name: "/no/such/crun".into(),
        ..Options::default()
    }));
    let error = client.create(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.message().contains("/no/such/crun"), "{error:?}");
    assert!(missing.mounts_in_bundle().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_descriptor_the_shim_opens_is_close_on_exec() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("cloexec", |id| {
        let mut spec = spec_running(id, &["sleep", "1000"]);
        with_tty(&mut spec, true);
        spec
    });
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let stdin = fixture.fifo("stdin");
    let stdout = fixture.fifo("stdout");
    let _output = read_fifo(&stdout);
    let mut request = fixture.create_request();
    request.terminal = true;
    request.stdin = stdin.display().to_string();
    request.stdout = stdout.display().to_string();
    client.create(request).await.unwrap();
    client
        .start(StartRequest {
            id: fixture.id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();

    let shim = fixture.shim_pid().unwrap();
    let fd_dir = format!("/proc/{shim}/fd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fd_dir).unwrap() {
        let fd: u32 = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .parse()
            .unwrap();
        let Ok(info) = std::fs::read_to_string(format!("/proc/{shim}/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .map(|octal| u32::from_str_radix(octal.trim(), 8).unwrap())
            .unwrap();
        let target = std::fs::read_link(format!("{fd_dir}/{fd}")).unwrap_or_default();
        if fd <= 2 {
            assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
            continue;
        }
        assert!(
            flags & libc::O_CLOEXEC as u32 != 0,
            "fd {fd} ({}) of the shim is not close-on-exec",
            target.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "the shim holds its socket, log, console and fifos"
    );

    // Idle, the shim is a single thread once its blocking helpers retire.
    assert!(
        eventually(Duration::from_secs(10), || {
            std::fs::read_dir(format!("/proc/{shim}/task"))
                .unwrap()
                .count()
                == 1
        }),
        "an idle shim runs one thread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_published_as_tasks_oom() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("oom", |id| {
        // Doubling a shell variable exhausts a 16 MiB limit in a moment.
        let mut spec = spec_running(id, &["sh", "-c", "a=x; while true; do a=$a$a; done"]);
        berth_runtime::spec::with_memory_limit(&mut spec, 16 << 20);
        spec
    });
    let (events, server) = serve_events(&fixture.publish_address);
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    let status = run_to_completion(&mut client, fixture.create_request()).await;
    assert_eq!(status, 137, "the OOM killer's SIGKILL");
    let topics = wait_for_events(&events, 5).await;
    let oom = topics
        .iter()
        .position(|t| t == "/tasks/oom")
        .unwrap_or_else(|| panic!("no /tasks/oom in {topics:?}"));
    let start = topics.iter().position(|t| t == "/tasks/start").unwrap();
    assert!(start < oom, "{topics:?}");
    let received = events.received.lock().unwrap()[oom].clone();
    assert_eq!(received.type_url, "containerd.events.TaskOOM");
    let event: berth_proto::containerd::events::TaskOom =
        prost::Message::decode(received.value.as_slice()).unwrap();
    assert_eq!(event.container_id, fixture.id);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rootfs_of_128_overlay_layers_is_mounted_and_seen_whole() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new("layers", |id| spec_running(id, &["ls", "/layers"]));
    let _guard = fixture.start_shim();
    let mut client = connect(&fixture.socket).await;
    // The image is the bottom layer; 127 more each add one file. Their lowerdir option
    // is far longer than the one page mount(2) accepts.
    let mut lowers = Vec::new();
    for n in 1..128 {
        let layer = fixture
            .dir
            .path()
            .join(format!("layer-with-a-long-name-{n:03}"));
        std::fs::create_dir_all(layer.join("layers")).unwrap();
        std::fs::write(layer.join(format!("layers/{n:03}")), "").unwrap();
        lowers.push(layer.display().to_string());
    }
    lowers.reverse();
    lowers.push(fixture.image.display().to_string());
    let mut request = fixture.create_request();
    let upper = fixture.dir.path().join("upper");
    let work = fixture.dir.path().join("work");
    request.rootfs[0].options = vec![
        format!("lowerdir={}", lowers.join(":")),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
    ];
    assert!(request.rootfs[0].options[0].len() > 4096);
    let stdout = fixture.fifo("stdout");
    let listing = read_fifo(&stdout);
    request.stdout = stdout.display().to_string();
    assert_eq!(run_to_completion(&mut client, request).await, 0);
    let listing = listing.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(listing.lines().count(), 127, "{listing}");
    assert!(fixture.mounts_in_bundle().is_empty());
}
