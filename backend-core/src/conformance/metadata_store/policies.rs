//! The checks of keypair resource policies ([`crate::store::PolicyStore`]).

use super::*;

/// Keypair resource policies: every field reads back, replace keeps `created_at`, listed by name, `Conflict`
/// while a keypair names the policy, `NotFound` when unknown.
pub async fn resource_policies(store: &dyn MetadataStore) {
    let t0 = now();
    let p = policy(t0);
    store.put_resource_policy(&p).await.expect("put policy");
    let read = store.resource_policy(&p.name).await.unwrap().expect("reads back");
    assert!(same_slots(&read.total_resource_slots, &p.total_resource_slots));
    assert_eq!(KeyPairResourcePolicy { total_resource_slots: p.total_resource_slots.clone(), ..read }, p);

    let changed = KeyPairResourcePolicy {
        total_resource_slots: ResourceSlots::new(),
        max_pending_session_count: None,
        allowed_vfolder_hosts: vec![],
        max_vfolder_count: 0,
        max_quota_scope_size: None,
        created_at: t0 + Duration::seconds(9),
        ..p.clone()
    };
    store.put_resource_policy(&changed).await.expect("replace policy");
    let p = KeyPairResourcePolicy { created_at: p.created_at, ..changed };
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(p.clone()), "replaced, created_at kept");
    let q = KeyPairResourcePolicy { name: unique_name("conf-policz"), ..p.clone() };
    store.put_resource_policy(&q).await.expect("put second policy");
    let listed = store.list_resource_policies().await.unwrap();
    let pos = |n: &str| listed.iter().position(|x| x.name == n).expect("listed");
    assert!(pos(&p.name) < pos(&q.name), "policies are listed by name");

    let kp = KeyPair { resource_policy: p.name.clone(), ..keypair(t0) };
    store.insert_keypair(&kp).await.expect("insert keypair");
    expect_kind(store.delete_resource_policy(&p.name).await, ErrorKind::Conflict, "deleting a policy in use");
    store.delete_resource_policy(&q.name).await.expect("delete unused policy");
    assert_eq!(store.resource_policy(&q.name).await.unwrap(), None);
    expect_kind(store.delete_resource_policy(&q.name).await, ErrorKind::NotFound, "deleting an unknown policy");
}

/// `insert_resource_policy`: a new policy reads back; a taken name is `AlreadyExists` and leaves the stored policy as
/// it was.
pub async fn insert_resource_policy_refuses_a_taken_name(store: &dyn MetadataStore) {
    let t0 = now();
    let p = policy(t0);
    store.insert_resource_policy(&p).await.expect("insert policy");
    let read = store.resource_policy(&p.name).await.unwrap().expect("an inserted policy reads back");
    assert!(same_slots(&read.total_resource_slots, &p.total_resource_slots));
    let read = KeyPairResourcePolicy { total_resource_slots: p.total_resource_slots.clone(), ..read };
    assert_eq!(read, p, "every field reads back");
    let again = KeyPairResourcePolicy { max_concurrent_sessions: 9, ..p.clone() };
    expect_kind(store.insert_resource_policy(&again).await, ErrorKind::AlreadyExists, "inserting a taken name");
    let kept = store.resource_policy(&p.name).await.unwrap().expect("still there");
    assert_eq!(kept.max_concurrent_sessions, p.max_concurrent_sessions, "the refused insert changed nothing");
    store.delete_resource_policy(&p.name).await.expect("delete policy");
}
