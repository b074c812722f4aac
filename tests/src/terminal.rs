//! Driving a command that wants a terminal (`ctr run -t`) through util-linux `script`,
//! which gives it a pseudo-terminal: the test types into `script`'s stdin and reads what
//! the terminal shows from its stdout.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Quotes `arg` for `sh` (single quotes, embedded quotes escaped).
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// A command running on a pseudo-terminal under `script -qfec`.
#[derive(Debug)]
pub struct TerminalSession {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl TerminalSession {
    /// Starts `program args…` on a new pseudo-terminal.
    pub fn start(program: &str, args: &[&str]) -> Self {
        let command_line: Vec<String> = std::iter::once(program)
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect();
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c"])
            .arg(command_line.join(" "))
            .arg("/dev/null")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning script(1)");
        let output = Arc::new(Mutex::new(Vec::new()));
        for mut stream in [
            Box::new(child.stdout.take().expect("stdout is piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr is piped")),
        ] {
            let sink = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("terminal output lock")
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        let stdin = child.stdin.take();
        TerminalSession {
            child,
            stdin,
            output,
        }
    }

    /// Everything the terminal showed so far (lossily decoded).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("terminal output lock")).into_owned()
    }

    /// Waits up to `timeout` until the output, from byte `from` on, contains `needle`;
    /// returns the byte offset just past it, or `None` on timeout.
    pub fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let bytes = self.output.lock().expect("terminal output lock");
                if let Some(at) = bytes
                    .get(from..)
                    .unwrap_or_default()
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    return Some(from + at + needle.len());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `text` into the terminal.
    pub fn type_text(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("the terminal's input is open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .expect("typing into the terminal");
    }

    /// Waits up to `timeout` for the command to exit and returns its status (`script -e`
    /// exits with the command's status); `None` if it had to be killed.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for script(1)") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("it's $HOME")))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"it's $HOME");
    }

    #[test]
    fn a_command_sees_a_terminal_and_its_input_and_status_come_through() {
        let mut session = TerminalSession::start(
            "sh",
            &[
                "-c",
                "test -t 0 && echo is-a-tty; read line; echo got-$line; exit 7",
            ],
        );
        let after = session
            .wait_for("is-a-tty", 0, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no tty: {:?}", session.output()));
        session.type_text("hello\n");
        assert!(
            session
                .wait_for("got-hello", after, Duration::from_secs(10))
                .is_some(),
            "{:?}",
            session.output()
        );
        let status = session.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(7));
    }
}
