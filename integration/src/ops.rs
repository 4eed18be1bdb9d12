//! The runtime operations on a bundle's containers: run, create, start, state, kill,
//! delete, exec, pause, resume, ps, list, update, and waiting for a status.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::Bundle;
use crate::command::{run_command, CmdOutput, DEFAULT_TIMEOUT};

impl Bundle<'_> {
    /// Runs the runtime with `args` (after `--root`) and the default timeout.
    #[track_caller]
    pub fn rt_cmd(&self, args: &[&str]) -> CmdOutput {
        self.rt_cmd_timeout(args, DEFAULT_TIMEOUT)
    }

    #[track_caller]
    pub fn rt_cmd_timeout(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut cmd = self.runtime().command(args);
        cmd.current_dir(self.dir());
        run_command(cmd, timeout)
    }

    /// `run [extra] --bundle <dir> <id>` in the foreground, after writing config.json.
    #[track_caller]
    pub fn run(&self, extra: &[&str]) -> CmdOutput {
        self.run_id(self.id(), extra)
    }

    #[track_caller]
    pub fn run_id(&self, id: &str, extra: &[&str]) -> CmdOutput {
        self.bundle_cmd("run", id, extra)
    }

    /// `create [extra] --bundle <dir> <id>` after writing config.json.
    #[track_caller]
    pub fn create(&self, extra: &[&str]) -> CmdOutput {
        self.create_id(self.id(), extra)
    }

    #[track_caller]
    pub fn create_id(&self, id: &str, extra: &[&str]) -> CmdOutput {
        self.bundle_cmd("create", id, extra)
    }

    /// `<verb> [extra] --bundle <dir> <id>` after writing config.json.
    #[track_caller]
    fn bundle_cmd(&self, verb: &str, id: &str, extra: &[&str]) -> CmdOutput {
        self.write_config();
        let dir = self.dir().to_string_lossy().into_owned();
        let mut args = vec![verb];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &dir, id]);
        self.rt_cmd(&args)
    }

    #[track_caller]
    pub fn start(&self) -> CmdOutput {
        self.rt_cmd(&["start", self.id()])
    }

    /// Create then start, both required to succeed; returns the container pid.
    #[track_caller]
    pub fn create_start(&self) -> i32 {
        self.create(&[]).ok();
        let pid = self.pid();
        self.start().ok();
        pid
    }

    /// `state <id>` parsed; panics if the command fails.
    #[track_caller]
    pub fn state(&self) -> Value {
        self.state_of(self.id())
    }

    #[track_caller]
    pub fn state_of(&self, id: &str) -> Value {
        let out = self.rt_cmd(&["state", id]).ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state of {id} is not JSON ({e}): {out}"))
    }

    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The container init's host pid from `state`.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let st = self.state();
        st["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {st}")) as i32
    }

    #[track_caller]
    pub fn kill(&self, signal: &str) -> CmdOutput {
        self.rt_cmd(&["kill", self.id(), signal])
    }

    #[track_caller]
    pub fn delete(&self) -> CmdOutput {
        self.rt_cmd(&["delete", self.id()])
    }

    #[track_caller]
    pub fn delete_force(&self) -> CmdOutput {
        self.rt_cmd(&["delete", "--force", self.id()])
    }

    /// `exec [extra] <id> <args...>`.
    #[track_caller]
    pub fn exec(&self, extra: &[&str], args: &[&str]) -> CmdOutput {
        let mut all = vec!["exec"];
        all.extend_from_slice(extra);
        all.push(self.id());
        all.extend_from_slice(args);
        self.rt_cmd(&all)
    }

    #[track_caller]
    pub fn pause(&self) -> CmdOutput {
        self.rt_cmd(&["pause", self.id()])
    }

    #[track_caller]
    pub fn resume(&self) -> CmdOutput {
        self.rt_cmd(&["resume", self.id()])
    }

    /// `ps --format json <id>` parsed into pids.
    #[track_caller]
    pub fn ps_pids(&self) -> Vec<i32> {
        let out = self.rt_cmd(&["ps", "--format", "json", self.id()]).ok();
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps json ({e}): {out}"));
        v.as_array()
            .unwrap_or_else(|| panic!("ps json is not a list: {out}"))
            .iter()
            .filter_map(|p| p.as_i64())
            .map(|p| p as i32)
            .collect()
    }

    #[track_caller]
    pub fn list(&self) -> CmdOutput {
        self.rt_cmd(&["list"])
    }

    /// `update [args] <id>`.
    #[track_caller]
    pub fn update(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec!["update"];
        all.extend_from_slice(args);
        all.push(self.id());
        self.rt_cmd(&all)
    }

    /// Polls `state` until status is `want`; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_status(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.rt_cmd(&["state", self.id()]);
            let status = serde_json::from_str::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string));
            if status.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not reach status {want} in {timeout:?}; last: {out}",
                self.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the container to completion (`run`), requiring exit 0; returns stdout.
    #[track_caller]
    pub fn run_ok(&self) -> String {
        self.run(&[]).ok().stdout
    }

    /// Runs `script` with `sh -c` to completion (exit 0 required); returns stdout.
    #[track_caller]
    pub fn run_sh(&mut self, script: &str) -> String {
        self.set_sh(script);
        let id = self.new_id();
        self.run_id(&id, &[]).ok().stdout
    }
}
