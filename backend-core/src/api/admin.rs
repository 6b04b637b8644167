//! Wire types of the administration API (`/admin/domains`, `/admin/groups`, `/admin/users`,
//! `/admin/resource-policies`, `/admin/scaling-groups`, `/admin/keypairs`).
//!
//! A `POST` body is a spec with the record's name; a `PUT` body is the same spec, whose name may be left out (the
//! path gives it). Records are answered as the [`crate::model`] types; lists as an object with one array.
//!
//! Every kind is described once by [`AdminKind`] (implemented by its record type: [`Domain`], [`Group`], [`User`],
//! [`KeyPairResourcePolicy`], [`ScalingGroup`], [`KeyPair`]); the kinds a `PUT` can replace also by
//! [`RecordKind`]. [`AdminApi`] and [`ReplaceApi`] are the operations over one kind, which the client implements over
//! HTTP and the manager's service over its store.

use crate::error::{Error, Result};
use crate::ids::AccessKey;
use crate::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, User};
use crate::slots::ResourceSlots;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

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

/// Query of the lists that take none (unknown parameters are ignored, as they always were).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoFilter {}

/// One kind of administrative record, as the `/admin/...` API shows it: `/admin/{COLLECTION}` lists (`GET`) and
/// creates (`POST`), `/admin/{COLLECTION}/{key...}` reads (`GET`) and deletes (`DELETE`).
pub trait AdminKind: Send + Sync + Sized + 'static {
    /// What names one record, in [`PathKey::SEGMENTS`] path segments.
    type Key: PathKey;
    /// The body of `POST` (and of `PUT`, for a [`RecordKind`]).
    type Spec: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What `GET`, `PUT` and `DELETE` of one record answer.
    type Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What `POST` answers: the record, or for keypairs the keypair with its secret.
    type Created: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// What `GET` of the collection answers.
    type List: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// The query of `GET` of the collection.
    type Query: Serialize + DeserializeOwned + Default + Clone + Debug + Send + Sync + 'static;

    /// The collection's path segment after `/admin/`.
    const COLLECTION: &'static str;
    /// The least role that reads.
    const READ_ROLE: Role;
    /// The least role that creates, replaces and deletes.
    const WRITE_ROLE: Role;

    /// The record a key names, for messages: `group ml in domain default`.
    fn describe(key: &Self::Key) -> String;
    /// The list answer of some records.
    fn list_of(records: Vec<Self::Record>) -> Self::List;
    /// The records of a list answer.
    fn records(list: &Self::List) -> &[Self::Record];
}

/// A kind whose `POST` answers the record itself and whose records `PUT` creates or replaces (every kind but
/// keypairs).
pub trait RecordKind: AdminKind<Created = <Self as AdminKind>::Record> {
    /// The key of a record.
    fn key_of(record: &Self::Record) -> Self::Key;
    /// When a record was created (a replacement keeps it).
    fn created_at(record: &Self::Record) -> DateTime<Utc>;
    /// The record a spec describes, after validation.
    fn build(spec: Self::Spec, created_at: DateTime<Utc>) -> Result<Self::Record>;
    /// A `PUT` body under its path's key: the key's parts replace the body's, whose name must be empty or the
    /// path's.
    fn keyed(spec: Self::Spec, key: &Self::Key) -> Result<Self::Spec>;
    /// The spec that rebuilds a record (to change one field of it).
    fn spec_of(record: &Self::Record) -> Self::Spec;
}

/// The name a `PUT` body gives, which must be empty or the path's.
fn same_name(path: &str, body: &str, what: &str) -> Result<String> {
    if body.is_empty() || body == path {
        Ok(path.to_owned())
    } else {
        Err(Error::InvalidParams { msg: format!("the body names {what} {body:?} but the path {path:?}") })
    }
}

/// A key of administrative records, as the path segments after the collection's.
pub trait PathKey: Clone + Debug + Send + Sync + Sized + 'static {
    /// How many path segments it takes.
    const SEGMENTS: usize;
    /// Its path segments (not yet percent-encoded), [`PathKey::SEGMENTS`] of them.
    fn segments(&self) -> Vec<String>;
    /// The key of [`PathKey::SEGMENTS`] decoded path segments.
    fn from_segments(segments: &[String]) -> Result<Self>;
}

fn wrong_segments(expected: usize, segments: &[String]) -> Error {
    Error::InvalidParams { msg: format!("expected {expected} path segment(s), got {}", segments.len()) }
}

/// A name: domains, users (the e-mail), resource policies, scaling groups.
impl PathKey for String {
    const SEGMENTS: usize = 1;
    fn segments(&self) -> Vec<String> {
        vec![self.clone()]
    }
    fn from_segments(segments: &[String]) -> Result<Self> {
        match segments {
            [name] => Ok(name.clone()),
            _ => Err(wrong_segments(1, segments)),
        }
    }
}

/// A domain, then a name in it: groups.
impl PathKey for (String, String) {
    const SEGMENTS: usize = 2;
    fn segments(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.clone()]
    }
    fn from_segments(segments: &[String]) -> Result<Self> {
        match segments {
            [domain, name] => Ok((domain.clone(), name.clone())),
            _ => Err(wrong_segments(2, segments)),
        }
    }
}

impl PathKey for AccessKey {
    const SEGMENTS: usize = 1;
    fn segments(&self) -> Vec<String> {
        vec![self.to_string()]
    }
    fn from_segments(segments: &[String]) -> Result<Self> {
        String::from_segments(segments).map(AccessKey::from)
    }
}

impl AdminKind for Domain {
    type Key = String;
    type Spec = DomainSpec;
    type Record = Domain;
    type Created = Domain;
    type List = DomainList;
    type Query = NoFilter;
    const COLLECTION: &'static str = "domains";
    const READ_ROLE: Role = Role::Superadmin;
    const WRITE_ROLE: Role = Role::Superadmin;

    fn describe(key: &String) -> String {
        format!("domain {key}")
    }
    fn list_of(domains: Vec<Domain>) -> DomainList {
        DomainList { domains }
    }
    fn records(list: &DomainList) -> &[Domain] {
        &list.domains
    }
}

impl RecordKind for Domain {
    fn key_of(d: &Domain) -> String {
        d.name.clone()
    }
    fn created_at(d: &Domain) -> DateTime<Utc> {
        d.created_at
    }
    fn build(spec: DomainSpec, created_at: DateTime<Utc>) -> Result<Domain> {
        spec.into_model(created_at)
    }
    fn keyed(spec: DomainSpec, key: &String) -> Result<DomainSpec> {
        Ok(DomainSpec { name: same_name(key, &spec.name, "domain")?, ..spec })
    }
    fn spec_of(d: &Domain) -> DomainSpec {
        DomainSpec {
            name: d.name.clone(),
            description: d.description.clone(),
            is_active: d.is_active,
            total_resource_slots: d.total_resource_slots.clone(),
        }
    }
}

impl AdminKind for Group {
    /// Domain, then name.
    type Key = (String, String);
    type Spec = GroupSpec;
    type Record = Group;
    type Created = Group;
    type List = GroupList;
    type Query = DomainFilter;
    const COLLECTION: &'static str = "groups";
    const READ_ROLE: Role = Role::Admin;
    const WRITE_ROLE: Role = Role::Admin;

    fn describe((domain, name): &(String, String)) -> String {
        format!("group {name} in domain {domain}")
    }
    fn list_of(groups: Vec<Group>) -> GroupList {
        GroupList { groups }
    }
    fn records(list: &GroupList) -> &[Group] {
        &list.groups
    }
}

impl RecordKind for Group {
    fn key_of(g: &Group) -> (String, String) {
        (g.domain.clone(), g.name.clone())
    }
    fn created_at(g: &Group) -> DateTime<Utc> {
        g.created_at
    }
    fn build(spec: GroupSpec, created_at: DateTime<Utc>) -> Result<Group> {
        spec.into_model(created_at)
    }
    fn keyed(spec: GroupSpec, (domain, name): &(String, String)) -> Result<GroupSpec> {
        Ok(GroupSpec { name: same_name(name, &spec.name, "group")?, domain: domain.clone(), ..spec })
    }
    fn spec_of(g: &Group) -> GroupSpec {
        GroupSpec {
            name: g.name.clone(),
            domain: g.domain.clone(),
            description: g.description.clone(),
            is_active: g.is_active,
            total_resource_slots: g.total_resource_slots.clone(),
        }
    }
}

impl AdminKind for User {
    /// The e-mail address.
    type Key = String;
    type Spec = UserSpec;
    type Record = User;
    type Created = User;
    type List = UserList;
    type Query = DomainFilter;
    const COLLECTION: &'static str = "users";
    const READ_ROLE: Role = Role::Admin;
    const WRITE_ROLE: Role = Role::Admin;

    fn describe(key: &String) -> String {
        format!("user {key}")
    }
    fn list_of(users: Vec<User>) -> UserList {
        UserList { users }
    }
    fn records(list: &UserList) -> &[User] {
        &list.users
    }
}

impl RecordKind for User {
    fn key_of(u: &User) -> String {
        u.email.clone()
    }
    fn created_at(u: &User) -> DateTime<Utc> {
        u.created_at
    }
    fn build(spec: UserSpec, created_at: DateTime<Utc>) -> Result<User> {
        spec.into_model(created_at)
    }
    fn keyed(spec: UserSpec, key: &String) -> Result<UserSpec> {
        Ok(UserSpec { email: same_name(key, &spec.email, "user")?, ..spec })
    }
    fn spec_of(u: &User) -> UserSpec {
        UserSpec {
            email: u.email.clone(),
            username: Some(u.username.clone()),
            domain: u.domain.clone(),
            role: u.role,
            is_active: u.is_active,
            groups: u.groups.clone(),
        }
    }
}

impl AdminKind for KeyPairResourcePolicy {
    type Key = String;
    type Spec = ResourcePolicySpec;
    type Record = KeyPairResourcePolicy;
    type Created = KeyPairResourcePolicy;
    type List = ResourcePolicyList;
    type Query = NoFilter;
    const COLLECTION: &'static str = "resource-policies";
    const READ_ROLE: Role = Role::Superadmin;
    const WRITE_ROLE: Role = Role::Superadmin;

    fn describe(key: &String) -> String {
        format!("resource policy {key}")
    }
    fn list_of(resource_policies: Vec<KeyPairResourcePolicy>) -> ResourcePolicyList {
        ResourcePolicyList { resource_policies }
    }
    fn records(list: &ResourcePolicyList) -> &[KeyPairResourcePolicy] {
        &list.resource_policies
    }
}

impl RecordKind for KeyPairResourcePolicy {
    fn key_of(p: &KeyPairResourcePolicy) -> String {
        p.name.clone()
    }
    fn created_at(p: &KeyPairResourcePolicy) -> DateTime<Utc> {
        p.created_at
    }
    fn build(spec: ResourcePolicySpec, created_at: DateTime<Utc>) -> Result<KeyPairResourcePolicy> {
        spec.into_model(created_at)
    }
    fn keyed(spec: ResourcePolicySpec, key: &String) -> Result<ResourcePolicySpec> {
        Ok(ResourcePolicySpec { name: same_name(key, &spec.name, "resource policy")?, ..spec })
    }
    fn spec_of(p: &KeyPairResourcePolicy) -> ResourcePolicySpec {
        ResourcePolicySpec {
            name: p.name.clone(),
            total_resource_slots: p.total_resource_slots.clone(),
            max_concurrent_sessions: p.max_concurrent_sessions,
            max_containers_per_session: p.max_containers_per_session,
            max_pending_session_count: p.max_pending_session_count,
            idle_timeout: p.idle_timeout,
            max_session_lifetime: p.max_session_lifetime,
            allowed_vfolder_hosts: p.allowed_vfolder_hosts.clone(),
            max_vfolder_count: p.max_vfolder_count,
            max_quota_scope_size: p.max_quota_scope_size,
        }
    }
}

impl AdminKind for ScalingGroup {
    type Key = String;
    type Spec = ScalingGroupSpec;
    type Record = ScalingGroup;
    type Created = ScalingGroup;
    type List = ScalingGroupList;
    type Query = NoFilter;
    const COLLECTION: &'static str = "scaling-groups";
    const READ_ROLE: Role = Role::Admin;
    const WRITE_ROLE: Role = Role::Superadmin;

    fn describe(key: &String) -> String {
        format!("scaling group {key}")
    }
    fn list_of(scaling_groups: Vec<ScalingGroup>) -> ScalingGroupList {
        ScalingGroupList { scaling_groups }
    }
    fn records(list: &ScalingGroupList) -> &[ScalingGroup] {
        &list.scaling_groups
    }
}

impl RecordKind for ScalingGroup {
    fn key_of(g: &ScalingGroup) -> String {
        g.name.clone()
    }
    fn created_at(g: &ScalingGroup) -> DateTime<Utc> {
        g.created_at
    }
    fn build(spec: ScalingGroupSpec, created_at: DateTime<Utc>) -> Result<ScalingGroup> {
        spec.into_model(created_at)
    }
    fn keyed(spec: ScalingGroupSpec, key: &String) -> Result<ScalingGroupSpec> {
        Ok(ScalingGroupSpec { name: same_name(key, &spec.name, "scaling group")?, ..spec })
    }
    fn spec_of(g: &ScalingGroup) -> ScalingGroupSpec {
        ScalingGroupSpec {
            name: g.name.clone(),
            description: g.description.clone(),
            is_active: g.is_active,
            scheduler: g.scheduler.clone(),
            agent_selector: g.agent_selector.clone(),
        }
    }
}

/// Keypairs: `GET` answers them without their secret, `POST` with it (the only time it is shown), `DELETE` revokes
/// (the keypair stays, inactive) and there is no `PUT`.
impl AdminKind for KeyPair {
    type Key = AccessKey;
    type Spec = KeyPairSpec;
    type Record = KeyPairInfo;
    type Created = KeyPair;
    type List = KeyPairList;
    type Query = NoFilter;
    const COLLECTION: &'static str = "keypairs";
    const READ_ROLE: Role = Role::Admin;
    const WRITE_ROLE: Role = Role::Admin;

    fn describe(key: &AccessKey) -> String {
        format!("keypair {key}")
    }
    fn list_of(keypairs: Vec<KeyPairInfo>) -> KeyPairList {
        KeyPairList { keypairs }
    }
    fn records(list: &KeyPairList) -> &[KeyPairInfo] {
        &list.keypairs
    }
}

/// The administration operations over one kind, for one caller: the client implements them over HTTP, the
/// manager's service on its store. Errors are the API's (`NotFound`, `AlreadyExists`, `Forbidden`, `Conflict`, ...).
#[async_trait]
pub trait AdminApi<K: AdminKind>: Sync {
    /// `GET /admin/{COLLECTION}`.
    async fn list(&self, query: &K::Query) -> Result<K::List>;
    /// `GET /admin/{COLLECTION}/{key}`.
    async fn get(&self, key: &K::Key) -> Result<K::Record>;
    /// `POST /admin/{COLLECTION}`: creates a record (`AlreadyExists` when its key is taken).
    async fn create(&self, spec: &K::Spec) -> Result<K::Created>;
    /// `DELETE /admin/{COLLECTION}/{key}`: answers the deleted (for keypairs: revoked) record.
    async fn delete(&self, key: &K::Key) -> Result<K::Record>;
}

/// `PUT /admin/{COLLECTION}/{key}` of a [`RecordKind`]: creates or replaces a record (a replaced one keeps its
/// `created_at`).
#[async_trait]
pub trait ReplaceApi<K: RecordKind>: AdminApi<K> {
    /// Creates or replaces the record `key` names.
    async fn put(&self, key: &K::Key, spec: &K::Spec) -> Result<K::Record>;
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
