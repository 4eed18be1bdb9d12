//! One function per subcommand, each a thin layer over `berth_runtime::Runtime`.

use std::io::Write;

use berth_runtime::container::{block_signals, restore_signals};
use berth_runtime::{CreateOptions, ExecOptions, Runtime, RuntimeError};
use oci_spec::runtime::{Process, User};

use crate::terminal;
use crate::cli::{Cli, Command, CreateArgs, ExecArgs, ListFormat, PsArgs, RunArgs, SpecArgs};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Usage(String),
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

pub fn dispatch(cli: &Cli) -> Result<u8, CliError> {
    let runtime = Runtime::new(&cli.root);
    match &cli.command {
        Command::Create(args) => runtime.create(&create_options(args)).map(|_| 0).map_err(Into::into),
        Command::Start { id } => runtime.start(id).map(|_| 0).map_err(Into::into),
        Command::Run(args) => run(&runtime, args),
        Command::State { id } => print_json(&runtime.state(id)?),
        Command::Kill(args) => {
            let signal = berth_runtime::signals::parse_signal(&args.signal).map_err(RuntimeError::from)?;
            runtime.kill(&args.id, signal, args.all).map(|_| 0).map_err(Into::into)
        }
        Command::Delete(args) => runtime.delete(&args.id, args.force).map(|_| 0).map_err(Into::into),
        Command::List(args) => list(&runtime, args.format, args.quiet),
        Command::Ps(args) => ps(&runtime, args),
        Command::Exec(args) => exec(&runtime, args),
        Command::Pause { id } => runtime.pause(id).map(|_| 0).map_err(Into::into),
        Command::Resume { id } => runtime.resume(id).map(|_| 0).map_err(Into::into),
        Command::Update(args) => {
            let resources = crate::resources::from_args(args).map_err(CliError::Usage)?;
            runtime.update(&args.id, &resources).map(|_| 0).map_err(Into::into)
        }
        Command::Features => print_json(&berth_runtime::features::features()),
        Command::Spec(args) => write_default_spec(args, cli.rootless.as_deref() == Some("true")),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<u8, CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| usage(e.to_string()))?;
    println!("{text}");
    Ok(0)
}

fn create_options(args: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        console: None,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        stdio: None,
        sealed_init: !berth_runtime::sealed_exe::executable_is_sealed(),
    }
}

/// create + start; without --detach, wait (forwarding signals), then delete.
fn run(runtime: &Runtime, args: &RunArgs) -> Result<u8, CliError> {
    let mut options = create_options(&args.create);
    let bundle = berth_runtime::bundle::Bundle::load(&options.bundle).map_err(RuntimeError::from)?;
    berth_runtime::mark!("bundle loaded");
    let terminal = bundle.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let own_terminal = terminal && options.console_socket.is_none();
    let console_end = if own_terminal { Some(attach_console_pair(&mut options.console)?) } else { None };
    let previous_mask = block_signals()?;
    let record = runtime.create_from(bundle, &options)?;
    berth_runtime::mark!("created");
    let proxy = match console_end.as_ref().map(terminal::receive_master) {
        Some(Ok(master)) => Some(terminal::Proxy::start(master)?),
        Some(Err(error)) => {
            let _ = runtime.delete(&options.id, true);
            return Err(error);
        }
        None => None,
    };
    if let Err(error) = runtime.start_created(&record) {
        let _ = runtime.delete(&options.id, true);
        return Err(error.into());
    }
    berth_runtime::mark!("start done");
    // The init has closed its copy; the container's process now runs while we wait.
    berth_runtime::sealed_exe::release();
    berth_runtime::mark!("started");
    if args.detach {
        restore_signals(&previous_mask);
        return Ok(0);
    }
    let code = wait_with_terminal(record.init_pid, proxy)?;
    berth_runtime::mark!("waited");
    if !args.keep {
        runtime.delete_exited(&record)?;
        berth_runtime::mark!("deleted");
    }
    Ok(code as u8)
}

fn attach_console_pair(slot: &mut Option<std::os::fd::OwnedFd>) -> Result<std::os::fd::OwnedFd, CliError> {
    let (ours, theirs) = terminal::console_pair()?;
    *slot = Some(theirs);
    Ok(ours)
}

fn wait_with_terminal(pid: i32, proxy: Option<terminal::Proxy>) -> Result<i32, CliError> {
    let on_resize = || {
        if let Some(proxy) = &proxy {
            proxy.resize();
        }
    };
    let code = berth_runtime::wait::wait_forwarding_signals(pid, &on_resize)?;
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    Ok(code)
}

fn list(runtime: &Runtime, format: ListFormat, quiet: bool) -> Result<u8, CliError> {
    let containers = runtime.list()?;
    if quiet {
        containers.iter().for_each(|c| println!("{}", c.id));
        return Ok(0);
    }
    if format == ListFormat::Json {
        return print_json(&containers);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<12} {:<10} {:<10} {:<40} {:<30} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
    for c in &containers {
        let owner = if c.owner.is_empty() { "root" } else { &c.owner };
        let _ = writeln!(out, "{:<12} {:<10} {:<10} {:<40} {:<30} {}", c.id, c.pid, c.status, c.bundle.display(), c.created, owner);
    }
    Ok(0)
}

fn ps(runtime: &Runtime, args: &PsArgs) -> Result<u8, CliError> {
    let pids = runtime.pids(&args.id)?;
    if args.format == ListFormat::Json {
        return print_json(&pids);
    }
    let ps_args = if args.ps_args.is_empty() { vec!["-ef".to_string()] } else { args.ps_args.clone() };
    let output = std::process::Command::new("ps").args(&ps_args).output().map_err(|e| usage(format!("running ps: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_column = header.split_whitespace().position(|h| h == "PID").ok_or_else(|| usage("ps output has no PID column"))?;
    println!("{header}");
    for line in lines {
        let pid = line.split_whitespace().nth(pid_column).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn exec(runtime: &Runtime, args: &ExecArgs) -> Result<u8, CliError> {
    let process = exec_process(runtime, args)?;
    let mut options = ExecOptions {
        console_socket: args.console_socket.clone(),
        console: None,
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        stdio: None,
    };
    let own_terminal = process.terminal().unwrap_or(false) && args.console_socket.is_none() && !args.detach;
    let console_end = if own_terminal { Some(attach_console_pair(&mut options.console)?) } else { None };
    let previous_mask = block_signals()?;
    let pid = runtime.exec(&args.id, &process, &options)?;
    berth_runtime::sealed_exe::release();
    if args.detach {
        restore_signals(&previous_mask);
        return Ok(0);
    }
    let proxy = match console_end.as_ref().map(terminal::receive_master) {
        Some(master) => Some(terminal::Proxy::start(master?)?),
        None => None,
    };
    Ok(wait_with_terminal(pid, proxy)? as u8)
}

/// The process to exec: the --process file as given, or the container's own process
/// with the command line's overrides.
fn exec_process(runtime: &Runtime, args: &ExecArgs) -> Result<Process, CliError> {
    if let Some(path) = &args.process {
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("--process {}: {e}", path.display())))?;
        return serde_json::from_str(&text).map_err(|e| usage(format!("--process {}: invalid JSON: {e}", path.display())));
    }
    if args.command.is_empty() {
        return Err(usage("exec needs a command, or --process"));
    }
    let (record, _) = runtime.load(&args.id)?;
    let mut process = record.spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    process.set_env(Some(merge_env(process.env().clone().unwrap_or_default(), &args.env)));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        process.set_user(parse_user(user, &args.additional_gids)?);
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    add_capabilities(&mut process, &args.caps)?;
    Ok(process)
}

fn merge_env(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    for entry in overrides {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    env
}

fn parse_user(text: &str, additional_gids: &[u32]) -> Result<User, CliError> {
    let bad = || usage(format!("--user {text:?}: expected uid[:gid] as numbers"));
    let (uid, gid) = text.split_once(':').unwrap_or((text, "0"));
    let mut user = User::default();
    user.set_uid(uid.parse().map_err(|_| bad())?);
    user.set_gid(gid.parse().map_err(|_| bad())?);
    if !additional_gids.is_empty() {
        user.set_additional_gids(Some(additional_gids.to_vec()));
    }
    Ok(user)
}

fn add_capabilities(process: &mut Process, names: &[String]) -> Result<(), CliError> {
    if names.is_empty() {
        return Ok(());
    }
    let mut caps = process.capabilities().clone().unwrap_or_default();
    for name in names {
        let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|_| usage(format!("--cap {name}: unknown capability")))?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
    }
    process.set_capabilities(Some(caps));
    Ok(())
}

fn write_default_spec(args: &SpecArgs, rootless: bool) -> Result<u8, CliError> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        return Err(usage(format!("{} exists: remove it first", path.display())));
    }
    let spec = berth_runtime::features::default_spec(rootless).map_err(|e| usage(format!("building the default spec: {e}")))?;
    let text = serde_json::to_string_pretty(&spec).map_err(|e| usage(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| usage(format!("writing {}: {e}", path.display())))?;
    Ok(0)
}
