//! What the two SQL stores share: the failure type of a store call, the rows of every table with their codecs to
//! and from the records ([`record_rows!`]), the checks of a folder's access and order, and the status lists the
//! queries filter on. A store differs from the other only in its column types and its queries.

use crate::error::Error;
use crate::ids::VFolderId;
use crate::status::{KernelStatus, SessionStatus};
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderPermission};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// A failure inside a store call: the database's, or a domain error that must roll the transaction back too.
#[derive(Debug)]
pub(crate) enum Failure {
    Db(DieselError),
    Domain(Error),
}

/// What a step of a store call answers.
pub(crate) type Tx<T> = std::result::Result<T, Failure>;

impl From<DieselError> for Failure {
    fn from(e: DieselError) -> Self {
        Failure::Db(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

/// Maps a unique violation to `AlreadyExists` naming `what`.
pub(crate) fn taken(what: impl FnOnce() -> String) -> impl FnOnce(DieselError) -> Failure {
    move |e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            Error::AlreadyExists { msg: what() }.into()
        }
        other => other.into(),
    }
}

/// The error of a store call that failed with `f`, the database errors every store maps alike mapped, the others
/// left to `other` (which names the store).
pub(crate) fn failure_error(f: Failure, other: impl FnOnce(DieselError) -> Error) -> Error {
    match f {
        Failure::Domain(e) => e,
        Failure::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            Error::AlreadyExists { msg: info.message().to_owned() }
        }
        Failure::Db(e) => other(e),
    }
}

pub(crate) fn not_found(what: String) -> Failure {
    Error::NotFound { what }.into()
}

pub(crate) fn conflict(msg: String) -> Failure {
    Error::Conflict { msg }.into()
}

/// A count a record must not exceed as a column.
pub(crate) fn to_i64(what: &str, n: u64) -> Tx<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidParams { msg: format!("{what} {n} is too large") }.into())
}

/// Wire names of the kernel statuses matching `pred`.
pub(crate) fn kernel_statuses(pred: impl Fn(KernelStatus) -> bool) -> Vec<&'static str> {
    KernelStatus::ALL.into_iter().filter(|s| pred(*s)).map(KernelStatus::as_str).collect()
}

/// Wire names of the final session statuses.
pub(crate) fn final_session_statuses() -> Vec<&'static str> {
    SessionStatus::ALL.into_iter().filter(|s| s.is_final()).map(SessionStatus::as_str).collect()
}

/// Wire names of the session statuses that hold resources.
pub(crate) fn holding_session_statuses() -> Vec<&'static str> {
    SessionStatus::ALL.into_iter().filter(|s| s.holds_resources()).map(SessionStatus::as_str).collect()
}

/// An invitation state by wire name.
pub(crate) fn invitation_state(s: &str) -> Option<InvitationState> {
    [InvitationState::Pending, InvitationState::Accepted, InvitationState::Rejected, InvitationState::Canceled]
        .into_iter()
        .find(|state| state.as_str() == s)
}

/// The text a user's `status` column keeps.
pub(crate) fn user_status(is_active: bool) -> &'static str {
    if is_active {
        "active"
    } else {
        "inactive"
    }
}

/// The main kernel first, then by role and index.
pub(crate) fn sort_kernels(kernels: &mut [crate::model::KernelRecord]) {
    kernels.sort_by(|a, b| {
        (!a.is_main(), &a.cluster_role, a.cluster_idx).cmp(&(!b.is_main(), &b.cluster_role, b.cluster_idx))
    });
}

/// The order folders list in: by owner (users by e-mail, then groups by domain and name), then by name.
pub(crate) fn folder_order(f: &VFolder) -> (u8, &str, &str, &str) {
    use crate::vfolder::VFolderOwner;
    match &f.owner {
        VFolderOwner::User { email } => (0, email, "", &f.name),
        VFolderOwner::Group { domain, name } => (1, domain, name, &f.name),
    }
}

/// Sorts folders by owner, then name (see [`super::VFolderStore::list_vfolders`]).
pub(crate) fn sort_folders(folders: &mut [VFolder]) {
    folders.sort_by(|a, b| folder_order(a).cmp(&folder_order(b)));
}

/// What one user may do with which folders, gathered from ownership, groups and shares; a folder reached several
/// ways keeps the highest permission (see [`super::VFolderStore::accessible_vfolders`]).
#[derive(Debug, Default)]
pub(crate) struct AccessSet(std::collections::BTreeMap<VFolderId, (VFolderPermission, bool)>);

impl AccessSet {
    pub(crate) fn grant(&mut self, id: VFolderId, permission: VFolderPermission, is_owner: bool) {
        let entry = self.0.entry(id).or_insert((permission, is_owner));
        entry.0 = entry.0.max(permission);
        entry.1 |= is_owner;
    }

    pub(crate) fn ids(&self) -> Vec<VFolderId> {
        self.0.keys().copied().collect()
    }

    /// The accesses to `folders` (the ones of [`AccessSet::ids`]), by name, then owner.
    pub(crate) fn resolve(self, folders: Vec<VFolder>) -> Vec<VFolderAccess> {
        let mut out: Vec<VFolderAccess> = folders
            .into_iter()
            .filter_map(|folder| {
                let (permission, is_owner) = *self.0.get(&folder.id)?;
                Some(VFolderAccess { folder, permission, is_owner })
            })
            .collect();
        out.sort_by(|a, b| {
            let (ka, kb) = (folder_order(&a.folder), folder_order(&b.folder));
            (ka.3, ka).cmp(&(kb.3, kb))
        });
        out
    }
}

/// Emits, in the store module it is invoked in, the row type of every table with its codecs to and from the
/// records, for the store's column types: `uuid` for ids, `time` for timestamps, `json` for slots, lists and
/// histories. The module supplies the column codecs the rows call: `uuid_col`/`uuid_of` (ids), `ts`/`time_of`
/// (timestamps), `to_json`/`from_json`, and `corrupt` (a column that does not decode); the tables of its schema are
/// in scope under their names.
macro_rules! record_rows {
    (backend: $backend:ty, uuid: $uuid:ty, time: $time:ty, json: $json:ty) => {
        use $crate::ids::{AccessKey, AgentId, InvitationId, KernelId, SessionId, VFolderId};
        use $crate::model::{
            AgentHeartbeat, AgentInfo, AgentStatus, Domain, Group, KernelRecord, KeyPair, KeyPairResourcePolicy,
            ScalingGroup, SessionRecord, SessionResult, User,
        };
        use $crate::store::rows::Tx;
        use $crate::vfolder::{VFolder, VFolderInvitation, VFolderOwner};

        fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Tx<T>
        where
            T::Err: std::fmt::Display,
        {
            s.parse().map_err(|e| corrupt(what, s, e))
        }

        fn to_u32(what: &str, n: i64) -> Tx<u32> {
            u32::try_from(n).map_err(|e| corrupt(what, &n.to_string(), e))
        }

        fn to_u64(what: &str, n: i64) -> Tx<u64> {
            u64::try_from(n).map_err(|e| corrupt(what, &n.to_string(), e))
        }

        fn opt_time_of(t: Option<$time>) -> Tx<Option<chrono::DateTime<chrono::Utc>>> {
            t.map(time_of).transpose()
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = keypairs, check_for_backend($backend))]
        struct KeyPairRow {
            access_key: String,
            secret_key: String,
            user_id: String,
            role: String,
            is_active: bool,
            rate_limit: i64,
            resource_policy: String,
            created_at: $time,
        }

        impl KeyPairRow {
            fn from_model(k: &KeyPair) -> Self {
                Self {
                    access_key: k.access_key.0.clone(),
                    secret_key: k.secret_key.clone(),
                    user_id: k.user_id.clone(),
                    role: k.role.as_str().to_owned(),
                    is_active: k.is_active,
                    rate_limit: i64::from(k.rate_limit),
                    resource_policy: k.resource_policy.clone(),
                    created_at: ts(k.created_at),
                }
            }

            fn into_model(self) -> Tx<KeyPair> {
                Ok(KeyPair {
                    role: parse("role", &self.role)?,
                    rate_limit: to_u32("rate limit", self.rate_limit)?,
                    created_at: time_of(self.created_at)?,
                    access_key: AccessKey(self.access_key),
                    secret_key: self.secret_key,
                    user_id: self.user_id,
                    is_active: self.is_active,
                    resource_policy: self.resource_policy,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = agents, check_for_backend($backend))]
        struct AgentRow {
            id: String,
            status: String,
            addr: String,
            scaling_group: String,
            architecture: String,
            available_slots: $json,
            occupied_slots: $json,
            images: $json,
            schedulable: bool,
            runtime: String,
            version: String,
            first_contact: $time,
            lost_at: Option<$time>,
        }

        impl AgentRow {
            /// A new agent as its first heartbeat makes it: ALIVE, schedulable, nothing occupied.
            fn first_contact(hb: &AgentHeartbeat, now: chrono::DateTime<chrono::Utc>) -> Tx<Self> {
                Ok(Self {
                    id: hb.id.0.clone(),
                    status: AgentStatus::Alive.as_str().to_owned(),
                    addr: hb.addr.clone(),
                    scaling_group: hb.scaling_group.clone(),
                    architecture: hb.architecture.clone(),
                    available_slots: to_json(&hb.available_slots)?,
                    occupied_slots: to_json(&$crate::slots::ResourceSlots::new())?,
                    images: to_json(&hb.images)?,
                    schedulable: true,
                    runtime: hb.runtime.clone(),
                    version: hb.version.clone(),
                    first_contact: ts(now),
                    lost_at: None,
                })
            }

            fn into_model(self) -> Tx<AgentInfo> {
                Ok(AgentInfo {
                    status: parse("agent status", &self.status)?,
                    available_slots: from_json("available slots", self.available_slots)?,
                    occupied_slots: from_json("occupied slots", self.occupied_slots)?,
                    images: from_json("images", self.images)?,
                    first_contact: time_of(self.first_contact)?,
                    lost_at: opt_time_of(self.lost_at)?,
                    id: AgentId(self.id),
                    addr: self.addr,
                    scaling_group: self.scaling_group,
                    architecture: self.architecture,
                    schedulable: self.schedulable,
                    runtime: self.runtime,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = sessions, treat_none_as_null = true, check_for_backend($backend))]
        struct SessionRow {
            id: $uuid,
            name: String,
            access_key: String,
            domain_name: String,
            group_name: String,
            session_type: String,
            image: String,
            cluster_size: i64,
            status: String,
            status_info: Option<String>,
            status_history: $json,
            requested_slots: $json,
            environ: $json,
            tag: Option<String>,
            scaling_group: String,
            priority: i32,
            startup_command: Option<String>,
            result: String,
            created_at: $time,
            terminated_at: Option<$time>,
            starts_at: Option<$time>,
            dependencies: $json,
            designated_agents: $json,
            architecture: Option<String>,
            bootstrap_script: Option<String>,
            batch_timeout: Option<i64>,
            shmem: Option<i64>,
            vfolder_mounts: $json,
        }

        impl SessionRow {
            fn from_model(s: &SessionRecord) -> Tx<Self> {
                Ok(Self {
                    id: uuid_col(s.id.0),
                    name: s.name.clone(),
                    access_key: s.access_key.0.clone(),
                    domain_name: s.domain.clone(),
                    group_name: s.group.clone(),
                    session_type: s.session_type.as_str().to_owned(),
                    image: s.image.clone(),
                    cluster_size: i64::from(s.cluster_size),
                    status: s.status.as_str().to_owned(),
                    status_info: s.status_info.clone(),
                    status_history: to_json(&s.status_history)?,
                    requested_slots: to_json(&s.requested_slots)?,
                    environ: to_json(&s.environ)?,
                    tag: s.tag.clone(),
                    scaling_group: s.scaling_group.clone(),
                    priority: s.priority,
                    startup_command: s.startup_command.clone(),
                    result: s.result.as_str().to_owned(),
                    created_at: ts(s.created_at),
                    terminated_at: s.terminated_at.map(ts),
                    starts_at: s.starts_at.map(ts),
                    dependencies: to_json(&s.dependencies)?,
                    designated_agents: to_json(&s.designated_agents)?,
                    architecture: s.architecture.clone(),
                    bootstrap_script: s.bootstrap_script.clone(),
                    batch_timeout: s.batch_timeout.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                    shmem: s.shmem.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    vfolder_mounts: to_json(&s.vfolder_mounts)?,
                })
            }

            fn into_model(self) -> Tx<SessionRecord> {
                Ok(SessionRecord {
                    id: SessionId(uuid_of("session id", self.id)?),
                    session_type: parse("session type", &self.session_type)?,
                    cluster_size: to_u32("cluster size", self.cluster_size)?,
                    status: parse("session status", &self.status)?,
                    status_history: from_json("status history", self.status_history)?,
                    requested_slots: from_json("requested slots", self.requested_slots)?,
                    environ: from_json::<std::collections::BTreeMap<String, String>>("environ", self.environ)?,
                    result: parse::<SessionResult>("session result", &self.result)?,
                    created_at: time_of(self.created_at)?,
                    terminated_at: opt_time_of(self.terminated_at)?,
                    starts_at: opt_time_of(self.starts_at)?,
                    dependencies: from_json("dependencies", self.dependencies)?,
                    designated_agents: from_json("designated agents", self.designated_agents)?,
                    architecture: self.architecture,
                    bootstrap_script: self.bootstrap_script,
                    batch_timeout: self.batch_timeout.and_then(|t| u64::try_from(t).ok()),
                    shmem: self.shmem.and_then(|b| u64::try_from(b).ok()),
                    vfolder_mounts: from_json("vfolder mounts", self.vfolder_mounts)?,
                    name: self.name,
                    access_key: AccessKey(self.access_key),
                    domain: self.domain_name,
                    group: self.group_name,
                    image: self.image,
                    status_info: self.status_info,
                    tag: self.tag,
                    scaling_group: self.scaling_group,
                    priority: self.priority,
                    startup_command: self.startup_command,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = kernels, treat_none_as_null = true, check_for_backend($backend))]
        struct KernelRow {
            id: $uuid,
            session_id: $uuid,
            access_key: String,
            cluster_role: String,
            cluster_idx: i64,
            cluster_hostname: String,
            image: String,
            agent_id: Option<String>,
            agent_addr: Option<String>,
            container_id: Option<String>,
            status: String,
            status_info: Option<String>,
            status_history: $json,
            requested_slots: $json,
            occupied_slots: $json,
            exit_code: Option<i32>,
            created_at: $time,
            terminated_at: Option<$time>,
        }

        impl KernelRow {
            fn from_model(k: &KernelRecord) -> Tx<Self> {
                Ok(Self {
                    id: uuid_col(k.id.0),
                    session_id: uuid_col(k.session_id.0),
                    access_key: k.access_key.0.clone(),
                    cluster_role: k.cluster_role.clone(),
                    cluster_idx: i64::from(k.cluster_idx),
                    cluster_hostname: k.cluster_hostname.clone(),
                    image: k.image.clone(),
                    agent_id: k.agent_id.as_ref().map(|a| a.0.clone()),
                    agent_addr: k.agent_addr.clone(),
                    container_id: k.container_id.clone(),
                    status: k.status.as_str().to_owned(),
                    status_info: k.status_info.clone(),
                    status_history: to_json(&k.status_history)?,
                    requested_slots: to_json(&k.requested_slots)?,
                    occupied_slots: to_json(&k.occupied_slots)?,
                    exit_code: k.exit_code,
                    created_at: ts(k.created_at),
                    terminated_at: k.terminated_at.map(ts),
                })
            }

            fn into_model(self) -> Tx<KernelRecord> {
                Ok(KernelRecord {
                    id: KernelId(uuid_of("kernel id", self.id)?),
                    session_id: SessionId(uuid_of("session id", self.session_id)?),
                    cluster_idx: to_u32("cluster index", self.cluster_idx)?,
                    status: parse("kernel status", &self.status)?,
                    status_history: from_json("status history", self.status_history)?,
                    requested_slots: from_json("requested slots", self.requested_slots)?,
                    occupied_slots: from_json("occupied slots", self.occupied_slots)?,
                    created_at: time_of(self.created_at)?,
                    terminated_at: opt_time_of(self.terminated_at)?,
                    access_key: AccessKey(self.access_key),
                    cluster_role: self.cluster_role,
                    cluster_hostname: self.cluster_hostname,
                    image: self.image,
                    agent_id: self.agent_id.map(AgentId),
                    agent_addr: self.agent_addr,
                    container_id: self.container_id,
                    status_info: self.status_info,
                    exit_code: self.exit_code,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = domains, check_for_backend($backend))]
        struct DomainRow {
            name: String,
            description: Option<String>,
            is_active: bool,
            total_resource_slots: $json,
            created_at: $time,
        }

        impl DomainRow {
            fn from_model(d: &Domain) -> Tx<Self> {
                Ok(Self {
                    name: d.name.clone(),
                    description: d.description.clone(),
                    is_active: d.is_active,
                    total_resource_slots: to_json(&d.total_resource_slots)?,
                    created_at: ts(d.created_at),
                })
            }

            fn into_model(self) -> Tx<Domain> {
                Ok(Domain {
                    created_at: time_of(self.created_at)?,
                    total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
                    name: self.name,
                    description: self.description,
                    is_active: self.is_active,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = groups, check_for_backend($backend))]
        struct GroupRow {
            id: $uuid,
            name: String,
            domain_name: String,
            description: Option<String>,
            is_active: bool,
            total_resource_slots: $json,
            created_at: $time,
        }

        impl GroupRow {
            /// A new group's row, under a fresh id.
            fn from_model(g: &Group) -> Tx<Self> {
                Ok(Self {
                    id: uuid_col(uuid::Uuid::new_v4()),
                    name: g.name.clone(),
                    domain_name: g.domain.clone(),
                    description: g.description.clone(),
                    is_active: g.is_active,
                    total_resource_slots: to_json(&g.total_resource_slots)?,
                    created_at: ts(g.created_at),
                })
            }

            fn into_model(self) -> Tx<Group> {
                Ok(Group {
                    created_at: time_of(self.created_at)?,
                    total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
                    name: self.name,
                    domain: self.domain_name,
                    description: self.description,
                    is_active: self.is_active,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = users, check_for_backend($backend))]
        struct UserRow {
            uuid: $uuid,
            username: String,
            email: String,
            domain_name: String,
            role: String,
            status: String,
            created_at: $time,
        }

        impl UserRow {
            /// A new user's row, under a fresh uuid.
            fn from_model(u: &User) -> Self {
                Self {
                    uuid: uuid_col(uuid::Uuid::new_v4()),
                    username: u.username.clone(),
                    email: u.email.clone(),
                    domain_name: u.domain.clone(),
                    role: u.role.as_str().to_owned(),
                    status: $crate::store::rows::user_status(u.is_active).to_owned(),
                    created_at: ts(u.created_at),
                }
            }

            fn into_model(self, mut groups: Vec<String>) -> Tx<User> {
                groups.sort();
                Ok(User {
                    role: parse("role", &self.role)?,
                    created_at: time_of(self.created_at)?,
                    is_active: self.status == "active",
                    email: self.email,
                    username: self.username,
                    domain: self.domain_name,
                    groups,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = keypair_resource_policies, check_for_backend($backend))]
        struct PolicyRow {
            name: String,
            total_resource_slots: $json,
            max_session_lifetime: i64,
            max_concurrent_sessions: i64,
            max_containers_per_session: i64,
            idle_timeout: i64,
            max_pending_session_count: Option<i64>,
            allowed_vfolder_hosts: $json,
            max_vfolder_count: i64,
            max_quota_scope_size: Option<i64>,
            created_at: $time,
        }

        impl PolicyRow {
            fn from_model(p: &KeyPairResourcePolicy) -> Tx<Self> {
                use $crate::store::rows::to_i64;
                Ok(Self {
                    name: p.name.clone(),
                    total_resource_slots: to_json(&p.total_resource_slots)?,
                    max_session_lifetime: to_i64("max_session_lifetime", p.max_session_lifetime)?,
                    max_concurrent_sessions: i64::from(p.max_concurrent_sessions),
                    max_containers_per_session: i64::from(p.max_containers_per_session),
                    idle_timeout: to_i64("idle_timeout", p.idle_timeout)?,
                    max_pending_session_count: p.max_pending_session_count.map(i64::from),
                    allowed_vfolder_hosts: to_json(&p.allowed_vfolder_hosts)?,
                    max_vfolder_count: i64::from(p.max_vfolder_count),
                    max_quota_scope_size: p
                        .max_quota_scope_size
                        .map(|n| to_i64("max_quota_scope_size", n))
                        .transpose()?,
                    created_at: ts(p.created_at),
                })
            }

            fn into_model(self) -> Tx<KeyPairResourcePolicy> {
                Ok(KeyPairResourcePolicy {
                    total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
                    max_session_lifetime: to_u64("max session lifetime", self.max_session_lifetime)?,
                    max_concurrent_sessions: to_u32("max concurrent sessions", self.max_concurrent_sessions)?,
                    max_containers_per_session: to_u32("max containers per session", self.max_containers_per_session)?,
                    idle_timeout: to_u64("idle timeout", self.idle_timeout)?,
                    max_pending_session_count: self
                        .max_pending_session_count
                        .map(|n| to_u32("max pending session count", n))
                        .transpose()?,
                    allowed_vfolder_hosts: from_json("allowed vfolder hosts", self.allowed_vfolder_hosts)?,
                    max_vfolder_count: to_u32("max vfolder count", self.max_vfolder_count)?,
                    max_quota_scope_size: self
                        .max_quota_scope_size
                        .map(|n| to_u64("max quota scope size", n))
                        .transpose()?,
                    created_at: time_of(self.created_at)?,
                    name: self.name,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = scaling_groups, check_for_backend($backend))]
        struct ScalingGroupRow {
            name: String,
            description: Option<String>,
            is_active: bool,
            scheduler: String,
            agent_selector: Option<String>,
            created_at: $time,
        }

        impl ScalingGroupRow {
            fn from_model(g: &ScalingGroup) -> Self {
                Self {
                    name: g.name.clone(),
                    description: g.description.clone(),
                    is_active: g.is_active,
                    scheduler: g.scheduler.clone(),
                    agent_selector: g.agent_selector.clone(),
                    created_at: ts(g.created_at),
                }
            }

            fn into_model(self) -> Tx<ScalingGroup> {
                Ok(ScalingGroup {
                    created_at: time_of(self.created_at)?,
                    name: self.name,
                    description: self.description,
                    is_active: self.is_active,
                    scheduler: self.scheduler,
                    agent_selector: self.agent_selector,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = vfolders, check_for_backend($backend))]
        struct FolderRow {
            id: $uuid,
            host: String,
            name: String,
            quota_scope_id: String,
            usage_mode: String,
            permission: String,
            ownership_type: String,
            user_id: Option<$uuid>,
            group_id: Option<$uuid>,
            creator: String,
            max_size: Option<i64>,
            cloneable: bool,
            created_at: $time,
        }

        /// A folder row with its owner's e-mail (user folders) or domain and name (group folders).
        type OwnedRow = (FolderRow, Option<String>, Option<String>, Option<String>);

        impl FolderRow {
            /// The row of `f`, owned by the user or the group of `owner` (its `(user, group)` columns).
            fn from_model(f: &VFolder, (user_id, group_id): (Option<$uuid>, Option<$uuid>)) -> Tx<Self> {
                Ok(Self {
                    id: uuid_col(f.id.0),
                    host: f.host.clone(),
                    name: f.name.clone(),
                    quota_scope_id: f.owner.quota_scope(),
                    usage_mode: f.usage_mode.as_str().to_owned(),
                    permission: f.permission.as_str().to_owned(),
                    ownership_type: if user_id.is_some() { "user" } else { "group" }.to_owned(),
                    user_id,
                    group_id,
                    creator: f.creator.clone(),
                    max_size: f.max_size.map(|n| $crate::store::rows::to_i64("max size", n)).transpose()?,
                    cloneable: f.cloneable,
                    created_at: ts(f.created_at),
                })
            }

            fn into_model(self, email: Option<String>, domain: Option<String>, group: Option<String>) -> Tx<VFolder> {
                let owner = match (self.ownership_type.as_str(), email, domain, group) {
                    ("user", Some(email), _, _) => VFolderOwner::User { email },
                    ("group", _, Some(domain), Some(name)) => VFolderOwner::Group { domain, name },
                    (kind, ..) => return Err(corrupt("vfolder owner", kind, "the owner is missing")),
                };
                Ok(VFolder {
                    id: VFolderId(uuid_of("vfolder id", self.id)?),
                    usage_mode: parse("usage mode", &self.usage_mode)?,
                    permission: parse("vfolder permission", &self.permission)?,
                    max_size: self
                        .max_size
                        .map(|n| u64::try_from(n).map_err(|e| corrupt("max size", &n.to_string(), e)))
                        .transpose()?,
                    created_at: time_of(self.created_at)?,
                    owner,
                    name: self.name,
                    host: self.host,
                    creator: self.creator,
                    cloneable: self.cloneable,
                })
            }
        }

        #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable)]
        #[diesel(table_name = vfolder_invitations, check_for_backend($backend))]
        struct InvitationRow {
            id: $uuid,
            permission: String,
            inviter: String,
            invitee: String,
            state: String,
            vfolder: $uuid,
            created_at: $time,
            modified_at: $time,
        }

        impl InvitationRow {
            fn from_model(i: &VFolderInvitation) -> Self {
                Self {
                    id: uuid_col(i.id.0),
                    permission: i.permission.as_str().to_owned(),
                    inviter: i.inviter.clone(),
                    invitee: i.invitee.clone(),
                    state: i.state.as_str().to_owned(),
                    vfolder: uuid_col(i.vfolder.0),
                    created_at: ts(i.created_at),
                    modified_at: ts(i.modified_at),
                }
            }

            fn into_model(self) -> Tx<VFolderInvitation> {
                Ok(VFolderInvitation {
                    id: InvitationId(uuid_of("invitation id", self.id)?),
                    vfolder: VFolderId(uuid_of("vfolder id", self.vfolder)?),
                    permission: parse("invitation permission", &self.permission)?,
                    state: $crate::store::rows::invitation_state(&self.state)
                        .ok_or_else(|| corrupt("invitation state", &self.state, "not a known state"))?,
                    created_at: time_of(self.created_at)?,
                    modified_at: time_of(self.modified_at)?,
                    inviter: self.inviter,
                    invitee: self.invitee,
                })
            }
        }
    };
}

/// Sessions paired with their kernels (main first), in the sessions' order.
pub(crate) fn with_kernels(
    sessions: Vec<crate::model::SessionRecord>,
    kernels: Vec<crate::model::KernelRecord>,
) -> Vec<(crate::model::SessionRecord, Vec<crate::model::KernelRecord>)> {
    let mut by_session: std::collections::HashMap<crate::ids::SessionId, Vec<crate::model::KernelRecord>> =
        std::collections::HashMap::new();
    for k in kernels {
        by_session.entry(k.session_id).or_default().push(k);
    }
    sessions
        .into_iter()
        .map(|session| {
            let mut kernels = by_session.remove(&session.id).unwrap_or_default();
            sort_kernels(&mut kernels);
            (session, kernels)
        })
        .collect()
}

/// A count of rows as a count of records, capped at `limit` like the list it counts.
pub(crate) fn capped(n: i64, limit: Option<usize>) -> usize {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    limit.map_or(n, |limit| n.min(limit))
}
