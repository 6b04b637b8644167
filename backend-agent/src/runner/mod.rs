//! The kernel runner (moved here from the binary so other executables can act as the runner).

/// Runs the kernel runner with these arguments (the first is the program name); returns the exit code.
pub fn main_with_args(_args: Vec<String>) -> i32 {
    2
}
