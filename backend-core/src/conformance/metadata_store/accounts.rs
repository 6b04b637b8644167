//! The checks of keypairs and users ([`crate::store::AccountStore`]).

use super::*;

/// Keypairs: insert, get, list oldest first, duplicate refused, revoke and reactivate, unknown keys.
pub async fn keypairs(store: &dyn MetadataStore) {
    let t0 = now();
    let a = keypair(t0);
    let b = keypair(t0 + Duration::seconds(1));
    // Inserted newest first, so that "oldest first" is not just insertion order.
    store.insert_keypair(&b).await.expect("insert keypair b");
    store.insert_keypair(&a).await.expect("insert keypair a");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a.clone()), "a keypair reads back as written");

    let listed = store.list_keypairs().await.unwrap();
    let pos = |k: &KeyPair| listed.iter().position(|x| x.access_key == k.access_key).expect("listed");
    assert_eq!(listed[pos(&a)], a);
    assert_eq!(listed[pos(&b)], b);
    assert!(pos(&a) < pos(&b), "keypairs are listed oldest first");

    let mut dup = keypair(t0);
    dup.access_key = a.access_key.clone();
    expect_kind(store.insert_keypair(&dup).await, ErrorKind::AlreadyExists, "a taken access key");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a.clone()), "the refused insert changed nothing");

    store.set_keypair_active(&a.access_key, false).await.expect("revoke");
    assert!(!store.keypair(&a.access_key).await.unwrap().expect("still there").is_active, "revoked");
    assert!(store.keypair(&b.access_key).await.unwrap().expect("b").is_active, "only a was revoked");
    store.set_keypair_active(&a.access_key, true).await.expect("reactivate");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a), "reactivated");

    let unknown = AccessKey(format!("AKNONE{}", Uuid::new_v4().simple()));
    expect_kind(store.set_keypair_active(&unknown, false).await, ErrorKind::NotFound, "revoking an unknown key");
    assert_eq!(store.keypair(&unknown).await.unwrap(), None);
}

/// Users: keyed by e-mail with their groups, replaced with new memberships, unique usernames, `NotFound` for an
/// unknown domain or group, `Conflict` while a keypair names the user, and a domain with users cannot go.
pub async fn users(store: &dyn MetadataStore) {
    let t0 = now();
    let d = domain(&unique_name("conf-udomain"), t0);
    store.put_domain(&d).await.expect("put domain");
    for name in ["g1", "g2"] {
        store.put_group(&group(&d.name, name, t0)).await.expect("put group");
    }
    let u = user(&d.name, &["g2", "g1"], t0);
    store.put_user(&u).await.expect("put user");
    let read = store.user(&u.email).await.unwrap().expect("user reads back");
    assert_eq!(read, User { groups: vec!["g1".into(), "g2".into()], ..u.clone() }, "groups come back sorted");

    let moved = User { role: Role::Admin, is_active: false, groups: vec!["g2".into()], ..u.clone() };
    store.put_user(&moved).await.expect("replace user");
    assert_eq!(store.user(&u.email).await.unwrap(), Some(moved.clone()), "replaced with its new memberships");

    let second = user(&d.name, &[], t0);
    store.put_user(&second).await.expect("put second user");
    let listed = store.list_users(Some(&d.name)).await.unwrap();
    let mut emails = vec![moved.email.clone(), second.email.clone()];
    emails.sort();
    assert_eq!(listed.iter().map(|u| u.email.clone()).collect::<Vec<_>>(), emails, "by e-mail, in the domain");
    assert!(store.list_users(None).await.unwrap().contains(&moved));

    let clash = User { username: moved.username.clone(), ..user(&d.name, &[], t0) };
    expect_kind(store.put_user(&clash).await, ErrorKind::AlreadyExists, "a taken username");
    assert_eq!(store.user(&clash.email).await.unwrap(), None, "the refused put changed nothing");
    let bad_group = User { groups: vec!["nope".into()], ..user(&d.name, &[], t0) };
    expect_kind(store.put_user(&bad_group).await, ErrorKind::NotFound, "a user in an unknown group");
    assert_eq!(store.user(&bad_group.email).await.unwrap(), None);
    let bad_domain = user(&unique_name("conf-nodomain"), &[], t0);
    expect_kind(store.put_user(&bad_domain).await, ErrorKind::NotFound, "a user of an unknown domain");

    store.delete_group(&d.name, "g1").await.expect("g1 lost its only member");
    expect_kind(store.delete_domain(&d.name).await, ErrorKind::Conflict, "deleting a domain with users");

    let kp = KeyPair { user_id: moved.email.clone(), ..keypair(t0) };
    store.insert_keypair(&kp).await.expect("insert keypair");
    expect_kind(store.delete_user(&moved.email).await, ErrorKind::Conflict, "deleting a user with a keypair");
    assert!(store.user(&moved.email).await.unwrap().is_some());

    store.delete_user(&second.email).await.expect("delete second");
    assert_eq!(store.user(&second.email).await.unwrap(), None);
    expect_kind(store.delete_user(&second.email).await, ErrorKind::NotFound, "deleting an unknown user");
}

/// `insert_user`: a new user reads back with its groups; a taken e-mail or username is `AlreadyExists` and leaves the
/// stored user as it was; an unknown domain or group is `NotFound` and writes nothing.
pub async fn insert_user_refuses_taken_keys(store: &dyn MetadataStore) {
    let t0 = now();
    let d = domain(&unique_name("conf-insert-user"), t0);
    store.insert_domain(&d).await.expect("insert domain");
    store.insert_group(&group(&d.name, "team", t0)).await.expect("insert group");
    let u = user(&d.name, &["team"], t0);
    store.insert_user(&u).await.expect("insert user");
    assert_eq!(store.user(&u.email).await.unwrap(), Some(u.clone()), "an inserted user reads back");

    let same_email = User { username: format!("{}-other", u.username), groups: vec![], ..u.clone() };
    expect_kind(store.insert_user(&same_email).await, ErrorKind::AlreadyExists, "inserting a taken e-mail");
    let same_name = User { email: format!("other-{}", u.email), ..u.clone() };
    expect_kind(store.insert_user(&same_name).await, ErrorKind::AlreadyExists, "inserting a taken username");
    assert_eq!(store.user(&u.email).await.unwrap(), Some(u.clone()), "the refused inserts changed nothing");
    assert_eq!(store.user(&same_name.email).await.unwrap(), None);

    let lost = user(&unique_name("conf-no-domain"), &[], t0);
    expect_kind(store.insert_user(&lost).await, ErrorKind::NotFound, "inserting a user of an unknown domain");
    let outsider = user(&d.name, &["nowhere"], t0);
    expect_kind(store.insert_user(&outsider).await, ErrorKind::NotFound, "inserting a user of an unknown group");
    assert_eq!(store.user(&outsider.email).await.unwrap(), None, "a refused insert writes nothing");

    store.delete_user(&u.email).await.expect("delete user");
}
