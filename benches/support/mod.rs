//! What the bench binaries share: percentiles, table rows, and the execute request they time.
#![allow(dead_code)] // each bench uses its own subset

use backend_core::api::{ExecuteMode, ExecuteRequest};
use std::time::Duration;

/// The `p` quantile of sorted samples, in milliseconds (NaN without samples).
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// Prints a table row: the measurement's name, the sample count, p50 and p99 in milliseconds.
pub fn row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name:<56} | {:>5} | {:>9.3} | {:>9.3} |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
}

/// A query execution of `code`.
pub fn query(code: &str) -> ExecuteRequest {
    ExecuteRequest { mode: ExecuteMode::Query, code: code.into(), run_id: None, options: serde_json::Value::Null }
}
