//! Running Debian's unchanged `ctr` against a test daemon.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;

/// Environment variable naming the ctr binary (default: `/usr/bin/ctr`).
pub const CTR_BIN_ENV: &str = "CTR_BIN";
/// How long one ctr command may run before the test fails.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(300);

/// The ctr binary: `$CTR_BIN` or `/usr/bin/ctr`.
pub fn ctr_binary() -> PathBuf {
    std::env::var_os(CTR_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/ctr"))
}

/// A `ctr --address <daemon socket>` command with no inherited containerd settings;
/// append the arguments (global flags such as `-n <namespace>` first).
pub fn ctr_command(daemon: &Daemon) -> Command {
    let mut cmd = Command::new(ctr_binary());
    cmd.arg("--address")
        .arg(daemon.socket())
        .env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE")
        .env_remove("CONTAINERD_SNAPSHOTTER")
        .stdin(Stdio::null());
    cmd
}

/// Runs `ctr --address <socket> <args>` and returns its output, whatever its status.
/// Panics (with the daemon's log tail) if it runs longer than [`CTR_TIMEOUT`].
pub fn ctr(daemon: &Daemon, args: &[&str]) -> Output {
    let mut cmd = ctr_command(daemon);
    cmd.args(args);
    run_with_timeout(cmd, CTR_TIMEOUT).unwrap_or_else(|partial| {
        panic!(
            "ctr {args:?} ran longer than {CTR_TIMEOUT:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&partial.stdout),
            String::from_utf8_lossy(&partial.stderr),
            daemon.log_tail(40)
        )
    })
}

/// Runs ctr and returns its stdout; panics with stdout, stderr and the daemon's log
/// tail if it fails.
pub fn ctr_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = ctr(daemon, args);
    if !out.status.success() {
        panic!(
            "ctr {args:?} failed ({})\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemon.log_tail(40)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs ctr expecting it to fail; returns its stderr, panics with its output if it
/// succeeded.
pub fn ctr_fails(daemon: &Daemon, args: &[&str]) -> String {
    let out = ctr(daemon, args);
    if out.status.success() {
        panic!(
            "ctr {args:?} succeeded but should have failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd` with captured output, killing it after `timeout`. On timeout, returns
/// `Err` with whatever it had printed.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break (status, false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break (child.wait().expect("reaping a killed child"), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    if timed_out {
        Err(output)
    } else {
        Ok(output)
    }
}

/// Splits ctr's table output (a header line, then whitespace-separated columns) into
/// rows of cells, header excluded. Cells are split on whitespace, so a column whose
/// values contain spaces (sizes such as `1.0 MiB`) spans two cells.
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Parses a size as ctr prints it (`1.0 MiB`, `512 B`, `4.0 KiB`) into bytes.
pub fn parse_human_size(number: &str, unit: &str) -> Option<f64> {
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Formats a size the way `ctr images ls` prints it: one decimal, binary units
/// (`1008.8 KiB`, `405.0 B`).
pub fn format_image_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_are_formatted_like_ctr() {
        assert_eq!(format_image_size(1_033_010), "1008.8 KiB");
        assert_eq!(format_image_size(405), "405.0 B");
        assert_eq!(format_image_size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn tables_skip_the_header_and_blank_lines() {
        let rows = table_rows("KEY PARENT KIND\nc1  Committed\n\nk2 c1 Active\n");
        assert_eq!(
            rows,
            vec![vec!["c1", "Committed"], vec!["k2", "c1", "Active"]]
        );
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(parse_human_size("4.0", "KiB"), Some(4096.0));
        assert_eq!(parse_human_size("1.5", "MiB"), Some(1.5 * 1024.0 * 1024.0));
        assert_eq!(parse_human_size("1", "XB"), None);
    }

    #[test]
    fn a_command_that_runs_too_long_is_killed() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let started = Instant::now();
        let partial = run_with_timeout(cmd, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(partial.stdout, b"started\n");
    }
}
