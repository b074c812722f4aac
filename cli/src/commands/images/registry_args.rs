//! The flags every command that talks to a registry takes (`images pull|push`,
//! `content fetch`), and the registry options made from them.
//!
//! Credentials come from `--user user[:password]` (the password is asked for on the
//! terminal when left out), else from the Docker config file (`$DOCKER_CONFIG/
//! config.json` or `~/.docker/config.json`, or `--docker-config`), else none.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use berth_registry::{Credentials, Reference, RegistryOptions};

use crate::arg_values::parse_duration;
use crate::error::CliError;

/// How to reach and log in to a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP (the default only for localhost, 127.0.0.1 and ::1).
    #[arg(long)]
    plain_http: bool,
    /// Accept any TLS certificate (test registries with self-signed certificates).
    #[arg(long, short = 'k')]
    skip_verify: bool,
    /// Log in as user[:password]; without the password it is asked for on the terminal.
    #[arg(long, short = 'u', value_name = "USER[:PASSWORD]")]
    user: Option<String>,
    /// The Docker config file credentials are read from when --user is not given.
    #[arg(long, value_name = "PATH")]
    docker_config: Option<PathBuf>,
    /// Fail a transfer that makes no progress for this long (e.g. 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    stall_timeout: Duration,
}

impl RegistryArgs {
    /// The registry options for talking to the registry of the image `name`.
    pub fn options(&self, name: &str) -> Result<RegistryOptions, CliError> {
        let reference = Reference::parse(name)
            .map_err(|e| CliError::Usage(format!("image reference {name:?}: {e}")))?;
        if self.stall_timeout.is_zero() {
            return Err(CliError::Usage(
                "--stall-timeout must be more than 0".into(),
            ));
        }
        Ok(RegistryOptions {
            plain_http: self.plain_http.then_some(true),
            credentials: self.credentials(reference.registry())?,
            stall_timeout: self.stall_timeout,
            insecure_skip_verify: self.skip_verify,
        })
    }

    fn credentials(&self, registry: &str) -> Result<Credentials, CliError> {
        if let Some(user) = &self.user {
            return user_credentials(user);
        }
        let path = match &self.docker_config {
            Some(path) => Some(path.clone()),
            None => Credentials::default_docker_config_path(),
        };
        let Some(path) = path else {
            return Ok(Credentials::Anonymous);
        };
        match Credentials::from_docker_config(&path, registry) {
            Ok(found) => Ok(found.unwrap_or(Credentials::Anonymous)),
            Err(e) => Err(CliError::Failed(format!(
                "reading credentials from {}: {e}",
                path.display()
            ))),
        }
    }
}

/// `user:password` as given, or `user` with the password asked for on the terminal.
fn user_credentials(user: &str) -> Result<Credentials, CliError> {
    if user.contains(':') {
        return Credentials::from_user_flag(user)
            .map_err(|e| CliError::Usage(format!("--user: {e}")));
    }
    if user.is_empty() {
        return Err(CliError::Usage("--user: empty user name".into()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "--user {user}: no password given and no terminal to ask on; write --user {user}:<password>"
        )));
    }
    let password = prompt_password(&format!("Password for {user}: "))?;
    Ok(Credentials::Basic {
        username: user.to_string(),
        password,
    })
}

/// Asks for a password on the terminal without echoing it.
fn prompt_password(prompt: &str) -> Result<String, CliError> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(CliError::io("opening the terminal to ask for the password"))?;
    let mut writer = &tty;
    writer
        .write_all(prompt.as_bytes())
        .and_then(|()| writer.flush())
        .map_err(CliError::io("writing the password prompt"))?;
    let echo_off = EchoOff::new(&tty)?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    drop(echo_off);
    let _ = writer.write_all(b"\n");
    read.map_err(CliError::io("reading the password"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Terminal echo switched off until dropped.
struct EchoOff<'a> {
    tty: &'a std::fs::File,
    saved: rustix::termios::Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a std::fs::File) -> Result<EchoOff<'a>, CliError> {
        let failed = |e: rustix::io::Errno| CliError::io("switching terminal echo off")(e.into());
        let saved = rustix::termios::tcgetattr(tty).map_err(failed)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(tty, rustix::termios::OptionalActions::Flush, &quiet)
            .map_err(failed)?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            self.tty,
            rustix::termios::OptionalActions::Flush,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(user: Option<&str>, docker_config: Option<PathBuf>) -> RegistryArgs {
        RegistryArgs {
            plain_http: false,
            skip_verify: false,
            user: user.map(str::to_string),
            docker_config,
            stall_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn user_and_password_come_from_the_flag() {
        let options = args(Some("alice:s3cret"), None)
            .options("localhost:5000/busybox:latest")
            .unwrap();
        assert_eq!(
            options.credentials,
            Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            }
        );
        assert_eq!(options.plain_http, None, "plain HTTP stays automatic");
    }

    #[test]
    fn the_docker_config_supplies_credentials_for_its_registry_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        // "bob:hunter2" in base64.
        std::fs::write(
            &config,
            r#"{"auths":{"localhost:5000":{"auth":"Ym9iOmh1bnRlcjI="}}}"#,
        )
        .unwrap();
        let with_config = args(None, Some(config));
        let options = with_config.options("localhost:5000/busybox").unwrap();
        assert_eq!(
            options.credentials,
            Credentials::Basic {
                username: "bob".into(),
                password: "hunter2".into()
            }
        );
        let elsewhere = with_config.options("registry.example.com/busybox").unwrap();
        assert_eq!(elsewhere.credentials, Credentials::Anonymous);
        let missing = args(None, Some(dir.path().join("absent.json")));
        assert_eq!(
            missing.options("localhost:5000/x").unwrap().credentials,
            Credentials::Anonymous
        );
    }

    #[test]
    fn bad_references_and_timeouts_are_usage_errors() {
        assert!(matches!(
            args(None, None).options("UPPER/Case::bad"),
            Err(CliError::Usage(_))
        ));
        let mut zero = args(None, None);
        zero.stall_timeout = Duration::ZERO;
        assert!(matches!(
            zero.options("localhost/x"),
            Err(CliError::Usage(_))
        ));
    }
}
