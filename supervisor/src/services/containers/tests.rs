//! Containers service tests on a real daemon (temporary root and state, real sled, real
//! overlayfs snapshots for the garbage collection check).

use std::collections::{BTreeMap, HashMap};

use berth_proto::containerd::events::{ContainerCreate, ContainerUpdate};
use futures::StreamExt;
use prost::Message;
use prost_types::{Any, FieldMask};
use tonic::Code;

use super::*;
use crate::services::test_support::{daemon, request, TestDaemon};

const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC: &str = r#"{"ociVersion":"1.1.0","process":{"args":["sh"]}}"#;

fn service(t: &TestDaemon) -> ContainersService {
    ContainersService {
        daemon: t.daemon.clone(),
    }
}

fn oci_spec(json: &str) -> Any {
    Any {
        type_url: OCI_SPEC.to_string(),
        value: json.as_bytes().to_vec(),
    }
}

fn container(id: &str, image: &str, labels: &[(&str, &str)]) -> Container {
    Container {
        id: id.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        image: image.to_string(),
        runtime: Some(container::Runtime {
            name: RUNC_V2.to_string(),
            options: None,
        }),
        spec: Some(oci_spec(SPEC)),
        snapshotter: SNAPSHOTTER.to_string(),
        snapshot_key: id.to_string(),
        created_at: None,
        updated_at: None,
        extensions: HashMap::new(),
        sandbox: String::new(),
    }
}

async fn create(svc: &ContainersService, ns: &str, c: Container) -> Result<Container, Status> {
    svc.create(request(ns, CreateContainerRequest { container: Some(c) }))
        .await
        .map(|r| r.into_inner().container.unwrap())
}

async fn get(svc: &ContainersService, ns: &str, id: &str) -> Result<Container, Status> {
    svc.get(request(ns, GetContainerRequest { id: id.into() }))
        .await
        .map(|r| r.into_inner().container.unwrap())
}

async fn update(
    svc: &ContainersService,
    ns: &str,
    c: Container,
    paths: &[&str],
) -> Result<Container, Status> {
    svc.update(request(
        ns,
        UpdateContainerRequest {
            container: Some(c),
            update_mask: (!paths.is_empty()).then(|| FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        },
    ))
    .await
    .map(|r| r.into_inner().container.unwrap())
}

async fn delete(svc: &ContainersService, ns: &str, id: &str) -> Result<(), Status> {
    svc.delete(request(ns, DeleteContainerRequest { id: id.into() }))
        .await
        .map(|_| ())
}

async fn list(svc: &ContainersService, ns: &str, filters: &[&str]) -> Vec<String> {
    let req = ListContainersRequest {
        filters: filters.iter().map(|f| f.to_string()).collect(),
    };
    svc.list(request(ns, req))
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn list_stream(svc: &ContainersService, ns: &str, filters: &[&str]) -> Vec<Container> {
    let req = ListContainersRequest {
        filters: filters.iter().map(|f| f.to_string()).collect(),
    };
    let stream = svc
        .list_stream(request(ns, req))
        .await
        .unwrap()
        .into_inner();
    stream
        .map(|m| m.unwrap().container.unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn create_then_get_returns_every_field() {
    let t = daemon();
    let svc = service(&t);
    let mut sent = container("web", "localhost/busybox:latest", &[("tier", "front")]);
    let options = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![0x52, 0x04, b'c', b'r', b'u', b'n'],
    };
    sent.runtime.as_mut().unwrap().options = Some(options.clone());
    sent.extensions.insert(
        "io.example/meta".into(),
        Any {
            type_url: "example.Meta".into(),
            value: vec![1, 2, 3],
        },
    );
    sent.sandbox = "pod1".into();
    let created = create(&svc, "ns", sent.clone()).await.unwrap();
    let got = get(&svc, "ns", "web").await.unwrap();
    assert_eq!(created, got);
    assert_eq!(got.labels, sent.labels);
    assert_eq!(got.image, "localhost/busybox:latest");
    assert_eq!(got.runtime.as_ref().unwrap().name, RUNC_V2);
    assert_eq!(got.runtime.unwrap().options, Some(options));
    assert_eq!(got.spec, Some(oci_spec(SPEC)), "spec bytes kept exactly");
    assert_eq!(
        (got.snapshotter.as_str(), got.snapshot_key.as_str()),
        (SNAPSHOTTER, "web")
    );
    assert_eq!(got.extensions, sent.extensions);
    assert_eq!(got.sandbox, "pod1");
    assert!(got.created_at.is_some());
    assert_eq!(got.created_at, got.updated_at);

    // The record the Tasks service reads holds the same.
    let record = load(&t.daemon.meta, "ns", "web").unwrap();
    assert_eq!(record.spec.value, SPEC.as_bytes());
    assert_eq!(record.id, "web");
}

#[tokio::test]
async fn create_refuses_duplicates_and_bad_input_writing_nothing() {
    let t = daemon();
    let svc = service(&t);
    create(&svc, "a", container("c1", "img", &[]))
        .await
        .unwrap();
    let dup = create(&svc, "a", container("c1", "other", &[]))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(get(&svc, "a", "c1").await.unwrap().image, "img");
    // The same id in another namespace is another container.
    create(&svc, "b", container("c1", "img", &[]))
        .await
        .unwrap();

    let mut bad: Vec<(&str, Container)> = Vec::new();
    for id in ["", "a/b", "../x", "-a", "a b"] {
        bad.push(("bad id", container(id, "img", &[])));
    }
    let mut c = container("x", "img", &[]);
    c.runtime = None;
    bad.push(("no runtime", c));
    let mut c = container("x", "img", &[]);
    c.spec = None;
    bad.push(("no spec", c));
    let mut c = container("x", "img", &[]);
    c.spec = Some(oci_spec("{not json"));
    bad.push(("spec not JSON", c));
    let mut c = container("x", "img", &[]);
    c.spec = Some(oci_spec("[1]"));
    bad.push(("spec not an object", c));
    let mut c = container("x", "img", &[]);
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_SPEC_BYTES));
    c.spec = Some(oci_spec(&big));
    bad.push(("spec too big", c));
    let mut c = container("x", "img", &[]);
    c.snapshotter = "native".into();
    bad.push(("unknown snapshotter", c));
    let mut c = container("x", "img", &[]);
    c.snapshotter.clear();
    bad.push(("key without snapshotter", c));
    let mut c = container("x", "img\nx", &[]);
    c.snapshot_key.clear();
    bad.push(("bad image name", c));
    bad.push(("empty label key", container("x", "img", &[("", "v")])));
    let mut c = container("x", "img", &[]);
    c.extensions.insert(String::new(), Any::default());
    bad.push(("empty extension name", c));
    let mut c = container("x", "img", &[]);
    c.runtime.as_mut().unwrap().options = Some(Any {
        type_url: String::new(),
        value: vec![1],
    });
    bad.push(("options without type", c));
    let mut c = container("x", "img", &[]);
    c.sandbox = "a/b".into();
    bad.push(("bad sandbox", c));
    for (why, c) in bad {
        let err = create(&svc, "a", c).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
    }
    assert_eq!(list(&svc, "a", &[]).await, ["c1"], "nothing written");

    // A container without image or rootfs is fine.
    let mut bare = container("bare", "", &[]);
    bare.snapshotter.clear();
    bare.snapshot_key.clear();
    create(&svc, "a", bare).await.unwrap();
}

#[tokio::test]
async fn list_and_list_stream_filter_alike() {
    let t = daemon();
    let svc = service(&t);
    create(&svc, "ns", container("one", "busybox", &[("env", "prod")]))
        .await
        .unwrap();
    create(&svc, "ns", container("two", "alpine", &[("a.b", "x")]))
        .await
        .unwrap();
    let mut three = container("three", "", &[]);
    three.runtime.as_mut().unwrap().name = "io.containerd.runc.v1".into();
    create(&svc, "ns", three).await.unwrap();
    create(&svc, "other", container("four", "busybox", &[]))
        .await
        .unwrap();

    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["one", "three", "two"]),
        (&["id==two"], &["two"]),
        (&["image==busybox"], &["one"]),
        (&["image"], &["one", "two"]),
        (&["runtime.name==io.containerd.runc.v1"], &["three"]),
        (&["labels.env==prod"], &["one"]),
        (&["labels.a.b==x"], &["two"]),
        (&[r#"labels."a.b""#], &["two"]),
        (&["id~=^t", "labels.env"], &["one", "three", "two"]),
        (&["id~=^t,image==alpine"], &["two"]),
        (&["image!=busybox"], &["three", "two"]),
    ];
    for (filters, want) in cases {
        assert_eq!(list(&svc, "ns", filters).await, *want, "{filters:?}");
        let streamed: Vec<String> = list_stream(&svc, "ns", filters)
            .await
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(streamed, *want, "stream {filters:?}");
    }
    // Streamed containers are whole.
    let one = &list_stream(&svc, "ns", &["id==one"]).await[0];
    assert_eq!(one, &get(&svc, "ns", "one").await.unwrap());

    let bad = svc
        .list(request(
            "ns",
            ListContainersRequest {
                filters: vec!["id==".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad = svc
        .list_stream(request(
            "ns",
            ListContainersRequest {
                filters: vec!["id~=(".into()],
            },
        ))
        .await
        .err()
        .unwrap();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn update_follows_field_paths() {
    let t = daemon();
    let svc = service(&t);
    let created = create(
        &svc,
        "ns",
        container("c", "img:1", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();

    // What `ctr containers label c c=3 a=` sends: one path per label.
    let sent = container("ignored-fields-but-id", "", &[("c", "3"), ("a", "")]);
    let sent = Container {
        id: "c".into(),
        ..sent
    };
    let got = update(&svc, "ns", sent, &["labels.c", "labels.a"])
        .await
        .unwrap();
    assert_eq!(
        got.labels,
        HashMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );
    assert_eq!(got.image, "img:1", "image untouched");
    assert_eq!(got.created_at, created.created_at);
    let at = |ts: Option<prost_types::Timestamp>| SystemTime::try_from(ts.unwrap()).unwrap();
    assert!(at(got.updated_at) > at(created.updated_at));

    // Spec, image, snapshot key and one extension.
    let mut sent = container("c", "img:2", &[]);
    sent.spec = Some(oci_spec(r#"{"ociVersion":"1.2.0"}"#));
    sent.snapshot_key = "c-new".into();
    sent.extensions.insert(
        "e".into(),
        Any {
            type_url: "t".into(),
            value: vec![9],
        },
    );
    let got = update(
        &svc,
        "ns",
        sent.clone(),
        &["spec", "image", "snapshotkey", "extensions.e"],
    )
    .await
    .unwrap();
    assert_eq!(got.spec, sent.spec);
    assert_eq!(got.image, "img:2");
    assert_eq!(got.snapshot_key, "c-new");
    assert_eq!(got.extensions, sent.extensions);
    assert_eq!(got.labels.len(), 2, "labels untouched");
    // An extension named but not sent is removed.
    let got = update(&svc, "ns", container("c", "", &[]), &["extensions.e"])
        .await
        .unwrap();
    assert!(got.extensions.is_empty());

    // Fixed fields and unknown fields are refused, and nothing changes.
    for path in [
        "runtime",
        "runtime.name",
        "snapshotter",
        "sandbox",
        "id",
        "nope",
    ] {
        let mut sent = container("c", "", &[]);
        sent.runtime.as_mut().unwrap().name = "other".into();
        sent.snapshotter.clear();
        let err = update(&svc, "ns", sent, &[path]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}");
    }
    let mut bad_spec = container("c", "", &[]);
    bad_spec.spec = Some(oci_spec("nope"));
    let err = update(&svc, "ns", bad_spec, &["spec"]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let now = get(&svc, "ns", "c").await.unwrap();
    assert_eq!(now.runtime.unwrap().name, RUNC_V2);
    assert_eq!(now.spec, sent.spec);

    let err = update(&svc, "ns", container("missing", "", &[]), &["labels"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = update(&svc, "ns", container("a/b", "", &[]), &["labels"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn update_without_mask_replaces_mutable_fields_and_guards_fixed_ones() {
    let t = daemon();
    let svc = service(&t);
    let mut first = container("c", "img:1", &[("a", "1")]);
    first.extensions.insert(
        "e".into(),
        Any {
            type_url: "t".into(),
            value: vec![],
        },
    );
    create(&svc, "ns", first).await.unwrap();

    let mut sent = container("c", "img:2", &[("z", "9")]);
    sent.spec = Some(oci_spec("{}"));
    sent.snapshot_key = "k2".into();
    let got = update(&svc, "ns", sent, &[]).await.unwrap();
    assert_eq!(got.labels, HashMap::from([("z".into(), "9".into())]));
    assert_eq!(got.image, "img:2");
    assert_eq!(got.spec, Some(oci_spec("{}")));
    assert_eq!(got.snapshot_key, "k2");
    assert!(got.extensions.is_empty());

    let mut other_runtime = container("c", "img:3", &[]);
    other_runtime.runtime.as_mut().unwrap().name = "io.containerd.runc.v1".into();
    let err = update(&svc, "ns", other_runtime, &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut other_snapshotter = container("c", "img:3", &[]);
    other_snapshotter.snapshotter.clear();
    other_snapshotter.snapshot_key.clear();
    let err = update(&svc, "ns", other_snapshotter, &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(get(&svc, "ns", "c").await.unwrap().image, "img:2");
}

#[tokio::test]
async fn delete_is_refused_while_a_task_exists() {
    let t = daemon();
    let svc = service(&t);
    let err = delete(&svc, "ns", "c").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    create(&svc, "ns", container("c", "img", &[]))
        .await
        .unwrap();

    let bundle = task_bundle_dir(&t.daemon.settings.state, "ns", "c");
    assert_eq!(bundle, t.daemon.settings.state.join("tasks/ns/c"));
    std::fs::create_dir_all(&bundle).unwrap();
    assert!(has_task(&t.daemon, "ns", "c").unwrap());
    let err = delete(&svc, "ns", "c").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(get(&svc, "ns", "c").await.is_ok(), "still there");

    std::fs::remove_dir(&bundle).unwrap();
    delete(&svc, "ns", "c").await.unwrap();
    assert_eq!(
        get(&svc, "ns", "c").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        delete(&svc, "ns", "c").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        delete(&svc, "ns", "").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn events_are_published_in_order() {
    let t = daemon();
    let svc = service(&t);
    let mut events = t.daemon.events.subscribe();
    let mut c = container("c", "img", &[]);
    c.runtime.as_mut().unwrap().options = Some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![],
    });
    create(&svc, "ns", c).await.unwrap();
    update(&svc, "ns", container("c", "", &[("k", "v")]), &["labels"])
        .await
        .unwrap();
    delete(&svc, "ns", "c").await.unwrap();

    let created = events.try_recv().unwrap();
    assert_eq!(
        (created.namespace.as_str(), created.topic.as_str()),
        ("ns", TOPIC_CREATE)
    );
    assert_eq!(created.type_url, "containerd.events.ContainerCreate");
    let payload = ContainerCreate::decode(created.payload.as_slice()).unwrap();
    assert_eq!((payload.id.as_str(), payload.image.as_str()), ("c", "img"));
    let runtime = payload.runtime.unwrap();
    assert_eq!(runtime.name, RUNC_V2);
    assert_eq!(
        runtime.options.unwrap().type_url,
        "containerd.runc.v1.Options"
    );

    let updated = events.try_recv().unwrap();
    assert_eq!(updated.topic, TOPIC_UPDATE);
    assert_eq!(updated.type_url, "containerd.events.ContainerUpdate");
    let payload = ContainerUpdate::decode(updated.payload.as_slice()).unwrap();
    assert_eq!(payload.labels, HashMap::from([("k".into(), "v".into())]));
    assert_eq!(payload.snapshot_key, "c");

    let deleted = events.try_recv().unwrap();
    assert_eq!(deleted.topic, TOPIC_DELETE);
    assert_eq!(deleted.type_url, "containerd.events.ContainerDelete");
    assert!(
        events.try_recv().is_err(),
        "nothing else, nothing for refusals"
    );
}

#[tokio::test]
async fn a_container_keeps_its_snapshot_from_garbage_collection() {
    let t = daemon();
    let svc = service(&t);
    let backend_key = crate::state::snapshot_key("ns", "rootfs-c");
    t.daemon
        .snapshots
        .prepare(&backend_key, None, BTreeMap::new())
        .unwrap();
    let mut c = container("c", "img", &[]);
    c.snapshot_key = "rootfs-c".into();
    create(&svc, "ns", c).await.unwrap();
    // Another namespace's container of the same key does not hold this one.
    create(&svc, "other", container("rootfs-c", "img", &[]))
        .await
        .unwrap();

    let names = |t: &TestDaemon| -> Vec<String> {
        t.daemon
            .snapshots
            .list()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    gc::collect(&t.daemon).await.unwrap();
    assert_eq!(
        names(&t),
        std::slice::from_ref(&backend_key),
        "kept while the container exists"
    );

    delete(&svc, "ns", "c").await.unwrap();
    gc::collect(&t.daemon).await.unwrap();
    assert!(names(&t).is_empty(), "collected once the container is gone");
}

#[test]
fn spec_type_urls_other_than_oci_are_stored_as_given() {
    let any = Any {
        type_url: "example.Spec".into(),
        value: vec![0xff, 0x00],
    };
    let stored = spec_from_wire("c", Some(any.clone())).unwrap();
    assert_eq!(any_to_wire(&stored), any);
}

#[test]
fn extensions_are_bounded_in_count_and_bytes() {
    let many: HashMap<String, Any> = (0..=MAX_EXTENSIONS)
        .map(|i| {
            (
                format!("e{i}"),
                Any {
                    type_url: "t".into(),
                    value: vec![],
                },
            )
        })
        .collect();
    assert!(extensions_from_wire(many).is_err());
    let heavy: HashMap<String, Any> = (0..3)
        .map(|i| {
            (
                format!("e{i}"),
                Any {
                    type_url: "t".into(),
                    value: vec![0; MAX_EXTENSIONS_TOTAL_BYTES / 2],
                },
            )
        })
        .collect();
    assert!(extensions_from_wire(heavy).is_err());
    let fine: HashMap<String, Any> = HashMap::from([(
        "e".to_string(),
        Any {
            type_url: "t".into(),
            value: vec![0; 1024],
        },
    )]);
    assert_eq!(extensions_from_wire(fine).unwrap().len(), 1);
}
