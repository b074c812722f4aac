//! What every command gets: where berthd is, which namespace, how to print.

use std::path::PathBuf;

use berth_client::Api;

use crate::error::CliError;
use crate::output::Format;

/// The global flags, and the connection made from them on demand.
#[derive(Debug)]
pub struct Context {
    /// berthd's socket.
    pub address: PathBuf,
    /// The namespace every call works in.
    pub namespace: String,
    /// How listings are printed.
    pub format: Format,
}

impl Context {
    /// Builds the context from the global flags.
    pub fn new(address: PathBuf, namespace: String, format: Format) -> Context {
        Context {
            address,
            namespace,
            format,
        }
    }

    /// Connects to berthd in the chosen namespace.
    pub async fn api(&self) -> Result<Api, CliError> {
        Ok(berth_client::connect(&self.address, &self.namespace).await?)
    }
}
