//! The transfer endpoints of virtual folders, authorised by a token alone (no request signing), so that a browser or
//! a tus client can use the URL the manager handed out: `request-upload` and `request-download` of
//! [`super::folders`] sign the tokens ([`backend_core::storage::token`]).
//!
//! - `<PREFIX>/upload?token=T`: the tus 1.0.0 core protocol. `OPTIONS` tells the version; `HEAD` answers
//!   `Upload-Offset` and `Upload-Length`; `PATCH` (`Content-Type: application/offset+octet-stream`, `Upload-Offset`)
//!   streams its body to the volume and answers 204 with the new `Upload-Offset` (409 when the offset is not the
//!   upload's). The upload was created by `request-upload`, so there is no creation step.
//! - `<PREFIX>/download?token=T`: `GET` streams the file with `Content-Length`, `Accept-Ranges: bytes`,
//!   `Last-Modified` and `Content-Disposition`, honouring one `Range` (206, or 416 when unsatisfiable) and
//!   `If-Range`.
//!
//! The same filter serves a manager ([`super::routes`]) and the separate transfer service
//! (`backend-manager storage-proxy`, [`serve`]).

use backend_agent::http::{error_reply, recover};
use backend_core::error::{Error, Result};
use backend_core::storage::token::{self, TransferClaims, TransferOp};
use backend_core::storage::StorageBackend;
use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

/// The path prefix of the transfer endpoints (outside Backend.AI's route space).
pub const PREFIX: &str = "/transfer";
/// The tus protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// The read buffer of downloads.
const DOWNLOAD_BUFFER: usize = 256 << 10;

/// What the transfer endpoints need, and all they need: the volumes and the secret that signs tokens. A manager
/// derives it from its own state; a separate storage service builds it alone, with no database.
pub struct Transfers {
    /// The volumes.
    pub storage: Arc<dyn StorageBackend>,
    /// The HMAC secret of transfer tokens.
    pub secret: Vec<u8>,
}

impl Transfers {
    /// The transfer part of a manager.
    pub fn of(m: &crate::Manager) -> Arc<Self> {
        Arc::new(Self { storage: m.storage.clone(), secret: m.config.transfer.secret.clone() })
    }
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn claims(m: &Transfers, q: &TokenQuery, op: TransferOp) -> Result<TransferClaims> {
    let t = q.token.as_deref().ok_or_else(|| Error::AuthFailed { msg: "no transfer token".into() })?;
    let claims = token::verify(&m.secret, t, Utc::now())?;
    if claims.op != op {
        return Err(Error::AuthFailed { msg: "the token is not for this kind of transfer".into() });
    }
    Ok(claims)
}

fn tus(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

fn empty(status: StatusCode) -> Response {
    let mut resp = warp::reply().into_response();
    *resp.status_mut() = status;
    resp
}

fn upload_id(c: &TransferClaims) -> Result<&str> {
    c.upload.as_deref().ok_or_else(|| Error::AuthFailed { msg: "the token names no upload".into() })
}

async fn head(m: &Transfers, q: TokenQuery) -> Result<Response> {
    let c = claims(m, &q, TransferOp::Upload)?;
    let status = m.storage.upload_status(upload_id(&c)?).await?;
    let mut resp = empty(StatusCode::OK);
    resp.headers_mut().insert("upload-offset", status.offset.into());
    resp.headers_mut().insert("upload-length", status.size.into());
    Ok(tus(resp))
}

async fn patch<S, B>(m: &Transfers, q: TokenQuery, headers: HeaderMap, body: S) -> Result<Response>
where
    S: futures::Stream<Item = std::result::Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let c = claims(m, &q, TransferOp::Upload)?;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim().eq_ignore_ascii_case("application/offset+octet-stream") {
        return Err(Error::InvalidParams {
            msg: "a tus PATCH must have Content-Type: application/offset+octet-stream".into(),
        });
    }
    let offset = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| Error::InvalidParams { msg: "a tus PATCH needs a numeric Upload-Offset header".into() })?;
    let stream = body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())).map_err(std::io::Error::other));
    let mut reader = tokio_util::io::StreamReader::new(stream);
    let status = m.storage.append_upload(upload_id(&c)?, offset, &mut reader).await?;
    let mut resp = empty(StatusCode::NO_CONTENT);
    resp.headers_mut().insert("upload-offset", status.offset.into());
    Ok(tus(resp))
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The byte range a `Range` header asks for within `len` bytes: `Ok(None)` for the whole file (no header, several
/// ranges, or another unit), `Err` when unsatisfiable.
fn byte_range(header: Option<&str>, len: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else { return Err(()) };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| ())?;
        if suffix == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let start: u64 = start.parse().map_err(|_| ())?;
        let end: u64 = if end.is_empty() { len.saturating_sub(1) } else { end.parse().map_err(|_| ())? };
        if start >= len || end < start {
            return Err(());
        }
        (start, end.min(len - 1))
    };
    Ok(Some(range))
}

fn content_disposition(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

async fn download(m: &Transfers, q: TokenQuery, headers: HeaderMap) -> Result<Response> {
    let c = claims(m, &q, TransferOp::Download)?;
    let (mut file, len) = m.storage.open_file(&c.host, c.vfolder, &c.path).await?;
    let modified =
        file.metadata().await.ok().and_then(|meta| meta.modified().ok()).map(|t| http_date(DateTime::<Utc>::from(t)));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A stale `If-Range` (the file changed since the client's first part) means: send the whole file again.
    let range_header = match (header("if-range"), &modified) {
        (Some(wanted), Some(current)) if wanted.trim() != current => None,
        (Some(_), None) => None,
        _ => header("range"),
    };
    let range = match byte_range(range_header, len) {
        Ok(range) => range,
        Err(()) => {
            let mut resp = backend_agent::http::problem_reply(
                416,
                &backend_core::error::Problem {
                    kind: format!("{}range-not-satisfiable", backend_core::error::PROBLEM_BASE),
                    title: "Range not satisfiable.".into(),
                    msg: format!("the file has {len} bytes"),
                },
            );
            resp.headers_mut().insert("content-range", format!("bytes */{len}").parse().expect("ascii"));
            return Ok(resp);
        }
    };
    let (status, start, count) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, len),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| Error::io("seeking the file", e))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), DOWNLOAD_BUFFER)
        .map(|chunk: std::io::Result<Bytes>| chunk);
    let mut resp = warp::reply::stream(stream).into_response();
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    h.insert("content-length", count.into());
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&c.path)) {
        h.insert("content-disposition", v);
    }
    if let Some(v) = modified.and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert("last-modified", v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {start}-{}/{len}", start + count - 1);
        h.insert("content-range", v.parse().expect("ascii"));
    }
    Ok(resp)
}

fn answer(result: Result<Response>) -> Response {
    match result {
        Ok(resp) => resp,
        Err(e) => {
            let upload_side = matches!(e, Error::Conflict { .. });
            let resp = error_reply(&e);
            if upload_side {
                tus(resp)
            } else {
                resp
            }
        }
    }
}

/// The transfer routes under [`PREFIX`].
pub fn routes(m: Arc<Transfers>) -> BoxedFilter<(Response,)> {
    let with_m = warp::any().map(move || m.clone());
    let query = warp::query::<TokenQuery>().or(warp::any().map(|| TokenQuery { token: None })).unify();
    let upload = warp::path!("transfer" / "upload");
    let options = upload.and(warp::options()).map(|| {
        let mut resp = tus(empty(StatusCode::NO_CONTENT));
        resp.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        resp
    });
    let head_route = upload
        .and(warp::head())
        .and(with_m.clone())
        .and(query)
        .then(|m: Arc<Transfers>, q: TokenQuery| async move { answer(head(&m, q).await) });
    let patch_route = upload
        .and(warp::patch())
        .and(with_m.clone())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(|m: Arc<Transfers>, q: TokenQuery, headers: HeaderMap, body| async move {
            futures::pin_mut!(body);
            answer(patch(&m, q, headers, body).await)
        });
    let download_route =
        warp::path!("transfer" / "download")
            .and(warp::get().or(warp::head()).unify())
            .and(with_m)
            .and(query)
            .and(warp::header::headers_cloned())
            .then(|m: Arc<Transfers>, q: TokenQuery, headers: HeaderMap| async move {
                answer(download(&m, q, headers).await)
            });
    options
        .boxed()
        .or(head_route.boxed())
        .unify()
        .or(patch_route.boxed())
        .unify()
        .or(download_route.boxed())
        .unify()
        .boxed()
}

/// Only the transfer routes, with errors as problem+json: what `backend-manager storage-proxy` serves.
pub fn standalone_routes(m: Arc<Transfers>) -> BoxedFilter<(Response,)> {
    routes(m).recover(recover).unify().boxed()
}

/// Serves only the transfer routes on `listener` until `shutdown` resolves.
pub async fn serve(
    m: Arc<Transfers>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "transfer service serving");
    warp::serve(standalone_routes(m)).incoming(listener).graceful(shutdown).run().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=2-"), 10), Ok(Some((2, 9))));
        assert_eq!(byte_range(Some("bytes=2-4"), 10), Ok(Some((2, 4))));
        assert_eq!(byte_range(Some("bytes=2-40"), 10), Ok(Some((2, 9))));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(byte_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(byte_range(Some("bytes=5-2"), 10), Err(()));
    }

    #[test]
    fn disposition_escapes() {
        assert_eq!(content_disposition("a/b c.txt"), "attachment; filename*=UTF-8''b%20c.txt");
    }
}
