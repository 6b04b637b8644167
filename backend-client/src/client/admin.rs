//! The administration calls of [`Client`]: `client.admin::<Domain>().list()`, `.get(key)`, `.create(spec)`,
//! `.put(key, spec)` and `.delete(key)` for every kind of `backend_core::api::admin` (domains, groups, users,
//! resource policies, scaling groups, keypairs). Each needs an admin keypair (domains and resource policies a
//! superadmin one); deletions answer the deleted record.

use super::{to_json, Client};
use backend_core::api::admin::{AdminApi, AdminKind, KeyPairSpec, PathKey, RecordKind, ReplaceApi, UserSpec};
use backend_core::error::{Error, Result};
use backend_core::model::{KeyPair, User};
use reqwest::Method;
use std::marker::PhantomData;

/// The calls of one administrative kind; see [`Client::admin`].
#[derive(Debug)]
pub struct AdminCalls<'a, K> {
    client: &'a Client,
    kind: PhantomData<K>,
}

impl Client {
    /// The administration calls of kind `K`: `client.admin::<Domain>().list().await`.
    pub fn admin<K: AdminKind>(&self) -> AdminCalls<'_, K> {
        AdminCalls { client: self, kind: PhantomData }
    }

    /// `POST /admin/users`: creates a user.
    pub async fn create_user(&self, spec: &UserSpec) -> Result<User> {
        self.admin::<User>().create(spec).await
    }

    /// `POST /admin/keypairs`: creates a keypair for an existing user; the answer is the only time its secret is
    /// shown.
    pub async fn create_keypair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        self.admin::<KeyPair>().create(spec).await
    }
}

/// The query parameters of a list query: its fields that are set, as text.
fn query_pairs(query: &impl serde::Serialize) -> Result<Vec<(String, String)>> {
    let value =
        serde_json::to_value(query).map_err(|e| Error::Internal { msg: format!("cannot encode query: {e}") })?;
    let serde_json::Value::Object(fields) = value else { return Ok(Vec::new()) };
    Ok(fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

impl<K: AdminKind> AdminCalls<'_, K> {
    fn collection() -> [&'static str; 2] {
        ["admin", K::COLLECTION]
    }

    async fn on_item<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        key: &K::Key,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let segments = key.segments();
        let path: Vec<&str> = Self::collection().into_iter().chain(segments.iter().map(String::as_str)).collect();
        self.client.call(method, &path, &[], body).await
    }

    /// `GET /admin/{COLLECTION}`: every record.
    pub async fn list(&self) -> Result<K::List> {
        self.list_by(&K::Query::default()).await
    }

    /// `GET /admin/{COLLECTION}?...`: the records a query selects (groups and users: of one domain).
    pub async fn list_by(&self, query: &K::Query) -> Result<K::List> {
        let pairs = query_pairs(query)?;
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.client.call(Method::GET, &Self::collection(), &pairs, None).await
    }

    /// `GET /admin/{COLLECTION}/{key}`.
    pub async fn get(&self, key: &K::Key) -> Result<K::Record> {
        self.on_item(Method::GET, key, None).await
    }

    /// `POST /admin/{COLLECTION}`: creates a record (`AlreadyExists` when taken).
    pub async fn create(&self, spec: &K::Spec) -> Result<K::Created> {
        self.client.call(Method::POST, &Self::collection(), &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/{COLLECTION}/{key}` (`Conflict` while something refers to it); keypairs are revoked.
    pub async fn delete(&self, key: &K::Key) -> Result<K::Record> {
        self.on_item(Method::DELETE, key, None).await
    }
}

impl<K: RecordKind> AdminCalls<'_, K> {
    /// `PUT /admin/{COLLECTION}/{key}`: creates or replaces a record.
    pub async fn put(&self, key: &K::Key, spec: &K::Spec) -> Result<K::Record> {
        self.on_item(Method::PUT, key, Some(to_json(spec)?)).await
    }
}

#[async_trait::async_trait]
impl<K: AdminKind> AdminApi<K> for Client {
    async fn list(&self, query: &K::Query) -> Result<K::List> {
        self.admin::<K>().list_by(query).await
    }
    async fn get(&self, key: &K::Key) -> Result<K::Record> {
        self.admin::<K>().get(key).await
    }
    async fn create(&self, spec: &K::Spec) -> Result<K::Created> {
        self.admin::<K>().create(spec).await
    }
    async fn delete(&self, key: &K::Key) -> Result<K::Record> {
        self.admin::<K>().delete(key).await
    }
}

#[async_trait::async_trait]
impl<K: RecordKind> ReplaceApi<K> for Client {
    async fn put(&self, key: &K::Key, spec: &K::Spec) -> Result<K::Record> {
        self.admin::<K>().put(key, spec).await
    }
}
