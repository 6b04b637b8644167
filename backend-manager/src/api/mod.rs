//! The public REST API (Backend.AI v7.20230615): routes, keypair authentication and rate limiting. Handlers parse,
//! call the service layer ([`crate::service`]) and render; they do not read the store.

pub mod admin;
pub mod events;
pub mod files;
pub mod folders;
pub mod graphql;
pub mod session;
pub mod stream;
pub mod transfer;

use crate::Manager;
use backend_agent::http::{recover, reject};
use backend_core::api::VersionInfo;
use backend_core::auth::{self, SignedParts, API_VERSION};
use backend_core::error::{Error, Result};
use backend_core::model::KeyPair;
use chrono::Utc;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The length of the rolling rate-limit window, in seconds (15 minutes).
pub const RATE_LIMIT_WINDOW_SECS: i64 = 900;

/// An authenticated caller and its rate-limit standing.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The keypair that signed the request.
    pub keypair: KeyPair,
    /// Its limit per window (0: unlimited).
    pub limit: u64,
    /// What is left of it.
    pub remaining: u64,
}

impl Caller {
    /// Adds the `X-RateLimit-*` headers to a response (none for keypairs without a limit).
    pub fn decorate(&self, mut resp: Response) -> Response {
        if self.limit == 0 {
            return resp;
        }
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", self.limit.into());
        h.insert("x-ratelimit-remaining", self.remaining.into());
        h.insert("x-ratelimit-window", RATE_LIMIT_WINDOW_SECS.into());
        resp
    }
}

/// True for the API versions this server speaks: v4.20181215 through v7.20230615.
pub fn supported_version(v: &str) -> bool {
    let Some((major, date)) = v.strip_prefix('v').and_then(|r| r.split_once('.')) else { return false };
    let (Ok(major), Ok(date)) = (major.parse::<u32>(), date.parse::<u32>()) else { return false };
    (4..=7).contains(&major) && (20181215..=20230615).contains(&date)
}

async fn authenticate(
    m: Arc<Manager>,
    method: Method,
    path: warp::path::FullPath,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Caller> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization =
        header("authorization").ok_or_else(|| Error::AuthFailed { msg: "no Authorization header".into() })?;
    let credential = auth::parse_authorization(authorization)?;
    let date = header("x-backendai-date")
        .or_else(|| header("date"))
        .ok_or_else(|| Error::AuthFailed { msg: "no Date or X-BackendAI-Date header".into() })?;
    let version = header("x-backendai-version").unwrap_or(API_VERSION);
    if !supported_version(version) {
        return Err(Error::InvalidParams {
            msg: format!("unsupported API version {version:?}: this server speaks v4.20181215 to {API_VERSION}"),
        });
    }
    let host = header("host").ok_or_else(|| Error::AuthFailed { msg: "no Host header".into() })?;
    let path_and_query = match query.as_deref() {
        Some(q) if !q.is_empty() => format!("{}?{q}", path.as_str()),
        _ => path.as_str().to_owned(),
    };
    let keypair = m.signing_keypair(&credential.access_key.as_str().into()).await?;
    let now = Utc::now();
    // A request without a body may be signed with an empty content type (our client) or with
    // `application/octet-stream`, which is how Backend.AI's aiohttp server reads a missing header and so how the
    // official client signs its streaming GETs.
    // The official client signs a multipart request with the bare media type (aiohttp's `request.content_type`),
    // while the header also carries the boundary.
    let bare = header("content-type").and_then(|ct| ct.split_once(';')).map(|(bare, _)| bare.trim());
    let content_types: Vec<&str> = match header("content-type") {
        Some(ct) => std::iter::once(ct).chain(bare).collect(),
        None => vec!["", "application/octet-stream"],
    };
    let mut verified = Err(Error::AuthFailed { msg: "signature mismatch".into() });
    for content_type in &content_types {
        let parts = SignedParts {
            method: method.as_str(),
            path_and_query: &path_and_query,
            date,
            host,
            content_type,
            api_version: version,
        };
        verified = auth::verify(&keypair.secret_key, &parts, &credential.signature, now);
        if verified.is_ok() {
            break;
        }
    }
    verified?;
    let limit = u64::from(keypair.rate_limit);
    let used = m
        .live
        .hit_rate_limit(keypair.access_key.as_str(), now, chrono::Duration::seconds(RATE_LIMIT_WINDOW_SECS))
        .await?;
    if limit > 0 && used > limit {
        return Err(Error::TooManyRequests);
    }
    Ok(Caller { keypair, limit, remaining: limit.saturating_sub(used) })
}

/// Verifies the request's signature and rate limit, extracting the [`Caller`].
pub fn authenticated(m: Arc<Manager>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::any()
        .map(move || m.clone())
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().map(Some).or(warp::any().map(|| None)).unify())
        .and(warp::header::headers_cloned())
        .and_then(|m, method, path, query, headers| async move {
            authenticate(m, method, path, query, headers).await.map_err(reject)
        })
}

/// Every route of the public API, with errors rendered as problem+json (rejections are all recovered).
pub fn routes(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let root = warp::path::end().and(warp::get()).map(|| {
        warp::reply::json(&VersionInfo { version: API_VERSION.into(), manager: env!("CARGO_PKG_VERSION").into() })
            .into_response()
    });
    // Each area is boxed: the combined filter type is otherwise deep enough to exhaust the compiler's recursion
    // limit wherever the server future is instantiated.
    root.boxed()
        .or(session::routes(m.clone()).boxed())
        .unify()
        .or(files::routes(m.clone()).boxed())
        .unify()
        .or(stream::routes(m.clone()).boxed())
        .unify()
        .or(graphql::routes(m.clone()).boxed())
        .unify()
        .or(admin::routes(m.clone()).boxed())
        .unify()
        .or(events::routes(m.clone()).boxed())
        .unify()
        .or(folders::routes(m.clone()))
        .unify()
        .or(transfer::routes(transfer::Transfers::of(&m)))
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}
