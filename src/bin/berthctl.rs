//! `berthctl`: the command-line client for people, speaking the CRI to berthd with the
//! crictl verbs that matter. Tables by default, JSON with `-o json`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "../cli/mod.rs"]
mod cli;
#[path = "../cli/images.rs"]
mod local_images;

use cli::output::Format;

#[derive(Parser)]
#[command(name = "berthctl", version, about = "berth command-line client (CRI)")]
struct Args {
    /// berthd's CRI socket.
    #[arg(long, short = 'r', default_value = "/run/berth/berth.sock", env = "BERTH_SOCKET")]
    socket: PathBuf,
    /// Output format (before the verb: `berthctl -o json ps`).
    #[arg(long = "output", short = 'o', id = "format", value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Show the runtime's version.
    Version,
    /// Show the runtime's status and configuration (JSON).
    Info,
    /// List pod sandboxes.
    Pods,
    /// Run a pod sandbox from a JSON PodSandboxConfig file.
    Runp {
        config: String,
        #[arg(long, default_value = "")]
        runtime: String,
    },
    /// Stop pod sandboxes.
    Stopp { ids: Vec<String> },
    /// Remove pod sandboxes.
    Rmp { ids: Vec<String> },
    /// Show a pod sandbox's status (JSON).
    Inspectp { id: String },
    /// List containers (running ones; -a for all).
    Ps {
        #[arg(long, short)]
        all: bool,
        #[arg(long, short)]
        pod: Option<String>,
    },
    /// Create a container in a pod from JSON ContainerConfig and PodSandboxConfig files.
    Create { pod: String, container_config: String, pod_config: String },
    /// Start containers.
    Start { ids: Vec<String> },
    /// Stop containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        #[arg(long, short, default_value_t = 10)]
        timeout: i64,
        ids: Vec<String>,
    },
    /// Remove containers.
    Rm { ids: Vec<String> },
    /// Show a container's status (JSON).
    Inspect { id: String },
    /// Print a container's log; -f follows it.
    Logs {
        #[arg(long, short)]
        follow: bool,
        id: String,
    },
    /// Run a command in a running container: its output (ExecSync), or with -i/-t an
    /// interactive session through the streaming server.
    Exec {
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        /// Pass stdin to the command.
        #[arg(long, short)]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(long, short)]
        tty: bool,
        id: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Attach to a running container's output (and its stdin with -i).
    Attach {
        #[arg(long, short)]
        interactive: bool,
        #[arg(long, short)]
        tty: bool,
        id: String,
    },
    /// Forward local ports to a pod: LOCAL:REMOTE or PORT, until interrupted.
    PortForward {
        pod: String,
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Show containers' resource usage.
    Stats,
    /// List images.
    Images,
    /// Pull an image.
    Pull {
        reference: String,
        /// USER:PASSWORD for the registry.
        #[arg(long)]
        creds: Option<String>,
    },
    /// Remove images.
    Rmi { references: Vec<String> },
    /// Show an image's status (JSON).
    Inspecti { reference: String },
    /// Image verbs that work on an image root directly, without berthd (which must not
    /// be running on that root): pull with a progress bar per layer, images, inspect,
    /// rmi, tag, gc, df.
    Local {
        /// berth's data directory.
        #[arg(long, default_value = "/var/lib/berth")]
        root: PathBuf,
        /// The config file (registry mirrors, credentials, pull settings).
        #[arg(long, default_value = "/etc/berth/config.toml")]
        config: PathBuf,
        #[command(subcommand)]
        verb: local_images::ImageVerb,
    },
}

async fn run(args: Args) -> Result<i32, String> {
    let mut clients = cli::client::connect(args.socket).await?;
    let c = &mut clients;
    let format = args.output;
    match args.verb {
        Verb::Version => cli::system::version(c).await,
        Verb::Info => cli::system::info(c).await,
        Verb::Pods => cli::pods::list(c, format).await,
        Verb::Runp { config, runtime } => cli::pods::run(c, &config, runtime).await,
        Verb::Stopp { ids } => cli::pods::stop(c, &ids).await,
        Verb::Rmp { ids } => cli::pods::remove(c, &ids).await,
        Verb::Inspectp { id } => cli::pods::inspect(c, &id).await,
        Verb::Ps { all, pod } => cli::containers::list(c, all, pod, format).await,
        Verb::Create { pod, container_config, pod_config } => cli::containers::create(c, &pod, &container_config, &pod_config).await,
        Verb::Start { ids } => cli::containers::start(c, &ids).await,
        Verb::Stop { timeout, ids } => cli::containers::stop(c, &ids, timeout).await,
        Verb::Rm { ids } => cli::containers::remove(c, &ids).await,
        Verb::Inspect { id } => cli::containers::inspect(c, &id).await,
        Verb::Logs { follow, id } => cli::containers::logs(c, &id, follow).await,
        Verb::Exec { interactive, tty, id, command, .. } if interactive || tty => return cli::stream::exec(c, &id, command, interactive, tty).await,
        Verb::Exec { timeout, id, command, .. } => return cli::containers::exec(c, &id, command, timeout).await,
        Verb::Attach { interactive, tty, id } => return cli::stream::attach(c, &id, interactive, tty).await,
        Verb::PortForward { pod, ports } => cli::stream::port_forward(c, &pod, &ports).await,
        Verb::Stats => cli::containers::stats(c, format).await,
        Verb::Images => cli::system::images(c, format).await,
        Verb::Pull { reference, creds } => cli::system::pull(c, &reference, creds).await,
        Verb::Rmi { references } => cli::system::remove_images(c, &references).await,
        Verb::Inspecti { reference } => cli::system::inspect_image(c, &reference).await,
        Verb::Local { .. } => Err("local verbs run without the daemon".to_string()),
    }
    .map(|()| 0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Verb::Local { root, config, verb } = args.verb {
        return match local_images::run(root, config, verb) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("berthctl: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berthctl: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(message) => {
            eprintln!("berthctl: {message}");
            ExitCode::FAILURE
        }
    }
}
