//! Wire types of the administration API (`/admin/domains`, `/admin/groups`, `/admin/users`,
//! `/admin/resource-policies`, `/admin/scaling-groups`, `/admin/keypairs`).
//!
//! A `POST` body is a spec with the record's name; a `PUT` body is the same spec, whose name may be left out (the
//! path gives it). Records are answered as the [`crate::model`] types; lists as an object with one array.

use crate::error::{Error, Result};
use crate::ids::AccessKey;
use crate::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, User};
use crate::slots::ResourceSlots;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

fn default_name() -> String {
    crate::store::fixtures::DEFAULT.to_owned()
}

/// Checks a record name: 1 to 64 characters, none of them `/`, whitespace or control characters.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Error::InvalidParams { msg: format!("a {what} name must have 1 to 64 characters") });
    }
    if name.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidParams { msg: format!("invalid {what} name {name:?}") });
    }
    Ok(())
}

/// Body of `POST /admin/domains` and `PUT /admin/domains/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// The name (optional in a `PUT`).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Active (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// The most the sessions of the domain may occupy together (default empty: unlimited).
    #[serde(default)]
    pub total_resource_slots: ResourceSlots,
}

impl DomainSpec {
    /// The record, after validation.
    pub fn into_model(self, created_at: DateTime<Utc>) -> Result<Domain> {
        validate_name("domain", &self.name)?;
        Ok(Domain {
            name: self.name,
            description: self.description,
            is_active: self.is_active,
            total_resource_slots: self.total_resource_slots,
            created_at,
        })
    }
}

/// Body of `POST /admin/groups` and `PUT /admin/groups/{domain}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The name (optional in a `PUT`).
    #[serde(default)]
    pub name: String,
    /// The domain (default `default`; the path's in a `PUT`).
    #[serde(default = "default_name")]
    pub domain: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Active (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// The most the group's sessions may occupy together (default empty: unlimited).
    #[serde(default)]
    pub total_resource_slots: ResourceSlots,
}

impl GroupSpec {
    /// The record, after validation.
    pub fn into_model(self, created_at: DateTime<Utc>) -> Result<Group> {
        validate_name("group", &self.name)?;
        validate_name("domain", &self.domain)?;
        Ok(Group {
            name: self.name,
            domain: self.domain,
            description: self.description,
            is_active: self.is_active,
            total_resource_slots: self.total_resource_slots,
            created_at,
        })
    }
}

/// Body of `POST /admin/users` and `PUT /admin/users/{email}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// The e-mail address (optional in a `PUT`).
    #[serde(default)]
    pub email: String,
    /// Login name (default: the e-mail's local part).
    #[serde(default)]
    pub username: Option<String>,
    /// The domain (default `default`).
    #[serde(default = "default_name")]
    pub domain: String,
    /// Role (default `user`).
    #[serde(default = "user_role")]
    pub role: Role,
    /// Active (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Groups of the domain it belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn user_role() -> Role {
    Role::User
}

impl UserSpec {
    /// The record, after validation.
    pub fn into_model(self, created_at: DateTime<Utc>) -> Result<User> {
        let Some((local, host)) = self.email.split_once('@') else {
            return Err(Error::InvalidParams { msg: format!("invalid e-mail address {:?}", self.email) });
        };
        if local.is_empty() || host.is_empty() || self.email.chars().any(|c| c == '/' || c.is_whitespace()) {
            return Err(Error::InvalidParams { msg: format!("invalid e-mail address {:?}", self.email) });
        }
        let username = self.username.unwrap_or_else(|| local.to_owned());
        validate_name("user", &username)?;
        validate_name("domain", &self.domain)?;
        for g in &self.groups {
            validate_name("group", g)?;
        }
        Ok(User {
            email: self.email,
            username,
            domain: self.domain,
            role: self.role,
            is_active: self.is_active,
            groups: self.groups,
            created_at,
        })
    }
}

/// Body of `POST /admin/resource-policies` and `PUT /admin/resource-policies/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicySpec {
    /// The name (optional in a `PUT`).
    #[serde(default)]
    pub name: String,
    /// The most a keypair's sessions may occupy together (default: unlimited).
    #[serde(default)]
    pub total_resource_slots: ResourceSlots,
    /// Sessions at once (default 30).
    #[serde(default = "thirty")]
    pub max_concurrent_sessions: u32,
    /// Kernels per session (default 1).
    #[serde(default = "one")]
    pub max_containers_per_session: u32,
    /// Sessions waiting (default: unlimited).
    #[serde(default)]
    pub max_pending_session_count: Option<u32>,
    /// Idle seconds before reclaiming (default 0: never).
    #[serde(default)]
    pub idle_timeout: u64,
    /// Lifetime in seconds (default 0: forever).
    #[serde(default)]
    pub max_session_lifetime: u64,
    /// Storage hosts allowed.
    #[serde(default)]
    pub allowed_vfolder_hosts: Vec<String>,
    /// Virtual folders a user may own (default 0: unlimited).
    #[serde(default)]
    pub max_vfolder_count: u32,
    /// Bytes the folders of one quota scope may hold (default: unlimited).
    #[serde(default)]
    pub max_quota_scope_size: Option<u64>,
}

fn thirty() -> u32 {
    30
}

fn one() -> u32 {
    1
}

impl ResourcePolicySpec {
    /// The record, after validation.
    pub fn into_model(self, created_at: DateTime<Utc>) -> Result<KeyPairResourcePolicy> {
        validate_name("resource policy", &self.name)?;
        if i64::try_from(self.idle_timeout).is_err() || i64::try_from(self.max_session_lifetime).is_err() {
            return Err(Error::InvalidParams { msg: "idle_timeout and max_session_lifetime must fit i64".into() });
        }
        // The stores keep sizes as signed 64-bit integers.
        if self.max_quota_scope_size.is_some_and(|n| i64::try_from(n).is_err()) {
            return Err(Error::InvalidParams { msg: "max_quota_scope_size must fit i64".into() });
        }
        Ok(KeyPairResourcePolicy {
            name: self.name,
            total_resource_slots: self.total_resource_slots,
            max_concurrent_sessions: self.max_concurrent_sessions,
            max_containers_per_session: self.max_containers_per_session,
            max_pending_session_count: self.max_pending_session_count,
            idle_timeout: self.idle_timeout,
            max_session_lifetime: self.max_session_lifetime,
            allowed_vfolder_hosts: self.allowed_vfolder_hosts,
            max_vfolder_count: self.max_vfolder_count,
            max_quota_scope_size: self.max_quota_scope_size,
            created_at,
        })
    }
}

/// Body of `POST /admin/scaling-groups` and `PUT /admin/scaling-groups/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingGroupSpec {
    /// The name (optional in a `PUT`).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Active (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Scheduler (default `fifo`).
    #[serde(default = "fifo")]
    pub scheduler: String,
    /// Agent selector: `concentrated`, `dispersed` or `roundrobin` (default none: the manager's).
    #[serde(default)]
    pub agent_selector: Option<String>,
}

fn fifo() -> String {
    "fifo".into()
}

impl ScalingGroupSpec {
    /// The record, after validation.
    pub fn into_model(self, created_at: DateTime<Utc>) -> Result<ScalingGroup> {
        validate_name("scaling group", &self.name)?;
        validate_name("scheduler", &self.scheduler)?;
        // Stored by its canonical name, so that the scheduler never meets an unknown one.
        let agent_selector = match self.agent_selector.as_deref() {
            Some(name) => Some(crate::scheduler::selector_named(name)?.name().to_owned()),
            None => None,
        };
        Ok(ScalingGroup {
            name: self.name,
            description: self.description,
            is_active: self.is_active,
            scheduler: self.scheduler,
            agent_selector,
            created_at,
        })
    }
}

/// Body of `POST /admin/keypairs`; the answer is the whole [`KeyPair`], the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPairSpec {
    /// The owning user's e-mail (the user must exist).
    pub user_id: String,
    /// Role (default `user`).
    #[serde(default = "user_role")]
    pub role: Role,
    /// Requests per 15 minutes (default 30000).
    #[serde(default = "rate_limit")]
    pub rate_limit: u32,
    /// The resource policy (default `default`; it must exist).
    #[serde(default = "default_name")]
    pub resource_policy: String,
}

fn rate_limit() -> u32 {
    30_000
}

/// A keypair without its secret, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairInfo {
    /// Public half.
    pub access_key: AccessKey,
    /// The owning user.
    pub user_id: String,
    /// Role.
    pub role: Role,
    /// False once revoked.
    pub is_active: bool,
    /// Requests per 15 minutes.
    pub rate_limit: u32,
    /// The resource policy.
    pub resource_policy: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<&KeyPair> for KeyPairInfo {
    fn from(k: &KeyPair) -> Self {
        Self {
            access_key: k.access_key.clone(),
            user_id: k.user_id.clone(),
            role: k.role,
            is_active: k.is_active,
            rate_limit: k.rate_limit,
            resource_policy: k.resource_policy.clone(),
            created_at: k.created_at,
        }
    }
}

/// `GET /admin/domains` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainList {
    /// By name.
    pub domains: Vec<Domain>,
}

/// `GET /admin/groups` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    /// By domain, then name.
    pub groups: Vec<Group>,
}

/// `GET /admin/users` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// By e-mail.
    pub users: Vec<User>,
}

/// `GET /admin/resource-policies` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcePolicyList {
    /// By name.
    pub resource_policies: Vec<KeyPairResourcePolicy>,
}

/// `GET /admin/scaling-groups` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingGroupList {
    /// By name.
    pub scaling_groups: Vec<ScalingGroup>,
}

/// `GET /admin/keypairs` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairList {
    /// Oldest first, without secrets.
    pub keypairs: Vec<KeyPairInfo>,
}

/// Query of `GET /admin/groups` and `GET /admin/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainFilter {
    /// Only this domain's.
    pub domain: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_take_defaults_and_refuse_unknown_fields() {
        let u: UserSpec = serde_json::from_value(serde_json::json!({"email": "a@b.c"})).unwrap();
        let u = u.into_model(Utc::now()).unwrap();
        assert_eq!((u.username.as_str(), u.domain.as_str(), u.role), ("a", "default", Role::User));
        assert!(serde_json::from_value::<DomainSpec>(serde_json::json!({"name": "x", "bogus": 1})).is_err());
        assert!(DomainSpec {
            name: "a/b".into(),
            description: None,
            is_active: true,
            total_resource_slots: ResourceSlots::new()
        }
        .into_model(Utc::now())
        .is_err());
        assert!(UserSpec { email: "nope".into(), ..serde_json::from_str("{}").unwrap() }
            .into_model(Utc::now())
            .is_err());
    }

    #[test]
    fn policy_quota_fields_default_to_unlimited_and_must_fit_the_stores() {
        let p: ResourcePolicySpec = serde_json::from_value(serde_json::json!({"name": "p"})).unwrap();
        let p = p.into_model(Utc::now()).unwrap();
        assert_eq!((p.max_vfolder_count, p.max_quota_scope_size), (0, None));
        let body = serde_json::json!({"name": "q", "max_vfolder_count": 5, "max_quota_scope_size": 1_073_741_824u64});
        let q: ResourcePolicySpec = serde_json::from_value(body).unwrap();
        let q = q.clone().into_model(Utc::now()).unwrap();
        assert_eq!((q.max_vfolder_count, q.max_quota_scope_size), (5, Some(1 << 30)));
        let huge: ResourcePolicySpec =
            serde_json::from_value(serde_json::json!({"name": "h", "max_quota_scope_size": u64::MAX})).unwrap();
        assert!(huge.into_model(Utc::now()).is_err());
    }

    #[test]
    fn group_and_domain_quotas_and_agent_selectors_are_checked() {
        let g: GroupSpec =
            serde_json::from_value(serde_json::json!({"name": "g", "total_resource_slots": {"cpu": "4"}})).unwrap();
        let g = g.into_model(Utc::now()).unwrap();
        assert_eq!(g.total_resource_slots, ResourceSlots::from_pairs([("cpu", "4")]).unwrap());
        let d: DomainSpec = serde_json::from_value(serde_json::json!({"name": "d"})).unwrap();
        assert_eq!(d.into_model(Utc::now()).unwrap().total_resource_slots, ResourceSlots::new(), "default unlimited");
        let negative = serde_json::json!({"name": "d", "total_resource_slots": {"cpu": "-1"}});
        assert!(serde_json::from_value::<DomainSpec>(negative).is_err(), "negative amounts never parse");

        let sg = |selector: serde_json::Value| -> Result<ScalingGroup> {
            let spec: ScalingGroupSpec =
                serde_json::from_value(serde_json::json!({"name": "sg", "agent_selector": selector})).unwrap();
            spec.into_model(Utc::now())
        };
        assert_eq!(sg(serde_json::json!("Dispersed")).unwrap().agent_selector.as_deref(), Some("dispersed"));
        assert_eq!(sg(serde_json::json!("round-robin")).unwrap().agent_selector.as_deref(), Some("roundrobin"));
        assert_eq!(sg(serde_json::Value::Null).unwrap().agent_selector, None);
        let err = sg(serde_json::json!("random")).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidParams, "{err}");
    }
}
