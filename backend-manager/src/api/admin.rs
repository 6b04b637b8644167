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

use super::{authenticated, Caller};
use crate::Manager;
use backend_agent::http::{error_reply, json_object, json_reply};
use backend_core::api::admin::{
    DomainFilter, DomainList, DomainSpec, GroupList, GroupSpec, KeyPairInfo, KeyPairList, KeyPairSpec,
    ResourcePolicyList, ResourcePolicySpec, ScalingGroupList, ScalingGroupSpec, UserList, UserSpec,
};
use backend_core::auth::generate_keypair;
use backend_core::error::{Error, Result};
use backend_core::model::{KeyPair, Role};
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

fn respond<T: serde::Serialize>(caller: &Caller, result: Result<T>, status: StatusCode) -> Response {
    caller.decorate(match result {
        Ok(body) => json_reply(status, &body),
        Err(e) => error_reply(&e),
    })
}

/// Runs `work` when the caller has at least `role` (403 otherwise) and renders its result with `status`.
async fn answer<T: serde::Serialize>(
    caller: Caller,
    role: Role,
    status: StatusCode,
    work: impl Future<Output = Result<T>>,
) -> Response {
    let result = if caller.keypair.role >= role {
        work.await
    } else {
        Err(Error::Forbidden { msg: format!("this needs the {role} role") })
    };
    respond(&caller, result, status)
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

/// The name a `PUT` body gives, which must be empty or the path's.
fn same_name(path: &str, body: &str, what: &str) -> Result<String> {
    if body.is_empty() || body == path {
        Ok(path.to_owned())
    } else {
        Err(Error::InvalidParams { msg: format!("the body names {what} {body:?} but the path {path:?}") })
    }
}

fn found<T>(record: Option<T>, what: impl FnOnce() -> String) -> Result<T> {
    record.ok_or_else(|| Error::NotFound { what: what() })
}

fn taken(what: String) -> Error {
    Error::AlreadyExists { msg: what }
}

/// Every `/admin/...` route.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    domains(m.clone())
        .or(groups(m.clone()))
        .unify()
        .or(users(m.clone()))
        .unify()
        .or(resource_policies(m.clone()))
        .unify()
        .or(scaling_groups(m.clone()))
        .unify()
        .or(keypairs(m))
        .unify()
}

type Parts = (BoxedFilter<(Caller,)>, BoxedFilter<(Arc<Manager>,)>, u64);

fn parts(m: Arc<Manager>) -> Parts {
    let limit = m.config.max_body_bytes;
    (authenticated(m.clone()).boxed(), warp::any().map(move || m.clone()).boxed(), limit)
}

fn domains(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const ROLE: Role = Role::Superadmin;
    let list = warp::path!("admin" / "domains").and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move { Ok(DomainList { domains: m.store.list_domains().await? }) })
        },
    );
    let create = warp::path!("admin" / "domains")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: DomainSpec| {
            answer(c, ROLE, StatusCode::CREATED, async move {
                let d = spec.into_model(Utc::now())?;
                if m.store.domain(&d.name).await?.is_some() {
                    return Err(taken(format!("domain {}", d.name)));
                }
                m.store.put_domain(&d).await?;
                found(m.store.domain(&d.name).await?, || format!("domain {}", d.name))
            })
        });
    let get = warp::path!("admin" / "domains" / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |name: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = segment(&name)?;
                found(m.store.domain(&name).await?, || format!("domain {name}"))
            })
        },
    );
    let put = warp::path!("admin" / "domains" / String)
        .and(warp::put())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|name: String, c: Caller, m: Arc<Manager>, spec: DomainSpec| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = same_name(&segment(&name)?, &spec.name, "domain")?;
                let created = m.store.domain(&name).await?.map_or_else(Utc::now, |d| d.created_at);
                m.store.put_domain(&DomainSpec { name: name.clone(), ..spec }.into_model(created)?).await?;
                found(m.store.domain(&name).await?, || format!("domain {name}"))
            })
        });
    let delete = warp::path!("admin" / "domains" / String).and(warp::delete()).and(auth).and(with_m).then(
        |name: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = segment(&name)?;
                let d = found(m.store.domain(&name).await?, || format!("domain {name}"))?;
                m.store.delete_domain(&name).await?;
                Ok(d)
            })
        },
    );
    list.or(create).unify().or(get).unify().or(put).unify().or(delete).unify().boxed()
}

fn groups(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const ROLE: Role = Role::Admin;
    let list = warp::path!("admin" / "groups")
        .and(warp::get())
        .and(auth.clone())
        .and(with_m.clone())
        .and(warp::query::<DomainFilter>())
        .then(|c: Caller, m: Arc<Manager>, q: DomainFilter| {
            answer(c, ROLE, StatusCode::OK, async move {
                Ok(GroupList { groups: m.store.list_groups(q.domain.as_deref()).await? })
            })
        });
    let create = warp::path!("admin" / "groups")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: GroupSpec| {
            answer(c, ROLE, StatusCode::CREATED, async move {
                let g = spec.into_model(Utc::now())?;
                if m.store.group(&g.domain, &g.name).await?.is_some() {
                    return Err(taken(format!("group {} in domain {}", g.name, g.domain)));
                }
                m.store.put_group(&g).await?;
                found(m.store.group(&g.domain, &g.name).await?, || format!("group {}", g.name))
            })
        });
    let get =
        warp::path!("admin" / "groups" / String / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
            |domain: String, name: String, c: Caller, m: Arc<Manager>| {
                answer(c, ROLE, StatusCode::OK, async move {
                    let (domain, name) = (segment(&domain)?, segment(&name)?);
                    found(m.store.group(&domain, &name).await?, || format!("group {name} in domain {domain}"))
                })
            },
        );
    let put = warp::path!("admin" / "groups" / String / String)
        .and(warp::put())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|domain: String, name: String, c: Caller, m: Arc<Manager>, spec: GroupSpec| {
            answer(c, ROLE, StatusCode::OK, async move {
                let domain = segment(&domain)?;
                let name = same_name(&segment(&name)?, &spec.name, "group")?;
                let created = m.store.group(&domain, &name).await?.map_or_else(Utc::now, |g| g.created_at);
                let g = GroupSpec { name: name.clone(), domain: domain.clone(), ..spec }.into_model(created)?;
                m.store.put_group(&g).await?;
                found(m.store.group(&domain, &name).await?, || format!("group {name} in domain {domain}"))
            })
        });
    let delete = warp::path!("admin" / "groups" / String / String).and(warp::delete()).and(auth).and(with_m).then(
        |domain: String, name: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let (domain, name) = (segment(&domain)?, segment(&name)?);
                let g = found(m.store.group(&domain, &name).await?, || format!("group {name} in domain {domain}"))?;
                m.store.delete_group(&domain, &name).await?;
                Ok(g)
            })
        },
    );
    list.or(create).unify().or(get).unify().or(put).unify().or(delete).unify().boxed()
}

fn users(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const ROLE: Role = Role::Admin;
    let list = warp::path!("admin" / "users")
        .and(warp::get())
        .and(auth.clone())
        .and(with_m.clone())
        .and(warp::query::<DomainFilter>())
        .then(|c: Caller, m: Arc<Manager>, q: DomainFilter| {
            answer(c, ROLE, StatusCode::OK, async move {
                Ok(UserList { users: m.store.list_users(q.domain.as_deref()).await? })
            })
        });
    let create = warp::path!("admin" / "users")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: UserSpec| {
            let superadmin = c.keypair.role >= Role::Superadmin;
            answer(c, ROLE, StatusCode::CREATED, async move {
                let u = spec.into_model(Utc::now())?;
                if u.role == Role::Superadmin && !superadmin {
                    return Err(Error::Forbidden { msg: "only superadmins create superadmins".into() });
                }
                if m.store.user(&u.email).await?.is_some() {
                    return Err(taken(format!("user {}", u.email)));
                }
                m.store.put_user(&u).await?;
                found(m.store.user(&u.email).await?, || format!("user {}", u.email))
            })
        });
    let get = warp::path!("admin" / "users" / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |email: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let email = segment(&email)?;
                found(m.store.user(&email).await?, || format!("user {email}"))
            })
        },
    );
    let put = warp::path!("admin" / "users" / String)
        .and(warp::put())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|email: String, c: Caller, m: Arc<Manager>, spec: UserSpec| {
            let superadmin = c.keypair.role >= Role::Superadmin;
            answer(c, ROLE, StatusCode::OK, async move {
                let email = same_name(&segment(&email)?, &spec.email, "user")?;
                let old = m.store.user(&email).await?;
                let created = old.as_ref().map_or_else(Utc::now, |u| u.created_at);
                let u = UserSpec { email: email.clone(), ..spec }.into_model(created)?;
                let touches_superadmin = u.role == Role::Superadmin || old.is_some_and(|o| o.role == Role::Superadmin);
                if touches_superadmin && !superadmin {
                    return Err(Error::Forbidden { msg: "only superadmins change superadmins".into() });
                }
                m.store.put_user(&u).await?;
                found(m.store.user(&email).await?, || format!("user {email}"))
            })
        });
    let delete = warp::path!("admin" / "users" / String).and(warp::delete()).and(auth).and(with_m).then(
        |email: String, c: Caller, m: Arc<Manager>| {
            let superadmin = c.keypair.role >= Role::Superadmin;
            answer(c, ROLE, StatusCode::OK, async move {
                let email = segment(&email)?;
                let u = found(m.store.user(&email).await?, || format!("user {email}"))?;
                if u.role == Role::Superadmin && !superadmin {
                    return Err(Error::Forbidden { msg: "only superadmins delete superadmins".into() });
                }
                m.store.delete_user(&email).await?;
                Ok(u)
            })
        },
    );
    list.or(create).unify().or(get).unify().or(put).unify().or(delete).unify().boxed()
}

fn resource_policies(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const ROLE: Role = Role::Superadmin;
    let list = warp::path!("admin" / "resource-policies").and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                Ok(ResourcePolicyList { resource_policies: m.store.list_resource_policies().await? })
            })
        },
    );
    let create = warp::path!("admin" / "resource-policies")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: ResourcePolicySpec| {
            answer(c, ROLE, StatusCode::CREATED, async move {
                let p = spec.into_model(Utc::now())?;
                if m.store.resource_policy(&p.name).await?.is_some() {
                    return Err(taken(format!("resource policy {}", p.name)));
                }
                m.store.put_resource_policy(&p).await?;
                found(m.store.resource_policy(&p.name).await?, || format!("resource policy {}", p.name))
            })
        });
    let get = warp::path!("admin" / "resource-policies" / String)
        .and(warp::get())
        .and(auth.clone())
        .and(with_m.clone())
        .then(|name: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = segment(&name)?;
                found(m.store.resource_policy(&name).await?, || format!("resource policy {name}"))
            })
        });
    let put = warp::path!("admin" / "resource-policies" / String)
        .and(warp::put())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|name: String, c: Caller, m: Arc<Manager>, spec: ResourcePolicySpec| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = same_name(&segment(&name)?, &spec.name, "resource policy")?;
                let created = m.store.resource_policy(&name).await?.map_or_else(Utc::now, |p| p.created_at);
                let p = ResourcePolicySpec { name: name.clone(), ..spec }.into_model(created)?;
                m.store.put_resource_policy(&p).await?;
                found(m.store.resource_policy(&name).await?, || format!("resource policy {name}"))
            })
        });
    let delete = warp::path!("admin" / "resource-policies" / String).and(warp::delete()).and(auth).and(with_m).then(
        |name: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let name = segment(&name)?;
                let p = found(m.store.resource_policy(&name).await?, || format!("resource policy {name}"))?;
                m.store.delete_resource_policy(&name).await?;
                Ok(p)
            })
        },
    );
    list.or(create).unify().or(get).unify().or(put).unify().or(delete).unify().boxed()
}

fn scaling_groups(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const READ: Role = Role::Admin;
    const WRITE: Role = Role::Superadmin;
    let list = warp::path!("admin" / "scaling-groups").and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |c: Caller, m: Arc<Manager>| {
            answer(c, READ, StatusCode::OK, async move {
                Ok(ScalingGroupList { scaling_groups: m.store.list_scaling_groups().await? })
            })
        },
    );
    let create = warp::path!("admin" / "scaling-groups")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: ScalingGroupSpec| {
            answer(c, WRITE, StatusCode::CREATED, async move {
                let g = spec.into_model(Utc::now())?;
                if m.store.scaling_group(&g.name).await?.is_some() {
                    return Err(taken(format!("scaling group {}", g.name)));
                }
                m.store.put_scaling_group(&g).await?;
                found(m.store.scaling_group(&g.name).await?, || format!("scaling group {}", g.name))
            })
        });
    let get =
        warp::path!("admin" / "scaling-groups" / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
            |name: String, c: Caller, m: Arc<Manager>| {
                answer(c, READ, StatusCode::OK, async move {
                    let name = segment(&name)?;
                    found(m.store.scaling_group(&name).await?, || format!("scaling group {name}"))
                })
            },
        );
    let put = warp::path!("admin" / "scaling-groups" / String)
        .and(warp::put())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|name: String, c: Caller, m: Arc<Manager>, spec: ScalingGroupSpec| {
            answer(c, WRITE, StatusCode::OK, async move {
                let name = same_name(&segment(&name)?, &spec.name, "scaling group")?;
                let created = m.store.scaling_group(&name).await?.map_or_else(Utc::now, |g| g.created_at);
                let g = ScalingGroupSpec { name: name.clone(), ..spec }.into_model(created)?;
                m.store.put_scaling_group(&g).await?;
                found(m.store.scaling_group(&name).await?, || format!("scaling group {name}"))
            })
        });
    let delete = warp::path!("admin" / "scaling-groups" / String).and(warp::delete()).and(auth).and(with_m).then(
        |name: String, c: Caller, m: Arc<Manager>| {
            answer(c, WRITE, StatusCode::OK, async move {
                let name = segment(&name)?;
                let g = found(m.store.scaling_group(&name).await?, || format!("scaling group {name}"))?;
                m.store.delete_scaling_group(&name).await?;
                Ok(g)
            })
        },
    );
    list.or(create).unify().or(get).unify().or(put).unify().or(delete).unify().boxed()
}

fn keypairs(m: Arc<Manager>) -> BoxedFilter<(Response,)> {
    let (auth, with_m, limit) = parts(m);
    const ROLE: Role = Role::Admin;
    let list = warp::path!("admin" / "keypairs").and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let keypairs = m.store.list_keypairs().await?.iter().map(KeyPairInfo::from).collect();
                Ok(KeyPairList { keypairs })
            })
        },
    );
    let create = warp::path!("admin" / "keypairs")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(json_object(limit))
        .then(|c: Caller, m: Arc<Manager>, spec: KeyPairSpec| {
            let caller_role = c.keypair.role;
            answer(c, ROLE, StatusCode::CREATED, async move {
                if spec.role > caller_role {
                    return Err(Error::Forbidden {
                        msg: format!("a {caller_role} cannot create {} keypairs", spec.role),
                    });
                }
                found(m.store.user(&spec.user_id).await?, || format!("user {}", spec.user_id))?;
                found(m.store.resource_policy(&spec.resource_policy).await?, || {
                    format!("resource policy {}", spec.resource_policy)
                })?;
                let (access_key, secret_key) = generate_keypair();
                let kp = KeyPair {
                    access_key: access_key.into(),
                    secret_key,
                    user_id: spec.user_id,
                    role: spec.role,
                    is_active: true,
                    rate_limit: spec.rate_limit,
                    resource_policy: spec.resource_policy,
                    created_at: Utc::now(),
                };
                m.store.insert_keypair(&kp).await?;
                Ok(kp)
            })
        });
    let get = warp::path!("admin" / "keypairs" / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).then(
        |ak: String, c: Caller, m: Arc<Manager>| {
            answer(c, ROLE, StatusCode::OK, async move {
                let ak = segment(&ak)?;
                let kp = found(m.store.keypair(&ak.as_str().into()).await?, || format!("keypair {ak}"))?;
                Ok(KeyPairInfo::from(&kp))
            })
        },
    );
    let revoke = warp::path!("admin" / "keypairs" / String).and(warp::delete()).and(auth).and(with_m).then(
        |ak: String, c: Caller, m: Arc<Manager>| {
            let caller_role = c.keypair.role;
            answer(c, ROLE, StatusCode::OK, async move {
                let ak = segment(&ak)?;
                let kp = found(m.store.keypair(&ak.as_str().into()).await?, || format!("keypair {ak}"))?;
                if kp.role > caller_role {
                    return Err(Error::Forbidden {
                        msg: format!("a {caller_role} cannot revoke {} keypairs", kp.role),
                    });
                }
                m.store.set_keypair_active(&ak.as_str().into(), false).await?;
                let kp = found(m.store.keypair(&ak.as_str().into()).await?, || format!("keypair {ak}"))?;
                Ok(KeyPairInfo::from(&kp))
            })
        },
    );
    list.or(create).unify().or(get).unify().or(revoke).unify().boxed()
}
