//! [`Runtime`]: the OCI runtime (runc or crun) driven through its command line.
//!
//! Every call is synchronous and runs one runtime process. A `Runtime` is cheap to clone and
//! `Send + Sync`, so async code moves a clone into a blocking task, e.g.
//! `tokio::task::spawn_blocking(move || runtime.state(&id))`.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio as ProcessStdio;
use std::sync::Arc;
use std::time::Duration;

use crate::binary::resolve_binary;
use crate::error::{Error, Result};
use crate::exec_fifo;
use crate::id::validate_container_id;
use crate::invocation::Invoker;
use crate::monitor::{DirectMonitor, ProcessMonitor};
use crate::opts::{CreateOpts, ExecOpts, RuntimeConfig};
use crate::state::State;
use crate::stats::Stats;
use crate::version::Version;

/// Highest signal number accepted by [`Runtime::kill`] (real-time signals included).
const MAX_SIGNAL: i32 = 64;

/// How long a created init has to take the go-ahead of [`Runtime::start_through_exec_fifo`]
/// (it is blocked waiting for it, so this only bounds a wedged init).
const EXEC_FIFO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A configured OCI runtime binary with its own state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    invoker: Arc<Invoker>,
}

impl Runtime {
    /// Resolves the binary and creates the root (mode 0700). [`Error::MissingBinary`] when the
    /// binary cannot be found.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        Runtime::with_monitor(config, Arc::new(DirectMonitor))
    }

    /// Like [`Runtime::new`], with a custom way to start and reap runtime processes (needed by
    /// a process that reaps all its children itself; see [`ProcessMonitor`]).
    pub fn with_monitor(
        config: RuntimeConfig,
        monitor: Arc<dyn ProcessMonitor>,
    ) -> Result<Runtime> {
        let search_path = std::env::var_os("PATH");
        let binary = resolve_binary(&config.binary, search_path.as_deref())?;
        if config.root.as_os_str().is_empty() {
            return Err(Error::InvalidArgument("runtime root is empty".into()));
        }
        create_private_dir(&config.root)?;
        Ok(Runtime {
            invoker: Arc::new(Invoker {
                binary,
                root: config.root,
                log: config.log,
                systemd_cgroup: config.systemd_cgroup,
                monitor,
            }),
        })
    }

    /// The resolved runtime binary.
    pub fn binary(&self) -> &Path {
        &self.invoker.binary
    }

    /// The runtime's state root.
    pub fn root(&self) -> &Path {
        &self.invoker.root
    }

    /// `create`: sets up container `id` from the bundle at `bundle`; its init waits for
    /// [`Runtime::start`]. The init gets `opts.stdio` as its stdio.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOpts) -> Result<()> {
        validate_container_id(id)?;
        let mut args: Vec<OsString> = vec!["--bundle".into(), bundle.into()];
        if let Some(pid_file) = &opts.pid_file {
            args.extend(["--pid-file".into(), pid_file.into()]);
        }
        if let Some(socket) = &opts.console_socket {
            args.extend(["--console-socket".into(), socket.into()]);
        }
        if opts.no_pivot {
            args.push("--no-pivot".into());
        }
        args.push(id.into());
        self.invoker
            .run_with_stdio("create", id, &args, &opts.stdio)
    }

    /// `start`: runs the user process of a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        self.simple("start", id, &[])
    }

    /// Starts created container `id`, whose init is `init_pid`, as `start` does but without
    /// a runtime process: the init is released through runc's exec fifo (see
    /// [`crate::exec_fifo`]). Falls back to [`Runtime::start`] when there is no fifo. Only
    /// for runc itself (not a wrapper or crun) and a spec without `poststart` hooks.
    pub fn start_through_exec_fifo(&self, id: &str, init_pid: u32) -> Result<()> {
        match exec_fifo::release_init(self.root(), id, init_pid, EXEC_FIFO_START_TIMEOUT)? {
            exec_fifo::Release::Started => Ok(()),
            exec_fifo::Release::NoFifo => self.start(id),
        }
    }

    /// `state`: what the runtime knows about container `id`.
    pub fn state(&self, id: &str) -> Result<State> {
        validate_container_id(id)?;
        let output = self.invoker.run_captured("state", Some(id), &[id.into()])?;
        State::from_json(&output)
    }

    /// `kill`: sends `signal` to the container's init, or with `all` to all its processes.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        validate_container_id(id)?;
        if !(1..=MAX_SIGNAL).contains(&signal) {
            return Err(Error::InvalidArgument(format!(
                "signal {signal} is not between 1 and {MAX_SIGNAL}"
            )));
        }
        let mut args: Vec<OsString> = Vec::new();
        if all {
            args.push("--all".into());
        }
        args.extend([id.into(), signal.to_string().into()]);
        self.invoker.run_captured("kill", Some(id), &args).map(drop)
    }

    /// `delete`: removes a stopped container; `force` kills a running one first, and makes a
    /// missing container a success.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let flags: &[&str] = if force { &["--force"] } else { &[] };
        self.simple("delete", id, flags)
    }

    /// `exec`: runs an additional process (described in `opts.process_json_path`) inside the
    /// running container `id`.
    pub fn exec(&self, id: &str, opts: &ExecOpts) -> Result<()> {
        validate_container_id(id)?;
        let mut args: Vec<OsString> =
            vec!["--process".into(), opts.process_json_path.clone().into()];
        if let Some(pid_file) = &opts.pid_file {
            args.extend(["--pid-file".into(), pid_file.into()]);
        }
        if let Some(socket) = &opts.console_socket {
            args.extend(["--console-socket".into(), socket.into()]);
        }
        if opts.detach {
            args.push("--detach".into());
        }
        args.push(id.into());
        self.invoker.run_with_stdio("exec", id, &args, &opts.stdio)
    }

    /// `ps --format json`: host pids of all processes in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        validate_container_id(id)?;
        let args: [OsString; 3] = ["--format".into(), "json".into(), id.into()];
        let output = self.invoker.run_captured("ps", Some(id), &args)?;
        let pids: Option<Vec<i32>> =
            serde_json::from_slice(&output).map_err(|e| Error::parse("runtime ps output", e))?;
        Ok(pids.unwrap_or_default())
    }

    /// `pause`: freezes all processes of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.simple("pause", id, &[])
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.simple("resume", id, &[])
    }

    /// `update --resources`: applies the OCI `linux.resources` JSON in `resources_json_path`
    /// (see [`crate::write_json_atomically`]) to the running container.
    pub fn update(&self, id: &str, resources_json_path: &Path) -> Result<()> {
        validate_container_id(id)?;
        let args: [OsString; 3] = ["--resources".into(), resources_json_path.into(), id.into()];
        self.invoker
            .run_captured("update", Some(id), &args)
            .map(drop)
    }

    /// `events --stats`: one snapshot of the container's cgroup statistics.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        validate_container_id(id)?;
        let args: [OsString; 2] = ["--stats".into(), id.into()];
        let output = self.invoker.run_captured("events", Some(id), &args)?;
        Stats::from_events_output(&output)
    }

    /// `--version`: the runtime's name and version.
    pub fn version(&self) -> Result<Version> {
        let output = std::process::Command::new(&self.invoker.binary)
            .arg("--version")
            .stdin(ProcessStdio::null())
            .output()
            .map_err(Error::io("run --version of", &self.invoker.binary))?;
        if !output.status.success() {
            return Err(Error::Failed {
                command: format!("{} --version", self.invoker.binary.display()),
                code: output.status.code(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Version::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// A subcommand taking `flags` then the id, with nothing to parse from its output.
    fn simple(&self, subcommand: &'static str, id: &str, flags: &[&str]) -> Result<()> {
        validate_container_id(id)?;
        let mut args: Vec<OsString> = flags.iter().map(OsString::from).collect();
        args.push(id.into());
        self.invoker
            .run_captured(subcommand, Some(id), &args)
            .map(drop)
    }
}

/// Creates `dir` (and missing parents) with mode 0700, and makes an existing one 0700.
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("create runtime root", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io("set mode 0700 on runtime root", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_creates_a_private_root_and_reports_a_missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state/runc/default");
        let runtime = Runtime::new(RuntimeConfig {
            binary: "/bin/true".into(),
            ..RuntimeConfig::new(&root)
        })
        .unwrap();
        assert_eq!(runtime.root(), root);
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let err = Runtime::new(RuntimeConfig {
            binary: "berth-no-such-runtime".into(),
            ..RuntimeConfig::new(&root)
        })
        .unwrap_err();
        assert!(matches!(err, Error::MissingBinary { .. }), "{err}");
    }

    #[test]
    fn a_runtime_can_be_moved_into_blocking_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Runtime>();
    }

    #[test]
    fn bad_ids_and_signals_are_rejected_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        // `false` fails whatever it is asked: an InvalidArgument proves it never ran.
        let runtime = Runtime::new(RuntimeConfig {
            binary: "/bin/false".into(),
            ..RuntimeConfig::new(dir.path())
        })
        .unwrap();
        let invalid = |result: Result<()>| matches!(result, Err(Error::InvalidArgument(_)));
        assert!(invalid(runtime.start("../etc")));
        assert!(invalid(runtime.delete("", true)));
        assert!(invalid(runtime.kill("--all", 9, false)));
        assert!(invalid(runtime.state("a/b").map(drop)));
        assert!(invalid(runtime.kill("good", 0, false)));
        assert!(invalid(runtime.kill("good", 65, true)));
        assert!(matches!(
            runtime.start("good"),
            Err(Error::Failed { code: Some(1), .. })
        ));
    }
}
