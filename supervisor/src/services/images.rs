//! `containerd.services.images.v1.Images`: image records, each a name pointing at a
//! manifest or index in the content store. The blobs themselves are kept alive through
//! the target and containerd's `gc.ref` labels on content (see [`crate::gc`]); deleting
//! an image lets garbage collection take what nothing else references.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use berth_content::Digest;
use berth_proto::containerd::services::images::v1::{
    images_server::{Images, ImagesServer},
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    Image, ImageCreate, ImageDelete, ImageUpdate, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest, UpdateImageResponse,
};
use berth_proto::containerd::types::Descriptor;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::gc;
use crate::metadata::{DescriptorRecord, ImageRecord, Kind};
use crate::request;
use crate::services::{labels, reply, MAX_MESSAGE_BYTES};
use crate::state::{ensure_namespace, Daemon};

/// Longest image name accepted, in bytes.
pub const MAX_IMAGE_NAME_LEN: usize = 4096;
/// Longest media type accepted, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 1024;

/// Update field path replacing the target descriptor.
const TARGET_PATH: &str = "target";
/// Update field path replacing all of the target's annotations.
const ANNOTATIONS_PATH: &str = "annotations";
/// Prefix of an update field path setting or removing one target annotation.
const ANNOTATION_PATH_PREFIX: &str = "annotations.";

/// The Images service.
pub struct ImagesService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> ImagesServer<ImagesService> {
    ImagesServer::new(ImagesService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Checks an image name: not empty, at most [`MAX_IMAGE_NAME_LEN`] bytes, no control
/// characters. Names are references such as `docker.io/library/busybox:latest`; they are
/// record keys only, never paths.
pub fn validate_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::InvalidArgument(
            "image name must not be empty".to_string(),
        ));
    }
    if name.len() > MAX_IMAGE_NAME_LEN {
        let shown: String = name.chars().take(64).collect();
        return Err(ApiError::InvalidArgument(format!(
            "image name {shown:?}… is {} bytes long, the limit is {MAX_IMAGE_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument(format!(
            "image name {name:?} must not contain control characters"
        )));
    }
    Ok(())
}

/// Checks a target descriptor of image `name` and converts it for storage.
fn target_from_wire(name: &str, target: Option<Descriptor>) -> ApiResult<DescriptorRecord> {
    let target = target
        .ok_or_else(|| ApiError::InvalidArgument(format!("image {name:?}: target must be set")))?;
    let digest = Digest::parse(&target.digest)
        .map_err(|e| ApiError::InvalidArgument(format!("image {name:?}: target digest: {e}")))?;
    if target.media_type.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "image {name:?}: target media type must be set"
        )));
    }
    if target.media_type.len() > MAX_MEDIA_TYPE_LEN
        || target.media_type.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidArgument(format!(
            "image {name:?}: target media type is malformed or longer than {MAX_MEDIA_TYPE_LEN} bytes"
        )));
    }
    if target.size < 0 {
        return Err(ApiError::InvalidArgument(format!(
            "image {name:?}: target size {} is negative",
            target.size
        )));
    }
    Ok(DescriptorRecord {
        media_type: target.media_type,
        digest: digest.to_string(),
        size: target.size,
        annotations: labels::from_wire(target.annotations)?,
    })
}

fn target_to_wire(target: &DescriptorRecord) -> Descriptor {
    Descriptor {
        media_type: target.media_type.clone(),
        digest: target.digest.clone(),
        size: target.size,
        annotations: labels::to_wire(&target.annotations),
    }
}

fn to_wire(name: &str, record: &ImageRecord) -> Image {
    Image {
        name: name.to_string(),
        labels: labels::to_wire(&record.labels),
        target: Some(target_to_wire(&record.target)),
        created_at: reply::timestamp(record.created_at),
        updated_at: reply::timestamp(record.updated_at),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("image {name:?}: not found"))
}

/// An image record with its name, as filters see it: `name`, `target.digest`,
/// `target.mediatype`, `labels.<key>`.
struct Named<'a> {
    name: &'a str,
    record: &'a ImageRecord,
}

impl Fields for Named<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match path.as_slice() {
            ["name"] => Some(self.name.to_string()),
            ["target", "digest"] => Some(self.record.target.digest.clone()),
            ["target", "mediatype"] => Some(self.record.target.media_type.clone()),
            ["labels", key] => self.record.labels.get(*key).cloned(),
            _ => None,
        }
    }
}

/// Computes the updated record of image `name` from what the client sent and the field
/// paths of its mask (none: replace labels and target). The result is fully checked.
fn apply_update(
    name: &str,
    current: &ImageRecord,
    sent: Image,
    paths: &[String],
    now: SystemTime,
) -> ApiResult<ImageRecord> {
    labels::validate_sent(&sent.labels)?;
    let mut updated = current.clone();
    updated.updated_at = now;
    if paths.is_empty() {
        updated.labels = labels::from_wire(sent.labels)?;
        updated.target = target_from_wire(name, sent.target)?;
        return Ok(updated);
    }
    let sent_annotations: HashMap<String, String> = sent
        .target
        .as_ref()
        .map(|t| t.annotations.clone())
        .unwrap_or_default();
    for path in paths {
        if labels::apply_path(&mut updated.labels, &sent.labels, path) {
            continue;
        }
        if path == ANNOTATIONS_PATH {
            labels::apply_path(
                &mut updated.target.annotations,
                &sent_annotations,
                labels::LABELS_PATH,
            );
        } else if let Some(key) = path.strip_prefix(ANNOTATION_PATH_PREFIX) {
            let as_label_path = format!("{}{key}", labels::LABEL_PATH_PREFIX);
            labels::apply_path(
                &mut updated.target.annotations,
                &sent_annotations,
                &as_label_path,
            );
        } else if path == TARGET_PATH {
            updated.target = target_from_wire(name, sent.target.clone())?;
        } else {
            return Err(ApiError::InvalidArgument(format!(
                "cannot update field {path:?} of image {name:?}: the fields that can change \
                 are labels, labels.<key>, target, annotations and annotations.<key>"
            )));
        }
    }
    labels::validate(&updated.labels)?;
    labels::validate(&updated.target.annotations)?;
    Ok(updated)
}

impl ImagesService {
    fn get_image(&self, ns: &str, req: GetImageRequest) -> ApiResult<GetImageResponse> {
        tracing::debug!(namespace = %ns, image = %req.name, "images get");
        validate_name(&req.name)?;
        let record: ImageRecord = self
            .daemon
            .meta
            .get(Kind::Image, ns, &req.name)?
            .ok_or_else(|| not_found(&req.name))?;
        Ok(GetImageResponse {
            image: Some(to_wire(&req.name, &record)),
        })
    }

    fn list_images(&self, ns: &str, req: ListImagesRequest) -> ApiResult<ListImagesResponse> {
        tracing::debug!(namespace = %ns, filters = ?req.filters, "images list");
        let filter = Filter::parse(&req.filters)?;
        let images = self
            .daemon
            .meta
            .list::<ImageRecord>(Kind::Image, ns)?
            .iter()
            .filter(|(name, record)| filter.matches(&Named { name, record }))
            .map(|(name, record)| to_wire(name, record))
            .collect();
        let reply = ListImagesResponse { images };
        reply::ensure_fits("images list", &reply)?;
        Ok(reply)
    }

    async fn create_image(
        &self,
        ns: &str,
        req: CreateImageRequest,
    ) -> ApiResult<CreateImageResponse> {
        let sent = req
            .image
            .ok_or_else(|| ApiError::InvalidArgument("image must be set".to_string()))?;
        validate_name(&sent.name)?;
        let now = SystemTime::now();
        let record = ImageRecord {
            labels: labels::from_wire(sent.labels)?,
            target: target_from_wire(&sent.name, sent.target)?,
            created_at: now,
            updated_at: now,
        };
        let name = sent.name;
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta.get::<ImageRecord>(Kind::Image, ns, &name)?.is_some() {
                    return Err(ApiError::AlreadyExists(format!(
                        "image {name:?}: already exists"
                    )));
                }
                ensure_namespace(meta, batch, ns)?;
                batch.put(Kind::Image, ns, &name, &record)?;
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, image = %name, target = %record.target.digest, "image created");
        self.daemon.events.publish(
            ns,
            "/images/create",
            &ImageCreate {
                name: name.clone(),
                labels: labels::to_wire(&record.labels),
            },
        );
        Ok(CreateImageResponse {
            image: Some(to_wire(&name, &record)),
        })
    }

    async fn update_image(
        &self,
        ns: &str,
        req: UpdateImageRequest,
    ) -> ApiResult<UpdateImageResponse> {
        let sent = req
            .image
            .ok_or_else(|| ApiError::InvalidArgument("image must be set".to_string()))?;
        validate_name(&sent.name)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let name = sent.name.clone();
        let record = self
            .daemon
            .meta
            .write(|meta, batch| -> ApiResult<ImageRecord> {
                let current: ImageRecord = meta
                    .get(Kind::Image, ns, &name)?
                    .ok_or_else(|| not_found(&name))?;
                let updated = apply_update(&name, &current, sent, &paths, SystemTime::now())?;
                batch.put(Kind::Image, ns, &name, &updated)?;
                Ok(updated)
            })
            .await?;
        tracing::info!(namespace = %ns, image = %name, ?paths, target = %record.target.digest, "image updated");
        self.daemon.events.publish(
            ns,
            "/images/update",
            &ImageUpdate {
                name: name.clone(),
                labels: labels::to_wire(&record.labels),
            },
        );
        Ok(UpdateImageResponse {
            image: Some(to_wire(&name, &record)),
        })
    }

    async fn delete_image(&self, ns: &str, req: DeleteImageRequest) -> ApiResult<()> {
        validate_name(&req.name)?;
        let name = req.name;
        self.daemon
            .meta
            .write(|meta, batch| -> ApiResult<()> {
                if meta.get::<ImageRecord>(Kind::Image, ns, &name)?.is_none() {
                    return Err(not_found(&name));
                }
                batch.delete(Kind::Image, ns, &name);
                Ok(())
            })
            .await?;
        tracing::info!(namespace = %ns, image = %name, sync = req.sync, "image deleted");
        self.daemon
            .events
            .publish(ns, "/images/delete", &ImageDelete { name });
        if req.sync {
            let report = gc::collect(&self.daemon).await?;
            tracing::info!(namespace = %ns, ?report, "garbage collected after image delete");
        } else {
            gc::schedule(self.daemon.clone());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn get(
        &self,
        req: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(self.get_image(&ns, req.into_inner())?))
    }

    async fn list(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(self.list_images(&ns, req.into_inner())?))
    }

    async fn create(
        &self,
        req: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.create_image(&ns, req.into_inner()).await?,
        ))
    }

    async fn update(
        &self,
        req: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        let ns = request::namespace(&req)?;
        Ok(Response::new(
            self.update_image(&ns, req.into_inner()).await?,
        ))
    }

    async fn delete(&self, req: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.delete_image(&ns, req.into_inner()).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_support::{daemon, request};
    use prost_types::FieldMask;
    use tonic::Code;

    const DIGEST: &str = "sha256:694b47338edcec1d3ee37aa008d34c9adb2de65588e47db3fd78aab1655d7c9b";
    const OTHER: &str = "sha256:e398920a74cf44635015d2bd2ec634799d783dcab9aa062ce9b2bfb199c85861";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn image(name: &str, digest: &str, labels: &[(&str, &str)]) -> Image {
        Image {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: Some(Descriptor {
                media_type: MANIFEST.to_string(),
                digest: digest.to_string(),
                size: 528,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        }
    }

    fn service(t: &crate::services::test_support::TestDaemon) -> ImagesService {
        ImagesService {
            daemon: t.daemon.clone(),
        }
    }

    async fn create(svc: &ImagesService, ns: &str, img: Image) -> Result<Image, Status> {
        svc.create(request(ns, CreateImageRequest { image: Some(img) }))
            .await
            .map(|r| r.into_inner().image.unwrap())
    }

    async fn list(svc: &ImagesService, ns: &str, filters: &[&str]) -> Vec<String> {
        svc.list(request(
            ns,
            ListImagesRequest {
                filters: filters.iter().map(|f| f.to_string()).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.name)
        .collect()
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(validate_name("docker.io/library/busybox:latest").is_ok());
        assert!(validate_name("localhost:5000/a/b@sha256:00").is_ok());
        for bad in [
            String::new(),
            "a\nb".to_string(),
            "a\0b".to_string(),
            "x".repeat(MAX_IMAGE_NAME_LEN + 1),
        ] {
            assert!(validate_name(&bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn create_is_namespaced_and_refuses_duplicates_and_bad_targets() {
        let t = daemon();
        let svc = service(&t);
        let created = create(&svc, "a", image("busybox:1", DIGEST, &[("k", "v")]))
            .await
            .unwrap();
        assert!(created.created_at.is_some() && created.updated_at.is_some());
        assert_eq!(
            create(&svc, "a", image("busybox:1", DIGEST, &[]))
                .await
                .unwrap_err()
                .code(),
            Code::AlreadyExists
        );
        // The same name in another namespace is another image.
        create(&svc, "b", image("busybox:1", OTHER, &[]))
            .await
            .unwrap();
        assert_eq!(list(&svc, "a", &[]).await, ["busybox:1"]);

        for bad in ["", "sha256:xyz", "md5:0123", &DIGEST.to_uppercase()] {
            let err = create(&svc, "a", image("bad", bad, &[])).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        }
        let mut no_media_type = image("bad", DIGEST, &[]);
        no_media_type.target.as_mut().unwrap().media_type.clear();
        assert_eq!(
            create(&svc, "a", no_media_type).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(list(&svc, "a", &[]).await, ["busybox:1"], "nothing written");
    }

    #[tokio::test]
    async fn list_filters() {
        let t = daemon();
        let svc = service(&t);
        create(&svc, "ns", image("one", DIGEST, &[("env", "prod")]))
            .await
            .unwrap();
        create(&svc, "ns", image("two", OTHER, &[])).await.unwrap();
        assert_eq!(list(&svc, "ns", &["name==two"]).await, ["two"]);
        assert_eq!(
            list(&svc, "ns", &[&format!("target.digest=={DIGEST}")]).await,
            ["one"]
        );
        assert_eq!(
            list(&svc, "ns", &[&format!("target.mediatype==\"{MANIFEST}\"")]).await,
            ["one", "two"]
        );
        assert_eq!(list(&svc, "ns", &["labels.env==prod"]).await, ["one"]);
        assert_eq!(
            list(&svc, "ns", &["name~=^t", "labels.env"]).await,
            ["one", "two"]
        );
        let bad = svc
            .list(request(
                "ns",
                ListImagesRequest {
                    filters: vec!["name==".into()],
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn update_follows_field_paths_and_missing_is_not_found() {
        let t = daemon();
        let svc = service(&t);
        let update = |img: Image, paths: &[&str]| UpdateImageRequest {
            image: Some(img),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };
        // ctr import: Update first, NotFound, then Create.
        let err = svc
            .update(request(
                "ns",
                update(image("img", DIGEST, &[]), &["target"]),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        create(&svc, "ns", image("img", DIGEST, &[("a", "1"), ("b", "2")]))
            .await
            .unwrap();

        // Retarget only: labels stay.
        let got = svc
            .update(request("ns", update(image("img", OTHER, &[]), &["target"])))
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert_eq!(got.target.unwrap().digest, OTHER);
        assert_eq!(got.labels.len(), 2);

        // One label set, one removed; the target is untouched even if sent differently.
        let got = svc
            .update(request(
                "ns",
                update(
                    image("img", DIGEST, &[("c", "3")]),
                    &["labels.c", "labels.a"],
                ),
            ))
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert_eq!(got.target.unwrap().digest, OTHER);
        assert_eq!(
            got.labels,
            HashMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
        );

        let err = svc
            .update(request("ns", update(image("img", DIGEST, &[]), &["name"])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = svc
            .update(request(
                "ns",
                update(image("img", "sha256:bad", &[]), &["target"]),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        // Without a mask everything is replaced.
        let got = svc
            .update(request(
                "ns",
                UpdateImageRequest {
                    image: Some(image("img", DIGEST, &[])),
                    update_mask: None,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert!(got.labels.is_empty());
        assert_eq!(got.target.unwrap().digest, DIGEST);
    }

    #[tokio::test]
    async fn delete_removes_and_publishes() {
        let t = daemon();
        let svc = service(&t);
        create(&svc, "ns", image("img", DIGEST, &[])).await.unwrap();
        let mut events = t.daemon.events.subscribe();
        svc.delete(request(
            "ns",
            DeleteImageRequest {
                name: "img".into(),
                sync: true,
            },
        ))
        .await
        .unwrap();
        assert!(list(&svc, "ns", &[]).await.is_empty());
        let event = events.try_recv().unwrap();
        assert_eq!(
            (event.namespace.as_str(), event.topic.as_str()),
            ("ns", "/images/delete")
        );
        assert_eq!(event.type_url, "containerd.services.images.v1.ImageDelete");
        let err = svc
            .delete(request(
                "ns",
                DeleteImageRequest {
                    name: "img".into(),
                    sync: false,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}
