//! `berthctl containers …`: container records (image, runtime, OCI spec, snapshot), named
//! as in ctr. A container is only metadata until its task is started.
//!
//! - [`create`] makes a container from an image (shared with `run`)
//! - [`image`] reads what a container needs of its image (config, top layer)
//! - this file runs `create`, `ls`, `info`, `rm` and `label`

pub mod create;
pub mod image;

use std::process::ExitCode;

use berth_client::Api;
use berth_proto::containerd::runc::v1::Options as RuncOptions;
use berth_proto::containerd::services::containers::v1::{
    Container, DeleteContainerRequest, GetContainerRequest, ListContainersRequest,
    UpdateContainerRequest,
};
use berth_proto::containerd::services::snapshots::v1::RemoveSnapshotRequest;
use berth_proto::containerd::services::tasks::v1::{DeleteTaskRequest, GetRequest};
use berth_proto::containerd::v1::types::Status;
use berth_proto::type_urls;
use berth_runtime::oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::arg_values::{label_paths, parse_labels};
use crate::commands::tasks::status_text;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{labels_cell, labels_json, print_json, timestamp_text, Format, Table};
use crate::spec::ContainerFlags;
use crate::stdio::remove_task_fifos;

/// The `containers` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ContainersCommand {
    /// Create a container from an image; start it with `tasks start`.
    Create(Box<CreateArgs>),
    /// List containers.
    #[command(alias = "list")]
    Ls {
        /// Print only the container ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filters such as `image==docker.io/library/busybox:latest` or `labels."k"==v`.
        filters: Vec<String>,
    },
    /// Print a container's record (with its OCI spec) as JSON.
    Info {
        /// Print only the OCI spec.
        #[arg(long)]
        spec: bool,
        /// The container.
        id: String,
    },
    /// Delete containers and their snapshots (a stopped task is deleted first).
    #[command(aliases = ["delete", "del", "remove"])]
    Rm {
        /// Keep the container's snapshot.
        #[arg(long)]
        keep_snapshot: bool,
        /// The containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Set labels on a container (key=value; key= clears a label).
    Label {
        /// The container.
        id: String,
        /// The labels.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// Arguments of `containers create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// How the container is made.
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// The image (by its full name, as `images ls` shows it).
    pub image: String,
    /// The new container's id.
    pub id: String,
    /// The command line, replacing the image's Cmd.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs one `containers` subcommand.
pub async fn run(context: &Context, command: ContainersCommand) -> Result<ExitCode, CliError> {
    let api = context.api().await?;
    match command {
        ContainersCommand::Create(args) => {
            create::create(&api, &context.namespace, &args).await?;
        }
        ContainersCommand::Ls { quiet, filters } => ls(context, &api, quiet, filters).await?,
        ContainersCommand::Info { spec, id } => info(&api, &id, spec).await?,
        ContainersCommand::Rm { keep_snapshot, ids } => {
            let mut failures = Vec::new();
            for id in &ids {
                if let Err(e) = remove(&api, id, keep_snapshot).await {
                    failures.push(e);
                }
            }
            CliError::from_failures(failures)?;
        }
        ContainersCommand::Label { id, labels } => label(&api, &id, &labels).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The container record `id`.
pub async fn get(api: &Api, id: &str) -> Result<Container, CliError> {
    api.containers()
        .get(GetContainerRequest { id: id.to_string() })
        .await
        .map_err(CliError::rpc(format!("looking up container {id}")))?
        .into_inner()
        .container
        .ok_or_else(|| CliError::Failed(format!("container {id}: the daemon sent no record")))
}

/// The container's OCI spec.
pub fn spec_of(container: &Container) -> Result<Spec, CliError> {
    let any = container
        .spec
        .as_ref()
        .ok_or_else(|| CliError::Failed(format!("container {} has no OCI spec", container.id)))?;
    serde_json::from_slice(&any.value).map_err(|e| {
        CliError::Failed(format!(
            "container {}: its spec ({}) is not an OCI runtime spec: {e}",
            container.id, any.type_url
        ))
    })
}

/// The container's snapshotter and snapshot key, if it has a snapshot.
pub fn snapshot_of(container: &Container) -> Option<(String, String)> {
    (!container.snapshot_key.is_empty()).then(|| {
        (
            container.snapshotter.clone(),
            container.snapshot_key.clone(),
        )
    })
}

/// Whether the container's process has a terminal.
pub fn has_terminal(container: &Container) -> bool {
    spec_of(container)
        .ok()
        .and_then(|spec| spec.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// The runtime options as JSON, decoded when they are runc's.
fn runtime_options_json(options: Option<&prost_types::Any>) -> Value {
    let Some(any) = options else {
        return Value::Null;
    };
    match berth_proto::any::unpack::<RuncOptions>(any) {
        Ok(options) => json!({
            "type_url": any.type_url,
            "binary_name": options.binary_name,
            "root": options.root,
            "systemd_cgroup": options.systemd_cgroup,
            "no_pivot_root": options.no_pivot_root,
        }),
        Err(_) => json!({ "type_url": any.type_url }),
    }
}

/// The container record as JSON, with the field names ctr prints.
fn container_json(container: &Container) -> Value {
    let spec = container.spec.as_ref().map(|any| {
        if any.type_url == type_urls::OCI_SPEC {
            serde_json::from_slice::<Value>(&any.value).unwrap_or(Value::Null)
        } else {
            json!({ "type_url": any.type_url })
        }
    });
    let runtime = container.runtime.as_ref();
    json!({
        "ID": container.id,
        "Labels": labels_json(&container.labels),
        "Image": container.image,
        "Runtime": {
            "Name": runtime.map(|r| r.name.clone()).unwrap_or_default(),
            "Options": runtime_options_json(runtime.and_then(|r| r.options.as_ref())),
        },
        "SnapshotKey": container.snapshot_key,
        "Snapshotter": container.snapshotter,
        "CreatedAt": timestamp_text(container.created_at.as_ref()),
        "UpdatedAt": timestamp_text(container.updated_at.as_ref()),
        "Extensions": container.extensions.keys().collect::<Vec<_>>(),
        "SandboxID": container.sandbox,
        "Spec": spec,
    })
}

/// Lists containers: `CONTAINER IMAGE RUNTIME`, as ctr prints them.
async fn ls(
    context: &Context,
    api: &Api,
    quiet: bool,
    filters: Vec<String>,
) -> Result<(), CliError> {
    let mut containers = api
        .containers()
        .list(ListContainersRequest { filters })
        .await
        .map_err(CliError::rpc("listing containers"))?
        .into_inner()
        .containers;
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    let runtime = |c: &Container| {
        c.runtime
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    match context.format {
        Format::Json => print_json(&Value::Array(
            containers
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "image": c.image,
                        "runtime": runtime(c),
                        "snapshotter": c.snapshotter,
                        "snapshot_key": c.snapshot_key,
                        "labels": labels_json(&c.labels),
                        "created_at": timestamp_text(c.created_at.as_ref()),
                    })
                })
                .collect(),
        )),
        Format::Table if quiet => {
            for container in &containers {
                println!("{}", container.id);
            }
        }
        Format::Table => {
            let mut table = Table::new(&["CONTAINER", "IMAGE", "RUNTIME"]);
            for container in &containers {
                let image = if container.image.is_empty() {
                    "-".to_string()
                } else {
                    container.image.clone()
                };
                table.row(vec![container.id.clone(), image, runtime(container)]);
            }
            table.print();
        }
    }
    Ok(())
}

/// Prints a container's record, or only its spec.
async fn info(api: &Api, id: &str, spec_only: bool) -> Result<(), CliError> {
    let container = get(api, id).await?;
    let record = container_json(&container);
    if spec_only {
        print_json(&record["Spec"]);
    } else {
        print_json(&record);
    }
    Ok(())
}

/// Deletes a container: its task first if that is stopped (a live task is an error),
/// then the record, then its snapshot unless `keep_snapshot`.
pub async fn remove(api: &Api, id: &str, keep_snapshot: bool) -> Result<(), CliError> {
    let container = get(api, id).await?;
    let task = api
        .tasks()
        .get(GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        })
        .await;
    match task {
        Ok(reply) => {
            let process = reply.into_inner().process.unwrap_or_default();
            let status = Status::try_from(process.status).unwrap_or(Status::Unknown);
            if !matches!(status, Status::Stopped | Status::Created) {
                return Err(CliError::Failed(format!(
                    "container {id} has a {} task: stop it first (berthctl tasks kill {id}, \
                     or tasks rm -f {id})",
                    status_text(process.status).to_ascii_lowercase()
                )));
            }
            api.tasks()
                .delete(DeleteTaskRequest {
                    container_id: id.to_string(),
                })
                .await
                .map_err(CliError::rpc(format!(
                    "deleting the task of container {id}"
                )))?;
            remove_task_fifos([
                process.stdin.as_str(),
                process.stdout.as_str(),
                process.stderr.as_str(),
            ]);
        }
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => {
            return Err(CliError::rpc(format!(
                "looking up the task of container {id}"
            ))(status))
        }
    }
    api.containers()
        .delete(DeleteContainerRequest { id: id.to_string() })
        .await
        .map_err(CliError::rpc(format!("deleting container {id}")))?;
    if !keep_snapshot && !container.snapshot_key.is_empty() {
        remove_snapshot(api, &container.snapshotter, &container.snapshot_key).await?;
    }
    Ok(())
}

/// Removes a container's snapshot; one already gone is fine.
pub async fn remove_snapshot(api: &Api, snapshotter: &str, key: &str) -> Result<(), CliError> {
    match api
        .snapshots()
        .remove(RemoveSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(CliError::rpc(format!("removing snapshot {key}"))(status)),
    }
}

/// Sets (or, with an empty value, clears) labels and prints the container's labels.
async fn label(api: &Api, id: &str, args: &[String]) -> Result<(), CliError> {
    let labels = parse_labels(args)?;
    let paths = label_paths(&labels);
    let updated = api
        .containers()
        .update(UpdateContainerRequest {
            container: Some(Container {
                id: id.to_string(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(CliError::rpc(format!("labelling container {id}")))?
        .into_inner()
        .container
        .unwrap_or_default();
    println!("{}", labels_cell(&updated.labels));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::containerd::services::containers::v1::container::Runtime;

    fn record(spec: &str, terminal_options: Option<prost_types::Any>) -> Container {
        Container {
            id: "c1".into(),
            image: "localhost/busybox:latest".into(),
            runtime: Some(Runtime {
                name: "io.containerd.runc.v2".into(),
                options: terminal_options,
            }),
            spec: Some(prost_types::Any {
                type_url: type_urls::OCI_SPEC.into(),
                value: spec.as_bytes().to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: "c1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn info_uses_ctrs_field_names_and_decodes_spec_and_options() {
        let options = berth_proto::any::pack(&RuncOptions {
            binary_name: "/usr/bin/crun".into(),
            ..Default::default()
        });
        let json = container_json(&record(
            r#"{"ociVersion":"1.0.2","process":{"terminal":true,"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
            Some(options),
        ));
        assert_eq!(json["ID"], "c1");
        assert_eq!(json["Image"], "localhost/busybox:latest");
        assert_eq!(json["Runtime"]["Name"], "io.containerd.runc.v2");
        assert_eq!(json["Runtime"]["Options"]["binary_name"], "/usr/bin/crun");
        assert_eq!(json["SnapshotKey"], "c1");
        assert_eq!(json["Snapshotter"], "overlayfs");
        assert_eq!(json["Spec"]["process"]["args"], json!(["sh"]));
    }

    #[test]
    fn the_terminal_comes_from_the_spec() {
        let tty = record(
            r#"{"ociVersion":"1.0.2","process":{"terminal":true,"cwd":"/","user":{"uid":0,"gid":0}}}"#,
            None,
        );
        assert!(has_terminal(&tty));
        let plain = record(
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0}}}"#,
            None,
        );
        assert!(!has_terminal(&plain));
        let broken = record("not json", None);
        assert!(!has_terminal(&broken));
        assert!(spec_of(&broken)
            .unwrap_err()
            .to_string()
            .contains("not an OCI runtime spec"));
    }
}
