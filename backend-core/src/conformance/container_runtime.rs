//! The [`ContainerRuntime`] suite: a kernel is created, its runner answers on the endpoint the runtime gave, it sees
//! its `BACKENDAI_*` environment, it is listed, it can end by itself or be destroyed, and unknown images and kernels
//! are refused.

use crate::conformance::wait::wait_until;
use crate::error::ErrorKind;
use crate::ids::KernelId;
use crate::model::ImageInfo;
use crate::runner::{AgentCodec, BatchOptions, RunMode, RunnerEvent, RunnerRequest, Stream};
use crate::runtime::{ContainerRuntime, KernelHandle, KernelSpec, RunnerEndpoint};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(60);

fn spec(image: &ImageInfo) -> KernelSpec {
    KernelSpec {
        environ: [("CONFORMANCE".to_owned(), "yes".to_owned())].into(),
        ..KernelSpec::main(
            "AKIACONFORMANCE",
            image.name.clone(),
            crate::ResourceSlots::from([("cpu", 1.into()), ("mem", (512u64 << 20).into())]),
        )
    }
}

/// Code that prints the kernel id, the user's variable and 42, per language.
fn probe(lang: &str) -> &'static str {
    match lang {
        "python" => "import os\nprint(os.environ['BACKENDAI_KERNEL_ID'], os.environ['CONFORMANCE'], 6 * 7)",
        _ => "echo $BACKENDAI_KERNEL_ID $CONFORMANCE $((6*7))",
    }
}

async fn connect(handle: &KernelHandle) -> Framed<UnixStream, AgentCodec> {
    let RunnerEndpoint::Unix(path) = &handle.endpoint;
    let stream = wait_until(format!("the runner to listen on {}", path.display()), async || {
        UnixStream::connect(path).await.ok()
    })
    .await;
    Framed::new(stream, AgentCodec::default())
}

async fn run_to_end(conn: &mut Framed<UnixStream, AgentCodec>, code: &str) -> (String, i32) {
    let run_id = uuid::Uuid::new_v4().to_string();
    let req = RunnerRequest::Execute {
        run_id: run_id.clone(),
        mode: RunMode::Query,
        code: code.into(),
        options: BatchOptions::default(),
        timeout_ms: None,
    };
    conn.send(req).await.expect("send");
    let mut out = String::new();
    loop {
        let ev = tokio::time::timeout(WAIT, conn.next()).await.expect("event in time").expect("open").expect("frame");
        match ev {
            RunnerEvent::Output { stream: Stream::Stdout, data, .. } => out.push_str(&data),
            RunnerEvent::Finished { run_id: r, exit_code } if r == run_id => return (out, exit_code),
            _ => {}
        }
    }
}

/// Runs every check with the first image the runtime offers.
pub async fn run(runtime: &dyn ContainerRuntime) {
    let images = runtime.images().await.expect("images");
    assert!(!images.is_empty(), "a runtime offers at least one image");
    for image in &images {
        kernel_lifecycle(runtime, image).await;
    }
    refusals(runtime, &images[0]).await;
}

/// Create, talk to the runner, list, destroy.
pub async fn kernel_lifecycle(runtime: &dyn ContainerRuntime, image: &ImageInfo) {
    let spec = spec(image);
    let handle = runtime.create_kernel(&spec).await.expect("create");
    assert_eq!((handle.kernel_id, handle.session_id), (spec.kernel_id, spec.session_id));
    assert_eq!(handle.lang, image.lang);
    let mut conn = connect(&handle).await;
    match tokio::time::timeout(WAIT, conn.next()).await.expect("ready in time").expect("open").expect("frame") {
        RunnerEvent::Ready { lang, .. } => assert_eq!(lang, image.lang),
        other => panic!("the runner's first event must be Ready, got {other:?}"),
    }
    let (out, code) = run_to_end(&mut conn, probe(&image.lang)).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("{} yes 42", spec.kernel_id), "environment reaches the kernel");
    let listed = runtime.list_kernels().await.expect("list");
    assert!(listed.iter().any(|h| h.kernel_id == spec.kernel_id), "a live kernel is listed");
    runtime.destroy_kernel(spec.kernel_id, false).await.expect("destroy");
    let listed = runtime.list_kernels().await.expect("list");
    assert!(!listed.iter().any(|h| h.kernel_id == spec.kernel_id), "a destroyed kernel is not listed");

    // A kernel that ends by itself is seen by wait_kernel, and destroying it afterwards still succeeds.
    let spec = self::spec(image);
    let handle = runtime.create_kernel(&spec).await.expect("create");
    let mut conn = connect(&handle).await;
    conn.send(RunnerRequest::Shutdown).await.expect("send");
    let exit = tokio::time::timeout(WAIT, runtime.wait_kernel(spec.kernel_id)).await.expect("exit in time");
    assert!(exit.is_ok(), "wait_kernel reports the end: {exit:?}");
    runtime.destroy_kernel(spec.kernel_id, true).await.expect("destroying an ended kernel");
}

/// Unknown images and kernels are refused with the right kinds.
pub async fn refusals(runtime: &dyn ContainerRuntime, image: &ImageInfo) {
    let mut bad = spec(image);
    bad.image = format!("no-such-image-{}:1", uuid::Uuid::new_v4().simple());
    assert_eq!(runtime.create_kernel(&bad).await.unwrap_err().kind(), ErrorKind::ImageNotFound);
    let unknown = KernelId::new();
    assert_eq!(runtime.destroy_kernel(unknown, true).await.unwrap_err().kind(), ErrorKind::KernelNotFound);
    assert_eq!(runtime.wait_kernel(unknown).await.unwrap_err().kind(), ErrorKind::KernelNotFound);
}
