//! File transfer routes of `/session/{name}`: `upload`, `download`, `download_single` and `files`, in the shapes
//! Backend.AI's client expects. They act on the main kernel of a RUNNING session
//! ([`Manager::running_main_kernel`]) through the session service, which asks its agent.
//!
//! Paths are relative to the kernel's work directory (`/home/work`); absolute paths under `/home/work` are accepted
//! and mapped into it, any other absolute path is refused by the agent.

use super::{authenticated, Caller};
use crate::service::context::acting_for;
use crate::service::session::MainKernel;
use crate::Manager;
use backend_agent::http::{error_reply, json_reply, reject};
use backend_core::error::{Error, Result};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

/// The most an upload request may carry (all its files together).
pub const MAX_UPLOAD_BYTES: u64 = 1 << 30;

/// The work directory as the client names it.
const WORK: &str = "/home/work";

/// Query parameters of the file routes.
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    /// Admins: act for this keypair.
    pub owner_access_key: Option<String>,
    /// `download`: one file to download (the official client sends the list in the body).
    pub files: Option<String>,
    /// `download_single`: the file.
    pub file: Option<String>,
    /// `files`: the directory.
    pub path: Option<String>,
}

/// One path or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single path.
    One(String),
    /// Several paths.
    Many(Vec<String>),
}

/// The optional JSON body of the file routes (the official client sends its parameters there, even on GET).
#[derive(Debug, Default, Deserialize)]
pub struct FilesBody {
    /// `download`: the files.
    pub files: Option<OneOrMany>,
    /// `download_single`: the file.
    pub file: Option<String>,
    /// `files`: the directory.
    pub path: Option<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
}

/// Maps a path as the client gives it to one relative to the work directory.
fn work_relative(path: &str) -> String {
    match path.strip_prefix(WORK) {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/').to_owned(),
        _ => path.to_owned(),
    }
}

async fn collect<S, B>(body: S, limit: u64) -> Result<Bytes>
where
    S: Stream<Item = std::result::Result<B, warp::Error>>,
    B: Buf,
{
    futures::pin_mut!(body);
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| invalid(format!("the request body was cut: {e}")))?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// An optional JSON object body of at most `limit` bytes (GET requests of the official client carry one).
fn optional_json(limit: u64) -> impl Filter<Extract = (FilesBody,), Error = Rejection> + Clone {
    warp::body::stream().and_then(move |body| async move {
        let bytes = collect(body, limit).await.map_err(reject)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(FilesBody::default());
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| reject(invalid(format!("malformed request body: {e}"))))?;
        if !value.is_object() {
            return Err(reject(invalid("the request body must be a JSON object")));
        }
        serde_json::from_value(value).map_err(|e| reject(invalid(format!("malformed request body: {e}"))))
    })
}

/// One tar archive (ustar) holding one regular file.
fn tar_of(name: &str, content: &[u8], mtime: u64) -> Result<Vec<u8>> {
    if name.is_empty() || name.len() > 99 {
        return Err(invalid(format!("{name:?}: file names must be 1 to 99 bytes long to download")));
    }
    let mut header = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, len: usize, text: &str| {
        h[at..at + text.len().min(len)].copy_from_slice(&text.as_bytes()[..text.len().min(len)]);
    };
    field(&mut header, 0, 100, name);
    field(&mut header, 100, 8, "0000644");
    field(&mut header, 108, 8, "0000000");
    field(&mut header, 116, 8, "0000000");
    field(&mut header, 124, 12, &format!("{:011o}", content.len()));
    field(&mut header, 136, 12, &format!("{:011o}", mtime));
    header[156] = b'0';
    field(&mut header, 257, 6, "ustar");
    field(&mut header, 263, 2, "00");
    field(&mut header, 265, 32, "work");
    field(&mut header, 297, 32, "work");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    field(&mut header, 148, 8, &format!("{sum:06o}\0 "));
    let mut out = Vec::with_capacity(512 + content.len() + 1536);
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    out.resize(out.len() + (512 - content.len() % 512) % 512, 0);
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

fn multipart_mixed(parts: &[Vec<u8>]) -> Response {
    let boundary = format!("backendai-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Type: application/x-tar\r\n");
        body.extend_from_slice(format!("Content-Length: {}\r\n\r\n", part.len()).as_bytes());
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut resp = Response::new(body.into());
    if let Ok(ct) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        resp.headers_mut().insert("content-type", ct);
    }
    resp
}

fn octets(bytes: Bytes) -> Response {
    let mut resp = Response::new(bytes.into());
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/octet-stream"));
    resp
}

/// The main kernel of the RUNNING session `name` of the keypair the caller acts for.
async fn main_kernel(m: &Manager, caller: &Caller, owner: Option<&str>, name: &str) -> Result<MainKernel> {
    let owner = acting_for(m, &caller.keypair, owner).await?;
    m.running_main_kernel(&owner, name).await
}

async fn upload(
    m: &Manager,
    caller: &Caller,
    q: &FilesQuery,
    name: &str,
    form: warp::multipart::FormData,
) -> Result<()> {
    let main = main_kernel(m, caller, q.owner_access_key.as_deref(), name).await?;
    futures::pin_mut!(form);
    let mut total = 0u64;
    let mut count = 0usize;
    while let Some(part) = form.next().await {
        let part = part.map_err(|e| invalid(format!("malformed multipart body: {e}")))?;
        let path = part.filename().map(str::to_owned).unwrap_or_else(|| part.name().to_owned());
        let path = work_relative(&path);
        if path.is_empty() {
            return Err(invalid("each uploaded part needs a file name"));
        }
        let content = collect(part.stream(), MAX_UPLOAD_BYTES - total).await?;
        total += content.len() as u64;
        m.put_kernel_file(&main, &path, content).await?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid("no file in the upload"));
    }
    Ok(())
}

async fn download(m: &Manager, caller: &Caller, q: FilesQuery, body: FilesBody, name: &str) -> Result<Response> {
    let files = match (body.files, body.file, q.files, q.file) {
        (Some(OneOrMany::Many(v)), ..) => v,
        (Some(OneOrMany::One(f)), ..)
        | (None, Some(f), ..)
        | (None, None, Some(f), _)
        | (None, None, None, Some(f)) => {
            vec![f]
        }
        (None, None, None, None) => return Err(invalid("`files` is required")),
    };
    if files.is_empty() {
        return Err(invalid("`files` is empty"));
    }
    let main = main_kernel(m, caller, q.owner_access_key.as_deref(), name).await?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut parts = Vec::with_capacity(files.len());
    for file in &files {
        let rel = work_relative(file);
        let content = m.kernel_file(&main, &rel).await?;
        let base = rel.rsplit('/').next().unwrap_or(&rel);
        parts.push(tar_of(base, &content, now)?);
    }
    Ok(multipart_mixed(&parts))
}

async fn download_single(m: &Manager, caller: &Caller, q: FilesQuery, body: FilesBody, name: &str) -> Result<Response> {
    let file = body.file.or(q.file).ok_or_else(|| invalid("`file` is required"))?;
    let main = main_kernel(m, caller, q.owner_access_key.as_deref(), name).await?;
    m.kernel_file(&main, &work_relative(&file)).await.map(octets)
}

async fn list(m: &Manager, caller: &Caller, q: FilesQuery, body: FilesBody, name: &str) -> Result<serde_json::Value> {
    let path = body.path.or(q.path).unwrap_or_else(|| ".".to_owned());
    let main = main_kernel(m, caller, q.owner_access_key.as_deref(), name).await?;
    let rel = work_relative(&path);
    let entries = m.list_kernel_files(&main, &rel).await?;
    let files: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "mode": e.mode,
                "size": e.size,
                "ctime": e.ctime,
                "mtime": e.mtime,
                "atime": e.atime,
                "filename": e.name,
            })
        })
        .collect();
    let rel = rel.trim_start_matches("./").trim_end_matches('/');
    let abspath = if rel.is_empty() || rel == "." { WORK.to_owned() } else { format!("{WORK}/{rel}") };
    let files = serde_json::to_string(&files).map_err(|e| Error::internal(format!("listing: {e}")))?;
    Ok(serde_json::json!({ "files": files, "errors": "", "abspath": abspath }))
}

fn decorate(caller: &Caller, result: Result<Response>) -> Response {
    caller.decorate(match result {
        Ok(resp) => resp,
        Err(e) => error_reply(&e),
    })
}

/// The file transfer routes.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = m.config.max_body_bytes;
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    let query = warp::query::<FilesQuery>();

    let multipart_only = warp::header::optional::<String>("content-type")
        .and_then(|ct: Option<String>| async move {
            match ct {
                Some(ct) if ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") => Ok(()),
                _ => Err(reject(invalid("uploads must be multipart/form-data"))),
            }
        })
        .untuple_one();
    let length_limit = warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(len) if len > MAX_UPLOAD_BYTES => Err(reject(Error::PayloadTooLarge { limit: MAX_UPLOAD_BYTES })),
                _ => Ok(()),
            }
        })
        .untuple_one();
    let upload_route = warp::path!("session" / String / "upload")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .and(length_limit)
        .and(multipart_only)
        .and(warp::multipart::form().max_length(None))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: FilesQuery, form| async move {
            let result = upload(&m, &caller, &q, &name, form)
                .await
                .map(|()| json_reply(StatusCode::CREATED, &serde_json::json!({})));
            decorate(&caller, result)
        });

    let download_route = warp::path!("session" / String / "download")
        .and(warp::get())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .and(optional_json(limit))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: FilesQuery, body: FilesBody| async move {
            let result = download(&m, &caller, q, body, &name).await;
            decorate(&caller, result)
        });

    let single_route = warp::path!("session" / String / "download_single")
        .and(warp::get())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .and(optional_json(limit))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: FilesQuery, body: FilesBody| async move {
            let result = download_single(&m, &caller, q, body, &name).await;
            decorate(&caller, result)
        });

    let list_route = warp::path!("session" / String / "files")
        .and(warp::get())
        .and(auth)
        .and(with_m)
        .and(query)
        .and(optional_json(limit))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: FilesQuery, body: FilesBody| async move {
            let result = list(&m, &caller, q, body, &name).await.map(|v| json_reply(StatusCode::OK, &v));
            decorate(&caller, result)
        });

    upload_route.or(download_route).unify().or(single_route).unify().or(list_route).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_client_paths() {
        assert_eq!(work_relative("/home/work"), "");
        assert_eq!(work_relative("/home/work/a/b.txt"), "a/b.txt");
        assert_eq!(work_relative("a.txt"), "a.txt");
        assert_eq!(work_relative("/home/workers"), "/home/workers");
        assert_eq!(work_relative("/etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn builds_a_valid_tar_header() {
        let tar = tar_of("main.py", b"print(1)\n", 0).unwrap();
        assert_eq!(tar.len(), 512 + 512 + 1024);
        let sum: u32 =
            tar[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
        assert_eq!(&tar[512..521], b"print(1)\n");
    }
}
