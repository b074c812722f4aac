//! `berthctl content ls|get|rm|active|label|fetch`: the content store's blobs by digest.

use std::io::Write;

use berth_proto::containerd::services::content::v1::{
    DeleteContentRequest, Info, ListContentRequest, ListStatusesRequest, ReadContentRequest,
    Status, UpdateRequest,
};
use futures::StreamExt;

use crate::arg_values::{label_update, parse_labels};
use crate::commands::images::pull::{self, FetchArgs};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{
    age_text, human_size, labels_cell, labels_json, print_json, timestamp_text, Format, Table,
};

/// The `content` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ContentCommand {
    /// List blobs: digest, size, age and labels.
    #[command(alias = "list")]
    Ls {
        /// Print only the digests.
        #[arg(long, short)]
        quiet: bool,
        /// Filters such as `labels."containerd.io/uncompressed"` (any may match).
        filters: Vec<String>,
    },
    /// Write blobs to stdout, byte for byte.
    Get {
        /// The blobs' digests (`sha256:<hex>`).
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Remove blobs; each removed digest is printed.
    #[command(aliases = ["remove", "delete", "del"])]
    Rm {
        /// The blobs' digests.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// List ingests in progress: ref, bytes so far of total, age.
    Active {
        /// Only refs matching this regular expression.
        regexp: Option<String>,
    },
    /// Download an image's content from a registry without unpacking it.
    Fetch(FetchArgs),
    /// Set labels of a blob (key= clears one).
    Label {
        /// The blob's digest.
        digest: String,
        /// Labels as key=value; an empty value removes the label.
        labels: Vec<String>,
    },
}

/// Runs one `content` subcommand.
pub async fn run(context: &Context, command: ContentCommand) -> Result<(), CliError> {
    match command {
        ContentCommand::Ls { quiet, filters } => list(context, quiet, filters).await,
        ContentCommand::Get { digests } => get(context, &digests).await,
        ContentCommand::Rm { digests } => remove(context, digests).await,
        ContentCommand::Active { regexp } => active(context, regexp).await,
        ContentCommand::Label { digest, labels } => label(context, digest, &labels).await,
        ContentCommand::Fetch(args) => pull::fetch(context, args).await,
    }
}

async fn list(context: &Context, quiet: bool, filters: Vec<String>) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut stream = api
        .content()
        .list(ListContentRequest { filters })
        .await
        .map_err(CliError::rpc("listing content"))?
        .into_inner();
    let mut infos = Vec::new();
    while let Some(reply) = stream.next().await {
        infos.extend(reply.map_err(CliError::rpc("listing content"))?.info);
    }
    infos.sort_by(|a, b| a.digest.cmp(&b.digest));
    match context.format {
        Format::Json => print_json(&infos.iter().map(info_json).collect()),
        Format::Table if quiet => {
            for info in &infos {
                println!("{}", info.digest);
            }
        }
        Format::Table => {
            let mut table = Table::new(&["DIGEST", "SIZE", "AGE", "LABELS"]);
            for info in &infos {
                table.row(vec![
                    info.digest.clone(),
                    human_size(info.size.max(0) as u64),
                    age_text(info.created_at.as_ref()),
                    labels_cell(&info.labels),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// Streams each blob to stdout in order. A reader that stops early (`| head`) ends the
/// command quietly.
async fn get(context: &Context, digests: &[String]) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut client = api.content();
    let mut out = std::io::stdout().lock();
    for digest in digests {
        let what = format!("reading blob {digest}");
        let mut stream = client
            .read(ReadContentRequest {
                digest: digest.clone(),
                offset: 0,
                size: 0,
            })
            .await
            .map_err(CliError::rpc(what.clone()))?
            .into_inner();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(CliError::rpc(what.clone()))?;
            match out.write_all(&chunk.data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(CliError::io("writing to stdout")(e)),
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::io("writing to stdout")(e))
        }
        _ => Ok(()),
    }
}

async fn remove(context: &Context, digests: Vec<String>) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut client = api.content();
    let mut failures = Vec::new();
    for digest in digests {
        match client
            .delete(DeleteContentRequest {
                digest: digest.clone(),
            })
            .await
        {
            Ok(_) => println!("{digest}"),
            Err(status) => failures.push(CliError::rpc(format!("removing blob {digest}"))(status)),
        }
    }
    CliError::from_failures(failures)
}

async fn active(context: &Context, regexp: Option<String>) -> Result<(), CliError> {
    if let Some(re) = &regexp {
        // Checked here so every daemon gives the same clear answer.
        regex::Regex::new(re).map_err(|e| {
            CliError::Usage(format!("{re:?} is not a regular expression: {e}").replace('\n', " "))
        })?;
    }
    let api = context.api().await?;
    let filters = regexp
        .map(|re| vec![format!("ref~={}", quote_filter_value(&re))])
        .unwrap_or_default();
    let mut statuses = api
        .content()
        .list_statuses(ListStatusesRequest { filters })
        .await
        .map_err(CliError::rpc("listing active ingests"))?
        .into_inner()
        .statuses;
    statuses.sort_by(|a, b| a.r#ref.cmp(&b.r#ref));
    match context.format {
        Format::Json => print_json(&statuses.iter().map(status_json).collect()),
        Format::Table => {
            let mut table = Table::new(&["REF", "SIZE", "AGE"]);
            for status in &statuses {
                table.row(vec![
                    status.r#ref.clone(),
                    format!(
                        "{}/{}",
                        human_size(status.offset.max(0) as u64),
                        human_size(status.total.max(0) as u64)
                    ),
                    age_text(status.started_at.as_ref()),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

async fn label(context: &Context, digest: String, labels: &[String]) -> Result<(), CliError> {
    let (labels, paths) = label_update(parse_labels(labels)?);
    let api = context.api().await?;
    let info = api
        .content()
        .update(UpdateRequest {
            info: Some(Info {
                digest: digest.clone(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(CliError::rpc(format!("labelling blob {digest}")))?
        .into_inner()
        .info
        .unwrap_or_default();
    match context.format {
        Format::Json => print_json(&info_json(&info)),
        Format::Table => println!("{}", info.digest),
    }
    Ok(())
}

/// A filter value in double quotes, so any regular expression survives the filter
/// grammar's own punctuation (`,`, `==`).
fn quote_filter_value(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn info_json(info: &Info) -> serde_json::Value {
    serde_json::json!({
        "digest": info.digest,
        "size": info.size,
        "created_at": timestamp_text(info.created_at.as_ref()),
        "updated_at": timestamp_text(info.updated_at.as_ref()),
        "labels": labels_json(&info.labels),
    })
}

fn status_json(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "ref": status.r#ref,
        "offset": status.offset,
        "total": status.total,
        "expected": status.expected,
        "started_at": timestamp_text(status.started_at.as_ref()),
        "updated_at": timestamp_text(status.updated_at.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_quoted_and_escaped() {
        assert_eq!(quote_filter_value("layer-.*"), "\"layer-.*\"");
        assert_eq!(quote_filter_value(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
