//! The checks of agents and scaling groups ([`crate::store::AgentStore`]).

use super::*;

/// Agents: a new agent is ALIVE with nothing occupied; heartbeats update address, capacity and images but keep
/// first contact and occupied slots; LOST sets `lost_at`; unknown agents.
pub async fn agents(store: &dyn MetadataStore) {
    let t0 = now();
    let hb = heartbeat(slots(&[("cpu", "4"), ("mem", "4g")]));
    let info = store.upsert_agent(&hb, t0).await.expect("first heartbeat");
    assert_eq!(info.id, hb.id);
    assert_eq!(info.status, AgentStatus::Alive);
    assert_eq!(info.addr, hb.addr);
    assert_eq!(info.scaling_group, hb.scaling_group);
    assert_eq!(info.architecture, hb.architecture);
    assert_eq!(info.runtime, hb.runtime);
    assert_eq!(info.images, hb.images);
    assert!(same_slots(&info.available_slots, &hb.available_slots));
    assert!(info.occupied_slots.is_zero(), "a new agent has nothing occupied");
    assert!(info.schedulable);
    assert_eq!(info.first_contact, t0);
    assert_eq!(info.lost_at, None);
    assert_eq!(store.agent(&hb.id).await.unwrap(), Some(info.clone()), "upsert returns what is stored");

    // Something runs on it, then the next heartbeat brings a new address and more capacity.
    let owner = new_owner(store).await;
    let (session, _) = allocated(store, &owner, &hb.id, 1, &cpu("1"), t0).await;
    let mut hb2 = hb.clone();
    hb2.addr = format!("{}-moved", hb.addr);
    hb2.available_slots = slots(&[("cpu", "8"), ("mem", "8g")]);
    hb2.images.push(ImageInfo { name: "shell:1".into(), aliases: vec![], lang: "shell".into(), min_slots: cpu("0") });
    let info2 = store.upsert_agent(&hb2, t0 + Duration::seconds(60)).await.expect("second heartbeat");
    assert_eq!(info2.addr, hb2.addr, "address updated");
    assert!(same_slots(&info2.available_slots, &hb2.available_slots), "capacity updated");
    assert_eq!(info2.images, hb2.images, "images updated");
    assert_eq!(info2.first_contact, t0, "first contact kept");
    assert!(same_slots(&info2.occupied_slots, &cpu("1")), "occupied kept across heartbeats: {}", info2.occupied_slots);

    let lost_at = t0 + Duration::seconds(120);
    store.set_agent_status(&hb.id, AgentStatus::Lost, lost_at).await.expect("mark lost");
    let lost = store.agent(&hb.id).await.unwrap().expect("agent");
    assert_eq!(lost.status, AgentStatus::Lost);
    assert_eq!(lost.lost_at, Some(lost_at), "LOST sets lost_at");
    let back = store.upsert_agent(&hb2, t0 + Duration::seconds(180)).await.expect("heartbeat after loss");
    assert_eq!(back.status, AgentStatus::Alive, "a heartbeat revives a lost agent");
    assert_eq!(back.first_contact, t0);
    assert!(same_slots(&back.occupied_slots, &cpu("1")));

    let listed = store.list_agents().await.unwrap();
    assert!(listed.iter().any(|a| a.id == hb.id), "listed");
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "agents are listed by id");

    let unknown = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    assert_eq!(store.agent(&unknown).await.unwrap(), None);
    expect_kind(
        store.set_agent_status(&unknown, AgentStatus::Lost, t0).await,
        ErrorKind::NotFound,
        "marking an unknown agent lost",
    );

    // Cancelling the scheduled session hands its slot back.
    let change = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(session.id, change, t0 + Duration::seconds(240)).await.expect("cancel");
    assert!(occupied(store, &hb.id).await.is_zero(), "the cancelled session's slot is free again");
}

/// Scaling groups: read back, replace keeps `created_at`, listed by name, `Conflict` while an agent serves it,
/// `NotFound` when unknown.
pub async fn scaling_groups(store: &dyn MetadataStore) {
    let t0 = now();
    let g = ScalingGroup {
        name: unique_name("conf-sgroup"),
        description: Some("conformance".into()),
        is_active: true,
        scheduler: "fifo".into(),
        agent_selector: Some("dispersed".into()),
        created_at: t0,
    };
    store.put_scaling_group(&g).await.expect("put scaling group");
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()));
    let changed = ScalingGroup {
        scheduler: "lifo".into(),
        agent_selector: None,
        is_active: false,
        created_at: t0 + Duration::seconds(2),
        ..g.clone()
    };
    store.put_scaling_group(&changed).await.expect("replace scaling group");
    let g = ScalingGroup { created_at: g.created_at, ..changed };
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()), "replaced, created_at kept");
    let h = ScalingGroup { name: unique_name("conf-sgrouq"), ..g.clone() };
    store.put_scaling_group(&h).await.expect("put second scaling group");
    let listed = store.list_scaling_groups().await.unwrap();
    let pos = |n: &str| listed.iter().position(|x| x.name == n).expect("listed");
    assert!(pos(&g.name) < pos(&h.name), "scaling groups are listed by name");

    let hb = AgentHeartbeat { scaling_group: g.name.clone(), ..heartbeat(cpu("1")) };
    store.upsert_agent(&hb, t0).await.expect("agent");
    expect_kind(store.delete_scaling_group(&g.name).await, ErrorKind::Conflict, "deleting a served scaling group");
    store.delete_scaling_group(&h.name).await.expect("delete scaling group");
    assert_eq!(store.scaling_group(&h.name).await.unwrap(), None);
    expect_kind(store.delete_scaling_group(&h.name).await, ErrorKind::NotFound, "deleting an unknown scaling group");
}

/// `insert_scaling_group`: a new scaling group reads back; a taken name is `AlreadyExists` and leaves the stored
/// group as it was.
pub async fn insert_scaling_group_refuses_a_taken_name(store: &dyn MetadataStore) {
    let g = ScalingGroup {
        name: unique_name("conf-insert-sgroup"),
        description: Some("conformance".into()),
        is_active: true,
        scheduler: "fifo".into(),
        agent_selector: Some("dispersed".into()),
        created_at: now(),
    };
    store.insert_scaling_group(&g).await.expect("insert scaling group");
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()), "an inserted group reads back");
    let again = ScalingGroup { scheduler: "lifo".into(), ..g.clone() };
    expect_kind(store.insert_scaling_group(&again).await, ErrorKind::AlreadyExists, "inserting a taken name");
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()), "the refused insert changed nothing");
    store.delete_scaling_group(&g.name).await.expect("delete scaling group");
}
