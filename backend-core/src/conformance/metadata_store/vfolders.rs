//! The checks of virtual folders, shares and invitations ([`crate::store::VFolderStore`]).

use super::*;

/// Virtual folders: insert and read back, names unique per owner (not across owners), `NotFound` for an unknown
/// owning user or group, listing by owner then name, rename, options, delete.
pub async fn vfolders(store: &dyn MetadataStore) {
    let t0 = now();
    let (d, users) = vfolder_fixture(store, &[&["team"], &[]]).await;
    let (alice, bob) = (&users[0], &users[1]);

    let own = folder(user_owner(alice), "data", VFolderPermission::ReadWrite, t0);
    let own = VFolder { usage_mode: UsageMode::Model, max_size: Some(1 << 30), cloneable: true, ..own };
    store.insert_vfolder(&own).await.expect("insert folder");
    assert_eq!(store.vfolder(own.id).await.unwrap(), Some(own.clone()), "reads back as written");
    assert_eq!(store.vfolder(VFolderId::new()).await.unwrap(), None);

    let dup = folder(user_owner(alice), "data", VFolderPermission::ReadOnly, t0);
    expect_kind(store.insert_vfolder(&dup).await, ErrorKind::AlreadyExists, "a taken name of the same user");
    assert_eq!(store.vfolder(dup.id).await.unwrap(), None, "the refused folder is not there");
    let bobs = folder(user_owner(bob), "data", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&bobs).await.expect("the same name for another user");
    let team = folder(group_owner(&d.name, "team"), "data", VFolderPermission::ReadOnly, t0);
    store.insert_vfolder(&team).await.expect("the same name for a group");
    let team_dup = folder(group_owner(&d.name, "team"), "data", VFolderPermission::ReadOnly, t0);
    expect_kind(store.insert_vfolder(&team_dup).await, ErrorKind::AlreadyExists, "a taken name of the same group");
    let other = folder(group_owner(&d.name, "other"), "data", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&other).await.expect("the same name for another group");

    let ghost = User { email: format!("{}@conformance.invalid", Uuid::new_v4().simple()), ..alice.clone() };
    let nobody = folder(user_owner(&ghost), "data", VFolderPermission::ReadWrite, t0);
    expect_kind(store.insert_vfolder(&nobody).await, ErrorKind::NotFound, "a folder of an unknown user");
    let no_group = folder(group_owner(&d.name, "nope"), "data", VFolderPermission::ReadWrite, t0);
    expect_kind(store.insert_vfolder(&no_group).await, ErrorKind::NotFound, "a folder of an unknown group");
    assert_eq!(store.vfolder(no_group.id).await.unwrap(), None);

    let extra = folder(user_owner(alice), "extra", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&extra).await.expect("insert second folder");
    let ours = [own.id, extra.id, bobs.id, team.id, other.id];
    let listed: Vec<VFolder> =
        store.list_vfolders().await.unwrap().into_iter().filter(|f| ours.contains(&f.id)).collect();
    let mut users_first =
        vec![(alice.email.clone(), vec![own.clone(), extra.clone()]), (bob.email.clone(), vec![bobs.clone()])];
    users_first.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<VFolder> = users_first.into_iter().flat_map(|(_, f)| f).collect();
    expected.extend([other.clone(), team.clone()]);
    assert_eq!(listed, expected, "users' folders by e-mail and name, then groups' by domain and name");

    store.rename_vfolder(own.id, "notes").await.expect("rename");
    let own = VFolder { name: "notes".into(), ..own };
    assert_eq!(store.vfolder(own.id).await.unwrap(), Some(own.clone()), "renamed, nothing else changed");
    expect_kind(store.rename_vfolder(extra.id, "notes").await, ErrorKind::AlreadyExists, "renaming onto a taken name");
    assert_eq!(store.vfolder(extra.id).await.unwrap().map(|f| f.name), Some("extra".into()));
    store.rename_vfolder(extra.id, "data").await.expect("the old name is free again");
    store.rename_vfolder(extra.id, "data").await.expect("renaming to its own name");
    expect_kind(store.rename_vfolder(VFolderId::new(), "x").await, ErrorKind::NotFound, "renaming an unknown folder");

    store.update_vfolder_options(team.id, VFolderPermission::ReadWrite, true).await.expect("update options");
    let team = VFolder { permission: VFolderPermission::ReadWrite, cloneable: true, ..team };
    assert_eq!(store.vfolder(team.id).await.unwrap(), Some(team.clone()));
    let unknown = store.update_vfolder_options(VFolderId::new(), VFolderPermission::ReadOnly, false).await;
    expect_kind(unknown, ErrorKind::NotFound, "options of an unknown folder");

    store.delete_vfolder(extra.id).await.expect("delete folder");
    assert_eq!(store.vfolder(extra.id).await.unwrap(), None);
    expect_kind(store.delete_vfolder(extra.id).await, ErrorKind::NotFound, "deleting an unknown folder");
    let again = VFolder { id: VFolderId::new(), name: "data".into(), ..extra };
    store.insert_vfolder(&again).await.expect("a deleted folder's name is free");

    // Owners of folders stay until their folders are gone: the files would be left without a record.
    expect_kind(store.delete_user(&bob.email).await, ErrorKind::Conflict, "deleting a user who owns a folder");
    assert_eq!(store.vfolder(bobs.id).await.unwrap(), Some(bobs.clone()), "the refused delete changed nothing");
    expect_kind(store.delete_group(&d.name, "other").await, ErrorKind::Conflict, "deleting a group that owns a folder");
    store.delete_vfolder(bobs.id).await.expect("delete bob's folder");
    store.delete_user(&bob.email).await.expect("a user without folders");
    store.delete_vfolder(other.id).await.expect("delete the group's folder");
    store.delete_group(&d.name, "other").await.expect("a group without folders");
}

/// Who may use which folder: owners `wd`, group members the folder's permission, shares their own; the highest
/// wins and each folder is listed once, by name. Shares are set, changed, removed and listed by e-mail.
pub async fn vfolder_sharing(store: &dyn MetadataStore) {
    let t0 = now();
    let (d, users) = vfolder_fixture(store, &[&["team"], &[], &["team"], &["other"]]).await;
    let (alice, bob, carol, dave) = (&users[0], &users[1], &users[2], &users[3]);
    let own = folder(user_owner(alice), "mine", VFolderPermission::ReadOnly, t0);
    let bobs = folder(user_owner(bob), "bobs", VFolderPermission::ReadWrite, t0);
    let team = folder(group_owner(&d.name, "team"), "common", VFolderPermission::ReadOnly, t0);
    for f in [&own, &bobs, &team] {
        store.insert_vfolder(f).await.expect("insert folder");
    }
    use VFolderPermission::{ReadOnly as Ro, ReadWrite as Rw, ReadWriteDelete as Wd};

    let alices = store.accessible_vfolders(&alice.email).await.unwrap();
    let seen: Vec<(VFolderId, VFolderPermission, bool)> =
        alices.iter().map(|a| (a.folder.id, a.permission, a.is_owner)).collect();
    assert_eq!(seen, vec![(team.id, Ro, false), (own.id, Wd, true)], "by name: her group's, then her own");
    assert_eq!(alices[1].folder, own, "the folder record comes with the access");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Ro, false)), "a member of the group");
    assert_eq!(access_to(store, &carol.email, own.id).await, None, "another user's folder");
    assert_eq!(access_to(store, &dave.email, team.id).await, None, "not a member of the group");
    assert!(store.accessible_vfolders("nobody@conformance.invalid").await.unwrap().is_empty(), "an unknown user");

    store.set_vfolder_share(bobs.id, &alice.email, Some(Rw)).await.expect("share");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, Some((Rw, false)), "shared with her");
    store.set_vfolder_share(bobs.id, &carol.email, Some(Ro)).await.expect("share");
    let mut expected = vec![(alice.email.clone(), Rw), (carol.email.clone(), Ro)];
    expected.sort();
    assert_eq!(store.vfolder_shares(bobs.id).await.unwrap(), expected, "shares by e-mail");
    store.set_vfolder_share(bobs.id, &alice.email, Some(Ro)).await.expect("change a share");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, Some((Ro, false)), "the changed permission");
    store.set_vfolder_share(bobs.id, &alice.email, None).await.expect("unshare");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, None, "unshared");
    assert_eq!(store.vfolder_shares(bobs.id).await.unwrap(), vec![(carol.email.clone(), Ro)]);
    store.set_vfolder_share(bobs.id, &alice.email, None).await.expect("removing a missing share is fine");

    // A group folder also shared with a member: once, with the higher permission.
    store.set_vfolder_share(team.id, &carol.email, Some(Rw)).await.expect("share a group folder");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Rw, false)), "the share beats the group's ro");
    store.update_vfolder_options(team.id, Wd, false).await.expect("raise the group permission");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Wd, false)), "the group's wd beats the share");
    // A user's own folder shared with that user stays `wd` and owned.
    store.set_vfolder_share(own.id, &alice.email, Some(Ro)).await.expect("share with the owner");
    assert_eq!(access_to(store, &alice.email, own.id).await, Some((Wd, true)));

    expect_kind(
        store.set_vfolder_share(VFolderId::new(), &alice.email, Some(Ro)).await,
        ErrorKind::NotFound,
        "sharing an unknown folder",
    );
    expect_kind(
        store.set_vfolder_share(bobs.id, "nobody@conformance.invalid", Some(Ro)).await,
        ErrorKind::NotFound,
        "sharing with an unknown user",
    );
    assert!(store.vfolder_shares(VFolderId::new()).await.unwrap().is_empty());

    store.delete_vfolder(bobs.id).await.expect("delete a shared folder");
    assert!(store.vfolder_shares(bobs.id).await.unwrap().is_empty(), "its shares went with it");
    assert_eq!(access_to(store, &carol.email, bobs.id).await, None);

    // A user who received shares may go; the shares go with the user.
    store.delete_user(&carol.email).await.expect("delete a user with shares");
    assert!(store.vfolder_shares(team.id).await.unwrap().is_empty(), "the deleted user's share is gone");
}

/// Invitations: read back, one pending per invitee and folder, pending ones oldest first, accepting shares in the
/// same call, answering twice refused, and a deleted folder takes its invitations along.
pub async fn vfolder_invitations(store: &dyn MetadataStore) {
    let t0 = now();
    let (_, users) = vfolder_fixture(store, &[&[], &[], &[]]).await;
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let first = folder(user_owner(bob), "first", VFolderPermission::ReadWrite, t0);
    let second = folder(user_owner(bob), "second", VFolderPermission::ReadWrite, t0);
    for f in [&first, &second] {
        store.insert_vfolder(f).await.expect("insert folder");
    }
    use VFolderPermission::{ReadOnly as Ro, ReadWrite as Rw};

    let later = invitation(&second, bob, alice, Rw, t0 + Duration::seconds(5));
    let earlier = invitation(&first, bob, alice, Ro, t0);
    store.insert_vfolder_invitation(&later).await.expect("invite");
    store.insert_vfolder_invitation(&earlier).await.expect("invite");
    assert_eq!(store.vfolder_invitation(earlier.id).await.unwrap(), Some(earlier.clone()), "reads back");
    assert_eq!(store.vfolder_invitation(InvitationId::new()).await.unwrap(), None);
    assert_eq!(
        store.pending_vfolder_invitations(&alice.email).await.unwrap(),
        vec![earlier.clone(), later.clone()],
        "pending invitations, oldest first"
    );
    assert!(store.pending_vfolder_invitations(&carol.email).await.unwrap().is_empty());

    let twice = invitation(&first, bob, alice, Rw, t0);
    expect_kind(store.insert_vfolder_invitation(&twice).await, ErrorKind::AlreadyExists, "a second pending invitation");
    let nowhere = VFolderInvitation { vfolder: VFolderId::new(), ..invitation(&first, bob, carol, Ro, t0) };
    expect_kind(store.insert_vfolder_invitation(&nowhere).await, ErrorKind::NotFound, "an unknown folder");
    assert_eq!(store.vfolder_invitation(nowhere.id).await.unwrap(), None);

    let t1 = t0 + Duration::seconds(10);
    let accepted = store.answer_vfolder_invitation(earlier.id, InvitationState::Accepted, t1).await.expect("accept");
    let expected = VFolderInvitation { state: InvitationState::Accepted, modified_at: t1, ..earlier.clone() };
    assert_eq!(accepted, expected, "the answered invitation");
    assert_eq!(store.vfolder_invitation(earlier.id).await.unwrap(), Some(expected));
    assert_eq!(store.vfolder_shares(first.id).await.unwrap(), vec![(alice.email.clone(), Ro)], "accepting shares");
    assert_eq!(access_to(store, &alice.email, first.id).await, Some((Ro, false)));
    assert_eq!(store.pending_vfolder_invitations(&alice.email).await.unwrap(), vec![later.clone()]);
    let again = store.answer_vfolder_invitation(earlier.id, InvitationState::Rejected, t1).await;
    expect_kind(again, ErrorKind::Conflict, "answering twice");
    assert_eq!(store.vfolder_shares(first.id).await.unwrap(), vec![(alice.email.clone(), Ro)], "the share stays");
    let unknown = store.answer_vfolder_invitation(InvitationId::new(), InvitationState::Accepted, t1).await;
    expect_kind(unknown, ErrorKind::NotFound, "answering an unknown invitation");

    let rejected = store.answer_vfolder_invitation(later.id, InvitationState::Rejected, t1).await.expect("reject");
    assert_eq!(rejected.state, InvitationState::Rejected);
    assert!(store.vfolder_shares(second.id).await.unwrap().is_empty(), "rejecting shares nothing");
    assert!(store.pending_vfolder_invitations(&alice.email).await.unwrap().is_empty());

    // Only a pending invitation blocks another one; an invitee without a user record cannot accept.
    let anew = invitation(&second, bob, alice, Ro, t1);
    store.insert_vfolder_invitation(&anew).await.expect("invite again after an answer");
    let stranger = User { email: format!("{}@conformance.invalid", Uuid::new_v4().simple()), ..carol.clone() };
    let to_stranger = invitation(&second, bob, &stranger, Ro, t1);
    store.insert_vfolder_invitation(&to_stranger).await.expect("invite an e-mail without a user");
    let refused = store.answer_vfolder_invitation(to_stranger.id, InvitationState::Accepted, t1).await;
    expect_kind(refused, ErrorKind::NotFound, "accepting without a user record");
    let still = store.vfolder_invitation(to_stranger.id).await.unwrap().map(|i| i.state);
    assert_eq!(still, Some(InvitationState::Pending), "a refused acceptance changes nothing");

    store.delete_vfolder(second.id).await.expect("delete folder");
    assert_eq!(store.vfolder_invitation(anew.id).await.unwrap(), None, "invitations went with the folder");
    assert_eq!(store.vfolder_invitation(later.id).await.unwrap(), None);
    assert!(store.pending_vfolder_invitations(&alice.email).await.unwrap().is_empty());
}

/// The quota fields of a resource policy and the folders a session mounts read back as written.
pub async fn vfolder_quota_fields(store: &dyn MetadataStore) {
    let t0 = now();
    let p = KeyPairResourcePolicy {
        name: unique_name("conf-vfpolicy"),
        total_resource_slots: ResourceSlots::new(),
        max_concurrent_sessions: 1,
        max_containers_per_session: 1,
        max_pending_session_count: None,
        idle_timeout: 0,
        max_session_lifetime: 0,
        allowed_vfolder_hosts: vec!["local".into()],
        max_vfolder_count: 3,
        max_quota_scope_size: Some(10 * (1 << 30)),
        created_at: t0,
    };
    store.put_resource_policy(&p).await.expect("put policy");
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(p.clone()), "quota fields read back");
    let unlimited = KeyPairResourcePolicy { max_vfolder_count: 0, max_quota_scope_size: None, ..p.clone() };
    store.put_resource_policy(&unlimited).await.expect("replace policy");
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(unlimited), "back to unlimited");

    let owner = new_owner(store).await;
    let (session, kernels) = pending_session(&owner, &unique_name("mounts"), 1, &cpu("1"), t0);
    let mount = |name: &str, permission| VFolderMount {
        name: name.into(),
        vfolder_id: VFolderId::new(),
        host_path: format!("/volumes/local/{name}").into(),
        kernel_path: format!("/home/work/{name}"),
        permission,
    };
    let session = SessionRecord {
        vfolder_mounts: vec![mount("data", VFolderPermission::ReadWrite), mount("models", VFolderPermission::ReadOnly)],
        ..session
    };
    store.insert_session(&session, &kernels).await.expect("insert session");
    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "mounts read back");
    let listed = store.list_sessions(&SessionFilter { access_key: Some(owner), ..Default::default() }).await.unwrap();
    assert_eq!(listed, vec![session], "and through the list");
}
