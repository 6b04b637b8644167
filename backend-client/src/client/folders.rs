//! The virtual-folder calls of [`Client`]: `/folders` (folders, their files, sharing) and the transfers that
//! follow `request-upload` (tus 1.0.0: `HEAD` for the offset, `PATCH` in chunks) and `request-download` (`GET` with
//! `Range`). Transfers resume where the server says they stopped, so a broken connection costs one retry, not the
//! bytes already sent.

use super::{problem_of, to_json, Client};
use backend_core::api::vfolder::{
    CreateVFolder, DeleteFiles, FileList, InvitationRef, Invitations, Invite, Invited, Leave, ListFiles, Mkdir,
    MoveFile, RenameFile, RenameVFolder, RequestDownload, RequestUpload, Share, Shared, TransferTicket, Unshare,
    Unshared, VFolderHosts, VFolderInfo,
};
use backend_core::error::{Error, Result};
use backend_core::vfolder::{UsageMode, VFolderPermission};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes sent by one tus `PATCH`: large enough to keep a fast link busy, small enough that a broken one repeats
/// little. The file is streamed, so this is not memory.
pub const UPLOAD_CHUNK: u64 = 16 << 20;

/// How many failed attempts in a row a transfer survives before it gives up; an attempt that moves the offset
/// forward resets the count.
pub const TRANSFER_RETRIES: u32 = 5;

const TUS_VERSION: &str = "1.0.0";

/// A ticket's transfer URL with its token in the query.
pub fn transfer_url(ticket: &TransferTicket) -> Result<Url> {
    let mut url = Url::parse(&ticket.url)
        .map_err(|e| Error::Internal { msg: format!("the server gave a bad transfer URL {:?}: {e}", ticket.url) })?;
    url.query_pairs_mut().append_pair("token", &ticket.token);
    Ok(url)
}

/// Reads a body that may be empty (Backend.AI answers some calls with 201/204 and nothing) as JSON or `Null`.
fn json_or_null(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

impl Client {
    /// Sends one signed request and answers its JSON body (`Null` when empty), or the decoded problem.
    async fn folder_call(&self, method: Method, segments: &[&str], body: Option<Value>) -> Result<Value> {
        let url = self.url(segments, &[]);
        let body = body.map(|b| to_json(&b)).transpose()?;
        let (_, bytes) = self.send_signed(method, url, body).await?;
        Ok(json_or_null(&bytes))
    }

    async fn folder_typed<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<T> {
        let what = format!("{method} /{}", segments.join("/"));
        let value = self.folder_call(method, segments, body).await?;
        serde_json::from_value(value.clone())
            .map_err(|e| Error::Internal { msg: format!("unexpected answer to {what}: {e}: {value}") })
    }

    /// `POST /folders`: creates a folder on `host` (the server's default when `None`), owned by the caller or by
    /// `group` (a project folder, whose members get `permission`).
    pub async fn create_folder(
        &self,
        name: &str,
        host: Option<&str>,
        group: Option<&str>,
        usage_mode: UsageMode,
        permission: VFolderPermission,
    ) -> Result<VFolderInfo> {
        let body = CreateVFolder {
            name: name.to_owned(),
            host: host.map(str::to_owned),
            group: group.map(str::to_owned),
            usage_mode: Some(usage_mode),
            permission: Some(permission),
            unmanaged_path: None,
            quota: None,
            cloneable: false,
        };
        self.folder_typed(Method::POST, &["folders"], Some(to_value(&body)?)).await
    }

    /// `GET /folders`: the folders the caller owns, was shared or may use through a group.
    pub async fn list_folders(&self) -> Result<Vec<VFolderInfo>> {
        self.folder_typed(Method::GET, &["folders"], None).await
    }

    /// `GET /folders/{name}`.
    pub async fn folder_info(&self, name: &str) -> Result<VFolderInfo> {
        self.folder_typed(Method::GET, &["folders", name], None).await
    }

    /// `DELETE /folders/{name}`: deletes a folder and its files (`Conflict` while a session mounts it).
    pub async fn delete_folder(&self, name: &str) -> Result<()> {
        self.folder_call(Method::DELETE, &["folders", name], None).await.map(drop)
    }

    /// `POST /folders/{name}/rename`.
    pub async fn rename_folder(&self, name: &str, new_name: &str) -> Result<()> {
        let body = RenameVFolder { new_name: new_name.to_owned() };
        self.folder_call(Method::POST, &["folders", name, "rename"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `GET /folders/_/hosts`: the hosts the caller may use and the default one.
    pub async fn folder_hosts(&self) -> Result<VFolderHosts> {
        self.folder_typed(Method::GET, &["folders", "_", "hosts"], None).await
    }

    /// `POST /folders/{name}/mkdir`: makes a directory (`parents` like `mkdir -p`).
    pub async fn mkdir(&self, folder: &str, path: &str, parents: bool, exist_ok: bool) -> Result<()> {
        let body = Mkdir { path: path.to_owned(), parents, exist_ok };
        self.folder_call(Method::POST, &["folders", folder, "mkdir"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `GET /folders/{name}/files`: the entries of a directory (`.` or `""` for the top).
    pub async fn list_files(&self, folder: &str, path: &str) -> Result<FileList> {
        // A JSON body on GET, as the official client sends it.
        let body = ListFiles { path: path.to_owned() };
        self.folder_typed(Method::GET, &["folders", folder, "files"], Some(to_value(&body)?)).await
    }

    /// `POST /folders/{name}/rename-file`: gives a file or directory a new name in its directory.
    pub async fn rename_file(&self, folder: &str, target_path: &str, new_name: &str) -> Result<()> {
        let body = RenameFile { target_path: target_path.to_owned(), new_name: new_name.to_owned(), is_dir: false };
        self.folder_call(Method::POST, &["folders", folder, "rename-file"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `POST /folders/{name}/move-file`: moves a file or directory inside the folder.
    pub async fn move_file(&self, folder: &str, src: &str, dst: &str) -> Result<()> {
        let body = MoveFile { src: src.to_owned(), dst: dst.to_owned() };
        self.folder_call(Method::POST, &["folders", folder, "move-file"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `DELETE /folders/{name}/delete-files`: deletes files (directories too with `recursive`).
    pub async fn delete_files(&self, folder: &str, files: &[&str], recursive: bool) -> Result<()> {
        let body = DeleteFiles { files: owned(files), recursive };
        self.folder_call(Method::DELETE, &["folders", folder, "delete-files"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `POST /folders/{name}/invite`: invites users by e-mail to share the folder with `permission`.
    pub async fn invite(&self, folder: &str, permission: VFolderPermission, emails: &[&str]) -> Result<Invited> {
        let body = Invite { perm: permission, emails: owned(emails) };
        self.folder_typed(Method::POST, &["folders", folder, "invite"], Some(to_value(&body)?)).await
    }

    /// `GET /folders/invitations/list`: the caller's pending invitations.
    pub async fn invitations(&self) -> Result<Invitations> {
        self.folder_typed(Method::GET, &["folders", "invitations", "list"], None).await
    }

    /// `POST /folders/invitations/accept`.
    pub async fn accept_invitation(&self, id: &str) -> Result<()> {
        let body = InvitationRef { inv_id: id.to_owned() };
        self.folder_call(Method::POST, &["folders", "invitations", "accept"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `POST /folders/{name}/share`: shares a folder with users directly, without invitations.
    pub async fn share(&self, folder: &str, permission: VFolderPermission, emails: &[&str]) -> Result<Shared> {
        let body = Share { permission, emails: owned(emails) };
        self.folder_typed(Method::POST, &["folders", folder, "share"], Some(to_value(&body)?)).await
    }

    /// `DELETE /folders/{name}/unshare`: withdraws shares.
    pub async fn unshare(&self, folder: &str, emails: &[&str]) -> Result<Unshared> {
        let body = Unshare { emails: owned(emails) };
        self.folder_typed(Method::DELETE, &["folders", folder, "unshare"], Some(to_value(&body)?)).await
    }

    /// `POST /folders/{name}/leave`: gives up the caller's share of someone else's folder.
    pub async fn leave(&self, folder: &str) -> Result<()> {
        let body = Leave { shared_user_uuid: None };
        self.folder_call(Method::POST, &["folders", folder, "leave"], Some(to_value(&body)?)).await.map(drop)
    }

    /// `POST /folders/{name}/request-upload`: a ticket to upload `size` bytes to `path`.
    pub async fn request_upload(&self, folder: &str, path: &str, size: u64) -> Result<TransferTicket> {
        let body = RequestUpload { path: path.to_owned(), size };
        self.folder_typed(Method::POST, &["folders", folder, "request-upload"], Some(to_value(&body)?)).await
    }

    /// `POST /folders/{name}/request-download`: a ticket to download `path`.
    pub async fn request_download(&self, folder: &str, path: &str) -> Result<TransferTicket> {
        let body = RequestDownload { path: path.to_owned(), archive: false };
        self.folder_typed(Method::POST, &["folders", folder, "request-download"], Some(to_value(&body)?)).await
    }

    /// Uploads `local` to `remote` in `folder`: `request-upload`, then [`resume_upload`](Self::resume_upload).
    /// `progress(done, total)` is called as bytes go out.
    pub async fn upload_file(
        &self,
        folder: &str,
        local: &Path,
        remote: &str,
        progress: impl Fn(u64, u64),
    ) -> Result<()> {
        let size =
            tokio::fs::metadata(local).await.map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
        if !size.is_file() {
            return Err(Error::InvalidParams { msg: format!("{} is not a file", local.display()) });
        }
        let ticket = self.request_upload(folder, remote, size.len()).await?;
        self.resume_upload(&ticket, local, progress).await
    }

    /// tus `HEAD`: how many bytes of the upload the server holds.
    pub async fn upload_offset(&self, ticket: &TransferTicket) -> Result<u64> {
        let response = self
            .http
            .head(transfer_url(ticket)?)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(Error::from_problem(status.as_u16(), problem_of(status, &body)));
        }
        header_u64(response.headers(), "upload-offset")
            .ok_or_else(|| Error::Internal { msg: "the upload answered HEAD without Upload-Offset".into() })
    }

    /// One tus `PATCH`: sends `len` bytes of `local` from `offset`, streamed from the file; answers the offset the
    /// server reports afterwards. `sent` counts the bytes as they leave.
    pub async fn upload_part(
        &self,
        ticket: &TransferTicket,
        local: &Path,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
    ) -> Result<u64> {
        let mut file =
            tokio::fs::File::open(local).await.map_err(|e| Error::io(format!("cannot open {}", local.display()), e))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(format!("cannot seek in {}", local.display()), e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        let response = self
            .http
            .patch(transfer_url(ticket)?)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Offset", offset)
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        let status = response.status();
        let new_offset = header_u64(response.headers(), "upload-offset");
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::from_problem(status.as_u16(), problem_of(status, &body)));
        }
        new_offset.ok_or_else(|| Error::Internal { msg: "the upload answered PATCH without Upload-Offset".into() })
    }

    /// Sends what the server lacks of an upload: asks its offset (`HEAD`), then `PATCH`es [`UPLOAD_CHUNK`]s from
    /// there. A network error or an offset conflict starts over from a fresh `HEAD`, up to [`TRANSFER_RETRIES`]
    /// times without progress.
    pub async fn resume_upload(
        &self,
        ticket: &TransferTicket,
        local: &Path,
        progress: impl Fn(u64, u64),
    ) -> Result<()> {
        let total = tokio::fs::metadata(local)
            .await
            .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?
            .len();
        let mut failures = 0;
        let mut offset = None;
        loop {
            let attempt = async {
                let start = match offset {
                    Some(known) => known,
                    None => self.upload_offset(ticket).await?,
                };
                progress(start, total);
                if start >= total {
                    return Ok(start);
                }
                let len = UPLOAD_CHUNK.min(total - start);
                let sent = Arc::new(AtomicU64::new(0));
                let part = self.upload_part(ticket, local, start, len, sent.clone());
                tokio::pin!(part);
                // The body stream must be 'static, so it counts into `sent` and the caller hears from here.
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        done = &mut part => break done,
                        _ = tick.tick() => progress(start + sent.load(Ordering::Relaxed), total),
                    }
                }
            }
            .await;
            match attempt {
                Ok(done) if done >= total => {
                    progress(total, total);
                    return Ok(());
                }
                Ok(done) => {
                    failures = if Some(done) > offset { 0 } else { failures + 1 };
                    offset = Some(done);
                }
                Err(e) if retryable(&e) && failures < TRANSFER_RETRIES => {
                    failures += 1;
                    offset = None;
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
            if failures > TRANSFER_RETRIES {
                return Err(Error::Unavailable { msg: "the upload makes no progress".into() });
            }
        }
    }

    /// Downloads `remote` of `folder` to `local`. When `local` already holds a part of the file (an earlier
    /// download that broke), only the rest is fetched (`Range`); a transfer that breaks resumes the same way, up
    /// to [`TRANSFER_RETRIES`] times without progress. `progress(done, total)` is called as bytes arrive.
    pub async fn download_file(
        &self,
        folder: &str,
        remote: &str,
        local: &Path,
        progress: impl Fn(u64, u64),
    ) -> Result<()> {
        let ticket = self.request_download(folder, remote).await?;
        let mut failures = 0;
        loop {
            let have = match tokio::fs::metadata(local).await {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(Error::io(format!("cannot read {}", local.display()), e)),
            };
            match self.download_from(&ticket, local, have, &progress).await {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) && failures < TRANSFER_RETRIES => {
                    let now = tokio::fs::metadata(local).await.map(|m| m.len()).unwrap_or(0);
                    failures = if now > have { 1 } else { failures + 1 };
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One `GET` of a download, from byte `have` on, appended to `local`.
    async fn download_from(
        &self,
        ticket: &TransferTicket,
        local: &Path,
        have: u64,
        progress: &impl Fn(u64, u64),
    ) -> Result<()> {
        let mut request = self.http.get(transfer_url(ticket)?);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let (start, total) = match status {
            StatusCode::OK => (0, header_u64(&headers, CONTENT_LENGTH.as_str())),
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) = content_range(headers.get(CONTENT_RANGE)).ok_or_else(|| Error::Internal {
                    msg: "the download answered 206 without a usable Content-Range".into(),
                })?;
                (start, total)
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // `bytes */<size>`: what we have is the whole file, or more than it (then start over).
                let size =
                    headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("bytes */"));
                match size.and_then(|s| s.parse::<u64>().ok()) {
                    Some(size) if size == have => {
                        progress(have, have);
                        return Ok(());
                    }
                    _ => {
                        truncate(local).await?;
                        return Err(Error::Unavailable { msg: "the local file is larger than the remote one".into() });
                    }
                }
            }
            _ => {
                let body = response.bytes().await.unwrap_or_default();
                return Err(Error::from_problem(status.as_u16(), problem_of(status, &body)));
            }
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .open(local)
            .await
            .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Error::io(format!("cannot seek in {}", local.display()), e))?;
        let total = total.map(|t| if status == StatusCode::OK { t } else { t.max(start) });
        let mut done = start;
        progress(done, total.unwrap_or(0));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Keep what arrived: the retry asks for the rest.
                    file.flush().await.map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
                    return Err(self.unavailable(e));
                }
            };
            file.write_all(&chunk).await.map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
            done += chunk.len() as u64;
            progress(done, total.unwrap_or(done));
        }
        file.flush().await.map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
        match total {
            Some(total) if done < total => {
                Err(Error::Unavailable { msg: format!("the download ended after {done} of {total} bytes") })
            }
            _ => Ok(()),
        }
    }
}

async fn truncate(local: &Path) -> Result<()> {
    tokio::fs::File::create(local)
        .await
        .map(drop)
        .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

fn to_value(body: &impl Serialize) -> Result<Value> {
    serde_json::to_value(body).map_err(Error::internal)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `bytes <start>-<end>/<total>` as (start, Some(total)); `*` totals as None.
fn content_range(value: Option<&HeaderValue>) -> Option<(u64, Option<u64>)> {
    let text = value?.to_str().ok()?.strip_prefix("bytes ")?;
    let (range, total) = text.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// Errors a new attempt may cure: the network, the server's transient states and an upload offset conflict
/// (someone else moved it; the next `HEAD` says where it stands).
fn retryable(e: &Error) -> bool {
    match e {
        Error::Unavailable { .. } => true,
        Error::Remote { status, .. } => matches!(status, 409 | 502 | 503 | 504),
        _ => false,
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let v = HeaderValue::from_static("bytes 100-199/200");
        assert_eq!(content_range(Some(&v)), Some((100, Some(200))));
        let v = HeaderValue::from_static("bytes 0-9/*");
        assert_eq!(content_range(Some(&v)), Some((0, None)));
        assert_eq!(content_range(Some(&HeaderValue::from_static("items 1-2/3"))), None);
        assert_eq!(content_range(None), None);
    }

    #[test]
    fn tickets_carry_their_token_in_the_query() {
        let ticket = TransferTicket { token: "a b+c".into(), url: "http://127.0.0.1:1/transfer/upload".into() };
        assert_eq!(transfer_url(&ticket).unwrap().as_str(), "http://127.0.0.1:1/transfer/upload?token=a+b%2Bc");
        let bad = TransferTicket { token: "t".into(), url: "/relative".into() };
        assert!(transfer_url(&bad).is_err());
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(retryable(&Error::Unavailable { msg: "x".into() }));
        let remote = |status| Error::Remote {
            status,
            problem: backend_core::Problem { kind: "about:blank".into(), title: "t".into(), msg: String::new() },
        };
        assert!(retryable(&remote(409)));
        assert!(!retryable(&remote(404)));
        assert!(!retryable(&Error::InvalidParams { msg: "x".into() }));
    }
}
