//! `berthctl namespaces create|ls|rm|label`: the namespaces everything else lives in.

use berth_proto::containerd::services::namespaces::v1::{
    CreateNamespaceRequest, DeleteNamespaceRequest, GetNamespaceRequest, ListNamespacesRequest,
    Namespace, UpdateNamespaceRequest,
};

use crate::arg_values::{label_update, parse_labels};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{labels_cell, labels_json, print_json, Format, Table};

/// The `namespaces` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NamespacesCommand {
    /// Create a namespace, optionally with labels.
    Create {
        /// The new namespace's name.
        name: String,
        /// Labels as key=value.
        labels: Vec<String>,
    },
    /// List namespaces and their labels.
    #[command(alias = "list")]
    Ls {
        /// Print only the names.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Remove namespaces; each must be empty.
    #[command(aliases = ["remove", "delete", "del"])]
    Rm {
        /// The namespaces to remove.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set labels of a namespace (key= clears one); with none given, print them.
    Label {
        /// The namespace.
        name: String,
        /// Labels as key=value; an empty value removes the label.
        labels: Vec<String>,
    },
}

/// Runs one `namespaces` subcommand.
pub async fn run(context: &Context, command: NamespacesCommand) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut client = api.namespaces();
    match command {
        NamespacesCommand::Create { name, labels } => {
            let labels = parse_labels(&labels)?;
            client
                .create(CreateNamespaceRequest {
                    namespace: Some(Namespace {
                        name: name.clone(),
                        labels,
                    }),
                })
                .await
                .map_err(CliError::rpc(format!("creating namespace {name}")))?;
        }
        NamespacesCommand::Ls { quiet } => {
            let mut namespaces = client
                .list(ListNamespacesRequest::default())
                .await
                .map_err(CliError::rpc("listing namespaces"))?
                .into_inner()
                .namespaces;
            namespaces.sort_by(|a, b| a.name.cmp(&b.name));
            print_namespaces(context.format, quiet, &namespaces);
        }
        NamespacesCommand::Rm { names } => {
            let mut failures = Vec::new();
            for name in names {
                match client
                    .delete(DeleteNamespaceRequest { name: name.clone() })
                    .await
                {
                    Ok(_) => println!("{name}"),
                    Err(status) => {
                        failures.push(CliError::rpc(format!("removing namespace {name}"))(status))
                    }
                }
            }
            CliError::from_failures(failures)?;
        }
        NamespacesCommand::Label { name, labels } => {
            let labels = parse_labels(&labels)?;
            if !labels.is_empty() {
                let (labels, paths) = label_update(labels);
                client
                    .update(UpdateNamespaceRequest {
                        namespace: Some(Namespace {
                            name: name.clone(),
                            labels,
                        }),
                        update_mask: Some(prost_types::FieldMask { paths }),
                    })
                    .await
                    .map_err(CliError::rpc(format!("labelling namespace {name}")))?;
            }
            // Read back rather than trust the update's reply, which not every daemon fills.
            let namespace = client
                .get(GetNamespaceRequest { name: name.clone() })
                .await
                .map_err(CliError::rpc(format!("reading namespace {name}")))?
                .into_inner()
                .namespace;
            let namespace = namespace.unwrap_or_default();
            match context.format {
                Format::Json => print_json(&labels_json(&namespace.labels)),
                Format::Table => {
                    let mut pairs: Vec<_> = namespace.labels.iter().collect();
                    pairs.sort();
                    for (key, value) in pairs {
                        println!("{key}={value}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_namespaces(format: Format, quiet: bool, namespaces: &[Namespace]) {
    match format {
        Format::Json => print_json(&serde_json::Value::Array(
            namespaces
                .iter()
                .map(|ns| serde_json::json!({"name": ns.name, "labels": labels_json(&ns.labels)}))
                .collect(),
        )),
        Format::Table if quiet => {
            for ns in namespaces {
                println!("{}", ns.name);
            }
        }
        Format::Table => {
            let mut table = Table::new(&["NAME", "LABELS"]);
            for ns in namespaces {
                let labels = if ns.labels.is_empty() {
                    String::new()
                } else {
                    labels_cell(&ns.labels)
                };
                table.row(vec![ns.name.clone(), labels]);
            }
            table.print();
        }
    }
}
