//! Launch and cleanup against stand-in `berth-shim` scripts: the real command lines go
//! out, and what the scripts print (or fail with) comes back as typed results.

use std::os::unix::fs::PermissionsExt;
use std::time::{Instant, UNIX_EPOCH};

use super::*;

/// Serialises writing and running the scripts: exec of a file that another thread's fork
/// still holds open for writing fails with "text file busy".
static SCRIPTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes an executable shell script `name` with `body` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn start_args(dir: &Path, shim_binary: PathBuf) -> StartArgs {
    StartArgs {
        shim_binary,
        namespace: "default".into(),
        id: "t1".into(),
        bundle: dir.join("bundle"),
        socket: dir.join("s/abc.sock"),
        publish_address: dir.join("berthd.sock"),
        runtime_root: dir.join("runc/default"),
        runtime_binary: None,
        log_level: Some("debug".into()),
    }
}

fn delete_args(dir: &Path, shim_binary: PathBuf) -> DeleteArgs {
    DeleteArgs {
        shim_binary,
        namespace: "default".into(),
        id: "t1".into(),
        bundle: dir.join("bundle"),
        runtime_root: dir.join("runc/default"),
        runtime_binary: Some("/usr/bin/crun".into()),
    }
}

/// Kills a process left behind by a script, even if the test fails.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[tokio::test]
async fn launch_sends_the_agreed_command_line_and_returns_the_printed_socket() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("argv");
    let shim = script(
        dir.path(),
        "berth-shim",
        &format!("printf '%s\\n' \"$@\" > {}\necho \"$9\"", seen.display()),
    );
    let args = start_args(dir.path(), shim);
    let address = launch(&args).await.unwrap();
    assert_eq!(address.socket, args.socket);
    let argv = std::fs::read_to_string(&seen).unwrap();
    let d = dir.path().display();
    assert_eq!(
        argv,
        format!(
            "start\n--namespace\ndefault\n--id\nt1\n--bundle\n{d}/bundle\n--socket\n{d}/s/abc.sock\n\
             --publish-address\n{d}/berthd.sock\n--runtime-root\n{d}/runc/default\n\
             --log-level\ndebug\n"
        )
    );
}

#[tokio::test]
async fn launch_reports_the_shims_own_error_message() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let shim = script(
        dir.path(),
        "berth-shim",
        "echo 'bundle has no config.json' >&2\nexit 3",
    );
    let err = launch(&start_args(dir.path(), shim)).await.unwrap_err();
    match &err {
        ClientError::CommandFailed {
            command,
            message,
            status,
        } => {
            assert_eq!(*command, "start");
            assert_eq!(message, "bundle has no config.json");
            assert!(status.contains('3'), "{status}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn launch_refuses_a_reply_that_is_not_a_socket_path() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let shim = script(dir.path(), "berth-shim", "echo 'listening'");
    let err = launch(&start_args(dir.path(), shim)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::BadReply {
                command: "start",
                ..
            }
        ),
        "{err:?}"
    );
    let silent = script(dir.path(), "silent-shim", "exit 0");
    let err = launch(&start_args(dir.path(), silent)).await.unwrap_err();
    assert!(err.to_string().contains("no socket path"), "{err}");
}

#[tokio::test]
async fn a_missing_shim_binary_is_a_spawn_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-berth-shim");
    let err = launch(&start_args(dir.path(), missing.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Spawn { binary, .. } if *binary == missing),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_daemon_left_holding_the_output_does_not_hold_up_launch() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("daemon.pid");
    // The "daemon" keeps the inherited stdout and stderr open for a long time.
    let shim = script(
        dir.path(),
        "berth-shim",
        &format!(
            "sleep 60 &\necho $! > {}\necho /run/x.sock",
            pid_file.display()
        ),
    );
    let started = Instant::now();
    let address = launch(&start_args(dir.path(), shim)).await;
    let _daemon = KillOnDrop(
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok()),
    );
    assert_eq!(address.unwrap().socket, PathBuf::from("/run/x.sock"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_socket_path_too_long_is_refused_before_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = start_args(dir.path(), dir.path().join("never-run"));
    args.socket = PathBuf::from(format!("/{}.sock", "x".repeat(120)));
    let err = launch(&args).await.unwrap_err();
    assert!(
        matches!(err, ClientError::SocketPathTooLong { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn cleanup_dead_returns_the_recorded_exit() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("argv");
    let shim = script(
        dir.path(),
        "berth-shim",
        &format!(
            "printf '%s ' \"$@\" > {}\necho 'runc: container not found' >&2\n\
             echo '{{\"pid\":77,\"exit_status\":3,\"exited_at\":\"1970-01-01T00:01:40Z\"}}'",
            seen.display()
        ),
    );
    let exit = cleanup_dead(&delete_args(dir.path(), shim)).await.unwrap();
    assert_eq!(
        exit,
        ExitInfo {
            pid: 77,
            exit_status: 3,
            exited_at: UNIX_EPOCH + Duration::from_secs(100),
        }
    );
    let d = dir.path().display();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!(
            "delete --namespace default --id t1 --bundle {d}/bundle --runtime-root \
             {d}/runc/default --runtime-binary /usr/bin/crun "
        )
    );
}

#[tokio::test]
async fn cleanup_dead_failures_are_typed() {
    let _lock = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let failing = script(
        dir.path(),
        "failing",
        "echo 'cannot remove bundle' >&2\nexit 1",
    );
    let err = cleanup_dead(&delete_args(dir.path(), failing))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot remove bundle"), "{err}");
    let garbled = script(dir.path(), "garbled", "echo '{\"pid\":1}'");
    let err = cleanup_dead(&delete_args(dir.path(), garbled))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::BadReply {
                command: "delete",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_command_past_its_limit_is_killed_and_reported() {
    let started = Instant::now();
    let err = command::run(
        "delete",
        Path::new("/bin/sleep"),
        vec!["30".into()],
        Duration::from_millis(200),
    )
    .await
    .err()
    .expect("sleep 30 cannot finish in 200 ms");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                command: "delete",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
