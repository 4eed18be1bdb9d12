//! Running a command to completion with captured stdout/stderr/exit code and a timeout
//! that kills it and fails the test instead of hanging. Output goes through files, not
//! pipes, so a container that inherits them (create, run -d) cannot block the reader.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tempdir::TempDir;

/// Default time one runtime operation may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// What was run (for messages).
    pub what: String,
    /// Exit code, or 128+signal when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics (failing the test) with the full output unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> CmdOutput {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command exited non-zero.
    #[track_caller]
    pub fn failed(self) -> CmdOutput {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdin from /dev/null) and waits at most `timeout`; on timeout kills it
/// and panics.
#[track_caller]
pub fn run_command(mut cmd: Command, timeout: Duration) -> CmdOutput {
    let what = format!("{cmd:?}");
    let dir = TempDir::new("out");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = File::create(&out_path).expect("create stdout file");
    let err = File::create(&err_path).expect("create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("timed out after {timeout:?}: {what}\n--- stderr ---\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    CmdOutput {
        what,
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Runs a host shell snippet with `sh -c`.
#[track_caller]
pub fn sh(script: &str) -> CmdOutput {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    run_command(cmd, DEFAULT_TIMEOUT)
}
