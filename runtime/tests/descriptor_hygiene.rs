//! No descriptor of the caller leaks into the runtime or the container (CVE-2024-21626):
//! the container's PID 1 holds only its stdio, even when the calling process has a
//! descriptor without close-on-exec. Root only for the container half.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use berth_runtime::{CreateOpts, Runtime, RuntimeConfig, Status};
use common::{can_run_containers, pipe, read_to_end, unique_id, wait_for_status, Fixture};

/// Opens /dev/null at a descriptor >= 100 WITHOUT close-on-exec, as a careless library might.
fn leaked_descriptor() -> OwnedFd {
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: F_DUPFD on a valid descriptor returns a new descriptor that nothing else owns.
    let raw = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 100) };
    assert!(raw >= 100);
    // SAFETY: `raw` was just created above and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

#[test]
fn the_runtime_process_inherits_only_its_stdio() {
    let leaked = leaked_descriptor();
    let dir = tempfile::tempdir().unwrap();
    let listing = dir.path().join("fds.txt");
    // A stand-in runtime that records which descriptors it was started with.
    let fake = dir.path().join("fake-runtime");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nls /proc/$$/fd > {}\n", listing.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        binary: fake,
        ..RuntimeConfig::new(dir.path().join("root"))
    })
    .unwrap();
    runtime.start("anything").unwrap();

    let fds: Vec<String> = std::fs::read_to_string(&listing)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(fds.contains(&"1".to_string()), "{fds:?}");
    assert!(
        !fds.contains(&leaked.as_raw_fd().to_string()),
        "descriptor {} leaked into the runtime: {fds:?}",
        leaked.as_raw_fd()
    );
}

#[test]
fn the_containers_init_holds_only_its_stdio() {
    if !can_run_containers() {
        return;
    }
    let _leaked = leaked_descriptor();
    let fixture = Fixture::new();
    let id = unique_id("fds");
    // `; true` keeps the shell as PID 1 instead of exec'ing ls.
    let spec = fixture.spec(&id, &["sh", "-c", "ls /proc/1/fd; true"]);
    let bundle = fixture.bundle(&id, &spec);
    let _guard = fixture.guard(&id);
    let (reader, writer) = pipe();
    let mut opts = CreateOpts::default();
    opts.stdio.stdout = Some(writer);
    fixture.runtime.create(&id, &bundle, &opts).unwrap();
    drop(opts);
    fixture.runtime.start(&id).unwrap();
    assert_eq!(read_to_end(reader), "0\n1\n2\n");
    wait_for_status(&fixture.runtime, &id, Status::Stopped);
}
