//! Container runtimes of the agent. `process` runs each kernel as a local child process (the embedded default).

pub mod cgroup;
pub mod process;
