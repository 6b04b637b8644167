//! The checks of sessions and kernels ([`crate::store::SessionStore`]): insertion, names, listing, allocation, kernel and session moves, occupancy.

use super::*;

/// Sessions: insert, read back by id, by name and by full id (only by their owner); kernels main first; unknown ids;
/// a taken session id and kernels of another session are refused.
pub async fn sessions_insert_and_find(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let name = unique_name("find");
    let (session, kernels) = pending_session(&owner, &name, 3, &cpu("1"), now());
    let reversed: Vec<KernelRecord> = kernels.iter().rev().cloned().collect();
    store.insert_session(&session, &reversed).await.expect("insert session");

    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "reads back as written");
    assert_eq!(store.kernels(session.id).await.unwrap(), kernels, "kernels: main first, then by role and index");
    for k in &kernels {
        assert_eq!(store.kernel(k.id).await.unwrap().as_ref(), Some(k));
    }
    let by_id = store.find_session(&owner, &session.id.to_string()).await.unwrap();
    assert_eq!(by_id, Some(session.clone()), "found by full id");
    assert_eq!(store.find_session(&owner, &name).await.unwrap(), Some(session.clone()), "found by name");
    assert_eq!(store.find_session(&other, &session.id.to_string()).await.unwrap(), None, "not another owner's");
    assert_eq!(store.find_session(&other, &name).await.unwrap(), None, "not another owner's, by name");
    assert_eq!(store.find_session(&owner, &unique_name("none")).await.unwrap(), None);
    assert_eq!(store.session(SessionId::new()).await.unwrap(), None);
    assert_eq!(store.kernel(KernelId::new()).await.unwrap(), None);
    assert!(store.kernels(SessionId::new()).await.unwrap().is_empty());

    // The same id again, under another name and with new kernels: refused whole.
    let (mut again, mut again_kernels) = pending_session(&owner, &unique_name("find"), 1, &cpu("1"), now());
    again.id = session.id;
    again_kernels[0].session_id = session.id;
    expect_kind(store.insert_session(&again, &again_kernels).await, ErrorKind::AlreadyExists, "a taken session id");
    assert_eq!(store.kernel(again_kernels[0].id).await.unwrap(), None, "no kernel of the refused session");
    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()));

    // Kernels that belong to another session.
    let (stray, _) = pending_session(&owner, &unique_name("find"), 1, &cpu("1"), now());
    let result = store.insert_session(&stray, &kernels[..1]).await;
    expect_kind(result, ErrorKind::InvalidParams, "kernels of another session");
    assert_eq!(store.session(stray.id).await.unwrap(), None);
}

/// Scheduling predicates: a start time, dependencies, designated agents and an architecture (and the bootstrap
/// script) read back as written, from every read path, and survive a status change.
pub async fn session_predicates(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let (first, first_kernels) = pending_session(&owner, &unique_name("dep"), 1, &cpu("1"), now());
    store.insert_session(&first, &first_kernels).await.expect("insert the dependency");
    let (second, second_kernels) = pending_session(&owner, &unique_name("dep"), 1, &cpu("1"), now());
    store.insert_session(&second, &second_kernels).await.expect("insert the dependency");
    let name = unique_name("preds");
    let (mut session, kernels) = pending_session(&owner, &name, 1, &cpu("1"), now());
    session.starts_at = Some(now() + Duration::minutes(5));
    session.dependencies = vec![first.id, second.id];
    session.designated_agents = vec![AgentId::from("agent-a"), AgentId::from("agent-b")];
    session.architecture = Some("aarch64".into());
    session.bootstrap_script = Some("pip install --user tqdm\n".into());
    session.batch_timeout = Some(90);
    session.shmem = Some(64 << 20);
    store.insert_session(&session, &kernels).await.expect("insert session");

    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "reads back as written");
    assert_eq!(store.find_session(&owner, &name).await.unwrap(), Some(session.clone()), "found by name");
    let pending = store.pending_sessions().await.unwrap();
    let listed = pending.iter().find(|(s, _)| s.id == session.id).expect("listed as pending");
    assert_eq!(listed.0, session, "pending sessions carry the predicates");
    let filter = SessionFilter { access_key: Some(owner.clone()), ..SessionFilter::default() };
    let all = store.list_sessions(&filter).await.unwrap();
    assert_eq!(all.iter().find(|s| s.id == session.id), Some(&session), "listed with the predicates");

    let change = SessionChange {
        status: SessionStatus::Pending,
        status_info: Some("pending: waiting for 2 dependencies".into()),
        result: None,
    };
    store.update_session(session.id, change, now()).await.expect("note why it waits");
    let after = store.session(session.id).await.unwrap().unwrap();
    assert_eq!(after.status_info.as_deref(), Some("pending: waiting for 2 dependencies"));
    assert_eq!(
        (&after.starts_at, &after.dependencies, &after.designated_agents, &after.architecture),
        (&session.starts_at, &session.dependencies, &session.designated_agents, &session.architecture),
        "a status change keeps the predicates"
    );
    // Plain sessions keep the empty defaults.
    let plain = store.session(first.id).await.unwrap().unwrap();
    assert_eq!(
        (plain.starts_at, plain.dependencies, plain.designated_agents, plain.architecture),
        (None, vec![], vec![], None)
    );
}

/// Names: a live name is unique per owner, free again once its session is final; by name, the newest live session
/// wins over a newer final one, else the newest.
pub async fn session_names(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let name = unique_name("named");
    let t0 = now();
    // `first` is the newer one by creation time, so "the live one wins" below is not just "the newest wins".
    let (first, _) = insert(store, &owner, &name, 1, t0 + Duration::seconds(10)).await;

    let (second, second_kernels) = pending_session(&owner, &name, 1, &cpu("1"), t0);
    let refused = store.insert_session(&second, &second_kernels).await;
    expect_kind(refused, ErrorKind::AlreadyExists, "a live name taken by the same owner");
    assert_eq!(store.session(second.id).await.unwrap(), None, "nothing inserted");
    assert_eq!(store.kernel(second_kernels[0].id).await.unwrap(), None, "no kernel inserted");
    insert(store, &other, &name, 1, t0).await;

    let end =
        SessionChange { status: SessionStatus::Terminated, status_info: Some("user-requested".into()), result: None };
    let t1 = t0 + Duration::seconds(20);
    let moved = store.update_session(first.id, end, t1).await.expect("terminate the first");
    assert_eq!(moved, Some((SessionStatus::Pending, SessionStatus::Terminated)));
    let first = store.session(first.id).await.unwrap().expect("first");
    assert_eq!(first.terminated_at, Some(t1));

    store.insert_session(&second, &second_kernels).await.expect("the name is free once the first is final");
    let found = store.find_session(&owner, &name).await.unwrap().expect("by name");
    assert_eq!(found.id, second.id, "the live session wins over a newer final one");

    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(second.id, cancel, t1).await.expect("cancel the second");
    let found = store.find_session(&owner, &name).await.unwrap().expect("by name");
    assert_eq!(found.id, first.id, "with no live session, the newest");
}

/// Renaming: to a free name; not to another live session's name of the same owner; not a final session.
pub async fn rename_session(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let t0 = now();
    let (a, _) = insert(store, &owner, &unique_name("rename-a"), 1, t0).await;
    let (b, _) = insert(store, &owner, &unique_name("rename-b"), 1, t0).await;
    let fresh = unique_name("renamed");
    store.rename_session(a.id, &fresh).await.expect("rename to a free name");
    assert_eq!(store.find_session(&owner, &fresh).await.unwrap().map(|s| s.id), Some(a.id));
    expect_kind(store.rename_session(b.id, &fresh).await, ErrorKind::AlreadyExists, "a live name of the same owner");
    assert_eq!(store.session(b.id).await.unwrap().unwrap().name, b.name, "a refused rename changes nothing");
    let end = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(a.id, end, t0).await.expect("cancel");
    expect_kind(store.rename_session(a.id, "later").await, ErrorKind::Conflict, "a final session");
    store.rename_session(b.id, &fresh).await.expect("the name is free once its holder is final");
    let unknown = store.rename_session(crate::ids::SessionId::new(), "x").await;
    assert_eq!(unknown.unwrap_err().kind().status(), 404);
}

/// Listing: by owner, by statuses, with a limit, newest first.
pub async fn list_sessions_filters(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let t0 = now();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, _) = insert(store, &owner, &unique_name("listed"), 1, t0 + Duration::seconds(i)).await;
        ids.push(s.id);
    }
    let (foreign, _) = insert(store, &other, &unique_name("listed"), 1, t0 + Duration::seconds(3)).await;
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ids[1], cancel, t0 + Duration::seconds(4)).await.expect("cancel");

    let list = |access_key: Option<&AccessKey>, statuses: Option<Vec<SessionStatus>>, limit: Option<usize>| {
        let filter = SessionFilter { access_key: access_key.cloned(), statuses, limit };
        async move {
            let sessions = store.list_sessions(&filter).await.expect("list sessions");
            sessions.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some(&owner), None, None).await, vec![ids[2], ids[1], ids[0]], "by owner, newest first");
    let pending = list(Some(&owner), Some(vec![SessionStatus::Pending]), None).await;
    assert_eq!(pending, vec![ids[2], ids[0]], "by status");
    let ended = list(Some(&owner), Some(vec![SessionStatus::Cancelled, SessionStatus::Terminated]), None).await;
    assert_eq!(ended, vec![ids[1]], "by several statuses");
    assert_eq!(list(Some(&owner), None, Some(2)).await, vec![ids[2], ids[1]], "a limit keeps the newest");
    assert_eq!(list(Some(&other), None, None).await, vec![foreign.id]);

    let everyone = list(None, None, None).await;
    let pos = |id: SessionId| everyone.iter().position(|x| *x == id).expect("listed without an owner filter");
    assert!(pos(foreign.id) < pos(ids[2]) && pos(ids[2]) < pos(ids[1]) && pos(ids[1]) < pos(ids[0]));
}

/// Pending sessions come oldest first with their kernels, and leave the list when they stop pending.
pub async fn pending_sessions_oldest_first(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let t0 = now();
    // The later one is inserted first, so that "oldest first" is not just insertion order.
    let (late, late_kernels) = insert(store, &owner, &unique_name("pending"), 2, t0 + Duration::seconds(5)).await;
    let (early, early_kernels) = insert(store, &owner, &unique_name("pending"), 1, t0).await;

    let mine = |all: Vec<(SessionRecord, Vec<KernelRecord>)>| {
        all.into_iter().filter(|(s, _)| s.access_key == owner).collect::<Vec<_>>()
    };
    let pending = mine(store.pending_sessions().await.expect("pending sessions"));
    assert_eq!(pending.len(), 2, "both pending sessions");
    assert_eq!(pending[0], (early.clone(), early_kernels), "oldest first, with its kernels");
    assert_eq!(pending[1], (late.clone(), late_kernels), "then the next, kernels main first");

    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(late.id, cancel, t0 + Duration::seconds(6)).await.expect("cancel");
    let pending = mine(store.pending_sessions().await.unwrap());
    assert_eq!(pending.iter().map(|(s, _)| s.id).collect::<Vec<_>>(), vec![early.id], "cancelled ones leave");
}

/// Allocation: kernels become SCHEDULED on their agents and occupy their slots, the agents' occupied slots grow, the
/// session becomes SCHEDULED, and both histories record PENDING then SCHEDULED with their times.
pub async fn allocate_places_kernels(store: &dyn MetadataStore) {
    let a = new_agent(store, slots(&[("cpu", "4"), ("mem", "8g")])).await;
    let b = new_agent(store, slots(&[("cpu", "4"), ("mem", "8g")])).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let each = slots(&[("cpu", "1"), ("mem", "1g")]);
    let (session, kernels) = pending_session(&owner, &unique_name("alloc"), 3, &each, t0);
    store.insert_session(&session, &kernels).await.expect("insert");

    // The main kernel and the first sub on `a`, the second sub on `b`.
    let placements = vec![
        Placement { kernel_id: kernels[0].id, agent_id: a.id.clone() },
        Placement { kernel_id: kernels[1].id, agent_id: a.id.clone() },
        Placement { kernel_id: kernels[2].id, agent_id: b.id.clone() },
    ];
    let t1 = t0 + Duration::seconds(1);
    store.allocate(session.id, &placements, t1).await.expect("allocate");

    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Scheduled);
    assert_eq!(statuses(&s.status_history), ["PENDING", "SCHEDULED"]);
    assert_eq!(s.status_history.entered(SessionStatus::Pending), Some(t0));
    assert_eq!(s.status_history.entered(SessionStatus::Scheduled), Some(t1));
    for (k, p) in store.kernels(session.id).await.unwrap().iter().zip(&placements) {
        let agent = if p.agent_id == a.id { &a } else { &b };
        assert_eq!(k.id, p.kernel_id);
        assert_eq!(k.status, KernelStatus::Scheduled);
        assert_eq!(k.agent_id.as_ref(), Some(&agent.id), "kernel records its agent");
        assert_eq!(k.agent_addr.as_ref(), Some(&agent.addr), "and the agent's address");
        assert!(same_slots(&k.occupied_slots, &each), "kernel occupies what it requested");
        assert_eq!(statuses(&k.status_history), ["PENDING", "SCHEDULED"]);
        assert_eq!(k.status_history.entered(KernelStatus::Scheduled), Some(t1));
    }
    assert!(same_slots(&occupied(store, &a.id).await, &each.scaled(2)), "agent a holds two kernels");
    assert!(same_slots(&occupied(store, &b.id).await, &each), "agent b holds one");
    let on_a: Vec<KernelId> = store.kernels_on_agent(&a.id).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(on_a.len(), 2);
    assert!(on_a.contains(&kernels[0].id) && on_a.contains(&kernels[1].id));
    let pending = store.pending_sessions().await.unwrap();
    assert!(pending.iter().all(|(p, _)| p.id != session.id), "no longer pending");
}

/// Refused allocations (no room, no longer PENDING, agent LOST or unknown, placements that do not cover exactly the
/// session's kernels, unknown session) each leave session, kernels and agents exactly as they were.
pub async fn allocate_refusals_change_nothing(store: &dyn MetadataStore) {
    // `a` sorts before `b` and is placed first, so a store that writes agent by agent, in either order, touches `a`
    // before it finds that `b` lacks room.
    let base = format!("conformance-agent-{}", Uuid::new_v4().simple());
    let a = new_agent_with_id(store, AgentId(format!("{base}-1")), cpu("2")).await;
    let b = new_agent_with_id(store, AgentId(format!("{base}-2")), cpu("2")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let agents = [a.id.clone(), b.id.clone()];

    // Each kernel fits `a` alone, three together do not.
    let (crowd, crowd_kernels) = insert(store, &owner, &unique_name("crowd"), 3, t0).await;
    let before = snapshot(store, crowd.id, &agents).await;
    let all_on_a: Vec<Placement> =
        crowd_kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: a.id.clone() }).collect();
    expect_kind(store.allocate(crowd.id, &all_on_a, t1).await, ErrorKind::QuotaExceeded, "three kernels on two cpus");
    assert_eq!(snapshot(store, crowd.id, &agents).await, before, "nothing changed after QuotaExceeded");

    // `b` is full; a session split over `a` (room) and `b` (no room) is refused whole.
    let (filler, _) = allocated(store, &owner, &b.id, 1, &cpu("2"), t0).await;
    let (split, split_kernels) = insert(store, &owner, &unique_name("split"), 2, t0).await;
    let before = snapshot(store, split.id, &agents).await;
    let placements = vec![
        Placement { kernel_id: split_kernels[0].id, agent_id: a.id.clone() },
        Placement { kernel_id: split_kernels[1].id, agent_id: b.id.clone() },
    ];
    expect_kind(store.allocate(split.id, &placements, t1).await, ErrorKind::QuotaExceeded, "one agent lacks room");
    assert_eq!(snapshot(store, split.id, &agents).await, before, "the agent with room was not touched");

    // The filler is SCHEDULED already.
    let before = snapshot(store, filler.id, &agents).await;
    let again: Vec<Placement> = store
        .kernels(filler.id)
        .await
        .unwrap()
        .iter()
        .map(|k| Placement { kernel_id: k.id, agent_id: a.id.clone() })
        .collect();
    expect_kind(store.allocate(filler.id, &again, t1).await, ErrorKind::Conflict, "allocating a SCHEDULED session");
    assert_eq!(snapshot(store, filler.id, &agents).await, before, "nothing changed after Conflict");

    // Placements that do not cover exactly the session's kernels.
    let (pair, pair_kernels) = insert(store, &owner, &unique_name("pair"), 2, t0).await;
    let before = snapshot(store, pair.id, &agents).await;
    let on_a = |k: &KernelRecord| Placement { kernel_id: k.id, agent_id: a.id.clone() };
    let incomplete = vec![on_a(&pair_kernels[0])];
    expect_kind(store.allocate(pair.id, &incomplete, t1).await, ErrorKind::InvalidParams, "a kernel left unplaced");
    let twice = vec![on_a(&pair_kernels[0]), on_a(&pair_kernels[0]), on_a(&pair_kernels[1])];
    expect_kind(store.allocate(pair.id, &twice, t1).await, ErrorKind::InvalidParams, "a kernel placed twice");
    let foreign = vec![on_a(&pair_kernels[0]), on_a(&pair_kernels[1]), on_a(&crowd_kernels[0])];
    expect_kind(store.allocate(pair.id, &foreign, t1).await, ErrorKind::InvalidParams, "another session's kernel");
    expect_kind(store.allocate(pair.id, &[], t1).await, ErrorKind::InvalidParams, "no placements");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after InvalidParams");

    // Unknown and LOST agents.
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    let unknown: Vec<Placement> =
        pair_kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: nowhere.clone() }).collect();
    expect_kind(store.allocate(pair.id, &unknown, t1).await, ErrorKind::AgentNotFound, "an unknown agent");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after an unknown agent");
    store.set_agent_status(&a.id, AgentStatus::Lost, t1).await.expect("lose a");
    let before = snapshot(store, pair.id, &agents).await;
    let placements: Vec<Placement> = pair_kernels.iter().map(on_a).collect();
    expect_kind(store.allocate(pair.id, &placements, t1).await, ErrorKind::AgentNotFound, "a LOST agent");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after a LOST agent");

    // The refused session is still allocatable once its agent is back.
    store.upsert_agent(&agent_heartbeat(&a), t1).await.expect("a is back");
    store.allocate(pair.id, &placements, t1).await.expect("allocate after the refusals");
    assert!(same_slots(&occupied(store, &a.id).await, &cpu("2")));

    let missing = store.allocate(SessionId::new(), &placements, t1).await;
    assert_eq!(missing.expect_err("an unknown session").kind().status(), 404, "an unknown session is not found");
}

/// A batch is allocated in order, each session seeing what the ones before it took: a refused session (unknown
/// agent, no room left, already SCHEDULED, unknown) gets the error `allocate` gives and changes nothing, and the
/// sessions after it are still allocated; the answers carry the allocated records.
pub async fn allocate_batch_in_order(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let other = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let agents = [agent.id.clone(), other.id.clone()];
    let mut sessions = Vec::new();
    for (i, n) in ["2", "1", "2", "1"].iter().enumerate() {
        let (s, ks) = pending_session(&owner, &unique_name("batch"), 1, &cpu(n), t0 + Duration::milliseconds(i as i64));
        store.insert_session(&s, &ks).await.expect("insert");
        sessions.push((s, ks));
    }
    let on = |i: usize, agent_id: &AgentId| Allocation {
        session: sessions[i].0.id,
        placements: vec![Placement { kernel_id: sessions[i].1[0].id, agent_id: agent_id.clone() }],
    };
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    let unknown_session = Allocation { session: SessionId::new(), placements: on(0, &agent.id).placements };
    let before_1 = snapshot(store, sessions[1].0.id, &agents).await;
    let batch = vec![
        on(0, &agent.id), // 2 of 4
        on(1, &nowhere),  // unknown agent
        on(2, &agent.id), // 4 of 4
        on(3, &agent.id), // no room left
        on(0, &other.id), // SCHEDULED by the first allocation of the batch
        unknown_session,
    ];
    let answers = store.allocate_batch(&batch, t1).await.expect("the batch runs");
    assert_eq!(answers.len(), batch.len(), "one answer per allocation");
    let kinds: Vec<Option<ErrorKind>> = answers.iter().map(|a| a.as_ref().err().map(|e| e.kind())).collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some(ErrorKind::AgentNotFound),
            None,
            Some(ErrorKind::QuotaExceeded),
            Some(ErrorKind::Conflict),
            Some(ErrorKind::SessionNotFound),
        ]
    );
    for i in [0, 2] {
        let (s, ks) = answers[i].as_ref().unwrap();
        assert_eq!(s.id, sessions[i].0.id);
        assert_eq!(s.status, SessionStatus::Scheduled);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].agent_id.as_ref(), Some(&agent.id));
        assert_eq!(ks[0].agent_addr.as_ref(), Some(&agent.addr));
        let stored = store.session(s.id).await.unwrap().expect("session");
        assert_eq!(&stored, s, "the answer is the stored session");
        assert_eq!(&store.kernels(s.id).await.unwrap(), ks, "and the stored kernels");
    }
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("4")), "the agent is full");
    assert!(occupied(store, &other.id).await.is_zero(), "nothing went to the other agent");
    let after_1 = snapshot(store, sessions[1].0.id, &agents).await;
    assert_eq!(
        (after_1.session, after_1.kernels),
        (before_1.session, before_1.kernels),
        "the refused one is unchanged"
    );
    for i in [1, 3] {
        let s = store.session(sessions[i].0.id).await.unwrap().expect("session");
        assert_eq!(s.status, SessionStatus::Pending);
        assert_eq!(statuses(&s.status_history), ["PENDING"]);
        assert!(store.kernels(s.id).await.unwrap().iter().all(|k| k.agent_id.is_none() && k.occupied_slots.is_zero()));
    }
    assert!(store.allocate_batch(&[], t1).await.expect("an empty batch").is_empty());
}

/// A batch of kernel changes is applied in order, each as `update_kernel` would: two moves of the same kernel in
/// one batch both land, a refused change (unknown kernel, a move the table forbids) changes nothing and the others
/// go on, a dying kernel gives its slots back, and each session follows its kernels.
pub async fn update_kernels_in_order(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let (starting, starting_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (doomed, doomed_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("2"), t0).await;
    let (k, d) = (starting_kernels[0].id, doomed_kernels[0].id);
    let batch = vec![
        (k, KernelChange::status(KernelStatus::Preparing, None)),
        (KernelId::new(), KernelChange::status(KernelStatus::Preparing, None)),
        (k, KernelChange::status(KernelStatus::Pending, None)),
        (k, KernelChange::status(KernelStatus::Creating, None)),
        (d, KernelChange::status(KernelStatus::Cancelled, Some("gone".into()))),
    ];
    let answers = store.update_kernels(&batch, t1).await.expect("the batch runs");
    let kinds: Vec<Option<ErrorKind>> = answers.iter().map(|a| a.as_ref().err().map(|e| e.kind())).collect();
    assert_eq!(kinds, vec![None, Some(ErrorKind::KernelNotFound), Some(ErrorKind::Conflict), None, None]);
    let moves: Vec<Option<(SessionStatus, SessionStatus)>> =
        answers.iter().filter_map(|a| a.as_ref().ok()).map(|t| t.session).collect();
    assert_eq!(
        moves,
        vec![
            Some((SessionStatus::Scheduled, SessionStatus::Preparing)),
            Some((SessionStatus::Preparing, SessionStatus::Creating)),
            Some((SessionStatus::Scheduled, SessionStatus::Cancelled)),
        ]
    );

    let kernel = store.kernel(k).await.unwrap().expect("kernel");
    assert_eq!(kernel.status, KernelStatus::Creating);
    assert_eq!(statuses(&kernel.status_history), ["PENDING", "SCHEDULED", "PREPARING", "CREATING"]);
    assert_eq!(answers[3].as_ref().unwrap().kernel, kernel, "the answer is the stored kernel");
    let s = store.session(starting.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Creating);
    assert_eq!(statuses(&s.status_history), ["PENDING", "SCHEDULED", "PREPARING", "CREATING"]);

    let dead = store.kernel(d).await.unwrap().expect("kernel");
    assert_eq!(dead.status, KernelStatus::Cancelled);
    assert!(dead.occupied_slots.is_zero() && dead.terminated_at == Some(t1));
    let s = store.session(doomed.id).await.unwrap().expect("session");
    assert_eq!(
        (s.status, s.status_info.as_deref(), s.terminated_at),
        (SessionStatus::Cancelled, Some("gone"), Some(t1))
    );
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "the cancelled kernel's slots are back");
    assert!(store.update_kernels(&[], t1).await.expect("an empty batch").is_empty());
}

/// `occupancy_by_group_and_domain` sums, for the domains asked about, the requested slots of the sessions whose
/// status holds resources per domain and per `(domain, group)`; PENDING and ended sessions, and the sessions of
/// domains not asked about, are left out. A group name used in two domains is two groups.
pub async fn group_and_domain_occupancy(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("16")).await;
    let owner = new_owner(store).await;
    let (d1, d2, other) = (unique_name("conf-qdomain"), unique_name("conf-qdomain"), unique_name("conf-qdomain"));
    let t0 = now();
    let scoped = |domain: &str, group: &str, each: &str| {
        let (mut session, kernels) = pending_session(&owner, &unique_name("scoped"), 1, &cpu(each), t0);
        session.domain = domain.to_owned();
        session.group = group.to_owned();
        (session, kernels)
    };
    let mut ended = None;
    for (domain, group, each, allocate) in [
        (&d1, "a", "1", true),
        (&d1, "a", "2", true),
        (&d1, "b", "4", true),
        (&d1, "b", "8", false),
        (&d1, "b", "3", true),
        (&d2, "a", "0.5", true),
        (&other, "a", "1", true),
    ] {
        let (session, kernels) = scoped(domain, group, each);
        store.insert_session(&session, &kernels).await.expect("insert scoped session");
        if allocate {
            let placements: Vec<Placement> =
                kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: agent.id.clone() }).collect();
            store.allocate(session.id, &placements, t0).await.expect("allocate scoped session");
            if each == "3" {
                ended = Some(session.id);
            }
        }
    }
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ended.expect("one to end"), cancel, t0).await.expect("cancel");

    let got = store.occupancy_by_group_and_domain(&[d1.clone(), d2.clone()]).await.expect("scope occupancy");
    let groups: Vec<_> = got.groups.keys().cloned().collect();
    let key = |d: &str, g: &str| (d.to_owned(), g.to_owned());
    assert_eq!(groups, {
        let mut want = vec![key(&d1, "a"), key(&d1, "b"), key(&d2, "a")];
        want.sort();
        want
    });
    assert!(same_slots(&got.groups[&key(&d1, "a")], &cpu("3")), "two sessions of d1/a");
    assert!(same_slots(&got.groups[&key(&d1, "b")], &cpu("4")), "the pending and the cancelled one do not count");
    assert!(same_slots(&got.groups[&key(&d2, "a")], &cpu("0.5")), "the same group name in another domain");
    assert_eq!(got.domains.keys().collect::<Vec<_>>(), {
        let mut want = vec![&d1, &d2];
        want.sort();
        want
    });
    assert!(same_slots(&got.domains[&d1], &cpu("7")));
    assert!(same_slots(&got.domains[&d2], &cpu("0.5")));
    let none = store.occupancy_by_group_and_domain(&[unique_name("conf-qdomain")]).await.expect("empty domain");
    assert_eq!(none, ScopeOccupancy::default(), "a domain holding nothing is left out");
    assert_eq!(store.occupancy_by_group_and_domain(&[]).await.expect("nothing"), ScopeOccupancy::default());
}

/// `occupancy` counts, per owner asked about, the sessions whose status holds resources and sums their requested
/// slots; PENDING and ended sessions and owners not asked about are left out.
pub async fn occupancy_counts_what_holds_resources(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("8")).await;
    let (owner, other, idle) = (new_owner(store).await, new_owner(store).await, new_owner(store).await);
    let t0 = now();
    allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    allocated(store, &owner, &agent.id, 2, &cpu("2"), t0).await;
    let (ended, _) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ended.id, cancel, t0).await.expect("cancel");
    insert(store, &owner, &unique_name("waiting"), 1, t0).await;
    allocated(store, &other, &agent.id, 1, &cpu("1"), t0).await;
    insert(store, &idle, &unique_name("waiting"), 1, t0).await;

    let got = store.occupancy(&[owner.clone(), idle.clone()]).await.expect("occupancy");
    assert_eq!(got.keys().collect::<Vec<_>>(), vec![&owner], "only owners asked about that hold something");
    let (sessions, slots) = &got[&owner];
    assert_eq!(*sessions, 2, "two sessions hold resources");
    assert!(same_slots(slots, &cpu("5")), "1 cpu + 2 kernels of 2 cpus: {slots}");
    assert!(store.occupancy(&[]).await.expect("nobody").is_empty());
}

/// One kernel through PREPARING → CREATING → RUNNING → TERMINATING → TERMINATED: the session follows, the slots stay
/// held until the dead status and are released exactly once, and illegal moves are refused with nothing written.
pub async fn kernel_lifecycle(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    // A neighbour on the same agent: releasing twice would eat into its slot.
    let (neighbour, neighbour_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (session, kernels) = allocated(store, &owner, &agent.id, 1, &cpu("2"), t0).await;
    let id = kernels[0].id;
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")));

    let t = advance(store, id, KernelStatus::Preparing, at(2)).await;
    assert_eq!(t.session, Some((SessionStatus::Scheduled, SessionStatus::Preparing)), "the session follows");
    assert_eq!(t.kernel.status, KernelStatus::Preparing);
    let t = advance(store, id, KernelStatus::Creating, at(3)).await;
    assert_eq!(t.session, Some((SessionStatus::Preparing, SessionStatus::Creating)));
    let container = format!("container-{}", Uuid::new_v4().simple());
    let change = KernelChange {
        status: KernelStatus::Running,
        status_info: None,
        container_id: Some(container.clone()),
        exit_code: None,
    };
    let t = store.update_kernel(id, change, at(4)).await.expect("running");
    assert_eq!(t.session, Some((SessionStatus::Creating, SessionStatus::Running)));
    assert_eq!(t.kernel.container_id.as_deref(), Some(container.as_str()), "container id recorded");
    assert_eq!(store.kernel(id).await.unwrap().as_ref(), Some(&t.kernel), "the returned kernel is the stored one");
    assert_eq!(store.session(session.id).await.unwrap().expect("session").status, SessionStatus::Running);

    // Moving to the status it has only updates the other fields.
    let t = store
        .update_kernel(id, KernelChange::status(KernelStatus::Running, Some("warm".to_owned())), at(5))
        .await
        .expect("same status");
    assert_eq!(t.session, None, "no session change");
    assert_eq!(t.kernel.status_info.as_deref(), Some("warm"));
    assert_eq!(t.kernel.container_id.as_deref(), Some(container.as_str()), "fields given as None are kept");
    assert_eq!(statuses(&t.kernel.status_history).len(), 5, "no history entry for a non-move");

    // A move the table forbids: refused, nothing written.
    let before = snapshot(store, session.id, std::slice::from_ref(&agent.id)).await;
    let illegal = KernelChange {
        status: KernelStatus::Pending,
        status_info: Some("back".into()),
        container_id: Some("other".into()),
        exit_code: Some(3),
    };
    expect_kind(store.update_kernel(id, illegal, at(6)).await, ErrorKind::Conflict, "RUNNING → PENDING");
    assert_eq!(snapshot(store, session.id, std::slice::from_ref(&agent.id)).await, before, "nothing written");

    let t = store
        .update_kernel(id, KernelChange::status(KernelStatus::Terminating, Some("user-requested".to_owned())), at(7))
        .await
        .expect("terminating");
    assert_eq!(t.session, Some((SessionStatus::Running, SessionStatus::Terminating)));
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status_info.as_deref(), Some("user-requested"), "the kernel's reason goes to the session");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")), "TERMINATING still holds its slots");

    let change =
        KernelChange { status: KernelStatus::Terminated, status_info: None, container_id: None, exit_code: Some(0) };
    let t = store.update_kernel(id, change, at(8)).await.expect("terminated");
    assert_eq!(t.session, Some((SessionStatus::Terminating, SessionStatus::Terminated)));
    assert!(t.kernel.occupied_slots.is_zero(), "a dead kernel holds nothing");
    assert_eq!(t.kernel.exit_code, Some(0));
    assert_eq!(t.kernel.terminated_at, Some(at(8)));
    assert_eq!(
        statuses(&t.kernel.status_history),
        ["PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING", "TERMINATING", "TERMINATED"]
    );
    assert_eq!(t.kernel.status_history.entered(KernelStatus::Running), Some(at(4)));
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Terminated);
    assert_eq!(s.terminated_at, Some(at(8)));
    assert_eq!(
        statuses(&s.status_history),
        ["PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING", "TERMINATING", "TERMINATED"]
    );
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "the slots went back; the neighbour's stay");

    // Released exactly once: a repeated TERMINATED report changes no slots.
    let change =
        KernelChange { status: KernelStatus::Terminated, status_info: None, container_id: None, exit_code: Some(0) };
    store.update_kernel(id, change, at(9)).await.expect("a repeated report");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "not released twice");
    expect_kind(
        store.update_kernel(id, KernelChange::status(KernelStatus::Running, None), at(9)).await,
        ErrorKind::Conflict,
        "TERMINATED → RUNNING",
    );

    // A live kernel's illegal move: SCHEDULED → RUNNING skips the table.
    let before = snapshot(store, neighbour.id, std::slice::from_ref(&agent.id)).await;
    let skip = KernelChange {
        status: KernelStatus::Running,
        status_info: Some("skip".into()),
        container_id: Some("c".into()),
        exit_code: None,
    };
    expect_kind(
        store.update_kernel(neighbour_kernels[0].id, skip, at(10)).await,
        ErrorKind::Conflict,
        "SCHEDULED → RUNNING",
    );
    assert_eq!(snapshot(store, neighbour.id, std::slice::from_ref(&agent.id)).await, before, "nothing written");

    let missing = store.update_kernel(KernelId::new(), KernelChange::status(KernelStatus::Running, None), at(10)).await;
    assert_eq!(missing.expect_err("an unknown kernel").kind().status(), 404, "an unknown kernel is not found");

    let t = advance(store, neighbour_kernels[0].id, KernelStatus::Terminated, at(11)).await;
    assert_eq!(t.session, Some((SessionStatus::Scheduled, SessionStatus::Terminated)));
    assert!(occupied(store, &agent.id).await.is_zero());
}

/// A two-kernel session where one kernel fails becomes ERROR; each kernel's slots go back once, and the session ends
/// TERMINATED when the failed kernel is cleaned up.
pub async fn kernel_error_fails_session(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let (_ballast, ballast_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (session, kernels) = allocated(store, &owner, &agent.id, 2, &cpu("1"), t0).await;
    let (main, sub) = (kernels[0].id, kernels[1].id);

    let t = advance(store, main, KernelStatus::Preparing, at(1)).await;
    assert_eq!(t.session, None, "the session is as far as its least advanced kernel");
    advance(store, sub, KernelStatus::Preparing, at(1)).await;
    advance(store, main, KernelStatus::Creating, at(2)).await;
    advance(store, sub, KernelStatus::Creating, at(2)).await;
    advance(store, main, KernelStatus::Running, at(3)).await;
    let t = advance(store, sub, KernelStatus::Running, at(3)).await;
    assert_eq!(t.session, Some((SessionStatus::Creating, SessionStatus::Running)), "running once both run");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")));

    let t = store
        .update_kernel(sub, KernelChange::status(KernelStatus::Error, Some("kernel-crashed".to_owned())), at(4))
        .await
        .expect("error");
    assert_eq!(t.session, Some((SessionStatus::Running, SessionStatus::Error)), "one failed kernel fails the session");
    assert!(t.kernel.occupied_slots.is_zero());
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Error);
    assert_eq!(s.status_info.as_deref(), Some("kernel-crashed"));
    assert_eq!(s.terminated_at, None, "ERROR is not final");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("2")), "the failed kernel's slot went back");

    let t = advance(store, main, KernelStatus::Terminating, at(5)).await;
    assert_eq!(t.session, None, "still ERROR");
    let t = advance(store, main, KernelStatus::Terminated, at(6)).await;
    assert_eq!(t.session, None, "still ERROR while a kernel is");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")));

    let t = advance(store, sub, KernelStatus::Terminated, at(7)).await;
    assert_eq!(t.session, Some((SessionStatus::Error, SessionStatus::Terminated)));
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "ERROR → TERMINATED releases nothing more");
    assert_eq!(store.session(session.id).await.unwrap().expect("session").terminated_at, Some(at(7)));

    advance(store, ballast_kernels[0].id, KernelStatus::Terminated, at(8)).await;
    assert!(occupied(store, &agent.id).await.is_zero());
}

/// Whole-session moves: cancelling a PENDING or SCHEDULED session cancels its kernels (and frees the scheduled
/// ones' slots); ending a RUNNING one records its result; moves the table forbids are refused with nothing written.
pub async fn update_session_moves_kernels(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let agents = [agent.id.clone()];
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let cancel =
        || SessionChange { status: SessionStatus::Cancelled, status_info: Some("user-requested".into()), result: None };

    let (pending, _) = insert(store, &owner, &unique_name("cancel"), 2, t0).await;
    let moved = store.update_session(pending.id, cancel(), at(1)).await.expect("cancel pending");
    assert_eq!(moved, Some((SessionStatus::Pending, SessionStatus::Cancelled)));
    let s = store.session(pending.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Cancelled);
    assert_eq!(s.status_info.as_deref(), Some("user-requested"));
    assert_eq!(s.terminated_at, Some(at(1)));
    assert_eq!(s.status_history.entered(SessionStatus::Cancelled), Some(at(1)));
    for k in store.kernels(pending.id).await.unwrap() {
        assert_eq!(k.status, KernelStatus::Cancelled, "its kernels are cancelled");
        assert_eq!(k.terminated_at, Some(at(1)));
        assert_eq!(statuses(&k.status_history), ["PENDING", "CANCELLED"]);
    }
    let before = snapshot(store, pending.id, &agents).await;
    let revive = SessionChange { status: SessionStatus::Running, status_info: None, result: None };
    expect_kind(store.update_session(pending.id, revive, at(2)).await, ErrorKind::Conflict, "CANCELLED → RUNNING");
    assert_eq!(snapshot(store, pending.id, &agents).await, before, "nothing written");

    let (scheduled, _) = allocated(store, &owner, &agent.id, 2, &cpu("1"), t0).await;
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("2")));
    let moved = store.update_session(scheduled.id, cancel(), at(3)).await.expect("cancel scheduled");
    assert_eq!(moved, Some((SessionStatus::Scheduled, SessionStatus::Cancelled)));
    for k in store.kernels(scheduled.id).await.unwrap() {
        assert_eq!(k.status, KernelStatus::Cancelled);
        assert!(k.occupied_slots.is_zero());
    }
    assert!(occupied(store, &agent.id).await.is_zero(), "cancelled kernels give their slots back");

    let (running, kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    for (i, status) in [KernelStatus::Preparing, KernelStatus::Creating, KernelStatus::Running].into_iter().enumerate()
    {
        advance(store, kernels[0].id, status, at(4 + i as i64)).await;
    }
    let before = snapshot(store, running.id, &agents).await;
    expect_kind(store.update_session(running.id, cancel(), at(8)).await, ErrorKind::Conflict, "RUNNING → CANCELLED");
    assert_eq!(snapshot(store, running.id, &agents).await, before, "nothing written");
    let finish = SessionChange {
        status: SessionStatus::Terminated,
        status_info: Some("finished".into()),
        result: Some(SessionResult::Success),
    };
    let moved = store.update_session(running.id, finish, at(9)).await.expect("end running");
    assert_eq!(moved, Some((SessionStatus::Running, SessionStatus::Terminated)));
    let s = store.session(running.id).await.unwrap().expect("session");
    assert_eq!(s.result, SessionResult::Success, "the result is recorded");
    assert_eq!(s.terminated_at, Some(at(9)));
    let k = store.kernel(kernels[0].id).await.unwrap().expect("kernel");
    assert_eq!(k.status, KernelStatus::Terminated);
    assert_eq!(k.status_info.as_deref(), Some("finished"));
    assert!(occupied(store, &agent.id).await.is_zero());

    let missing = store.update_session(SessionId::new(), cancel(), at(10)).await;
    assert_eq!(missing.expect_err("an unknown session").kind().status(), 404, "an unknown session is not found");
}

/// `kernels_on_agent` lists the kernels placed on that agent while they hold resources, and only those.
pub async fn kernels_on_agent(store: &dyn MetadataStore) {
    let a = new_agent(store, cpu("4")).await;
    let b = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let (_, on_a) = allocated(store, &owner, &a.id, 2, &cpu("1"), t0).await;
    let (_, on_b) = allocated(store, &owner, &b.id, 1, &cpu("1"), t0).await;
    insert(store, &owner, &unique_name("unplaced"), 1, t0).await;

    let ids = |ks: Vec<KernelRecord>| {
        let mut ids: Vec<KernelId> = ks.into_iter().map(|k| k.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(store.kernels_on_agent(&a.id).await.unwrap()), ids(on_a.clone()));
    assert_eq!(ids(store.kernels_on_agent(&b.id).await.unwrap()), ids(on_b));

    advance(store, on_a[1].id, KernelStatus::Cancelled, t0 + Duration::seconds(1)).await;
    assert_eq!(ids(store.kernels_on_agent(&a.id).await.unwrap()), ids(vec![on_a[0].clone()]), "dead kernels leave");
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    assert!(store.kernels_on_agent(&nowhere).await.unwrap().is_empty());
}

/// Twenty one-cpu sessions allocated at once onto a four-cpu agent: exactly four succeed, the others get
/// `QuotaExceeded`, and the invariant holds; cancelling them all at once frees the agent again.
pub async fn concurrent_allocations(store: Arc<dyn MetadataStore>) {
    let agent = new_agent(&*store, cpu("4")).await;
    let owner = new_owner(&*store).await;
    let t0 = now();
    let mut sessions = Vec::new();
    for i in 0..20 {
        let (s, ks) = insert(&*store, &owner, &unique_name("race"), 1, t0 + Duration::milliseconds(i)).await;
        sessions.push((s.id, Placement { kernel_id: ks[0].id, agent_id: agent.id.clone() }));
    }

    let tasks: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|(id, placement)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.allocate(id, &[placement], now()).await })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("allocation task") {
            Ok(()) => won += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "a lost race is QuotaExceeded: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!((won, refused), (4, 16), "exactly as many as fit");
    assert!(same_slots(&occupied(&*store, &agent.id).await, &cpu("4")));
    assert_occupancy_invariant(&*store).await;

    let tasks: Vec<_> = sessions
        .iter()
        .map(|(id, _)| {
            let (store, id) = (Arc::clone(&store), *id);
            let change = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
            tokio::spawn(async move { store.update_session(id, change, now()).await })
        })
        .collect();
    for task in tasks {
        let moved = task.await.expect("cancel task").expect("cancel");
        assert!(matches!(moved, Some((_, SessionStatus::Cancelled))));
    }
    assert!(occupied(&*store, &agent.id).await.is_zero(), "every slot back");
    assert_occupancy_invariant(&*store).await;
}

/// `count_sessions` counts what `list_sessions` lists: by owner, by statuses, capped by the limit.
pub async fn count_sessions_follows_the_filter(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let t0 = now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(insert(store, &owner, &unique_name("counted"), 1, t0 + Duration::milliseconds(i)).await.0.id);
    }
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ids[0], cancel, now()).await.expect("cancel");

    let filters = [
        SessionFilter { access_key: Some(owner.clone()), ..Default::default() },
        SessionFilter { access_key: Some(owner.clone()), statuses: Some(vec![SessionStatus::Pending]), limit: None },
        SessionFilter { access_key: Some(owner.clone()), statuses: Some(vec![SessionStatus::Cancelled]), limit: None },
        SessionFilter { access_key: Some(owner.clone()), statuses: None, limit: Some(1) },
        SessionFilter { access_key: Some(owner.clone()), statuses: Some(vec![]), limit: None },
        SessionFilter { access_key: Some(new_owner(store).await), ..Default::default() },
    ];
    let expected = [3, 2, 1, 1, 0, 0];
    for (filter, n) in filters.iter().zip(expected) {
        assert_eq!(store.count_sessions(filter).await.unwrap(), n, "count for {filter:?}");
        assert_eq!(store.list_sessions(filter).await.unwrap().len(), n, "the list agrees for {filter:?}");
    }
    let everyone = store.count_sessions(&SessionFilter::default()).await.unwrap();
    assert!(everyone >= 3, "no owner counts every owner's sessions: {everyone}");
}
