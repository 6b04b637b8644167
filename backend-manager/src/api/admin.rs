//! `/admin/...` routes: domains, groups (projects), users, keypair resource policies, scaling groups and keypairs.
//!
//! | path | methods | role |
//! | --- | --- | --- |
//! | `/admin/domains`, `/admin/domains/{name}` | GET POST, GET PUT DELETE | superadmin |
//! | `/admin/groups[?domain=]`, `/admin/groups/{domain}/{name}` | GET POST, GET PUT DELETE | admin |
//! | `/admin/users[?domain=]`, `/admin/users/{email}` | GET POST, GET PUT DELETE | admin |
//! | `/admin/resource-policies`, `/admin/resource-policies/{name}` | GET POST, GET PUT DELETE | superadmin |
//! | `/admin/scaling-groups`, `/admin/scaling-groups/{name}` | GET POST, GET PUT DELETE | admin (writes: superadmin) |
//! | `/admin/keypairs`, `/admin/keypairs/{access_key}` | GET POST, GET DELETE (revoke) | admin |
//!
//! `POST` creates (409 when the name is taken) and answers 201 with the record; `PUT` creates or replaces; `DELETE`
//! answers the deleted record (409 while something refers to it). Creating a keypair answers its secret, once.
//!
//! One route set, [`resource`], serves every kind ([`AdminKind`]) through [`crate::service::admin::Admin`];
//! [`replace`] adds `PUT` to the kinds that have it.

use super::{authenticated, Caller};
use crate::service::admin::{StoredRecord, WritableKind};
use crate::Manager;
use backend_agent::http::{error_reply, json_object, json_reply};
use backend_core::api::admin::{AdminKind, PathKey};
use backend_core::error::{Error, Result};
use backend_core::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, ScalingGroup, User};
use std::future::Future;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Renders the result of `work` with `status`.
async fn answer<T: serde::Serialize>(
    caller: Caller,
    status: StatusCode,
    work: impl Future<Output = Result<T>>,
) -> Response {
    let result = work.await;
    caller.decorate(match result {
        Ok(body) => json_reply(status, &body),
        Err(e) => error_reply(&e),
    })
}

/// A path segment, percent-decoded.
fn segment(raw: &str) -> Result<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or_else(|| Error::InvalidParams { msg: format!("bad escape in {raw:?}") })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidParams { msg: format!("{raw:?} is not UTF-8") })
}

/// The key of the raw path segments of a kind.
fn key_of<K: AdminKind>(raw: &[String]) -> Result<K::Key> {
    let decoded = raw.iter().map(|s| segment(s)).collect::<Result<Vec<_>>>()?;
    K::Key::from_segments(&decoded)
}

/// Every `/admin/...` route.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    resource::<Domain>(m.clone())
        .or(replace::<Domain>(m.clone()))
        .unify()
        .or(resource::<Group>(m.clone()))
        .unify()
        .or(replace::<Group>(m.clone()))
        .unify()
        .or(resource::<User>(m.clone()))
        .unify()
        .or(replace::<User>(m.clone()))
        .unify()
        .or(resource::<KeyPairResourcePolicy>(m.clone()))
        .unify()
        .or(replace::<KeyPairResourcePolicy>(m.clone()))
        .unify()
        .or(resource::<ScalingGroup>(m.clone()))
        .unify()
        .or(replace::<ScalingGroup>(m.clone()))
        .unify()
        .or(resource::<KeyPair>(m))
        .unify()
}

/// `/admin/{COLLECTION}`.
fn collection<K: AdminKind>() -> BoxedFilter<()> {
    warp::path("admin").and(warp::path(K::COLLECTION)).and(warp::path::end()).boxed()
}

/// `/admin/{COLLECTION}/{key...}`, answering the key's raw segments.
fn item<K: AdminKind>() -> BoxedFilter<(Vec<String>,)> {
    let mut key = warp::path("admin").and(warp::path(K::COLLECTION)).map(Vec::new).boxed();
    for _ in 0..K::Key::SEGMENTS {
        key = key
            .and(warp::path::param::<String>())
            .map(|mut segments: Vec<String>, s: String| {
                segments.push(s);
                segments
            })
            .boxed();
    }
    key.and(warp::path::end()).boxed()
}

type Parts = (BoxedFilter<(Caller,)>, BoxedFilter<(Arc<Manager>,)>, u64);

fn parts(m: Arc<Manager>) -> Parts {
    let limit = m.config.max_body_bytes;
    (authenticated(m.clone()).boxed(), warp::any().map(move || m.clone()).boxed(), limit)
}

/// `GET` and `POST` of the collection, `GET` and `DELETE` of one record.
pub fn resource<K: WritableKind>(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    let list =
        collection::<K>().and(warp::get()).and(auth.clone()).and(with_m.clone()).and(warp::query::<K::Query>()).then(
            |c: Caller, m: Arc<Manager>, q: K::Query| {
                let role = c.keypair.role;
                answer(c, StatusCode::OK, async move { m.admin(role).list::<K>(&q).await })
            },
        );
    let create = collection::<K>()
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object::<K::Spec>(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: K::Spec| {
            let role = c.keypair.role;
            answer(c, StatusCode::CREATED, async move { m.admin(role).create::<K>(spec).await })
        });
    let get = item::<K>().and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |raw: Vec<String>, c: Caller, m: Arc<Manager>| {
            let role = c.keypair.role;
            answer(c, StatusCode::OK, async move {
                let admin = m.admin(role);
                admin.authorize(K::READ_ROLE)?;
                admin.get::<K>(&key_of::<K>(&raw)?).await
            })
        },
    );
    let delete =
        item::<K>().and(warp::delete()).and(auth).and(with_m).then(|raw: Vec<String>, c: Caller, m: Arc<Manager>| {
            let role = c.keypair.role;
            answer(c, StatusCode::OK, async move {
                let admin = m.admin(role);
                admin.authorize(K::WRITE_ROLE)?;
                admin.delete::<K>(&key_of::<K>(&raw)?).await
            })
        });
    list.or(create).unify().or(get).unify().or(delete).unify().boxed()
}

/// `PUT` of one record: creates or replaces it.
pub fn replace<K: StoredRecord>(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    item::<K>()
        .and(warp::put())
        .and(auth)
        .and(with_m)
        .and(json_object::<K::Spec>(limit))
        .then(|raw: Vec<String>, c: Caller, m: Arc<Manager>, spec: K::Spec| {
            let role = c.keypair.role;
            answer(c, StatusCode::OK, async move {
                let admin = m.admin(role);
                admin.authorize(K::WRITE_ROLE)?;
                admin.put::<K>(&key_of::<K>(&raw)?, spec).await
            })
        })
        .boxed()
}
