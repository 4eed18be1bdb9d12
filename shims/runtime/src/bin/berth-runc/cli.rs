//! The command line, as runc's: global flags, then one subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "berth-runc", version, about = "berth's OCI runtime, with runc's command line")]
pub struct Cli {
    /// Directory holding the containers' state.
    #[arg(long, global = true, default_value = "/run/berth-runc")]
    pub root: PathBuf,
    /// Log file (errors are also printed on stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility; berth manages cgroups through cgroupfs.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// true, false or auto; with `spec`, writes a rootless configuration.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility; checkpointing is not supported.
    #[arg(long, global = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ListFormat {
    Table,
    Json,
}

/// Each subcommand's arguments are defined only when it is the one invoked: defining
/// all of them cost a cold start of berth-runc about 0.1 ms.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a container whose process waits for `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Create and start a container; without -d, wait for it and delete it.
    Run(RunArgs),
    /// Print the container's OCI state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to the container's init.
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// List the containers.
    List(ListArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(UpdateArgs),
    /// Print what this runtime supports, as JSON.
    Features,
    /// Write a default config.json.
    Spec(SpecArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    pub id: String,
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility: berth never creates a session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args)]
pub struct KillArgs {
    pub id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    #[arg(long, short = 'a')]
    pub all: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    pub id: String,
    #[arg(long, short = 'f')]
    pub force: bool,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: ListFormat,
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args)]
pub struct PsArgs {
    pub id: String,
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Arguments for ps(1), default -ef.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long)]
    pub process_label: Option<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub id: String,
    /// A JSON file of linux.resources, or - for stdin.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub kernel_memory: Option<String>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[derive(Args)]
pub struct SpecArgs {
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
}

/// runc (urfave/cli) also accepts long options with a single dash (`-bundle`): rewrite
/// them to `--bundle`. Like urfave/cli, options end at the subcommand's first
/// positional argument, so a command given to `exec` is never touched.
pub fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut result = Vec::new();
    let (mut positionals, mut expecting_value, mut done) = (0, false, false);
    for arg in args {
        if done || result.is_empty() {
            result.push(arg);
            continue;
        }
        if expecting_value {
            expecting_value = false;
        } else if let Some(flag) = arg.strip_prefix('-') {
            let name = flag.trim_start_matches('-');
            let (name, inline_value) = name.split_once('=').map_or((name, false), |(n, _)| (n, true));
            expecting_value = !inline_value && VALUE_FLAGS.contains(&name);
            let single_dash_long = !flag.starts_with('-') && name.len() > 1
                && (VALUE_FLAGS.contains(&name) || BOOL_FLAGS.contains(&name));
            if single_dash_long {
                result.push(format!("-{arg}"));
                continue;
            }
        } else {
            positionals += 1;
            // The subcommand, then its first positional: after that, nothing is an option.
            done = positionals == 2;
        }
        result.push(arg);
    }
    result
}

const VALUE_FLAGS: &[&str] = &[
    "root", "log", "log-format", "rootless", "criu", "bundle", "b", "pid-file", "console-socket",
    "preserve-fds", "format", "f", "process", "p", "cwd", "env", "e", "user", "u", "cap", "c",
    "additional-gids", "g", "resources", "r", "memory", "memory-reservation", "memory-swap",
    "kernel-memory", "cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-period", "cpu-rt-runtime",
    "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "apparmor", "process-label",
];

const BOOL_FLAGS: &[&str] = &[
    "debug", "systemd-cgroup", "no-pivot", "no-new-keyring", "detach", "keep", "all", "force",
    "quiet", "tty", "no-new-privs",
];

#[cfg(test)]
mod tests {
    use super::normalize_args;

    fn normalize(line: &str) -> String {
        normalize_args(line.split(' ').map(String::from)).join(" ")
    }

    #[test]
    fn single_dash_long_options() {
        assert_eq!(normalize("r -root /x create -bundle /b id"), "r --root /x create --bundle /b id");
        assert_eq!(normalize("r exec -t id ls -all"), "r exec -t id ls -all");
        assert_eq!(normalize("r kill -all id KILL"), "r kill --all id KILL");
        assert_eq!(normalize("r exec -e A=1 -cwd /tmp id sh -c -root"), "r exec -e A=1 --cwd /tmp id sh -c -root");
    }
}
