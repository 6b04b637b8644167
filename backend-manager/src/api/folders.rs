//! The `/folders` routes: virtual folders, their files, transfers and sharing, in the shapes of Backend.AI's manager
//! (`api/vfolder.py`, 23.09) and client 23.9.10. The logic lives in [`crate::service::vfolder`].
//!
//! Parameters come in a JSON body, even on `GET` and `DELETE` (as the official client sends them), or, when the
//! body is empty, in the query string.

use super::{authenticated, transfer, Caller};
use crate::service::context::{Acting, RequestContext};
use crate::service::vfolder;
use crate::Manager;
use backend_agent::http::{error_reply, json_reply, reject};
use backend_core::api::vfolder::{
    CreateVFolder, DeleteFiles, DeleteVFolderById, InvitationRef, Invitations, Invite, Invited, Leave, ListFiles,
    ListVFolders, Message, Mkdir, MoveFile, RenameFile, RenameVFolder, RequestDownload, RequestUpload, Share, Shared,
    Unshare, Unshared, UpdateVFolderOptions,
};
use backend_core::error::{Error, Result};
use bytes::{Buf, BytesMut};
use futures::{Future, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

/// What a folder handler gets: the manager, the caller, the folder name of the path (empty for fixed paths), the
/// base URL of the transfer endpoints as the client reaches them, and the parameters.
pub struct FolderRequest<T> {
    /// The manager.
    pub m: Arc<Manager>,
    /// The caller.
    pub c: RequestContext,
    /// The `{name}` of the path.
    pub name: String,
    /// The transfer endpoints' base URL.
    pub transfer_base: String,
    /// The parameters.
    pub params: T,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
}

async fn collect<S, B>(body: S, limit: u64) -> Result<BytesMut>
where
    S: futures::Stream<Item = std::result::Result<B, warp::Error>>,
    B: Buf,
{
    futures::pin_mut!(body);
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| invalid(format!("the request body was cut: {e}")))?;
        if bytes.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            bytes.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(bytes)
}

/// Parameters from the JSON body (at most `limit` bytes), or from the query string when the body is empty.
fn params<T: DeserializeOwned + Send + 'static>(limit: u64) -> BoxedFilter<(T,)> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and(warp::body::stream())
        .and_then(move |query: String, body| async move {
            let bytes = collect(body, limit).await.map_err(reject)?;
            let value = if bytes.iter().all(u8::is_ascii_whitespace) {
                let pairs: HashMap<String, String> = url_pairs(&query);
                serde_json::to_value(pairs).map_err(|e| reject(Error::internal(e)))?
            } else {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map_err(|e| reject(invalid(format!("malformed request body: {e}"))))?
            };
            if !value.is_object() {
                return Err(reject(invalid("the parameters must be a JSON object")));
            }
            serde_json::from_value::<T>(value).map_err(|e| reject(invalid(format!("invalid parameters: {e}"))))
        })
        .boxed()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The base URL of the transfer endpoints: the configured public one, else this server's as the client reached it.
fn transfer_base(m: Arc<Manager>) -> BoxedFilter<(String,)> {
    warp::header::optional::<String>("host")
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .map(move |host: Option<String>, proto: Option<String>| match &m.config.transfer.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let own = if m.config.transfer.https { "https" } else { "http" };
                let proto = proto.as_deref().and_then(|p| p.split(',').next()).map(str::trim).unwrap_or(own);
                let host = host.unwrap_or_else(|| "localhost".into());
                format!("{proto}://{host}{}", transfer::PREFIX)
            }
        })
        .boxed()
}

/// The body of a successful reply: JSON, or nothing.
pub enum Out {
    /// A JSON document.
    Json(serde_json::Value),
    /// No body.
    Empty,
}

fn json<T: Serialize>(value: &T) -> Result<Out> {
    serde_json::to_value(value).map(Out::Json).map_err(Error::internal)
}

/// One route: `path` (extracting the folder name, or an empty string) and `method`, authenticated, answering
/// `status` with what `handler` returns.
fn route<T, F, Fut>(
    m: &Arc<Manager>,
    path: BoxedFilter<(String,)>,
    method: BoxedFilter<()>,
    status: StatusCode,
    handler: F,
) -> BoxedFilter<(Response,)>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(FolderRequest<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Out>> + Send + 'static,
{
    let with_m = {
        let m = m.clone();
        warp::any().map(move || m.clone())
    };
    path.and(method)
        .and(authenticated(m.clone()))
        .and(with_m)
        .and(transfer_base(m.clone()))
        .and(params::<T>(m.config.max_body_bytes))
        .then(move |name: String, caller: Caller, m: Arc<Manager>, transfer_base: String, params: T| {
            let handler = handler.clone();
            async move {
                let result = match RequestContext::load(&m, Acting::itself(&caller.keypair)).await {
                    Ok(c) => handler(FolderRequest { m, c, name, transfer_base, params }).await,
                    Err(e) => Err(e),
                };
                let resp = match result {
                    Ok(Out::Json(v)) => json_reply(status, &v),
                    Ok(Out::Empty) => {
                        let mut resp = warp::reply().into_response();
                        *resp.status_mut() = status;
                        resp
                    }
                    Err(e) => error_reply(&e),
                };
                caller.decorate(resp)
            }
        })
        .boxed()
}

fn fixed(
    path: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(String,)> {
    path.map(String::new).boxed()
}

/// Parameters of routes that take none (any sent are ignored).
#[derive(serde::Deserialize)]
struct Nothing {}

/// Every `/folders` route.
pub fn routes(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    use warp::path;
    let get = || warp::get().boxed();
    let post = || warp::post().boxed();
    let delete = || warp::delete().boxed();
    let named = |op: &'static str| path!("folders" / String / ..).and(warp::path(op)).and(warp::path::end()).boxed();

    let create =
        route(&m, fixed(path!("folders")), post(), StatusCode::CREATED, |r: FolderRequest<CreateVFolder>| async move {
            let access = r.m.create_folder(&r.c, r.params).await?;
            json(&vfolder::info_of(&access, None))
        });
    let list = route(&m, fixed(path!("folders")), get(), StatusCode::OK, |r: FolderRequest<ListVFolders>| async move {
        let found = r.m.list_folders(&r.c, &r.params).await?;
        json(&found.iter().map(|a| vfolder::info_of(a, None)).collect::<Vec<_>>())
    });
    let delete_by_id = route(
        &m,
        fixed(path!("folders")),
        delete(),
        StatusCode::NO_CONTENT,
        |r: FolderRequest<DeleteVFolderById>| async move {
            r.m.delete_folder_by_id(&r.c, &r.params.id).await.map(|()| Out::Empty)
        },
    );
    let hosts = route(
        &m,
        fixed(path!("folders" / "_" / "hosts")),
        get(),
        StatusCode::OK,
        |r: FolderRequest<Nothing>| async move { json(&r.m.folder_hosts(&r.c)) },
    );
    let allowed_types = route(
        &m,
        fixed(path!("folders" / "_" / "allowed_types").or(path!("folders" / "_" / "allowed-types")).unify()),
        get(),
        StatusCode::OK,
        |_: FolderRequest<Nothing>| async move { json(&["user", "group"]) },
    );
    let invitations = route(
        &m,
        fixed(path!("folders" / "invitations" / "list")),
        get(),
        StatusCode::OK,
        |r: FolderRequest<Nothing>| async move { json(&Invitations { invitations: r.m.folder_invitations(&r.c).await? }) },
    );
    let accept = route(
        &m,
        fixed(path!("folders" / "invitations" / "accept")),
        post(),
        StatusCode::OK,
        |r: FolderRequest<InvitationRef>| async move {
            r.m.accept_invitation(&r.c, &r.params.inv_id).await?;
            json(&serde_json::json!({}))
        },
    );
    let reject_invitation = route(
        &m,
        fixed(path!("folders" / "invitations" / "delete")),
        delete(),
        StatusCode::OK,
        |r: FolderRequest<InvitationRef>| async move {
            r.m.delete_invitation(&r.c, &r.params.inv_id).await?;
            json(&serde_json::json!({}))
        },
    );
    let info =
        route(&m, path!("folders" / String).boxed(), get(), StatusCode::OK, |r: FolderRequest<Nothing>| async move {
            json(&r.m.folder_info(&r.c, &r.name).await?)
        });
    let delete_named = route(
        &m,
        path!("folders" / String).boxed(),
        delete(),
        StatusCode::NO_CONTENT,
        |r: FolderRequest<Nothing>| async move { r.m.delete_folder(&r.c, &r.name).await.map(|()| Out::Empty) },
    );
    let rename =
        route(&m, named("rename"), post(), StatusCode::CREATED, |r: FolderRequest<RenameVFolder>| async move {
            r.m.rename_folder(&r.c, &r.name, &r.params.new_name).await.map(|()| Out::Empty)
        });
    let update_options = route(
        &m,
        named("update-options"),
        post(),
        StatusCode::CREATED,
        |r: FolderRequest<UpdateVFolderOptions>| async move {
            r.m.update_folder_options(&r.c, &r.name, r.params.permission, r.params.cloneable).await.map(|()| Out::Empty)
        },
    );
    let mkdir = route(&m, named("mkdir"), post(), StatusCode::CREATED, |r: FolderRequest<Mkdir>| async move {
        let p = r.params;
        r.m.make_folder_dir(&r.c, &r.name, &p.path, p.parents, p.exist_ok).await.map(|()| Out::Empty)
    });
    let files = route(&m, named("files"), get(), StatusCode::OK, |r: FolderRequest<ListFiles>| async move {
        json(&r.m.list_folder_files(&r.c, &r.name, &r.params.path).await?)
    });
    let rename_file = route(
        &m,
        named("rename-file").or(named("rename_file")).unify().boxed(),
        post(),
        StatusCode::OK,
        |r: FolderRequest<RenameFile>| async move {
            r.m.rename_folder_file(&r.c, &r.name, &r.params.target_path, &r.params.new_name).await?;
            json(&serde_json::json!({}))
        },
    );
    let move_file = route(&m, named("move-file"), post(), StatusCode::OK, |r: FolderRequest<MoveFile>| async move {
        r.m.move_folder_file(&r.c, &r.name, &r.params.src, &r.params.dst).await?;
        json(&serde_json::json!({}))
    });
    let delete_files = route(
        &m,
        named("delete-files").or(named("delete_files")).unify().boxed(),
        delete(),
        StatusCode::OK,
        |r: FolderRequest<DeleteFiles>| async move {
            r.m.delete_folder_files(&r.c, &r.name, &r.params.files, r.params.recursive).await?;
            json(&serde_json::json!({}))
        },
    );
    let request_upload =
        route(&m, named("request-upload"), post(), StatusCode::OK, |r: FolderRequest<RequestUpload>| async move {
            json(&r.m.request_upload(&r.c, &r.name, &r.params.path, r.params.size, &r.transfer_base).await?)
        });
    let request_download =
        route(&m, named("request-download"), post(), StatusCode::OK, |r: FolderRequest<RequestDownload>| async move {
            let p = r.params;
            json(&r.m.request_download(&r.c, &r.name, &p.path, p.archive, &r.transfer_base).await?)
        });
    let invite = route(&m, named("invite"), post(), StatusCode::CREATED, |r: FolderRequest<Invite>| async move {
        let invited_ids = r.m.invite_to_folder(&r.c, &r.name, r.params.perm, &r.params.emails).await?;
        json(&Invited { invited_ids })
    });
    let share = route(&m, named("share"), post(), StatusCode::CREATED, |r: FolderRequest<Share>| async move {
        let shared_emails = r.m.share_folder(&r.c, &r.name, r.params.permission, &r.params.emails).await?;
        json(&Shared { shared_emails })
    });
    let unshare = route(&m, named("unshare"), delete(), StatusCode::OK, |r: FolderRequest<Unshare>| async move {
        let unshared_emails = r.m.unshare_folder(&r.c, &r.name, &r.params.emails).await?;
        json(&Unshared { unshared_emails })
    });
    let leave = route(&m, named("leave"), post(), StatusCode::OK, |r: FolderRequest<Leave>| async move {
        r.m.leave_folder(&r.c, &r.name, r.params.shared_user_uuid.as_deref()).await?;
        json(&Message { msg: "left the shared vfolder".into() })
    });

    // Fixed paths first: `/folders/_/hosts` must not be read as the files of a folder named `_`.
    create
        .or(list)
        .unify()
        .or(delete_by_id)
        .unify()
        .or(hosts)
        .unify()
        .or(allowed_types)
        .unify()
        .or(invitations)
        .unify()
        .or(accept)
        .unify()
        .or(reject_invitation)
        .unify()
        .boxed()
        .or(info)
        .unify()
        .or(delete_named)
        .unify()
        .or(rename)
        .unify()
        .or(update_options)
        .unify()
        .or(mkdir)
        .unify()
        .or(files)
        .unify()
        .or(rename_file)
        .unify()
        .or(move_file)
        .unify()
        .boxed()
        .or(delete_files)
        .unify()
        .or(request_upload)
        .unify()
        .or(request_download)
        .unify()
        .or(invite)
        .unify()
        .or(share)
        .unify()
        .or(unshare)
        .unify()
        .or(leave)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        let p = url_pairs("path=a%2Fb+c&all=true&x");
        assert_eq!(p["path"], "a/b c");
        assert_eq!(p["all"], "true");
        assert_eq!(p["x"], "");
    }
}
