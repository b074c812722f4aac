//! The Tasks service on a real daemon (temporary root and state): requests that must be
//! refused before any shim runs, a create whose shim cannot start leaving nothing behind,
//! and the conversions between shim replies and the wire.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use berth_shim::client::ExitInfo;
use tonic::Code;

use super::*;
use crate::config::{FileConfig, Flags, Settings};
use crate::metadata::Labels;
use crate::services::test_support::request;

/// A daemon on a temporary root whose shim binary is `shim_binary`.
struct Fixture {
    service: TasksService,
    daemon: Arc<Daemon>,
    _dir: tempfile::TempDir,
}

fn fixture(shim_binary: &Path) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::merge(
        Flags {
            root: Some(dir.path().join("root")),
            state: Some(dir.path().join("state")),
            address: Some(dir.path().join("state/berthd.sock")),
            shim_binary: Some(shim_binary.to_path_buf()),
            ..Flags::default()
        },
        FileConfig::default(),
    );
    let daemon = Daemon::open(settings).unwrap();
    // Nothing to recover on a fresh state directory.
    daemon.tasks.open_for_requests();
    Fixture {
        service: TasksService {
            daemon: daemon.clone(),
        },
        daemon,
        _dir: dir,
    }
}

fn container(id: &str, runtime: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        labels: Labels::new(),
        image: "localhost/busybox:latest".into(),
        runtime: RuntimeRecord {
            name: runtime.into(),
            options: None,
        },
        spec: AnyRecord {
            type_url: type_urls::OCI_SPEC.into(),
            value:
                br#"{"ociVersion":"1.0.2","process":{"args":["true"]},"root":{"path":"rootfs"}}"#
                    .to_vec(),
        },
        snapshotter: String::new(),
        snapshot_key: String::new(),
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
        extensions: Default::default(),
        sandbox: String::new(),
    }
}

async fn store(daemon: &Daemon, ns: &str, record: &ContainerRecord) {
    daemon
        .meta
        .write(|_, batch| batch.put(Kind::Container, ns, &record.id, record))
        .await
        .unwrap();
}

fn create_request(id: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        container_id: id.into(),
        ..CreateTaskRequest::default()
    }
}

#[tokio::test]
async fn a_task_for_a_missing_container_is_not_found() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    let err = f
        .service
        .create(request("default", create_request("ghost")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("container ghost"), "{err:?}");
}

#[tokio::test]
async fn a_container_of_another_runtime_is_refused_before_anything_is_written() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    store(
        &f.daemon,
        "default",
        &container("k1", "io.containerd.kata.v2"),
    )
    .await;
    let err = f
        .service
        .create(request("default", create_request("k1")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("io.containerd.kata.v2"), "{err:?}");
    assert!(!f.daemon.settings.state.join("tasks/default/k1").exists());
}

#[tokio::test]
async fn a_shim_that_cannot_start_leaves_no_bundle_and_frees_the_id() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    store(
        &f.daemon,
        "default",
        &container("c1", "io.containerd.runc.v1"),
    )
    .await;
    for _ in 0..2 {
        // The second attempt meets the same error, not "already exists".
        let err = f
            .service
            .create(request("default", create_request("c1")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("/nonexistent/berth-shim"), "{err:?}");
        assert!(!f.daemon.settings.state.join("tasks/default/c1").exists());
    }
    let err = f
        .service
        .get(request(
            "default",
            GetRequest {
                container_id: "c1".into(),
                exec_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_spec_that_is_not_an_oci_json_document_is_refused() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    let mut record = container("c2", "io.containerd.runc.v2");
    record.spec.value = b"not json".to_vec();
    store(&f.daemon, "default", &record).await;
    let err = f
        .service
        .create(request("default", create_request("c2")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not valid JSON"), "{err:?}");
}

#[tokio::test]
async fn calls_on_a_task_that_does_not_exist_are_not_found() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    let s = &f.service;
    let id = || "nope".to_string();
    let codes = [
        s.start(request(
            "default",
            StartRequest {
                container_id: id(),
                exec_id: String::new(),
            },
        ))
        .await
        .unwrap_err()
        .code(),
        s.kill(request(
            "default",
            KillRequest {
                container_id: id(),
                signal: 9,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err()
        .code(),
        s.wait(request(
            "default",
            WaitRequest {
                container_id: id(),
                exec_id: String::new(),
            },
        ))
        .await
        .unwrap_err()
        .code(),
        s.delete(request("default", DeleteTaskRequest { container_id: id() }))
            .await
            .unwrap_err()
            .code(),
        s.pause(request("default", PauseTaskRequest { container_id: id() }))
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::NotFound; 5]);
    let listed = s
        .list(request("default", ListTasksRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tasks.is_empty());
}

#[tokio::test]
async fn bad_ids_and_checkpoints_are_refused_clearly() {
    let f = fixture(Path::new("/nonexistent/berth-shim"));
    let err = f
        .service
        .create(request("default", create_request("../etc")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = f
        .service
        .exec(request(
            "default",
            ExecProcessRequest {
                container_id: "c1".into(),
                exec_id: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = f
        .service
        .checkpoint(request("default", CheckpointTaskRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("checkpoint"), "{err:?}");
}

#[test]
fn the_init_process_is_named_by_its_container_and_an_exec_by_its_exec_id() {
    let state = shim::StateResponse {
        id: "web".into(),
        pid: 42,
        status: ProcessStatus::Running as i32,
        stdout: "/run/fifo-out".into(),
        terminal: true,
        ..Default::default()
    };
    let init = process_from_state("web", "", state.clone());
    assert_eq!(
        (init.container_id.as_str(), init.id.as_str()),
        ("web", "web")
    );
    assert_eq!((init.pid, init.status()), (42, ProcessStatus::Running));
    assert_eq!(init.stdout, "/run/fifo-out");
    assert!(init.terminal);
    let exec = process_from_state("web", "e1", state);
    assert_eq!(
        (exec.container_id.as_str(), exec.id.as_str()),
        ("web", "e1")
    );
}

#[test]
fn a_task_whose_shim_died_is_stopped_with_its_recorded_exit() {
    let exited = ExitedTask {
        namespace: "default".into(),
        id: "web".into(),
        exit: ExitInfo {
            pid: 7,
            exit_status: 137,
            exited_at: UNIX_EPOCH + Duration::from_secs(100),
        },
    };
    let p = process_from_exit(&exited);
    assert_eq!(p.status(), ProcessStatus::Stopped);
    assert_eq!((p.pid, p.exit_status), (7, 137));
    assert_eq!(p.exited_at.unwrap().seconds, 100);
    assert_eq!(exited_process(&exited, "").unwrap(), p);
    let err = exited_process(&exited, "e1").unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[test]
fn request_options_win_over_the_containers() {
    let container = RuntimeRecord {
        name: "io.containerd.runc.v2".into(),
        options: Some(AnyRecord {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![1],
        }),
    };
    let requested = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![2],
    };
    assert_eq!(
        runtime_options(Some(requested.clone()), &container),
        Some(requested)
    );
    assert_eq!(
        runtime_options(None, &container).map(|any| any.value),
        Some(vec![1])
    );
    // An empty Any is no options at all.
    assert_eq!(
        runtime_options(Some(Any::default()), &container).map(|any| any.value),
        Some(vec![1])
    );
    let none = RuntimeRecord::default();
    assert_eq!(runtime_options(None, &none), None);
}

#[test]
fn the_spec_goes_to_the_bundle_byte_for_byte() {
    let spec = AnyRecord {
        type_url: type_urls::OCI_SPEC.into(),
        value: b"{ \"ociVersion\" : \"1.0.2\" }".to_vec(),
    };
    assert_eq!(spec_json("c", &spec).unwrap(), spec.value);
    let wrong_type = AnyRecord {
        type_url: "containerd.runc.v1.Options".into(),
        value: spec.value.clone(),
    };
    assert_eq!(
        spec_json("c", &wrong_type).unwrap_err().code(),
        Code::InvalidArgument
    );
    let not_object = AnyRecord {
        type_url: type_urls::OCI_SPEC.into(),
        value: b"[1]".to_vec(),
    };
    assert_eq!(
        spec_json("c", &not_object).unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[test]
fn list_filters_see_id_pid_and_status() {
    let p = Process {
        container_id: "web".into(),
        id: "web".into(),
        pid: 42,
        status: ProcessStatus::Running as i32,
        ..Default::default()
    };
    let fields = ProcessFields(&p);
    for (filter, expected) in [
        ("id==web", true),
        ("id==db", false),
        ("container_id==web,pid==42", true),
        ("status==running", true),
        ("status==stopped", false),
    ] {
        let parsed = Filter::parse(&[filter]).unwrap();
        assert_eq!(parsed.matches(&fields), expected, "{filter}");
    }
}
