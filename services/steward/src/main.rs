//! `steward`: one binary for every Steward service.
//!
//! `steward up` runs all services in one process on embedded defaults; `steward run
//! <service>…` runs chosen ones against NATS and PostgreSQL (one per pod on Kubernetes).

#![allow(clippy::print_stdout, clippy::print_stderr)] // the CLI is where printing belongs

mod app;
mod bench;
mod cli;
mod playbook;
mod safe_cli;
mod watch;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad usage or configuration (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steward: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(app::dispatch(cli)) {
        Ok(code) => code,
        Err(app::CliError::Config(msg)) => {
            eprintln!("steward: {msg}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(app::CliError::Other(e)) => {
            eprintln!("steward: {e:#}");
            ExitCode::FAILURE
        }
    }
}
