//! `backend-manager`: the standalone server, a clustered manager, schema and shared-configuration tools, and
//! administration of the metadata store (see [`backend_manager::cli`]).

use clap::Parser;

fn main() -> std::process::ExitCode {
    // The process runtime may start this very executable as a kernel runner (before any async runtime exists).
    backend_agent::runner_entry::dispatch();
    let cli = backend_manager::cli::Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(backend_manager::cli::run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
