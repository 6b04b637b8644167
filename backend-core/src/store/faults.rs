//! A store decorator that fails chosen methods on demand: failure injection at named points, the points being the
//! store traits' method names (`allocate`, `update_kernel`, ...). Tests wrap a real store in it to check what callers
//! leave behind when a store call fails midway (nothing half-allocated, no leaked slots).

use super::delegate::{Delegate, POINTS as METHOD_NAMES};
use super::MetadataStore;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The named points: every method of the store traits.
pub const POINTS: &[&str] = METHOD_NAMES;

/// Wraps a store; every call passes through unless a failure is armed at its point.
pub struct FaultyStore {
    inner: Arc<dyn MetadataStore>,
    armed: Mutex<HashMap<&'static str, u32>>,
    fired: Mutex<HashMap<&'static str, u32>>,
}

impl FaultyStore {
    /// Wraps `inner` with no failure armed.
    pub fn new(inner: Arc<dyn MetadataStore>) -> Self {
        Self { inner, armed: Mutex::new(HashMap::new()), fired: Mutex::new(HashMap::new()) }
    }

    /// Makes the next `times` calls at `point` fail with `Unavailable` before reaching the store. Panics for a
    /// point that is not a method name, so a typo cannot make a test that injects nothing.
    pub fn fail(&self, point: &'static str, times: u32) {
        assert!(POINTS.contains(&point), "{point:?} is not a MetadataStore method");
        self.armed.lock().expect("faults").insert(point, times);
    }

    /// How many injected failures fired at `point` so far.
    pub fn fired(&self, point: &str) -> u32 {
        self.fired.lock().expect("faults").get(point).copied().unwrap_or(0)
    }
}

impl Delegate for FaultyStore {
    fn delegate(&self, point: &'static str) -> Result<&dyn MetadataStore> {
        let mut armed = self.armed.lock().expect("faults");
        match armed.get_mut(point) {
            Some(left) if *left > 0 => {
                *left -= 1;
                *self.fired.lock().expect("faults").entry(point).or_default() += 1;
                Err(Error::Unavailable { msg: format!("injected failure at {point}") })
            }
            _ => Ok(&*self.inner),
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::store::prelude::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn every_method_is_a_point_once() {
        let mut names = POINTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len(), "a method name appears twice: {POINTS:?}");
        for name in ["insert_keypair", "insert_domain", "allocate", "count_sessions", "answer_vfolder_invitation"] {
            assert!(POINTS.contains(&name), "{name} is a point");
        }
    }

    #[tokio::test]
    async fn an_armed_point_fails_as_often_as_asked_then_passes() {
        let faults = FaultyStore::new(Arc::new(SqliteStore::in_memory().unwrap()));
        faults.fail("list_agents", 2);
        for _ in 0..2 {
            let e = faults.list_agents().await.unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::ServiceUnavailable);
        }
        assert!(faults.list_agents().await.unwrap().is_empty(), "the third call reaches the store");
        assert_eq!(faults.fired("list_agents"), 2);
        assert_eq!(faults.fired("agent"), 0);
    }
}
