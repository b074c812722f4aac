//! berth-client's image archives against a real daemon, with Debian's `ctr` as the
//! other side: our import is seen (and run) by ctr, our export is imported by ctr into a
//! fresh daemon and the other way round, docker save archives import, and broken or
//! hostile archives fail with a clear error and leave nothing visible.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use berth_client::archive::{export, import, ExportOptions, ImportOptions};
use berth_client::image::{is_unpacked, resolve_named_image, ImageRecord};
use berth_client::oci::media_types;
use berth_client::platform::Platform;
use berth_client::unpack::DEFAULT_SNAPSHOTTER;
use berth_client::{connect, Api, ClientError};
use berth_tests::ctr::table_rows;
use berth_tests::fixtures::busybox::busybox_layer_tar;
use berth_tests::fixtures::hostile::{huge_index_archive, huge_manifest_archive};
use berth_tests::fixtures::oci::{sha256_digest, write_oci_layout};
use berth_tests::fixtures::tar_writer::TarBuilder;
use berth_tests::fixtures::{busybox_oci_archive, many_layers_archive, BuiltImage};
use berth_tests::steps::{
    content_digests, image_names, import_busybox, snapshots_ls, wait_until, BUSYBOX_NAME,
};
use berth_tests::tasks::TaskCleanup;
use berth_tests::{ctr_ok, unique_id, Daemon};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Imports the archive at `path` into `namespace` with berth-client.
fn client_import(
    daemon: &Daemon,
    namespace: &str,
    path: &Path,
    options: ImportOptions,
) -> Result<Vec<ImageRecord>, ClientError> {
    let file = std::fs::File::open(path).expect("opening the archive");
    runtime().block_on(async {
        let api = connect(&daemon.socket(), namespace).await?;
        import(&api, file, &options).await
    })
}

/// Runs `body` with a connection to `daemon` in `namespace`.
fn with_api<T, F, Fut>(daemon: &Daemon, namespace: &str, body: F) -> T
where
    F: FnOnce(Api) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    runtime().block_on(async {
        let api = connect(&daemon.socket(), namespace)
            .await
            .expect("connecting");
        body(api).await
    })
}

/// `ctr run --rm <image> <id> echo hello` prints hello.
fn ctr_runs_echo(daemon: &Daemon, namespace: &str, image: &str) {
    let mut cleanup = TaskCleanup::new(daemon);
    let id = unique_id("echo");
    cleanup.track(namespace, &id);
    let out = ctr_ok(
        daemon,
        &["-n", namespace, "run", "--rm", image, &id, "echo", "hello"],
    );
    assert_eq!(out, "hello\n");
}

/// The `ctr images ls` row of `name`: its target media type and digest.
fn ctr_image_row(daemon: &Daemon, namespace: &str, name: &str) -> (String, String) {
    let rows = table_rows(&ctr_ok(daemon, &["-n", namespace, "images", "ls"]));
    let row = rows
        .iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("ctr images ls has no {name}: {rows:?}"));
    (row[1].clone(), row[2].clone())
}

/// `ctr images check` says the image is complete and unpacked.
fn assert_ctr_check_is_complete(daemon: &Daemon, namespace: &str, name: &str) {
    let check = ctr_ok(daemon, &["-n", namespace, "images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(line.contains("complete"), "{check}");
    assert!(line.trim_end().ends_with("true"), "not unpacked: {check}");
}

/// Keys of the namespace's snapshots.
fn snapshot_keys(daemon: &Daemon, namespace: &str) -> BTreeSet<String> {
    snapshots_ls(daemon, namespace)
        .into_iter()
        .map(|row| row.key)
        .collect()
}

#[test]
fn an_imported_image_is_listed_checked_and_run_by_ctr() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("busybox.tar");
    let image = busybox_oci_archive(&archive, BUSYBOX_NAME).unwrap();

    let records = client_import(&daemon, &ns, &archive, ImportOptions::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, BUSYBOX_NAME);
    assert_eq!(records[0].target.digest, image.manifest_digest);

    assert_eq!(
        ctr_image_row(&daemon, &ns, BUSYBOX_NAME),
        (
            media_types::OCI_MANIFEST.to_string(),
            image.manifest_digest.clone()
        )
    );
    assert_ctr_check_is_complete(&daemon, &ns, BUSYBOX_NAME);
    assert_eq!(
        snapshot_keys(&daemon, &ns),
        image.chain_ids().into_iter().collect(),
        "one committed snapshot per layer, no extraction snapshot left"
    );
    let expected: BTreeSet<String> = image.blobs.keys().cloned().collect();
    wait_until(
        Duration::from_secs(20),
        "content ls lists exactly the image's blobs",
        || content_digests(&daemon, &ns) == expected,
    );
    ctr_runs_echo(&daemon, &ns, BUSYBOX_NAME);

    // Importing again changes nothing and stores nothing twice.
    let again = client_import(&daemon, &ns, &archive, ImportOptions::default()).unwrap();
    assert_eq!(again[0].target, records[0].target);
    assert_eq!(image_names(&daemon, &ns), [BUSYBOX_NAME]);
}

#[test]
fn imports_name_images_as_ctr_does_and_can_name_the_index() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("busybox.tar");
    busybox_oci_archive(&archive, BUSYBOX_NAME).unwrap();
    let options = ImportOptions {
        index_name: Some("localhost/whole-index:1".to_string()),
        unpack: false,
        ..ImportOptions::default()
    };
    let records = client_import(&daemon, &ns, &archive, options).unwrap();
    let names: BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([BUSYBOX_NAME, "localhost/whole-index:1"])
    );
    let (media_type, _) = ctr_image_row(&daemon, &ns, "localhost/whole-index:1");
    assert_eq!(media_type, media_types::OCI_INDEX);
    with_api(&daemon, &ns, |api| async move {
        let (_, image) = resolve_named_image(&api, "localhost/whole-index:1", &Platform::host())
            .await
            .unwrap();
        assert!(!is_unpacked(&api, &image, DEFAULT_SNAPSHOTTER)
            .await
            .unwrap());
    });
    assert!(snapshot_keys(&daemon, &ns).is_empty(), "nothing unpacked");
}

#[test]
fn our_export_is_imported_by_ctr_into_a_fresh_daemon() {
    let source = Daemon::start();
    let ns = unique_id("ns");
    let image = import_busybox(&source, &ns);
    let archive = source.dir().join("exported.tar");
    let file = std::fs::File::create(&archive).unwrap();
    let summary = with_api(&source, &ns, |api| async move {
        export(
            &api,
            &[BUSYBOX_NAME.to_string()],
            file,
            &ExportOptions::default(),
        )
        .await
        .unwrap()
    });
    assert_eq!(summary.blobs, image.blobs.len());

    // Laid out as ctr's own export of the same image.
    let ours = archive_listing(&archive);
    let theirs_path = source.dir().join("ctr-exported.tar");
    ctr_ok(
        &source,
        &[
            "-n",
            &ns,
            "images",
            "export",
            theirs_path.to_str().unwrap(),
            BUSYBOX_NAME,
        ],
    );
    let theirs = archive_listing(&theirs_path);
    assert_eq!(
        ours.iter().map(|(n, m, _)| (n, m)).collect::<Vec<_>>(),
        theirs.iter().map(|(n, m, _)| (n, m)).collect::<Vec<_>>(),
        "same entries, same modes"
    );
    let index_json = |listing: &[(String, u32, Vec<u8>)]| -> serde_json::Value {
        let (_, _, bytes) = listing.iter().find(|(n, _, _)| n == "index.json").unwrap();
        serde_json::from_slice(bytes).unwrap()
    };
    assert_eq!(index_json(&ours), index_json(&theirs));

    let fresh = Daemon::start();
    ctr_ok(
        &fresh,
        &["-n", &ns, "images", "import", archive.to_str().unwrap()],
    );
    assert_eq!(
        ctr_image_row(&fresh, &ns, BUSYBOX_NAME).1,
        image.manifest_digest
    );
    assert_ctr_check_is_complete(&fresh, &ns, BUSYBOX_NAME);
    ctr_runs_echo(&fresh, &ns, BUSYBOX_NAME);
}

#[test]
fn ctrs_export_is_imported_by_us_into_a_fresh_daemon() {
    let source = Daemon::start();
    let ns = unique_id("ns");
    let archive = source.dir().join("many.tar");
    let (image, _) = many_layers_archive(&archive, "localhost/many:3", 3).unwrap();
    ctr_ok(
        &source,
        &["-n", &ns, "images", "import", archive.to_str().unwrap()],
    );
    let exported = source.dir().join("ctr-exported.tar");
    ctr_ok(
        &source,
        &[
            "-n",
            &ns,
            "images",
            "export",
            exported.to_str().unwrap(),
            "localhost/many:3",
        ],
    );

    let fresh = Daemon::start();
    let records = client_import(&fresh, &ns, &exported, ImportOptions::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "localhost/many:3");
    assert_eq!(records[0].target.digest, image.manifest_digest);
    assert_ctr_check_is_complete(&fresh, &ns, "localhost/many:3");
    assert_eq!(
        snapshot_keys(&fresh, &ns),
        image.chain_ids().into_iter().collect()
    );
}

#[test]
fn docker_save_archives_are_imported() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    let archive = daemon.dir().join("docker.tar");
    let diff_id = write_docker_save_archive(&archive, "busybox:docker");

    let records = client_import(&daemon, &ns, &archive, ImportOptions::default()).unwrap();
    assert_eq!(records.len(), 1);
    let name = "docker.io/library/busybox:docker";
    assert_eq!(records[0].name, name);
    assert_eq!(records[0].target.media_type, media_types::DOCKER_MANIFEST);
    assert_eq!(snapshot_keys(&daemon, &ns), BTreeSet::from([diff_id]));
    assert_ctr_check_is_complete(&daemon, &ns, name);
    ctr_runs_echo(&daemon, &ns, name);
}

/// Writes a `docker save` archive of the old layout (a directory per layer holding
/// `layer.tar`, the config named by its digest) of the busybox layer tagged `tag`;
/// returns the layer's diff id.
fn write_docker_save_archive(path: &Path, tag: &str) -> String {
    let layer = busybox_layer_tar().unwrap();
    let diff_id = sha256_digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": { "Cmd": ["sh"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .unwrap();
    let config_hex = sha256_digest(&config)[7..].to_string();
    let layer_dir = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .unwrap();
    let mut tar = TarBuilder::new();
    tar.dir(layer_dir, 0o755)
        .file(&format!("{layer_dir}/VERSION"), 0o644, b"1.0")
        .file(&format!("{layer_dir}/json"), 0o644, b"{}")
        .file(&format!("{layer_dir}/layer.tar"), 0o644, &layer)
        .file(&format!("{config_hex}.json"), 0o644, &config)
        .file("manifest.json", 0o644, &manifest)
        .file("repositories", 0o644, b"{}");
    std::fs::write(path, tar.finish()).unwrap();
    diff_id
}

/// The host's architecture as image configs spell it.
fn host_architecture() -> String {
    Platform::host().architecture
}

/// Each entry of a tar: name, mode and (for files) bytes.
fn archive_listing(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (name, mode, bytes)
        })
        .collect()
}

/// Imports the archive at `path`, which must fail with an invalid-archive error
/// containing `expected`; then nothing of it is visible.
fn assert_refused(daemon: &Daemon, path: &Path, expected: &str) {
    let ns = unique_id("ns");
    let error = client_import(daemon, &ns, path, ImportOptions::default()).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, ClientError::InvalidArchive { .. }),
        "not an archive error: {text}"
    );
    assert!(
        text.contains(expected),
        "{text:?} does not say {expected:?}"
    );
    assert!(!text.contains('\n'), "{text:?}");
    assert!(image_names(daemon, &ns).is_empty());
    assert!(
        content_digests(daemon, &ns).is_empty(),
        "blobs left visible"
    );
    assert!(snapshot_keys(daemon, &ns).is_empty(), "snapshots left");
}

#[test]
fn broken_and_hostile_archives_are_refused_and_leave_nothing() {
    let daemon = Daemon::start();
    let dir = daemon.dir().to_path_buf();
    let good: BuiltImage = busybox_oci_archive(&dir.join("good.tar"), BUSYBOX_NAME).unwrap();
    let index_json = |image: &BuiltImage| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_types::OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "annotations": { "io.containerd.image.name": "localhost/bad:1" },
            }],
        }))
        .unwrap()
    };

    // A blob whose bytes are not those of its name.
    let mut blobs = good.blobs.clone();
    let layer = good.layer_digests[0].clone();
    blobs.get_mut(&layer).unwrap()[100] ^= 0xff;
    write_oci_layout(&dir.join("bad-digest.tar"), &index_json(&good), &blobs).unwrap();
    assert_refused(&daemon, &dir.join("bad-digest.tar"), &layer[7..]);

    // A layer the manifest needs is not in the archive.
    let mut blobs = good.blobs.clone();
    blobs.remove(&layer);
    write_oci_layout(&dir.join("missing.tar"), &index_json(&good), &blobs).unwrap();
    assert_refused(&daemon, &dir.join("missing.tar"), "not in the archive");

    // Names that climb out of the archive.
    for name in ["../escape", "/etc/escape", "blobs/../../escape"] {
        let mut tar = TarBuilder::new();
        tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file(name, 0o644, b"x");
        std::fs::write(dir.join("escape.tar"), tar.finish()).unwrap();
        assert_refused(&daemon, &dir.join("escape.tar"), name);
    }

    // An index.json too large to read, and a manifest too large to read.
    huge_index_archive(&dir.join("huge-index.tar"), 64 << 20).unwrap();
    assert_refused(&daemon, &dir.join("huge-index.tar"), "index.json is");
    huge_manifest_archive(&dir.join("huge-manifest.tar"), "localhost/huge:1", 32 << 20).unwrap();
    assert_refused(
        &daemon,
        &dir.join("huge-manifest.tar"),
        "larger than the limit",
    );

    // Malformed JSON, and no tar at all.
    write_oci_layout(
        &dir.join("junk-index.tar"),
        b"{\"manifests\": [",
        &good.blobs,
    )
    .unwrap();
    assert_refused(&daemon, &dir.join("junk-index.tar"), "index.json");
    std::fs::write(dir.join("not-a-tar.tar"), vec![0x42u8; 4096]).unwrap();
    assert_refused(&daemon, &dir.join("not-a-tar.tar"), "tar");
}
