//! `berth-runc`: runc's command line over berth-runtime. Exit codes as runc's: 0 on
//! success, 1 on error, and the container's own status for `run` and `exec`.

#![cfg_attr(not(test), no_main)]

mod cli;
mod commands;
mod log;
mod resources;
mod terminal;

use berth_runtime::RuntimeError;
use clap::Parser;
use commands::CliError;

// Rust's runtime start-up (a SIGSEGV handler on an alternate stack, found through
// /proc/self/maps, and more) costs about 15 system calls per start; berth-runc starts
// twice per container, so it has a plain C entry point. Arguments come from the C
// library either way.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // As Rust's start-up would: a hook that exits without reading its state must give
    // EPIPE, not kill the runtime. The init restores every disposition before execve.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    run().into()
}

/// The exit code: the container's, 0, or 1 after an error is reported.
#[cfg_attr(test, allow(dead_code))]
fn run() -> u8 {
    berth_runtime::mark!("main");
    berth_runtime::handoff::run_if_handed_over();
    // Before parsing anything: a process joining a running container comes from a
    // sealed binary, so `exec` re-executes at once. Any argument spelling it is enough
    // (a needless re-exec is harmless; a missing one is not). A new container's init
    // re-executes the sealed binary itself (berth_runtime::handoff).
    let joins_container = std::env::args().skip(1).any(|a| a == "exec");
    let sealed = if joins_container { berth_runtime::sealed_exe::ensure_sealed_executable() } else { Ok(()) };
    let args = cli::normalize_args(std::env::args());
    let cli = cli::Cli::parse_from(args);
    berth_runtime::mark!("args parsed");
    if let Err(error) = sealed {
        return failure(&cli, &error.to_string());
    }
    match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(CliError::Runtime(RuntimeError::SealRequired(_))) => {
            // An init that cannot be handed over: run again, sealed (nothing was made).
            let error = berth_runtime::sealed_exe::ensure_sealed_executable().err();
            failure(&cli, &error.map_or_else(|| "re-executing sealed".to_string(), |e| e.to_string()))
        }
        Err(error) => failure(&cli, &error.to_string()),
    }
}

#[cfg_attr(test, allow(dead_code))]
fn failure(cli: &cli::Cli, message: &str) -> u8 {
    log::report_error(message, cli.log.as_deref(), cli.log_format);
    1
}
