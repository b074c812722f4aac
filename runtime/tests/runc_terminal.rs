//! A container with a terminal (root only): runc sends the pty master over the console
//! socket, and the container's output comes back through it.

mod common;

use std::io::Read;
use std::time::Duration;

use berth_runtime::spec::with_tty;
use berth_runtime::{ConsoleSocket, CreateOpts, Status};
use common::{can_run_containers, unique_id, wait_for_status, Fixture};

#[test]
fn a_terminal_comes_through_the_console_socket() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let id = unique_id("tty");
    let mut spec = fixture.spec(&id, &["sh", "-c", "[ -t 1 ] && echo hello-from-a-tty"]);
    with_tty(&mut spec, true);
    let bundle = fixture.bundle(&id, &spec);
    let _guard = fixture.guard(&id);

    let socket_path = fixture.dir.path().join("console.sock");
    let console = ConsoleSocket::bind(&socket_path).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let opts = CreateOpts {
        console_socket: Some(console.path().to_path_buf()),
        ..CreateOpts::default()
    };
    fixture.runtime.create(&id, &bundle, &opts).unwrap();
    let master = console.receive_pty_master(Duration::from_secs(10)).unwrap();
    let flags = rustix::io::fcntl_getfd(&master).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));

    fixture.runtime.start(&id).unwrap();
    wait_for_status(&fixture.runtime, &id, Status::Stopped);
    // Once the container is gone, reading the master ends with EIO after the output.
    let mut output = Vec::new();
    let mut master = std::fs::File::from(master);
    let mut buffer = [0u8; 4096];
    loop {
        match master.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => output.extend_from_slice(&buffer[..n]),
        }
    }
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("hello-from-a-tty"), "{output:?}");

    drop(console);
    assert!(
        !socket_path.exists(),
        "the socket file is removed with the ConsoleSocket"
    );
    fixture.runtime.delete(&id, false).unwrap();
}

#[test]
fn waiting_for_a_runtime_that_never_connects_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let console = ConsoleSocket::bind(&dir.path().join("console.sock")).unwrap();
    let err = console
        .receive_pty_master(Duration::from_millis(50))
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}
