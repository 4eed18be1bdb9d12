//! `berth-runc`: runc's command line over berth-runtime. Exit codes as runc's: 0 on
//! success, 1 on error, and the container's own status for `run` and `exec`.

mod cli;
mod commands;
mod log;
mod resources;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args());
    let cli = cli::Cli::parse_from(args);
    let starts_processes = matches!(cli.command, cli::Command::Create(_) | cli::Command::Run(_) | cli::Command::Exec(_));
    if starts_processes {
        if let Err(error) = berth_runtime::sealed_exe::ensure_sealed_executable() {
            log::report_error(&error.to_string(), cli.log.as_deref(), cli.log_format);
            return ExitCode::FAILURE;
        }
    }
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            log::report_error(&error.to_string(), cli.log.as_deref(), cli.log_format);
            ExitCode::FAILURE
        }
    }
}
