//! The checks of domains and groups ([`crate::store::DomainStore`]).

use super::*;

/// Domains: put reads back, a second put replaces all but `created_at`, list by name, delete, unknown names, and
/// `Conflict` while a group is in the domain.
pub async fn domains(store: &dyn MetadataStore) {
    let t0 = now();
    let b = domain(&unique_name("conf-domain-b"), t0);
    let a = Domain { name: unique_name("conf-domain-a"), ..b.clone() };
    store.put_domain(&b).await.expect("put domain b");
    store.put_domain(&a).await.expect("put domain a");
    assert_eq!(store.domain(&a.name).await.unwrap(), Some(a.clone()), "a domain reads back as written");

    let changed = Domain {
        description: None,
        is_active: false,
        total_resource_slots: cpu("8"),
        created_at: t0 + Duration::seconds(5),
        ..a.clone()
    };
    store.put_domain(&changed).await.expect("replace domain");
    let expected = Domain { created_at: a.created_at, ..changed };
    assert_eq!(store.domain(&a.name).await.unwrap(), Some(expected.clone()), "a replaced domain keeps created_at");

    let listed = store.list_domains().await.unwrap();
    let pos = |n: &str| listed.iter().position(|d| d.name == n).expect("listed");
    assert!(pos(&a.name) < pos(&b.name), "domains are listed by name");
    assert_eq!(listed[pos(&a.name)], expected);

    let g = group(&b.name, "conf-group", t0);
    store.put_group(&g).await.expect("put group");
    expect_kind(store.delete_domain(&b.name).await, ErrorKind::Conflict, "deleting a domain with a group");
    assert!(store.domain(&b.name).await.unwrap().is_some(), "the refused delete changed nothing");
    store.delete_group(&b.name, &g.name).await.expect("delete group");
    store.delete_domain(&b.name).await.expect("delete domain b");
    store.delete_domain(&a.name).await.expect("delete domain a");
    assert_eq!(store.domain(&a.name).await.unwrap(), None, "deleted");
    expect_kind(store.delete_domain(&a.name).await, ErrorKind::NotFound, "deleting an unknown domain");
}

/// Groups: keyed by domain and name (the same name in two domains is two groups), listed by domain then name,
/// `NotFound` for an unknown domain or group, `Conflict` while a user belongs to the group.
pub async fn groups(store: &dyn MetadataStore) {
    let t0 = now();
    let d1 = domain(&unique_name("conf-gdomain"), t0);
    let d2 = domain(&unique_name("conf-gdomain"), t0);
    store.put_domain(&d1).await.expect("put domain 1");
    store.put_domain(&d2).await.expect("put domain 2");
    let g1 = group(&d1.name, "shared", t0);
    let g2 = Group { domain: d2.name.clone(), description: None, ..g1.clone() };
    let other = group(&d1.name, "another", t0);
    for g in [&g1, &g2, &other] {
        store.put_group(g).await.expect("put group");
    }
    assert_eq!(store.group(&d1.name, "shared").await.unwrap(), Some(g1.clone()));
    assert_eq!(store.group(&d2.name, "shared").await.unwrap(), Some(g2.clone()), "one name, two domains");

    let replaced = Group {
        is_active: false,
        total_resource_slots: ResourceSlots::from_pairs([("cpu", "2"), ("mem", "1024")]).expect("slots"),
        created_at: t0 + Duration::seconds(3),
        ..g1.clone()
    };
    store.put_group(&replaced).await.expect("replace group");
    let g1 = Group { created_at: g1.created_at, ..replaced };
    assert_eq!(store.group(&d1.name, "shared").await.unwrap(), Some(g1.clone()), "replaced, created_at kept");

    assert_eq!(store.list_groups(Some(&d1.name)).await.unwrap(), vec![other.clone(), g1.clone()], "by name");
    let all = store.list_groups(None).await.unwrap();
    assert!(all.contains(&g1) && all.contains(&g2) && all.contains(&other), "all domains' groups are listed");

    let missing = group(&unique_name("conf-nodomain"), "x", t0);
    expect_kind(store.put_group(&missing).await, ErrorKind::NotFound, "a group of an unknown domain");
    expect_kind(store.delete_group(&d1.name, "nope").await, ErrorKind::NotFound, "deleting an unknown group");
    assert_eq!(store.group(&d1.name, "nope").await.unwrap(), None);

    let member = user(&d1.name, &["shared"], t0);
    store.put_user(&member).await.expect("put member");
    expect_kind(store.delete_group(&d1.name, "shared").await, ErrorKind::Conflict, "deleting a group with members");
    store.delete_user(&member.email).await.expect("delete member");
    for g in [&g1, &g2, &other] {
        store.delete_group(&g.domain, &g.name).await.expect("delete group");
    }
    assert_eq!(store.list_groups(Some(&d1.name)).await.unwrap(), vec![]);
    store.delete_domain(&d1.name).await.expect("delete domain 1");
    store.delete_domain(&d2.name).await.expect("delete domain 2");
}

/// `insert_domain` and `insert_group`: new records read back; a taken key is `AlreadyExists` and leaves the stored
/// record as it was; a group of an unknown domain is `NotFound`.
pub async fn insert_domain_and_group_refuse_taken_keys(store: &dyn MetadataStore) {
    let t0 = now();
    let d = domain(&unique_name("conf-insert-domain"), t0);
    store.insert_domain(&d).await.expect("insert domain");
    assert_eq!(store.domain(&d.name).await.unwrap(), Some(d.clone()), "an inserted domain reads back");
    let again = Domain { description: Some("second".into()), created_at: t0 + Duration::seconds(1), ..d.clone() };
    expect_kind(store.insert_domain(&again).await, ErrorKind::AlreadyExists, "inserting a taken domain name");
    assert_eq!(store.domain(&d.name).await.unwrap(), Some(d.clone()), "the refused insert changed nothing");

    let g = group(&d.name, "team", t0);
    store.insert_group(&g).await.expect("insert group");
    assert_eq!(store.group(&d.name, "team").await.unwrap(), Some(g.clone()), "an inserted group reads back");
    let again = Group { description: Some("second".into()), ..g.clone() };
    expect_kind(store.insert_group(&again).await, ErrorKind::AlreadyExists, "inserting a taken group name");
    assert_eq!(store.group(&d.name, "team").await.unwrap(), Some(g.clone()), "the refused insert changed nothing");
    let lost = group(&unique_name("conf-no-domain"), "team", t0);
    expect_kind(store.insert_group(&lost).await, ErrorKind::NotFound, "inserting a group of an unknown domain");

    let other = domain(&unique_name("conf-insert-domain"), t0);
    store.insert_domain(&other).await.expect("insert another domain");
    store.insert_group(&group(&other.name, "team", t0)).await.expect("the same group name in another domain");

    for name in [&d.name, &other.name] {
        store.delete_group(name, "team").await.expect("delete group");
        store.delete_domain(name).await.expect("delete domain");
    }
}

/// Concurrent inserts of one domain name: exactly one succeeds, every other one is `AlreadyExists`, and the domain
/// is the one that succeeded.
pub async fn concurrent_insert_domain(store: &dyn MetadataStore) {
    let t0 = now();
    let name = unique_name("conf-race-domain");
    let contenders: Vec<Domain> =
        (0..8).map(|i| Domain { description: Some(format!("contender {i}")), ..domain(&name, t0) }).collect();
    let answers = futures::future::join_all(contenders.iter().map(|d| store.insert_domain(d))).await;
    let mut winners = Vec::new();
    for (d, answer) in contenders.iter().zip(answers) {
        match answer {
            Ok(()) => winners.push(d.clone()),
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "a lost insert is AlreadyExists: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins: {winners:?}");
    assert_eq!(store.domain(&name).await.unwrap(), winners.pop(), "the winner's record is stored");
    store.delete_domain(&name).await.expect("delete domain");
}
