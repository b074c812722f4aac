//! `berthctl version`: the client's and the daemon's versions.

use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, Format};

/// Prints both versions; the daemon's only if it answers.
pub async fn run(context: &Context) -> Result<(), CliError> {
    let client_version = env!("CARGO_PKG_VERSION");
    let api = context.api().await?;
    let reply = api
        .version()
        .version(())
        .await
        .map_err(CliError::rpc("asking berthd its version"))?
        .into_inner();
    match context.format {
        Format::Json => print_json(&serde_json::json!({
            "client": { "version": client_version },
            "server": { "version": reply.version, "revision": reply.revision },
        })),
        Format::Table => {
            println!("Client:\n  Version:  {client_version}\n");
            println!(
                "Server:\n  Version:  {}\n  Revision: {}",
                reply.version, reply.revision
            );
        }
    }
    Ok(())
}
