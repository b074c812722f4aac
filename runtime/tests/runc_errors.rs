//! Failures under the real runtimes (root only): each is a typed error carrying the runtime's
//! own words, and leaves nothing behind.

mod common;

use berth_runtime::{CreateOpts, Error, ExecOpts, Runtime, RuntimeConfig, Status};
use common::{can_run_containers, unique_id, wait_for_status, Fixture};

#[test]
fn a_missing_binary_is_reported_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for binary in ["/no/such/runc", "berth-no-such-runtime"] {
        let err = Runtime::new(RuntimeConfig {
            binary: binary.into(),
            ..RuntimeConfig::new(dir.path().join("root"))
        })
        .unwrap_err();
        match err {
            Error::MissingBinary { binary: reported } => {
                assert_eq!(reported.to_str(), Some(binary))
            }
            other => panic!("{binary}: {other:?}"),
        }
    }
}

#[test]
fn an_unknown_container_is_not_found() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let runtime = &fixture.runtime;
    let id = unique_id("ghost");
    let not_found = |result: berth_runtime::Result<()>| matches!(result, Err(Error::NotFound { id: ref reported }) if *reported == id);
    assert!(not_found(runtime.state(&id).map(drop)));
    assert!(not_found(runtime.start(&id)));
    assert!(not_found(runtime.kill(&id, libc::SIGTERM, false)));
    assert!(not_found(runtime.pause(&id)));
    assert!(not_found(runtime.resume(&id)));
    assert!(not_found(runtime.ps(&id).map(drop)));
    assert!(not_found(runtime.stats(&id).map(drop)));
    assert!(not_found(runtime.delete(&id, false)));
    let process = fixture.dir.path().join("process.json");
    std::fs::write(&process, "{}").unwrap();
    assert!(not_found(runtime.exec(&id, &ExecOpts::new(&process))));
    // Forced delete of what is not there is a success: cleanup is idempotent.
    runtime.delete(&id, true).unwrap();
}

#[test]
fn a_second_create_with_the_same_id_already_exists() {
    if !can_run_containers() {
        return;
    }
    let fixture = Fixture::new();
    let id = unique_id("twice");
    let bundle = fixture.bundle(&id, &fixture.spec(&id, &["sleep", "1000"]));
    let _guard = fixture.guard(&id);
    fixture
        .runtime
        .create(&id, &bundle, &CreateOpts::default())
        .unwrap();
    let err = fixture
        .runtime
        .create(&id, &bundle, &CreateOpts::default())
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    // The first one is untouched.
    assert_eq!(fixture.runtime.state(&id).unwrap().status, Status::Created);
}

#[test]
fn a_missing_entrypoint_fails_with_the_runtimes_words() {
    if !can_run_containers() {
        return;
    }
    // Once with the runtime's log configured, once with a temporary log per call.
    for with_log in [true, false] {
        let log_dir = tempfile::tempdir().unwrap();
        let log = with_log.then(|| log_dir.path().join("runtime.json"));
        let fixture = Fixture::with_config(|config| RuntimeConfig {
            log: log.clone(),
            ..config
        });
        let id = unique_id("noentry");
        let bundle = fixture.bundle(&id, &fixture.spec(&id, &["/no/such/program"]));
        let _guard = fixture.guard(&id);
        let err = fixture
            .runtime
            .create(&id, &bundle, &CreateOpts::default())
            .unwrap_err();
        match &err {
            Error::Failed {
                command,
                code,
                message,
            } => {
                assert_eq!(command, "runc create");
                assert_eq!(*code, Some(1));
                assert!(message.contains("/no/such/program"), "{message}");
                assert!(message.contains("no such file or directory"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("/no/such/program"));
        // No per-call log is left in the runtime's root.
        let leftovers: Vec<_> = std::fs::read_dir(fixture.runtime.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".log"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        if let Some(log) = log {
            let written = std::fs::read_to_string(log).unwrap();
            assert!(written.contains("/no/such/program"), "{written}");
        }
    }
}

#[test]
fn crun_reports_its_own_error_when_the_host_refuses_it() {
    if !can_run_containers() {
        return;
    }
    let Ok(fixture) = Fixture::try_with_config(|config| RuntimeConfig {
        binary: "crun".into(),
        ..config
    }) else {
        eprintln!("skipped: crun is not installed");
        return;
    };
    assert_eq!(fixture.runtime.version().unwrap().runtime, "crun");
    let id = unique_id("crun");
    let bundle = fixture.bundle(&id, &fixture.spec(&id, &["true"]));
    let _guard = fixture.guard(&id);
    match fixture.runtime.create(&id, &bundle, &CreateOpts::default()) {
        // A host whose cgroup layout crun accepts: it must then work like runc.
        Ok(()) => {
            fixture.runtime.start(&id).unwrap();
            wait_for_status(&fixture.runtime, &id, Status::Stopped);
        }
        // This machine's hybrid v1/v2 layout: crun's words, not a bare exit status.
        Err(Error::Failed {
            command, message, ..
        }) => {
            eprintln!("crun refused this host: {message}");
            assert_eq!(command, "crun create");
            assert!(message.contains("cgroup"), "{message}");
        }
        Err(other) => panic!("{other:?}"),
    }
}
