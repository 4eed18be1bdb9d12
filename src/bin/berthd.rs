//! `berthd`: the berth daemon. Serves the CRI v1 (RuntimeService and ImageService) on a
//! unix socket; runs with no flags and no config file.
use std::path::PathBuf;
use std::process::ExitCode;

use berth::daemon::{self, config::Config};
use clap::Parser;

#[derive(Parser)]
#[command(name = "berthd", version, about = "berth container runtime daemon (CRI v1 and the Docker Engine API)")]
struct Args {
    /// Configuration file (default /etc/berth/config.toml, if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Persistent data directory (default /var/lib/berth).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state directory (default /run/berth).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The CRI socket (default /run/berth/berth.sock).
    #[arg(long)]
    cri_socket: Option<PathBuf>,
    /// The Docker Engine API socket (default /run/berth/docker.sock).
    #[arg(long)]
    docker_socket: Option<PathBuf>,
    /// error, warn, info, debug, trace, or a tracing filter.
    #[arg(long)]
    log_level: Option<String>,
}

fn configuration(args: Args) -> Result<Config, daemon::config::ConfigError> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(root) = args.root {
        config.root = root;
    }
    if let Some(state) = args.state {
        if args.cri_socket.is_none() && config.cri_socket == Config::default().cri_socket {
            config.cri_socket = state.join("berth.sock");
        }
        if args.docker_socket.is_none() && config.docker_socket == Config::default().docker_socket {
            config.docker_socket = state.join("docker.sock");
        }
        config.state = state;
    }
    if let Some(socket) = args.cri_socket {
        config.cri_socket = socket;
    }
    if let Some(socket) = args.docker_socket {
        config.docker_socket = socket;
    }
    if let Some(level) = args.log_level {
        config.log_level = level;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match configuration(Args::parse()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("berthd: {error}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    daemon::memory::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berthd: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stopped = runtime.block_on(daemon::run(config));
    // Dropping the runtime would wait without limit for blocking tasks, and a FIFO
    // reader whose writer never came (an exec whose process never started) blocks for
    // ever: a stopped daemon must still exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "berthd stopped");
            eprintln!("berthd: {error}");
            ExitCode::FAILURE
        }
    }
}
