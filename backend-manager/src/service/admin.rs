//! Administration of domains, groups, users, keypairs, resource policies and scaling groups.
//!
//! [`Admin`] is one caller's view of the store: list, get, create, put (create or replace, keeping `created_at`) and
//! delete (answering the deleted record), each generic over the kind and checking the caller's role first. The
//! `/admin/...` routes and the manager's offline commands both go through it; each kind says how it is stored in
//! [`StoredKind`] (and [`StoredRecord`] for the kinds a `PUT` replaces).

use async_trait::async_trait;
use backend_core::api::admin::{AdminApi, AdminKind, KeyPairInfo, RecordKind, ReplaceApi};
use backend_core::auth::generate_keypair;
use backend_core::error::{Error, Result};
use backend_core::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, User};
use backend_core::store::MetadataStore;
use backend_core::AccessKey;
use chrono::Utc;

/// What a write does, for the role checks that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// `POST`.
    Create,
    /// `PUT`.
    Replace,
    /// `DELETE`.
    Delete,
}

/// How the records of a kind are read from the store.
#[async_trait]
pub trait StoredKind: AdminKind {
    /// One record, `None` when the key names none.
    async fn fetch(store: &dyn MetadataStore, key: &Self::Key) -> Result<Option<Self::Record>>;
    /// The records a list query selects, in the store's order.
    async fn fetch_all(store: &dyn MetadataStore, query: &Self::Query) -> Result<Vec<Self::Record>>;
}

/// How a kind is created and deleted: the generic way for every [`StoredRecord`], and its own for keypairs.
#[async_trait]
pub trait WritableKind: StoredKind {
    /// Makes and stores the record a `POST` body asks for (after the caller's write role was checked).
    async fn create(store: &dyn MetadataStore, caller: Role, spec: Self::Spec) -> Result<Self::Created>;
    /// Deletes (keypairs: revokes) a record and answers it as it was before (keypairs: after).
    async fn delete(store: &dyn MetadataStore, caller: Role, key: &Self::Key) -> Result<Self::Record>;
}

/// How the records of a kind that `PUT` replaces are written.
#[async_trait]
pub trait StoredRecord: StoredKind + RecordKind {
    /// Stores a new record; `AlreadyExists` when its key is taken.
    async fn insert(store: &dyn MetadataStore, record: &Self::Record) -> Result<()>;
    /// Creates or replaces a record.
    async fn put(store: &dyn MetadataStore, record: &Self::Record) -> Result<()>;
    /// Deletes a record (`NotFound`, or `Conflict` while something refers to it).
    async fn remove(store: &dyn MetadataStore, key: &Self::Key) -> Result<()>;
    /// A check beyond the write role, given the record before and after the write (default: none).
    fn may_write(caller: Role, write: Write, old: Option<&Self::Record>, new: Option<&Self::Record>) -> Result<()> {
        let _ = (caller, write, old, new);
        Ok(())
    }
}

fn found<K: AdminKind>(record: Option<K::Record>, key: &K::Key) -> Result<K::Record> {
    record.ok_or_else(|| Error::NotFound { what: K::describe(key) })
}

#[async_trait]
impl<K: StoredRecord> WritableKind for K {
    async fn create(store: &dyn MetadataStore, caller: Role, spec: K::Spec) -> Result<K::Record> {
        let record = K::build(spec, Utc::now())?;
        K::may_write(caller, Write::Create, None, Some(&record))?;
        K::insert(store, &record).await?;
        let key = K::key_of(&record);
        found::<K>(K::fetch(store, &key).await?, &key)
    }

    async fn delete(store: &dyn MetadataStore, caller: Role, key: &K::Key) -> Result<K::Record> {
        let old = found::<K>(K::fetch(store, key).await?, key)?;
        K::may_write(caller, Write::Delete, Some(&old), None)?;
        K::remove(store, key).await?;
        Ok(old)
    }
}

/// One caller's administration of a store.
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    store: &'a dyn MetadataStore,
    caller: Role,
}

impl<'a> Admin<'a> {
    /// The administration `caller` may do on `store` (the offline commands act as [`Role::Superadmin`]).
    pub fn new(store: &'a dyn MetadataStore, caller: Role) -> Self {
        Self { store, caller }
    }

    /// `Forbidden` unless the caller has at least `role`.
    pub fn authorize(&self, role: Role) -> Result<()> {
        if self.caller >= role {
            Ok(())
        } else {
            Err(Error::Forbidden { msg: format!("this needs the {role} role") })
        }
    }

    /// The records a query selects.
    pub async fn list<K: StoredKind>(&self, query: &K::Query) -> Result<K::List> {
        self.authorize(K::READ_ROLE)?;
        Ok(K::list_of(K::fetch_all(self.store, query).await?))
    }

    /// One record (`NotFound` when the key names none).
    pub async fn get<K: StoredKind>(&self, key: &K::Key) -> Result<K::Record> {
        self.authorize(K::READ_ROLE)?;
        found::<K>(K::fetch(self.store, key).await?, key)
    }

    /// Creates a record (`AlreadyExists` when its key is taken).
    pub async fn create<K: WritableKind>(&self, spec: K::Spec) -> Result<K::Created> {
        self.authorize(K::WRITE_ROLE)?;
        K::create(self.store, self.caller, spec).await
    }

    /// Creates or replaces the record `key` names from a spec whose name is empty or the key's; a replaced record
    /// keeps its `created_at`.
    pub async fn put<K: StoredRecord>(&self, key: &K::Key, spec: K::Spec) -> Result<K::Record> {
        self.authorize(K::WRITE_ROLE)?;
        let spec = K::keyed(spec, key)?;
        let old = K::fetch(self.store, key).await?;
        let created_at = old.as_ref().map_or_else(Utc::now, K::created_at);
        let record = K::build(spec, created_at)?;
        K::may_write(self.caller, Write::Replace, old.as_ref(), Some(&record))?;
        K::put(self.store, &record).await?;
        found::<K>(K::fetch(self.store, key).await?, key)
    }

    /// Deletes a record and answers it (keypairs: revokes it and answers it revoked).
    pub async fn delete<K: WritableKind>(&self, key: &K::Key) -> Result<K::Record> {
        self.authorize(K::WRITE_ROLE)?;
        K::delete(self.store, self.caller, key).await
    }
}

#[async_trait]
impl<K: WritableKind> AdminApi<K> for Admin<'_> {
    async fn list(&self, query: &K::Query) -> Result<K::List> {
        Admin::list::<K>(self, query).await
    }
    async fn get(&self, key: &K::Key) -> Result<K::Record> {
        Admin::get::<K>(self, key).await
    }
    async fn create(&self, spec: &K::Spec) -> Result<K::Created> {
        Admin::create::<K>(self, spec.clone()).await
    }
    async fn delete(&self, key: &K::Key) -> Result<K::Record> {
        Admin::delete::<K>(self, key).await
    }
}

#[async_trait]
impl<K: StoredRecord> ReplaceApi<K> for Admin<'_> {
    async fn put(&self, key: &K::Key, spec: &K::Spec) -> Result<K::Record> {
        Admin::put::<K>(self, key, spec.clone()).await
    }
}

#[async_trait]
impl StoredKind for Domain {
    async fn fetch(store: &dyn MetadataStore, name: &String) -> Result<Option<Domain>> {
        store.domain(name).await
    }
    async fn fetch_all(store: &dyn MetadataStore, _: &Self::Query) -> Result<Vec<Domain>> {
        store.list_domains().await
    }
}

#[async_trait]
impl StoredRecord for Domain {
    async fn insert(store: &dyn MetadataStore, domain: &Domain) -> Result<()> {
        store.insert_domain(domain).await
    }
    async fn put(store: &dyn MetadataStore, domain: &Domain) -> Result<()> {
        store.put_domain(domain).await
    }
    async fn remove(store: &dyn MetadataStore, name: &String) -> Result<()> {
        store.delete_domain(name).await
    }
}

#[async_trait]
impl StoredKind for Group {
    async fn fetch(store: &dyn MetadataStore, (domain, name): &(String, String)) -> Result<Option<Group>> {
        store.group(domain, name).await
    }
    async fn fetch_all(store: &dyn MetadataStore, query: &Self::Query) -> Result<Vec<Group>> {
        store.list_groups(query.domain.as_deref()).await
    }
}

#[async_trait]
impl StoredRecord for Group {
    async fn insert(store: &dyn MetadataStore, group: &Group) -> Result<()> {
        store.insert_group(group).await
    }
    async fn put(store: &dyn MetadataStore, group: &Group) -> Result<()> {
        store.put_group(group).await
    }
    async fn remove(store: &dyn MetadataStore, (domain, name): &(String, String)) -> Result<()> {
        store.delete_group(domain, name).await
    }
}

#[async_trait]
impl StoredKind for User {
    async fn fetch(store: &dyn MetadataStore, email: &String) -> Result<Option<User>> {
        store.user(email).await
    }
    async fn fetch_all(store: &dyn MetadataStore, query: &Self::Query) -> Result<Vec<User>> {
        store.list_users(query.domain.as_deref()).await
    }
}

#[async_trait]
impl StoredRecord for User {
    async fn insert(store: &dyn MetadataStore, user: &User) -> Result<()> {
        store.insert_user(user).await
    }
    async fn put(store: &dyn MetadataStore, user: &User) -> Result<()> {
        store.put_user(user).await
    }
    async fn remove(store: &dyn MetadataStore, email: &String) -> Result<()> {
        store.delete_user(email).await
    }

    /// Only superadmins create, change or delete superadmins.
    fn may_write(caller: Role, write: Write, old: Option<&User>, new: Option<&User>) -> Result<()> {
        let superadmin = |u: Option<&User>| u.is_some_and(|u| u.role == Role::Superadmin);
        if caller >= Role::Superadmin || !(superadmin(old) || superadmin(new)) {
            return Ok(());
        }
        let verb = match write {
            Write::Create => "create",
            Write::Replace => "change",
            Write::Delete => "delete",
        };
        Err(Error::Forbidden { msg: format!("only superadmins {verb} superadmins") })
    }
}

#[async_trait]
impl StoredKind for KeyPairResourcePolicy {
    async fn fetch(store: &dyn MetadataStore, name: &String) -> Result<Option<KeyPairResourcePolicy>> {
        store.resource_policy(name).await
    }
    async fn fetch_all(store: &dyn MetadataStore, _: &Self::Query) -> Result<Vec<KeyPairResourcePolicy>> {
        store.list_resource_policies().await
    }
}

#[async_trait]
impl StoredRecord for KeyPairResourcePolicy {
    async fn insert(store: &dyn MetadataStore, policy: &KeyPairResourcePolicy) -> Result<()> {
        store.insert_resource_policy(policy).await
    }
    async fn put(store: &dyn MetadataStore, policy: &KeyPairResourcePolicy) -> Result<()> {
        store.put_resource_policy(policy).await
    }
    async fn remove(store: &dyn MetadataStore, name: &String) -> Result<()> {
        store.delete_resource_policy(name).await
    }
}

#[async_trait]
impl StoredKind for ScalingGroup {
    async fn fetch(store: &dyn MetadataStore, name: &String) -> Result<Option<ScalingGroup>> {
        store.scaling_group(name).await
    }
    async fn fetch_all(store: &dyn MetadataStore, _: &Self::Query) -> Result<Vec<ScalingGroup>> {
        store.list_scaling_groups().await
    }
}

#[async_trait]
impl StoredRecord for ScalingGroup {
    async fn insert(store: &dyn MetadataStore, group: &ScalingGroup) -> Result<()> {
        store.insert_scaling_group(group).await
    }
    async fn put(store: &dyn MetadataStore, group: &ScalingGroup) -> Result<()> {
        store.put_scaling_group(group).await
    }
    async fn remove(store: &dyn MetadataStore, name: &String) -> Result<()> {
        store.delete_scaling_group(name).await
    }
}

#[async_trait]
impl StoredKind for KeyPair {
    async fn fetch(store: &dyn MetadataStore, key: &AccessKey) -> Result<Option<KeyPairInfo>> {
        Ok(store.keypair(key).await?.as_ref().map(KeyPairInfo::from))
    }
    async fn fetch_all(store: &dyn MetadataStore, _: &Self::Query) -> Result<Vec<KeyPairInfo>> {
        Ok(store.list_keypairs().await?.iter().map(KeyPairInfo::from).collect())
    }
}

#[async_trait]
impl WritableKind for KeyPair {
    /// A new keypair of an existing user and policy, with a role no higher than the caller's.
    async fn create(store: &dyn MetadataStore, caller: Role, spec: Self::Spec) -> Result<KeyPair> {
        if spec.role > caller {
            return Err(Error::Forbidden { msg: format!("a {caller} cannot create {} keypairs", spec.role) });
        }
        found::<User>(store.user(&spec.user_id).await?, &spec.user_id)?;
        found::<KeyPairResourcePolicy>(store.resource_policy(&spec.resource_policy).await?, &spec.resource_policy)?;
        let (access_key, secret_key) = generate_keypair();
        let keypair = KeyPair {
            access_key: access_key.into(),
            secret_key,
            user_id: spec.user_id,
            role: spec.role,
            is_active: true,
            rate_limit: spec.rate_limit,
            resource_policy: spec.resource_policy,
            created_at: Utc::now(),
        };
        store.insert_keypair(&keypair).await?;
        Ok(keypair)
    }

    /// Revokes a keypair whose role is no higher than the caller's; it stays, inactive.
    async fn delete(store: &dyn MetadataStore, caller: Role, key: &AccessKey) -> Result<KeyPairInfo> {
        let old = found::<Self>(Self::fetch(store, key).await?, key)?;
        if old.role > caller {
            return Err(Error::Forbidden { msg: format!("a {caller} cannot revoke {} keypairs", old.role) });
        }
        store.set_keypair_active(key, false).await?;
        found::<Self>(Self::fetch(store, key).await?, key)
    }
}

impl crate::Manager {
    /// The administration `caller` may do on this manager's store.
    pub fn admin(&self, caller: Role) -> Admin<'_> {
        Admin::new(self.store.as_ref(), caller)
    }
}
