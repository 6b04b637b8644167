//! A stand-in agent for load tests and benchmarks: it serves the agent RPC's kernel calls at once, runs nothing,
//! and counts what it was asked. Never for feature tests: no code runs behind it.

use backend_core::runtime::{KernelExit, KernelHandle, KernelSpec, RunnerEndpoint};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use warp::Filter;

/// A running dummy agent.
#[derive(Debug, Default)]
pub struct DummyAgent {
    /// The URL managers use to reach it.
    pub addr: String,
    created: AtomicUsize,
    destroyed: AtomicUsize,
}

impl DummyAgent {
    /// Serves a dummy agent on a free loopback port until the process ends.
    pub async fn start() -> std::io::Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let agent = Arc::new(Self { addr: format!("http://{}", listener.local_addr()?), ..Self::default() });
        let on_create = agent.clone();
        let create =
            warp::path!("v1" / "kernels").and(warp::post()).and(warp::body::json()).map(move |spec: KernelSpec| {
                on_create.created.fetch_add(1, Ordering::Relaxed);
                let handle = KernelHandle {
                    kernel_id: spec.kernel_id,
                    session_id: spec.session_id,
                    container_id: format!("dummy-{}", spec.kernel_id),
                    endpoint: RunnerEndpoint::Unix("/nonexistent".into()),
                    lang: "python".into(),
                };
                warp::reply::with_status(warp::reply::json(&handle), warp::http::StatusCode::CREATED)
            });
        let on_destroy = agent.clone();
        let destroy = warp::path!("v1" / "kernels" / String).and(warp::delete()).map(move |_id: String| {
            on_destroy.destroyed.fetch_add(1, Ordering::Relaxed);
            warp::reply::json(&KernelExit { exit_code: Some(0), reason: "user-requested".into() })
        });
        let list =
            warp::path!("v1" / "kernels").and(warp::get()).map(|| warp::reply::json(&Vec::<KernelHandle>::new()));
        tokio::spawn(warp::serve(create.or(destroy).or(list)).incoming(listener).run());
        Ok(agent)
    }

    /// Kernels it was asked to create.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Kernels it was asked to destroy.
    pub fn destroyed(&self) -> usize {
        self.destroyed.load(Ordering::Relaxed)
    }
}
