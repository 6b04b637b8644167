//! Running the kernel runner from another binary: `backend-manager` and the examples can act as
//! `backend-kernel-runner` when started with [`RUNNER_ARG`] first, so standalone mode works from a single executable.

/// The first argument that turns a binary into the kernel runner.
pub const RUNNER_ARG: &str = "__kernel-runner";

/// Call first thing in `main`, before starting an async runtime: when the process was started as a kernel runner, runs it and exits.
pub fn dispatch() {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    if args.next().as_deref() == Some(RUNNER_ARG) {
        let code = crate::runner::main_with_args(std::iter::once(program).chain(args).collect());
        std::process::exit(code);
    }
}
