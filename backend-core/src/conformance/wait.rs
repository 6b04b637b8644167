//! Waiting in tests for a condition that other tasks or processes bring about: one bounded poll, shared by the suites
//! and the tests of every crate, so no test sleeps for a guessed time and then hopes.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long a wait may last before the test fails. Generous on purpose: it only turns a hang into a failure; a slow
/// machine running a correct program stays well inside it.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Time between two looks at the condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Asks `probe` until it answers `Some` and returns that value; `None` once [`WAIT_LIMIT`] of wall-clock time has
/// passed. For callers that add their own detail to the failure (logs, the last state seen); the others use
/// [`wait_until`].
pub async fn poll_until<T>(mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    // Wall-clock time, so that a test that pauses tokio's clock still gets a real bound.
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asks `probe` until it answers `Some` and returns that value; panics naming `what` after [`WAIT_LIMIT`].
pub async fn wait_until<T>(what: impl Display, probe: impl AsyncFnMut() -> Option<T>) -> T {
    match poll_until(probe).await {
        Some(v) => v,
        None => panic!("timed out after {WAIT_LIMIT:?} waiting for {what}"),
    }
}
