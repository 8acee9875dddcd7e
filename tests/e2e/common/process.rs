//! A child process owned by a test: its output goes to a log file in the
//! test's directory, it is stopped by PID when dropped, and its log is printed
//! when the test fails, so a failure shows what every server said.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a log a failing test prints, from the end.
const LOG_TAIL_BYTES: usize = 64 * 1024;

pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// How `Drop` and [`Proc::stop`] end the process.
    stop: Stop,
}

/// How a process is stopped.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// SIGKILL: for processes that leave nothing behind.
    Kill,
    /// SIGTERM, then SIGKILL after the grace period, to the process and to the
    /// children it had when the grace period began (nginx's master must be
    /// asked: killed outright, it leaves its worker holding the port).
    Term { grace: Duration },
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log` (so a restarted
    /// server's log keeps its history). Panics with the log if it cannot.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, stop: Stop) -> Proc {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {name}'s log {}: {e}", log.display()));
        writeln!(file, "=== harness: starting {name}: {cmd:?}").unwrap();
        let err = file.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            stop,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.name))
    }

    /// Panics, with the log, if the process already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!(
                "{} exited ({status}) while the test needed it; its log:\n{}",
                self.name,
                tail(&self.log())
            );
        }
    }

    /// Sends `signal` (a name such as `TERM`) to the process, by PID.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            send_signal(pid, signal);
        }
    }

    /// Stops the process the way it was configured to and reaps it; returns
    /// its exit status (`None` if it was already stopped).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let stop = self.stop;
        self.stop_with(stop)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.stop_with(Stop::Kill)
    }

    fn stop_with(&mut self, stop: Stop) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        match stop {
            Stop::Kill => {
                let _ = child.kill();
            }
            Stop::Term { grace } => {
                let children = children_of(child.id());
                send_signal(child.id(), "TERM");
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Some(status);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                eprintln!(
                    "harness: {} ignored SIGTERM for {grace:?}; killing it and its children {children:?}",
                    self.name
                );
                let _ = child.kill();
                for pid in children {
                    send_signal(pid, "KILL");
                }
            }
        }
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}; {}) -----\n{}\n----- end of {} log -----",
                self.name,
                self.log.display(),
                match (was_running, status) {
                    (true, Some(s)) => format!("stopped by the harness: {s}"),
                    (true, None) => "stopped by the harness".to_owned(),
                    (false, _) => "had already been stopped".to_owned(),
                },
                tail(&self.log()),
                self.name
            );
        }
    }
}

/// Sends a signal by PID with kill(1) (procps), so the harness needs no libc.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The PIDs of `pid`'s direct children, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

pub fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The end of a long log, cut at a line start.
pub fn tail(text: &str) -> &str {
    if text.len() <= LOG_TAIL_BYTES {
        return text;
    }
    let mut start = text.len() - LOG_TAIL_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(nl) => &text[start + nl + 1..],
        None => &text[start..],
    }
}

/// Runs a short command to completion; panics with its output unless it
/// succeeds. Returns stdout.
pub fn run(what: &str, cmd: &mut Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).unwrap_or_else(|e| panic!("{what} printed non-UTF-8: {e}"))
}

/// Creates (truncates) a file, panicking with its path on error.
pub fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}
