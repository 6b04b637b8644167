//! The administration calls of [`Client`]: `/admin/domains`, `/admin/groups`, `/admin/users`,
//! `/admin/resource-policies`, `/admin/scaling-groups` and `/admin/keypairs`. Each needs an admin keypair
//! (domains and resource policies a superadmin one); deletions answer the deleted record.

use super::{to_json, Client};
use backend_core::api::admin::{
    DomainList, DomainSpec, GroupList, GroupSpec, KeyPairInfo, KeyPairList, KeyPairSpec, ResourcePolicyList,
    ResourcePolicySpec, ScalingGroupList, ScalingGroupSpec, UserList, UserSpec,
};
use backend_core::error::Result;
use backend_core::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, ScalingGroup, User};
use reqwest::Method;

fn domain_query(domain: Option<&str>) -> Vec<(&str, &str)> {
    domain.map(|d| ("domain", d)).into_iter().collect()
}

impl Client {
    /// `GET /admin/domains`.
    pub async fn list_domains(&self) -> Result<DomainList> {
        self.call(Method::GET, &["admin", "domains"], &[], None).await
    }

    /// `POST /admin/domains`: creates a domain (`AlreadyExists` when taken).
    pub async fn create_domain(&self, spec: &DomainSpec) -> Result<Domain> {
        self.call(Method::POST, &["admin", "domains"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/domains/{name}`.
    pub async fn domain(&self, name: &str) -> Result<Domain> {
        self.call(Method::GET, &["admin", "domains", name], &[], None).await
    }

    /// `PUT /admin/domains/{name}`: creates or replaces a domain.
    pub async fn put_domain(&self, name: &str, spec: &DomainSpec) -> Result<Domain> {
        self.call(Method::PUT, &["admin", "domains", name], &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/domains/{name}` (`Conflict` while it has groups or users).
    pub async fn delete_domain(&self, name: &str) -> Result<Domain> {
        self.call(Method::DELETE, &["admin", "domains", name], &[], None).await
    }

    /// `GET /admin/groups`, of one domain or all.
    pub async fn list_groups(&self, domain: Option<&str>) -> Result<GroupList> {
        self.call(Method::GET, &["admin", "groups"], &domain_query(domain), None).await
    }

    /// `POST /admin/groups`: creates a group.
    pub async fn create_group(&self, spec: &GroupSpec) -> Result<Group> {
        self.call(Method::POST, &["admin", "groups"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/groups/{domain}/{name}`.
    pub async fn group(&self, domain: &str, name: &str) -> Result<Group> {
        self.call(Method::GET, &["admin", "groups", domain, name], &[], None).await
    }

    /// `PUT /admin/groups/{domain}/{name}`: creates or replaces a group.
    pub async fn put_group(&self, domain: &str, name: &str, spec: &GroupSpec) -> Result<Group> {
        self.call(Method::PUT, &["admin", "groups", domain, name], &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/groups/{domain}/{name}` (`Conflict` while it has members).
    pub async fn delete_group(&self, domain: &str, name: &str) -> Result<Group> {
        self.call(Method::DELETE, &["admin", "groups", domain, name], &[], None).await
    }

    /// `GET /admin/users`, of one domain or all.
    pub async fn list_users(&self, domain: Option<&str>) -> Result<UserList> {
        self.call(Method::GET, &["admin", "users"], &domain_query(domain), None).await
    }

    /// `POST /admin/users`: creates a user.
    pub async fn create_user(&self, spec: &UserSpec) -> Result<User> {
        self.call(Method::POST, &["admin", "users"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/users/{email}`.
    pub async fn user(&self, email: &str) -> Result<User> {
        self.call(Method::GET, &["admin", "users", email], &[], None).await
    }

    /// `PUT /admin/users/{email}`: creates or replaces a user.
    pub async fn put_user(&self, email: &str, spec: &UserSpec) -> Result<User> {
        self.call(Method::PUT, &["admin", "users", email], &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/users/{email}` (`Conflict` while keypairs name the user).
    pub async fn delete_user(&self, email: &str) -> Result<User> {
        self.call(Method::DELETE, &["admin", "users", email], &[], None).await
    }

    /// `GET /admin/resource-policies`.
    pub async fn list_resource_policies(&self) -> Result<ResourcePolicyList> {
        self.call(Method::GET, &["admin", "resource-policies"], &[], None).await
    }

    /// `POST /admin/resource-policies`: creates a keypair resource policy.
    pub async fn create_resource_policy(&self, spec: &ResourcePolicySpec) -> Result<KeyPairResourcePolicy> {
        self.call(Method::POST, &["admin", "resource-policies"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/resource-policies/{name}`.
    pub async fn resource_policy(&self, name: &str) -> Result<KeyPairResourcePolicy> {
        self.call(Method::GET, &["admin", "resource-policies", name], &[], None).await
    }

    /// `PUT /admin/resource-policies/{name}`: creates or replaces a policy.
    pub async fn put_resource_policy(&self, name: &str, spec: &ResourcePolicySpec) -> Result<KeyPairResourcePolicy> {
        self.call(Method::PUT, &["admin", "resource-policies", name], &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/resource-policies/{name}` (`Conflict` while keypairs use it).
    pub async fn delete_resource_policy(&self, name: &str) -> Result<KeyPairResourcePolicy> {
        self.call(Method::DELETE, &["admin", "resource-policies", name], &[], None).await
    }

    /// `GET /admin/scaling-groups`.
    pub async fn list_scaling_groups(&self) -> Result<ScalingGroupList> {
        self.call(Method::GET, &["admin", "scaling-groups"], &[], None).await
    }

    /// `POST /admin/scaling-groups`: creates a scaling group.
    pub async fn create_scaling_group(&self, spec: &ScalingGroupSpec) -> Result<ScalingGroup> {
        self.call(Method::POST, &["admin", "scaling-groups"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/scaling-groups/{name}`.
    pub async fn scaling_group(&self, name: &str) -> Result<ScalingGroup> {
        self.call(Method::GET, &["admin", "scaling-groups", name], &[], None).await
    }

    /// `PUT /admin/scaling-groups/{name}`: creates or replaces a scaling group.
    pub async fn put_scaling_group(&self, name: &str, spec: &ScalingGroupSpec) -> Result<ScalingGroup> {
        self.call(Method::PUT, &["admin", "scaling-groups", name], &[], Some(to_json(spec)?)).await
    }

    /// `DELETE /admin/scaling-groups/{name}` (`Conflict` while agents serve it).
    pub async fn delete_scaling_group(&self, name: &str) -> Result<ScalingGroup> {
        self.call(Method::DELETE, &["admin", "scaling-groups", name], &[], None).await
    }

    /// `GET /admin/keypairs` (without secrets).
    pub async fn list_keypairs(&self) -> Result<KeyPairList> {
        self.call(Method::GET, &["admin", "keypairs"], &[], None).await
    }

    /// `POST /admin/keypairs`: creates a keypair for an existing user; the answer is the only time its secret is
    /// shown.
    pub async fn create_keypair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        self.call(Method::POST, &["admin", "keypairs"], &[], Some(to_json(spec)?)).await
    }

    /// `GET /admin/keypairs/{access_key}` (without its secret).
    pub async fn keypair(&self, access_key: &str) -> Result<KeyPairInfo> {
        self.call(Method::GET, &["admin", "keypairs", access_key], &[], None).await
    }

    /// `DELETE /admin/keypairs/{access_key}`: revokes a keypair.
    pub async fn revoke_keypair(&self, access_key: &str) -> Result<KeyPairInfo> {
        self.call(Method::DELETE, &["admin", "keypairs", access_key], &[], None).await
    }
}
