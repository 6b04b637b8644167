//! What a request acts as: the owner keypair, its user, domain, group and resource policy, loaded once.
//!
//! A request is signed by one keypair (the caller) and acts for one keypair (the owner): the caller itself, or, for
//! an admin, the keypair named by `owner_access_key`. [`Acting`] resolves that pair and costs at most one read (the
//! owner keypair, when it is another one). [`RequestContext`] adds the owner's user and keypair resource policy, for
//! the operations that check them (creating a session, every folder operation), and [`SessionScope`] the domain and
//! group a new session belongs to. Each is loaded once per request and handed to every check that needs it.

use crate::Manager;
use backend_core::error::{Error, Result};
use backend_core::ids::AccessKey;
use backend_core::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, Role, User};
use backend_core::ResourceSlots;

/// Who a request acts as: the keypair that signed it and the keypair it acts for.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The keypair that signed the request.
    pub caller: KeyPair,
    /// The keypair the request acts for: the caller, or for admins the keypair named by `owner_access_key`.
    pub owner: KeyPair,
}

impl Acting {
    /// The caller acting for itself.
    pub fn itself(caller: &KeyPair) -> Self {
        Self { caller: caller.clone(), owner: caller.clone() }
    }

    /// Resolves `owner_access_key` (absent or empty: the caller itself). Only admins may act for another keypair
    /// (403 otherwise), and it must exist (404).
    pub async fn resolve(m: &Manager, caller: &KeyPair, owner: Option<&str>) -> Result<Self> {
        match owner.filter(|o| !o.is_empty()) {
            None => Ok(Self::itself(caller)),
            Some(o) if o == caller.access_key.as_str() => Ok(Self::itself(caller)),
            Some(o) => {
                if !caller.role.is_admin() {
                    return Err(Error::Forbidden { msg: "only admins may act for another keypair".into() });
                }
                let owner = m.store.keypair(&AccessKey::from(o)).await?;
                let owner = owner.ok_or_else(|| Error::NotFound { what: format!("keypair {o}") })?;
                Ok(Self { caller: caller.clone(), owner })
            }
        }
    }

    /// The owner's access key: whose sessions the request sees and creates.
    pub fn owner_key(&self) -> &AccessKey {
        &self.owner.access_key
    }
}

/// The access key a request acts for ([`Acting::resolve`]), for callers that need nothing else.
pub async fn acting_for(m: &Manager, caller: &KeyPair, owner: Option<&str>) -> Result<AccessKey> {
    Ok(Acting::resolve(m, caller, owner).await?.owner.access_key)
}

/// What a request acts as, with the owner's records its checks read: its user and its keypair resource policy.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The caller and the owner.
    pub acting: Acting,
    /// The owner's user (the keypair's `user_id`); `None` when there is no such record, in which case the owner
    /// acts as a user of the default domain without groups.
    pub user: Option<User>,
    /// The owner's keypair resource policy (`None`: unknown, so nothing it would allow is allowed).
    pub policy: Option<KeyPairResourcePolicy>,
}

impl RequestContext {
    /// Loads the owner's user and resource policy (two reads).
    pub async fn load(m: &Manager, acting: Acting) -> Result<Self> {
        let user = m.store.user(&acting.owner.user_id).await?;
        let policy = m.store.resource_policy(&acting.owner.resource_policy).await?;
        Ok(Self { acting, user, policy })
    }

    /// [`Acting::resolve`], then [`RequestContext::load`].
    pub async fn resolve(m: &Manager, caller: &KeyPair, owner: Option<&str>) -> Result<Self> {
        Self::load(m, Acting::resolve(m, caller, owner).await?).await
    }

    /// The keypair the request acts for.
    pub fn owner(&self) -> &KeyPair {
        &self.acting.owner
    }

    /// The owner's e-mail (its keypair's `user_id` when the user record is missing).
    pub fn email(&self) -> &str {
        self.user.as_ref().map_or(&self.acting.owner.user_id, |u| &u.email)
    }

    /// The owner's domain.
    pub fn domain(&self) -> &str {
        self.user.as_ref().map_or(backend_core::store::fixtures::DEFAULT, |u| &u.domain)
    }

    /// The groups the owner's user belongs to.
    pub fn groups(&self) -> &[String] {
        self.user.as_ref().map_or(&[], |u| &u.groups)
    }

    /// True when the owner keypair is an admin's (or a superadmin's).
    pub fn is_admin(&self) -> bool {
        self.acting.owner.role.is_admin()
    }

    /// True when the owner keypair is a superadmin's.
    pub fn is_superadmin(&self) -> bool {
        self.acting.owner.role == Role::Superadmin
    }

    /// The domain and group a new session of the owner belongs to, checked as Backend.AI checks them against the
    /// owner's user: the domain defaults to the user's and must be it (a superadmin may name any active domain), and
    /// the group (default `default`) must be an active group of that domain which the user belongs to (an admin or
    /// superadmin may name any). An owner without a user record keeps the names asked (or `default`) unchecked.
    /// Reads the domain and the group once each; their quotas are kept for [`SessionScope::refuse_over_quota`].
    pub async fn session_scope(
        &self,
        m: &Manager,
        asked_domain: Option<&str>,
        asked_group: Option<&str>,
    ) -> Result<SessionScope> {
        let named = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (asked_domain, asked_group) = (named(asked_domain), named(asked_group));
        let Some(user) = &self.user else {
            let domain = asked_domain.unwrap_or_else(|| "default".into());
            let group = asked_group.unwrap_or_else(|| "default".into());
            let group_quota = m.store.group(&domain, &group).await?.map(|g| g.total_resource_slots);
            let domain_quota = m.store.domain(&domain).await?.map(|d| d.total_resource_slots);
            return Ok(SessionScope { domain, group, domain_quota, group_quota });
        };
        let domain = asked_domain.unwrap_or_else(|| user.domain.clone());
        if domain != user.domain && user.role != Role::Superadmin {
            return Err(Error::InvalidParams {
                msg: format!(
                    "domain {domain:?}: a session can only be created in its owner's domain {:?}",
                    user.domain
                ),
            });
        }
        let record: Option<Domain> = m.store.domain(&domain).await?;
        let Some(domain_record) = record.filter(|d| d.is_active) else {
            return Err(Error::InvalidParams { msg: format!("domain {domain:?} does not exist or is inactive") });
        };
        let group = asked_group.unwrap_or_else(|| "default".into());
        let record: Option<Group> = m.store.group(&domain, &group).await?;
        let Some(group_record) = record.filter(|g| g.is_active) else {
            return Err(Error::InvalidParams {
                msg: format!("group {group:?} does not exist in domain {domain:?} or is inactive"),
            });
        };
        if !user.role.is_admin() && !user.groups.contains(&group) {
            return Err(Error::InvalidParams {
                msg: format!("group {group:?}: the session's owner {} is not a member of it", user.email),
            });
        }
        Ok(SessionScope {
            domain,
            group,
            domain_quota: Some(domain_record.total_resource_slots),
            group_quota: Some(group_record.total_resource_slots),
        })
    }
}

/// The domain and group a new session belongs to, with the quotas read with them.
#[derive(Debug, Clone)]
pub struct SessionScope {
    /// The domain's name.
    pub domain: String,
    /// The group's name.
    pub group: String,
    /// The domain's `total_resource_slots` (`None`: no such domain, so no quota).
    pub domain_quota: Option<ResourceSlots>,
    /// The group's `total_resource_slots` (`None`: no such group, so no quota).
    pub group_quota: Option<ResourceSlots>,
}

impl SessionScope {
    /// Refuses a session asking for more than its group's or its domain's `total_resource_slots` allow in all (it
    /// could never be placed); one that fits them only once others end waits in PENDING instead.
    pub fn refuse_over_quota(&self, total: &ResourceSlots) -> Result<()> {
        let (domain, group) = (&self.domain, &self.group);
        let scopes = [(format!("group {group}"), &self.group_quota), (format!("domain {domain}"), &self.domain_quota)];
        for (what, quota) in scopes {
            let Some(quota) = quota else { continue };
            let over = quota.iter().find(|(slot, limit)| total.get(slot) > *limit).map(|(s, l)| (s.to_owned(), l));
            if let Some((slot, limit)) = over {
                return Err(Error::QuotaExceeded {
                    msg: format!(
                        "the session asks for {slot}={} but {what} may use at most {} (total_resource_slots)",
                        total.get(&slot).normalize(),
                        limit.normalize()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Manager {
    /// The active keypair that signs with `access_key`: a request signed by an unknown or revoked one is refused
    /// (401) before anything else is read.
    pub async fn signing_keypair(&self, access_key: &AccessKey) -> Result<KeyPair> {
        let keypair = self.store.keypair(access_key).await?.filter(|k| k.is_active);
        keypair.ok_or_else(|| Error::AuthFailed { msg: "unknown or inactive access key".into() })
    }
}
