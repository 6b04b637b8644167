//! `bai`: the command-line client of the Backend.AI API (see [`backend_client::cli`]).

use clap::Parser;

#[tokio::main]
async fn main() {
    let code = backend_client::cli::run(backend_client::cli::Cli::parse()).await;
    std::process::exit(code);
}
