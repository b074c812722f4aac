//! berth-registry against a real registry: Debian's `docker-registry` on 127.0.0.1
//! (one per test), images put there with skopeo or with the client's own push, and a
//! token proxy in front for bearer auth and injected faults.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_registry::{
    media_types, parse_manifest, read_blob_to_end, select_platform, sha256_digest, BlobStream,
    Credentials, Descriptor, Platform, Reference, RegistryClient, RegistryError, RegistryOptions,
};
use berth_tests::fixtures::multiarch::{platform_file_contents, PLATFORM_FILE};
use berth_tests::fixtures::{busybox_oci_archive, multiarch_oci_archive, BuiltImage};
use berth_tests::registry::{free_port, LocalRegistry};
use berth_tests::token_proxy::TokenProxy;
use bytes::Bytes;
use futures::StreamExt;

/// A client for `reference`'s registry with `credentials` and `stall_timeout`.
fn client_with(
    reference: &Reference,
    credentials: Credentials,
    stall_timeout: Duration,
) -> RegistryClient {
    let options = RegistryOptions {
        credentials,
        stall_timeout,
        ..RegistryOptions::default()
    };
    RegistryClient::new(reference, options).expect("creating a registry client")
}

/// An anonymous client with the default stall timeout.
fn client(reference: &Reference) -> RegistryClient {
    client_with(reference, Credentials::Anonymous, Duration::from_secs(60))
}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    }
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The descriptor of blob `digest` of `image`, as its manifest lists it.
fn blob_descriptor(image: &BuiltImage, digest: &str, media_type: &str) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: image.blob(digest).len() as u64,
        platform: None,
        annotations: Default::default(),
    }
}

/// Builds the busybox image in `dir` and copies it to `repo_tag` in `registry`.
fn busybox_in(registry: &LocalRegistry, dir: &Path, repo_tag: &str) -> BuiltImage {
    let archive = dir.join("busybox.tar");
    let image =
        busybox_oci_archive(&archive, "localhost/busybox:latest").expect("building busybox");
    registry.push_oci_archive(&archive, repo_tag, false);
    image
}

/// Every byte the stream yields, and the error it ended with, if any.
async fn drain(mut stream: BlobStream) -> (Vec<u8>, Option<RegistryError>) {
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => return (bytes, Some(e)),
        }
    }
    (bytes, None)
}

/// `bytes` as a stream of 64 KiB chunks, as an upload source.
fn chunked(
    bytes: &[u8],
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks)
}

/// The contents of `name` in the gzip-compressed layer tar `layer`.
fn file_in_layer(layer: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.to_str() == Some(name) {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).ok()?;
            return Some(contents);
        }
    }
    None
}

#[tokio::test]
async fn resolves_a_tag_and_a_digest_to_the_pushed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");

    let by_tag = reference(&registry.reference("busybox:v1"));
    let client = client(&by_tag);
    let (desc, bytes) = client.resolve(&by_tag).await.unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
    assert_eq!(desc.size, image.manifest_size);
    assert_eq!(desc.media_type, media_types::OCI_MANIFEST);
    assert_eq!(&bytes[..], image.blob(&image.manifest_digest));

    let by_digest = reference(&format!(
        "{}/busybox@{}",
        registry.addr(),
        image.manifest_digest
    ));
    let (again, again_bytes) = client.resolve(&by_digest).await.unwrap();
    assert_eq!(again, desc);
    assert_eq!(again_bytes, bytes);

    let manifest = parse_manifest(&bytes).unwrap();
    assert_eq!(manifest.config.digest, image.config_digest);
    let layers: Vec<&str> = manifest.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, image.layer_digests);

    // A digest the repository does not have is not found, not served by tag.
    let missing = by_tag.with_digest(&sha256_digest(b"no such manifest"));
    assert!(matches!(
        client.resolve(&missing).await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn picks_the_host_and_arm64_manifests_from_a_multi_platform_index() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let archive = dir.path().join("multi.tar");
    let image = multiarch_oci_archive(&archive, "localhost/multi:v1").unwrap();
    registry.push_oci_archive(&archive, "multi:v1", true);

    let tagged = reference(&registry.reference("multi:v1"));
    let client = client(&tagged);
    let (index_desc, index) = client.resolve(&tagged).await.unwrap();
    assert_eq!(index_desc.digest, image.index_digest);
    assert!(
        media_types::is_index(&index_desc.media_type),
        "{}",
        index_desc.media_type
    );

    let host = select_platform(&index, &Platform::host()).unwrap();
    assert_eq!(host.digest, image.image("linux/amd64").manifest_digest);
    let host_manifest = client.fetch_manifest(&tagged, &host).await.unwrap();
    assert_eq!(&host_manifest[..], image.blob(&host.digest));

    let arm64 = select_platform(&index, &Platform::parse("linux/arm64").unwrap()).unwrap();
    let arm_image = image.image("linux/arm64");
    assert_eq!(arm64.digest, arm_image.manifest_digest);
    let arm_manifest =
        parse_manifest(&client.fetch_manifest(&tagged, &arm64).await.unwrap()).unwrap();
    assert_eq!(arm_manifest.config.digest, arm_image.config_digest);
    let config = read_blob_to_end(
        client
            .fetch_blob(&tagged, &arm_manifest.config, 0)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], "arm64");
    let top = arm_manifest.layers.last().unwrap();
    let layer = read_blob_to_end(client.fetch_blob(&tagged, top, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        file_in_layer(&layer, PLATFORM_FILE),
        Some(platform_file_contents("linux/arm64").into_bytes())
    );

    match select_platform(&index, &Platform::parse("linux/s390x").unwrap()) {
        Err(e @ RegistryError::NoMatchingPlatform { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("linux/s390x")
                    && text.contains("linux/amd64")
                    && text.contains("linux/arm64"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fetches_a_blob_whole_and_from_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let repo = reference(&registry.reference("busybox:v1"));
    let client = client(&repo);
    let layer_digest = &image.layer_digests[0];
    let layer = blob_descriptor(&image, layer_digest, media_types::OCI_LAYER_GZIP);
    let expected = image.blob(layer_digest);

    let (whole, err) = drain(client.fetch_blob(&repo, &layer, 0).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(whole, expected);

    for offset in [1, layer.size / 3, layer.size - 1] {
        let stream = client.fetch_blob(&repo, &layer, offset).await.unwrap();
        assert_eq!(stream.expected_len(), layer.size - offset);
        let (tail, err) = drain(stream).await;
        assert!(err.is_none(), "offset {offset}: {err:?}");
        assert_eq!(tail, &expected[offset as usize..], "offset {offset}");
    }
    let (nothing, err) = drain(client.fetch_blob(&repo, &layer, layer.size).await.unwrap()).await;
    assert!(nothing.is_empty() && err.is_none());
    assert!(client
        .fetch_blob(&repo, &layer, layer.size + 1)
        .await
        .is_err());

    let config = blob_descriptor(&image, &image.config_digest, media_types::OCI_CONFIG);
    let bytes = read_blob_to_end(client.fetch_blob(&repo, &config, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&bytes[..], image.blob(&image.config_digest));
}

#[tokio::test]
async fn a_registry_that_ignores_range_still_yields_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let proxy = TokenProxy::start_open(registry.addr());
    proxy.ignore_range(true);
    let repo = reference(&proxy.reference("busybox:v1"));
    let client = client(&repo);
    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    let offset = layer.size / 2;

    let (tail, err) = drain(client.fetch_blob(&repo, &layer, offset).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(tail, &image.blob(&layer.digest)[offset as usize..]);
    let asked = format!("bytes={offset}-");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.range.as_deref() == Some(asked.as_str())),
        "{:?}",
        proxy.requests()
    );

    // A registry that asks for no credentials is asked whether it does only once, not
    // before every request.
    for _ in 0..3 {
        assert!(client.blob_exists(&repo, &layer.digest).await.unwrap());
    }
    let probes = proxy.requests().iter().filter(|r| r.path == "/v2/").count();
    assert_eq!(probes, 1, "{:?}", proxy.requests());
}

#[tokio::test]
async fn basic_auth_takes_the_right_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start_with_basic_auth("alice", "wonderland");
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let repo = reference(&registry.reference("busybox:v1"));
    let timeout = Duration::from_secs(30);

    let right = client_with(&repo, basic("alice", "wonderland"), timeout);
    let (desc, _) = right.resolve(&repo).await.unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    let (bytes, err) = drain(right.fetch_blob(&repo, &layer, 0).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, image.blob(&layer.digest));

    for credentials in [
        basic("alice", "not-the-password"),
        basic("mallory", "wonderland"),
        Credentials::Anonymous,
    ] {
        let wrong = client_with(&repo, credentials.clone(), timeout);
        match wrong.resolve(&repo).await {
            Err(e @ RegistryError::Unauthorized { .. }) => {
                assert!(e.to_string().contains(registry.addr()), "{e}")
            }
            other => panic!("{credentials:?}: {other:?}"),
        }
        assert!(matches!(
            wrong.fetch_blob(&repo, &layer, 0).await,
            Err(RegistryError::Unauthorized { .. })
        ));
    }

    // The same credentials, read from a Docker config file.
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let from_file = Credentials::from_docker_config(&config, repo.registry())
        .unwrap()
        .expect("an entry for the registry");
    let (desc, _) = client_with(&repo, from_file, timeout)
        .resolve(&repo)
        .await
        .unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_right_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let proxy = TokenProxy::start(registry.addr(), "bob", "builder");
    let repo = reference(&proxy.reference("busybox:v1"));
    let timeout = Duration::from_secs(30);

    let right = client_with(&repo, basic("bob", "builder"), timeout);
    let (desc, _) = right.resolve(&repo).await.unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    let (bytes, err) = drain(right.fetch_blob(&repo, &layer, 0).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, image.blob(&layer.digest));
    assert!(proxy.tokens_issued() >= 1, "{:?}", proxy.requests());

    // Pushing needs a token for the push scope, and upload locations through the proxy.
    let pushed = reference(&proxy.reference("copy:v1"));
    let blob = b"a blob pushed through the token proxy".to_vec();
    let blob_desc = Descriptor {
        media_type: media_types::OCI_LAYER_TAR.to_string(),
        digest: sha256_digest(&blob),
        size: blob.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    assert!(!right.blob_exists(&pushed, &blob_desc.digest).await.unwrap());
    right
        .push_blob(&pushed, &blob_desc, chunked(&blob))
        .await
        .unwrap();
    assert!(right.blob_exists(&pushed, &blob_desc.digest).await.unwrap());

    for credentials in [basic("bob", "wrong"), Credentials::Anonymous] {
        let wrong = client_with(&repo, credentials.clone(), timeout);
        assert!(
            matches!(
                wrong.resolve(&repo).await,
                Err(RegistryError::Unauthorized { .. })
            ),
            "{credentials:?}"
        );
        assert!(matches!(
            wrong.fetch_blob(&repo, &layer, 0).await,
            Err(RegistryError::Unauthorized { .. })
        ));
    }
}

#[tokio::test]
async fn an_unreachable_registry_fails_fast_naming_the_host() {
    let addr = format!("127.0.0.1:{}", free_port());
    let repo = reference(&format!("{addr}/busybox:v1"));
    let client = client(&repo);
    let started = Instant::now();
    match client.resolve(&repo).await {
        Err(e @ RegistryError::Unreachable { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}");
            assert!(e.is_transient());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unknown_tags_repositories_and_blobs_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let repo = reference(&registry.reference("busybox:v1"));
    let client = client(&repo);

    for missing in ["busybox:nope", "nothere:v1"] {
        let missing = reference(&registry.reference(missing));
        match client.resolve(&missing).await {
            Err(e @ RegistryError::NotFound { .. }) => {
                assert!(e.to_string().contains(&missing.to_string()), "{e}")
            }
            other => panic!("{missing}: {other:?}"),
        }
    }
    let unknown = sha256_digest(b"never pushed");
    assert!(!client.blob_exists(&repo, &unknown).await.unwrap());
    assert!(client
        .blob_exists(&repo, &image.layer_digests[0])
        .await
        .unwrap());
    let desc = Descriptor {
        media_type: media_types::OCI_LAYER_GZIP.to_string(),
        digest: unknown,
        size: 10,
        platform: None,
        annotations: Default::default(),
    };
    assert!(matches!(
        client.fetch_blob(&repo, &desc, 0).await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn corrupted_manifests_and_blobs_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let proxy = TokenProxy::start_open(registry.addr());
    let repo = reference(&proxy.reference("busybox:v1"));
    let client = client(&repo);
    let (manifest_desc, _) = client.resolve(&repo).await.unwrap();

    proxy.corrupt(&image.manifest_digest);
    match client.fetch_manifest(&repo, &manifest_desc).await {
        Err(RegistryError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, image.manifest_digest);
            assert_ne!(actual, expected);
        }
        other => panic!("{other:?}"),
    }

    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    proxy.corrupt(&layer.digest);
    let (bytes, err) = drain(client.fetch_blob(&repo, &layer, 0).await.unwrap()).await;
    // Every byte is handed out as served, and the stream ends with the mismatch.
    let original = image.blob(&layer.digest);
    assert_eq!(bytes.len(), original.len());
    assert_eq!(bytes[0], original[0] ^ 0xFF);
    assert_eq!(bytes[1..], original[1..]);
    match err {
        Some(RegistryError::DigestMismatch { expected, .. }) => assert_eq!(expected, layer.digest),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_blob_fails_within_the_timeout_and_resumes_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let proxy = TokenProxy::start_open(registry.addr());
    let repo = reference(&proxy.reference("busybox:v1"));
    let stall = Duration::from_secs(2);
    let client = client_with(&repo, Credentials::Anonymous, stall);
    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    let original = image.blob(&layer.digest);

    proxy.stall_once(&layer.digest);
    let mut stream = client.fetch_blob(&repo, &layer, 0).await.unwrap();
    let mut first_part = Vec::new();
    let mut last_byte_at = Instant::now();
    let err = loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                first_part.extend_from_slice(&chunk);
                last_byte_at = Instant::now();
            }
            Some(Err(e)) => break e,
            None => panic!("the stalled stream ended without an error"),
        }
    };
    let quiet = last_byte_at.elapsed();
    assert!(
        matches!(err, RegistryError::Stalled { seconds: 2, .. }),
        "{err:?}"
    );
    assert!(quiet >= stall - Duration::from_millis(100), "{quiet:?}");
    assert!(quiet < stall + Duration::from_secs(3), "{quiet:?}");
    assert_eq!(first_part.len() as u64, layer.size / 2);
    assert_eq!(first_part, &original[..first_part.len()]);

    let offset = first_part.len() as u64;
    let (rest, err) = drain(client.fetch_blob(&repo, &layer, offset).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    first_part.extend_from_slice(&rest);
    assert_eq!(first_part, original);
    let asked = format!("bytes={offset}-");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.range.as_deref() == Some(asked.as_str())),
        "{:?}",
        proxy.requests()
    );
}

#[tokio::test]
async fn pushed_blobs_and_manifest_resolve_back_with_identical_digests() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    let image = busybox_oci_archive(&dir.path().join("b.tar"), "localhost/busybox:latest").unwrap();
    let target = reference(&registry.reference("pushed/busybox:v2"));
    let client = client(&target);

    let mut blobs = vec![blob_descriptor(
        &image,
        &image.config_digest,
        media_types::OCI_CONFIG,
    )];
    for digest in &image.layer_digests {
        blobs.push(blob_descriptor(&image, digest, media_types::OCI_LAYER_GZIP));
    }
    for desc in &blobs {
        assert!(!client.blob_exists(&target, &desc.digest).await.unwrap());
        client
            .push_blob(&target, desc, chunked(image.blob(&desc.digest)))
            .await
            .unwrap();
        assert!(client.blob_exists(&target, &desc.digest).await.unwrap());
    }
    let manifest = Bytes::copy_from_slice(image.blob(&image.manifest_digest));
    let digest = client
        .push_manifest(&target, media_types::OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(digest, image.manifest_digest);

    let (desc, bytes) = client.resolve(&target).await.unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
    assert_eq!(bytes, manifest);
    let layer = &blobs[1];
    let (back, err) = drain(client.fetch_blob(&target, layer, 0).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(back, image.blob(&layer.digest));

    // Data that does not match its descriptor is refused before the registry keeps it.
    let claimed = Descriptor {
        media_type: media_types::OCI_LAYER_TAR.to_string(),
        digest: sha256_digest(b"what was promised"),
        size: 17,
        platform: None,
        annotations: Default::default(),
    };
    match client
        .push_blob(&target, &claimed, chunked(b"what was delivered"))
        .await
    {
        Err(RegistryError::SizeMismatch { .. }) => {}
        other => panic!("{other:?}"),
    }
    let same_size = b"what was promiseX";
    match client
        .push_blob(&target, &claimed, chunked(same_size))
        .await
    {
        Err(RegistryError::DigestMismatch { actual, .. }) => {
            assert_eq!(actual, sha256_digest(same_size))
        }
        other => panic!("{other:?}"),
    }
    assert!(!client.blob_exists(&target, &claimed.digest).await.unwrap());
    assert!(!client
        .blob_exists(&target, &sha256_digest(same_size))
        .await
        .unwrap());
}

#[tokio::test]
async fn https_registries_are_verified_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start_with_tls();
    let image = busybox_in(&registry, dir.path(), "busybox:v1");
    let repo = reference(&registry.reference("busybox:v1"));
    let https = |insecure_skip_verify| RegistryOptions {
        plain_http: Some(false),
        insecure_skip_verify,
        stall_timeout: Duration::from_secs(30),
        ..RegistryOptions::default()
    };

    let trusting = RegistryClient::new(&repo, https(true)).unwrap();
    let (desc, _) = trusting.resolve(&repo).await.unwrap();
    assert_eq!(desc.digest, image.manifest_digest);
    let layer = blob_descriptor(&image, &image.layer_digests[0], media_types::OCI_LAYER_GZIP);
    let (bytes, err) = drain(trusting.fetch_blob(&repo, &layer, 0).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, image.blob(&layer.digest));

    // The self-signed certificate is refused by default, with the reason.
    let verifying = RegistryClient::new(&repo, https(false)).unwrap();
    match verifying.resolve(&repo).await {
        Err(e @ RegistryError::Tls { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(registry.addr()) && text.contains("certificate"),
                "{text}"
            )
        }
        other => panic!("{other:?}"),
    }
}
