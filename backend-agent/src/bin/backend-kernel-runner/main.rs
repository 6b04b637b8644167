//! `backend-kernel-runner`: hosts a kernel's interpreter and serves the agent over a Unix socket
//! (see `backend_agent::runner`).

fn main() -> std::process::ExitCode {
    let code = backend_agent::runner::main_with_args(std::env::args().collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
