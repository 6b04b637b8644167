//! File transfers: upload into a session's work directory, use the file from code, list, download, and refuse paths
//! that leave the work directory.

use crate::common::{admin_stack, send_typed as send, Api};
use reqwest::Method;
use serde_json::{json, Value};

const BOUNDARY: &str = "e2e-files-boundary-7d1f";

/// A `multipart/form-data` body with one `src` part per `(path, content)`, as the official client sends it.
fn multipart(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (path, content) in files {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"src\"; filename=\"{path}\"\r\n").as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(api: &Api, name: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, _, body) = send(api, Method::POST, &format!("/session/{name}/upload"), &ct, multipart(files)).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// `GET /session/{name}/download` with the official client's JSON body; answers the status and the first file of
/// the first tar archive of the multipart answer (or the error body).
async fn download(api: &Api, name: &str, file: &str) -> (u16, Vec<u8>) {
    let body = serde_json::to_vec(&json!({ "files": [file] })).unwrap();
    let (status, ct, raw) =
        send(api, Method::GET, &format!("/session/{name}/download"), "application/json", body).await;
    if status != 200 {
        return (status, raw);
    }
    let boundary = ct.split("boundary=").nth(1).expect("a multipart answer").to_owned();
    let text_start = format!("--{boundary}\r\n");
    assert!(raw.starts_with(text_start.as_bytes()), "multipart starts with the boundary");
    let headers_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let tar = &raw[headers_end..];
    assert!(tar.len() >= 1024, "a tar archive");
    let size = usize::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap();
    (status, tar[512..512 + size].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_run_list_download_and_confinement() {
    let (dir, stack, api) = admin_stack().await;
    let created = api.create(json!({"image": "python:3.11", "name": "e2e-files"})).await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Upload two files, one into a new directory.
    let (status, body) =
        upload(&api, "e2e-files", &[("data.txt", b"hello from upload\n"), ("sub/dir/n.txt", b"41")]).await;
    assert!(status == 200 || status == 201, "{status} {body}");

    // Code reads them and writes a file.
    let (out, err, code) = api
        .run(
            "e2e-files",
            "print(open('data.txt').read().strip(), int(open('sub/dir/n.txt').read()) + 1)\n\
             _ = open('out.txt', 'w').write('written by code')",
        )
        .await;
    assert_eq!((out.as_str(), code), ("hello from upload 42\n", 0), "{err}");

    // List the work directory, as the official CLI reads it.
    let listing = api.send(Method::GET, "/session/e2e-files/files", Some(json!({"path": "."}))).await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    let files: Vec<Value> = serde_json::from_str(listing.body["files"].as_str().unwrap()).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["filename"].as_str().unwrap()).collect();
    for wanted in ["data.txt", "out.txt", "sub"] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
    let data = files.iter().find(|f| f["filename"] == "data.txt").unwrap();
    assert_eq!(data["size"], 18);
    assert!(data["mode"].as_str().unwrap().starts_with("-rw"), "{data}");
    assert!(data["mtime"].as_f64().unwrap() > 0.0);
    let sub = files.iter().find(|f| f["filename"] == "sub").unwrap();
    assert!(sub["mode"].as_str().unwrap().starts_with('d'), "{sub}");
    let nested = api.send(Method::GET, "/session/e2e-files/files", Some(json!({"path": "/home/work/sub/dir"}))).await;
    assert_eq!(nested.status, 200, "{}", nested.body);
    assert!(nested.body["files"].as_str().unwrap().contains("n.txt"));

    // Download what the code wrote (by relative and by /home/work path), and single-file download.
    let (status, content) = download(&api, "e2e-files", "out.txt").await;
    assert_eq!((status, content.as_slice()), (200, b"written by code".as_slice()));
    let (status, content) = download(&api, "e2e-files", "/home/work/sub/dir/n.txt").await;
    assert_eq!((status, content.as_slice()), (200, b"41".as_slice()));
    let (status, _, raw) =
        send(&api, Method::GET, "/session/e2e-files/download_single?file=out.txt", "", Vec::new()).await;
    assert_eq!((status, raw.as_slice()), (200, b"written by code".as_slice()));

    // Paths leaving the work directory are refused.
    for bad in ["../escape", "/etc/passwd", "sub/../../escape"] {
        let (status, body) = download(&api, "e2e-files", bad).await;
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    let (status, body) = upload(&api, "e2e-files", &[("../escape.txt", b"x")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(!dir.path().join("kernels").join("escape.txt").exists());
    let (status, body) = upload(&api, "e2e-files", &[("/tmp/e2e-files-abs.txt", b"x")]).await;
    assert_eq!(status, 400, "{body}");
    let listing = api.send(Method::GET, "/session/e2e-files/files", Some(json!({"path": "/etc"}))).await;
    assert_eq!(listing.status, 400, "{}", listing.body);

    // A symlink made inside the session pointing outside cannot be followed.
    let (_, err, code) =
        api.run("e2e-files", "import os\nos.symlink('/etc/passwd', 'link')\nos.symlink('/etc', 'etcdir')").await;
    assert_eq!(code, 0, "{err}");
    let (status, body) = download(&api, "e2e-files", "link").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = download(&api, "e2e-files", "etcdir/passwd").await;
    assert_eq!(status, 400);
    let (status, body) = upload(&api, "e2e-files", &[("etcdir/e2e-files-x", b"x")]).await;
    assert_eq!(status, 400, "{body}");

    // A session that is not RUNNING has no files to transfer.
    let gone = api.send(Method::DELETE, "/session/e2e-files", None).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    let (status, _) = upload(&api, "e2e-files", &[("late.txt", b"x")]).await;
    assert!(status == 404 || status == 409, "{status}");

    stack.shutdown().await;
}
