//! Making a container from an image, as ctr does it on the client side:
//!
//! 1. the image is read from the store (and unpacked for the snapshotter if it is not);
//! 2. under a temporary lease, the container's snapshot is prepared on the image's top
//!    layer (key = container id);
//! 3. the OCI spec is built from the image's config and the flags, with users resolved
//!    in a read-only view of the image;
//! 4. Containers.Create stores image, runtime (and its options), spec and snapshot;
//! 5. the lease goes: the record now keeps the snapshot.
//!
//! A failure at any step undoes what the steps before it made ([`Made::undo`]).

use berth_client::lease::{TemporaryLease, TEMPORARY_LEASE_EXPIRY};
use berth_client::Api;
use berth_proto::containerd::runc::v1::Options as RuncOptions;
use berth_proto::containerd::services::containers::v1::{
    container::Runtime, Container, CreateContainerRequest, DeleteContainerRequest,
    GetContainerRequest,
};
use berth_proto::containerd::services::snapshots::v1::PrepareSnapshotRequest;
use berth_proto::type_urls;

use super::image::image_to_run;
use super::{remove_snapshot, CreateArgs};
use crate::arg_values::parse_labels;
use crate::error::CliError;
use crate::spec::rootfs_view::with_prepared_rootfs;
use crate::spec::{build_spec, ContainerFlags, SpecInputs};

/// What a new container is made from.
#[derive(Debug, Clone, Copy)]
pub struct NewContainer<'a> {
    /// The namespace it is made in.
    pub namespace: &'a str,
    /// The image's full name.
    pub image: &'a str,
    /// The container id (also its snapshot key).
    pub id: &'a str,
    /// The command line replacing the image's `Cmd` (empty: the image's).
    pub args: &'a [String],
    /// The flags shaping it.
    pub flags: &'a ContainerFlags,
}

/// What has been made so far, so that a failure (or an interruption) can remove it.
#[derive(Debug, Default)]
pub struct Made {
    lease: Option<TemporaryLease>,
    snapshot: Option<(String, String)>,
    container: Option<String>,
}

impl Made {
    /// Removes, in reverse order, whatever was made: the record, the snapshot, the lease.
    /// Failures are not reported: this runs after the error that matters.
    pub async fn undo(mut self, api: &Api) {
        if let Some(id) = self.container.take() {
            let _ = api.containers().delete(DeleteContainerRequest { id }).await;
        }
        if let Some((snapshotter, key)) = self.snapshot.take() {
            let _ = remove_snapshot(api, &snapshotter, &key).await;
        }
        if let Some(lease) = self.lease.take() {
            let _ = lease.delete(true).await;
        }
    }
}

/// `containers create`: makes the container and prints nothing (as ctr).
pub async fn create(api: &Api, namespace: &str, args: &CreateArgs) -> Result<(), CliError> {
    let new = NewContainer {
        namespace,
        image: &args.image,
        id: &args.id,
        args: &args.args,
        flags: &args.flags,
    };
    let mut made = Made::default();
    let outcome = create_container(api, &new, &mut made).await;
    if outcome.is_err() {
        made.undo(api).await;
    }
    outcome.map(|_| ())
}

/// The runtime record: its name, and runc options naming the binary if one was given.
fn runtime_record(flags: &ContainerFlags) -> Runtime {
    Runtime {
        name: flags.runtime.clone(),
        options: flags.runc_binary.as_ref().map(|binary| {
            berth_proto::any::pack(&RuncOptions {
                binary_name: binary.clone(),
                ..Default::default()
            })
        }),
    }
}

/// Makes a container (see the module's steps), recording in `made` what exists at each
/// step; on error the caller undoes it with [`Made::undo`].
pub async fn create_container(
    api: &Api,
    new: &NewContainer<'_>,
    made: &mut Made,
) -> Result<Container, CliError> {
    let id = new.id;
    let flags = new.flags;
    let labels = parse_labels(&flags.labels)?;
    match api
        .containers()
        .get(GetContainerRequest { id: id.to_string() })
        .await
    {
        Ok(_) => {
            return Err(CliError::Failed(format!(
                "container {id} already exists (remove it with: berthctl containers rm {id})"
            )))
        }
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => return Err(CliError::rpc(format!("looking up container {id}"))(status)),
    }

    let image = image_to_run(api, new.image, &flags.snapshotter).await?;
    let lease = TemporaryLease::create(api, TEMPORARY_LEASE_EXPIRY)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let leased = made.lease.insert(lease).api().clone();
    let prepared = leased
        .snapshots()
        .prepare(PrepareSnapshotRequest {
            snapshotter: flags.snapshotter.clone(),
            key: id.to_string(),
            parent: image.top_layer.clone(),
            labels: Default::default(),
        })
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::AlreadyExists {
                CliError::Failed(format!(
                    "snapshot {id} already exists in {} (remove it with: berthctl snapshots rm {id})",
                    flags.snapshotter
                ))
            } else {
                CliError::rpc(format!("preparing snapshot {id}"))(status)
            }
        })?;
    made.snapshot = Some((flags.snapshotter.clone(), id.to_string()));

    // The new snapshot holds exactly the image's files: read /etc/passwd and /etc/group
    // there rather than through a separate view.
    let mounts = prepared.into_inner().mounts;
    let spec = with_prepared_rootfs(mounts, |rootfs| {
        build_spec(
            flags,
            &SpecInputs {
                namespace: new.namespace,
                id,
                image_config: image.config.as_ref(),
                rootfs,
                args: new.args,
            },
        )
    })
    .map_err(|e| CliError::Failed(e.to_string()))?
    .map_err(|e| CliError::Failed(format!("image {}: {e}", new.image)))?;
    let spec_json = serde_json::to_vec(&spec)
        .map_err(|e| CliError::Failed(format!("encoding the OCI spec: {e}")))?;

    let container = api
        .containers()
        .create(CreateContainerRequest {
            container: Some(Container {
                id: id.to_string(),
                labels: labels.into_iter().collect(),
                image: new.image.to_string(),
                runtime: Some(runtime_record(flags)),
                spec: Some(prost_types::Any {
                    type_url: type_urls::OCI_SPEC.to_string(),
                    value: spec_json,
                }),
                snapshotter: flags.snapshotter.clone(),
                snapshot_key: id.to_string(),
                ..Default::default()
            }),
        })
        .await
        .map_err(CliError::rpc(format!("creating container {id}")))?
        .into_inner()
        .container
        .unwrap_or_default();
    made.container = Some(id.to_string());
    if let Some(lease) = made.lease.take() {
        if let Err(e) = lease.delete(false).await {
            eprintln!("berthctl: warning: {e} (the lease expires by itself)");
        }
    }
    Ok(container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        flags: ContainerFlags,
    }

    #[test]
    fn a_runc_binary_becomes_runc_options() {
        let flags = Harness::try_parse_from(["t", "--runc-binary", "/opt/wrapper"])
            .unwrap()
            .flags;
        let runtime = runtime_record(&flags);
        assert_eq!(runtime.name, "io.containerd.runc.v2");
        let options = runtime.options.unwrap();
        assert_eq!(options.type_url, "containerd.runc.v1.Options");
        let decoded: RuncOptions = berth_proto::any::unpack(&options).unwrap();
        assert_eq!(decoded.binary_name, "/opt/wrapper");

        let plain = Harness::try_parse_from(["t"]).unwrap().flags;
        assert!(runtime_record(&plain).options.is_none());
    }
}
