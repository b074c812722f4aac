//! `berthctl plugins ls`: what the daemon is made of, and whether each part started.

use berth_proto::containerd::services::introspection::v1::{Plugin, PluginsRequest};
use berth_proto::containerd::types::Platform;

use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, Format, Table};

/// The `plugins` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginsCommand {
    /// List the daemon's plugins: type, id, platforms and status.
    #[command(alias = "list")]
    Ls(ListArgs),
}

/// Options of `plugins ls`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print only the plugin ids.
    #[arg(long, short)]
    quiet: bool,
    /// Print everything known about each plugin.
    #[arg(long, short)]
    detailed: bool,
    /// Filters such as `type==io.containerd.grpc.v1` (any of them may match).
    filters: Vec<String>,
}

/// Runs one `plugins` subcommand.
pub async fn run(context: &Context, command: PluginsCommand) -> Result<(), CliError> {
    match command {
        PluginsCommand::Ls(args) => list(context, args).await,
    }
}

async fn list(context: &Context, args: ListArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let plugins = api
        .introspection()
        .plugins(PluginsRequest {
            filters: args.filters,
        })
        .await
        .map_err(CliError::rpc("listing plugins"))?
        .into_inner()
        .plugins;
    if context.format == Format::Json {
        print_json(&serde_json::Value::Array(
            plugins.iter().map(plugin_json).collect(),
        ));
        return Ok(());
    }
    if args.quiet {
        for plugin in &plugins {
            println!("{}", plugin.id);
        }
        return Ok(());
    }
    if args.detailed {
        for plugin in &plugins {
            print_detailed(plugin);
        }
        return Ok(());
    }
    let mut table = Table::new(&["TYPE", "ID", "PLATFORMS", "STATUS"]);
    for plugin in &plugins {
        table.row(vec![
            plugin.r#type.clone(),
            plugin.id.clone(),
            platforms_cell(&plugin.platforms),
            status(plugin).to_string(),
        ]);
    }
    table.print();
    Ok(())
}

/// `ok`, or `error` when the plugin failed to initialise, as ctr shows it.
fn status(plugin: &Plugin) -> &'static str {
    match &plugin.init_err {
        Some(err) if err.code != 0 || !err.message.is_empty() => "error",
        _ => "ok",
    }
}

/// `os/arch[/variant]` of one platform.
fn platform_text(platform: &Platform) -> String {
    let mut text = format!("{}/{}", platform.os, platform.architecture);
    if !platform.variant.is_empty() {
        text.push('/');
        text.push_str(&platform.variant);
    }
    text
}

fn platforms_cell(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "-".to_string();
    }
    platforms
        .iter()
        .map(platform_text)
        .collect::<Vec<_>>()
        .join(",")
}

fn print_detailed(plugin: &Plugin) {
    println!("Type:          {}", plugin.r#type);
    println!("ID:            {}", plugin.id);
    if !plugin.requires.is_empty() {
        println!("Requires:");
        for required in &plugin.requires {
            println!("               {required}");
        }
    }
    if !plugin.platforms.is_empty() {
        println!("Platforms:     {}", platforms_cell(&plugin.platforms));
    }
    if !plugin.exports.is_empty() {
        println!("Exports:");
        let mut exports: Vec<_> = plugin.exports.iter().collect();
        exports.sort();
        for (key, value) in exports {
            println!("               {key}  {value}");
        }
    }
    if !plugin.capabilities.is_empty() {
        println!("Capabilities:  {}", plugin.capabilities.join(","));
    }
    if let Some(err) = plugin
        .init_err
        .as_ref()
        .filter(|_| status(plugin) == "error")
    {
        println!("Error:");
        println!("               Code:    {}", err.code);
        println!("               Message: {}", err.message);
    }
    println!();
}

fn plugin_json(plugin: &Plugin) -> serde_json::Value {
    serde_json::json!({
        "type": plugin.r#type,
        "id": plugin.id,
        "requires": plugin.requires,
        "platforms": plugin.platforms.iter().map(platform_text).collect::<Vec<_>>(),
        "exports": plugin.exports.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "capabilities": plugin.capabilities,
        "status": status(plugin),
        "error": plugin.init_err.as_ref().filter(|_| status(plugin) == "error").map(|e| e.message.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::google::rpc::Status;

    #[test]
    fn platforms_read_like_ctr() {
        let platforms = vec![
            Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: String::new(),
            },
            Platform {
                os: "linux".into(),
                architecture: "arm".into(),
                variant: "v7".into(),
            },
        ];
        assert_eq!(platforms_cell(&platforms), "linux/amd64,linux/arm/v7");
        assert_eq!(platforms_cell(&[]), "-");
    }

    #[test]
    fn a_plugin_with_an_init_error_is_shown_as_error() {
        let mut plugin = Plugin::default();
        assert_eq!(status(&plugin), "ok");
        plugin.init_err = Some(Status {
            code: 2,
            message: "no overlay".into(),
            details: vec![],
        });
        assert_eq!(status(&plugin), "error");
        assert_eq!(plugin_json(&plugin)["error"], "no overlay");
    }
}
