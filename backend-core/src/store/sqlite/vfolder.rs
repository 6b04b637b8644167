//! Virtual folders of the SQLite store ([`VFolderStore`]): folder records, shares and invitations. Owners are kept
//! by `users.uuid` or `groups.id`, as in the PostgreSQL store, and resolved to e-mails and group names on the way
//! out.

use super::*;
use crate::store::rows::{not_found, sort_folders, taken, AccessSet};
use crate::store::VFolderStore;
use crate::vfolder::{InvitationState, VFolderAccess, VFolderPermission};
use async_trait::async_trait;
use chrono::SubsecRound;

/// Folders with their owners resolved: every folder, or those with the given ids.
fn load(conn: &mut SqliteConnection, ids: Option<Vec<String>>) -> Tx<Vec<VFolder>> {
    let mut query = vfolders::table
        .left_join(users::table)
        .left_join(groups::table)
        .select((
            FolderRow::as_select(),
            users::email.nullable(),
            groups::domain_name.nullable(),
            groups::name.nullable(),
        ))
        .into_boxed();
    if let Some(ids) = ids {
        query = query.filter(vfolders::id.eq_any(ids));
    }
    let rows: Vec<OwnedRow> = query.load(conn)?;
    let mut folders = rows
        .into_iter()
        .map(|(row, email, domain, group)| row.into_model(email, domain, group))
        .collect::<Tx<Vec<_>>>()?;
    sort_folders(&mut folders);
    Ok(folders)
}

fn folder_row(conn: &mut SqliteConnection, id: VFolderId) -> Tx<FolderRow> {
    vfolders::table
        .find(id.to_string())
        .select(FolderRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| not_found(format!("virtual folder {id}")))
}

fn user_uuid(conn: &mut SqliteConnection, email: &str) -> Tx<Option<String>> {
    Ok(users::table.filter(users::email.eq(email)).select(users::uuid).first(conn).optional()?)
}

/// The owner's `(user, group)` columns. `NotFound` when the user or group is unknown.
fn owner_columns(conn: &mut SqliteConnection, owner: &VFolderOwner) -> Tx<(Option<String>, Option<String>)> {
    match owner {
        VFolderOwner::User { email } => {
            let uuid = user_uuid(conn, email)?.ok_or_else(|| not_found(format!("user {email}")))?;
            Ok((Some(uuid), None))
        }
        VFolderOwner::Group { domain, name } => {
            let id = groups::table
                .filter(groups::domain_name.eq(domain))
                .filter(groups::name.eq(name))
                .select(groups::id)
                .first::<String>(conn)
                .optional()?
                .ok_or_else(|| not_found(format!("group {name} in domain {domain}")))?;
            Ok((None, Some(id)))
        }
    }
}

/// How many folders other than `except` the owner of `(user, group)` has under `name`.
fn named_like(
    conn: &mut SqliteConnection,
    owner: (&Option<String>, &Option<String>),
    name: &str,
    except: Option<&str>,
) -> Tx<i64> {
    let mut query = vfolders::table.filter(vfolders::name.eq(name.to_owned())).into_boxed();
    query = match owner {
        (Some(user), _) => query.filter(vfolders::user_id.eq(user.clone())),
        (None, Some(group)) => query.filter(vfolders::group_id.eq(group.clone())),
        (None, None) => return Ok(0),
    };
    if let Some(id) = except {
        query = query.filter(vfolders::id.ne(id.to_owned()));
    }
    Ok(query.count().get_result(conn)?)
}

fn insert(conn: &mut SqliteConnection, f: &VFolder) -> Tx<()> {
    let (user_id, group_id) = owner_columns(conn, &f.owner)?;
    let already = || format!("virtual folder {:?} of {}", f.name, f.owner.quota_scope());
    if named_like(conn, (&user_id, &group_id), &f.name, None)? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    let row = FolderRow::from_model(f, (user_id, group_id))?;
    diesel::insert_into(vfolders::table).values(&row).execute(conn).map_err(taken(already))?;
    Ok(())
}

fn get(conn: &mut SqliteConnection, id: VFolderId) -> Tx<Option<VFolder>> {
    Ok(load(conn, Some(vec![id.to_string()]))?.pop())
}

fn list(conn: &mut SqliteConnection) -> Tx<Vec<VFolder>> {
    load(conn, None)
}

fn accessible(conn: &mut SqliteConnection, email: &str) -> Tx<Vec<VFolderAccess>> {
    let Some(uuid) = user_uuid(conn, email)? else { return Ok(vec![]) };
    let mut access = AccessSet::default();
    let own: Vec<String> = vfolders::table.filter(vfolders::user_id.eq(&uuid)).select(vfolders::id).load(conn)?;
    for id in own {
        access.grant(VFolderId(parse("vfolder id", &id)?), VFolderPermission::ReadWriteDelete, true);
    }
    let group_ids: Vec<String> = association_groups_users::table
        .filter(association_groups_users::user_id.eq(&uuid))
        .select(association_groups_users::group_id)
        .load(conn)?;
    let of_groups: Vec<(String, String)> = vfolders::table
        .filter(vfolders::group_id.eq_any(group_ids))
        .select((vfolders::id, vfolders::permission))
        .load(conn)?;
    let shared: Vec<(String, String)> = vfolder_permissions::table
        .filter(vfolder_permissions::user_id.eq(&uuid))
        .select((vfolder_permissions::vfolder, vfolder_permissions::permission))
        .load(conn)?;
    for (id, permission) in of_groups.into_iter().chain(shared) {
        access.grant(VFolderId(parse("vfolder id", &id)?), parse("vfolder permission", &permission)?, false);
    }
    let folders = load(conn, Some(access.ids().iter().map(VFolderId::to_string).collect()))?;
    Ok(access.resolve(folders))
}

fn rename(conn: &mut SqliteConnection, id: VFolderId, name: &str) -> Tx<()> {
    let row = folder_row(conn, id)?;
    let already = || format!("virtual folder {name:?} of {}", row.quota_scope_id);
    if named_like(conn, (&row.user_id, &row.group_id), name, Some(&row.id))? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::update(vfolders::table.find(&row.id)).set(vfolders::name.eq(name)).execute(conn).map_err(taken(already))?;
    Ok(())
}

fn update_options(
    conn: &mut SqliteConnection,
    id: VFolderId,
    permission: VFolderPermission,
    cloneable: bool,
) -> Tx<()> {
    let n = diesel::update(vfolders::table.find(id.to_string()))
        .set((vfolders::permission.eq(permission.as_str()), vfolders::cloneable.eq(cloneable)))
        .execute(conn)?;
    if n == 0 {
        return Err(not_found(format!("virtual folder {id}")));
    }
    Ok(())
}

fn delete(conn: &mut SqliteConnection, id: VFolderId) -> Tx<()> {
    let id = id.to_string();
    // The foreign keys cascade too; deleting explicitly keeps the rule whatever the connection's pragmas.
    diesel::delete(vfolder_permissions::table.filter(vfolder_permissions::vfolder.eq(&id))).execute(conn)?;
    diesel::delete(vfolder_invitations::table.filter(vfolder_invitations::vfolder.eq(&id))).execute(conn)?;
    if diesel::delete(vfolders::table.find(&id)).execute(conn)? == 0 {
        return Err(not_found(format!("virtual folder {id}")));
    }
    Ok(())
}

fn set_share(conn: &mut SqliteConnection, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Tx<()> {
    let folder = folder_row(conn, id)?;
    let user = user_uuid(conn, email)?.ok_or_else(|| not_found(format!("user {email}")))?;
    let target = vfolder_permissions::table
        .filter(vfolder_permissions::vfolder.eq(&folder.id))
        .filter(vfolder_permissions::user_id.eq(&user));
    diesel::delete(target).execute(conn)?;
    if let Some(permission) = permission {
        diesel::insert_into(vfolder_permissions::table)
            .values((
                vfolder_permissions::vfolder.eq(&folder.id),
                vfolder_permissions::user_id.eq(&user),
                vfolder_permissions::permission.eq(permission.as_str()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn shares(conn: &mut SqliteConnection, id: VFolderId) -> Tx<Vec<(String, VFolderPermission)>> {
    let rows: Vec<(String, String)> = vfolder_permissions::table
        .inner_join(users::table)
        .filter(vfolder_permissions::vfolder.eq(id.to_string()))
        .order(users::email.asc())
        .select((users::email, vfolder_permissions::permission))
        .load(conn)?;
    rows.into_iter().map(|(email, p)| Ok((email, parse("vfolder permission", &p)?))).collect()
}

fn insert_invitation(conn: &mut SqliteConnection, i: &VFolderInvitation) -> Tx<()> {
    folder_row(conn, i.vfolder)?;
    let row = InvitationRow::from_model(i);
    let already = || format!("a pending invitation of {} to virtual folder {}", i.invitee, i.vfolder);
    let pending: i64 = vfolder_invitations::table
        .filter(vfolder_invitations::vfolder.eq(&row.vfolder))
        .filter(vfolder_invitations::invitee.eq(&row.invitee))
        .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
        .count()
        .get_result(conn)?;
    if pending > 0 && i.state == InvitationState::Pending {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::insert_into(vfolder_invitations::table).values(&row).execute(conn).map_err(taken(already))?;
    Ok(())
}

fn invitation(conn: &mut SqliteConnection, id: InvitationId) -> Tx<Option<VFolderInvitation>> {
    let row =
        vfolder_invitations::table.find(id.to_string()).select(InvitationRow::as_select()).first(conn).optional()?;
    row.map(InvitationRow::into_model).transpose()
}

fn pending_invitations(conn: &mut SqliteConnection, invitee: &str) -> Tx<Vec<VFolderInvitation>> {
    vfolder_invitations::table
        .filter(vfolder_invitations::invitee.eq(invitee))
        .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
        .order((vfolder_invitations::created_at.asc(), vfolder_invitations::rowid.asc()))
        .select(InvitationRow::as_select())
        .load(conn)?
        .into_iter()
        .map(InvitationRow::into_model)
        .collect()
}

fn answer_invitation(
    conn: &mut SqliteConnection,
    id: InvitationId,
    state: InvitationState,
    now: DateTime<Utc>,
) -> Tx<VFolderInvitation> {
    let mut invitation = invitation(conn, id)?.ok_or_else(|| not_found(format!("invitation {id}")))?;
    if state == InvitationState::Pending {
        return Err(Error::InvalidParams { msg: "an invitation cannot be answered with pending".into() }.into());
    }
    if invitation.state != InvitationState::Pending {
        return Err(Error::Conflict { msg: format!("invitation {id} is already {}", invitation.state.as_str()) }.into());
    }
    if state == InvitationState::Accepted {
        set_share(conn, invitation.vfolder, &invitation.invitee, Some(invitation.permission))?;
    }
    invitation.state = state;
    invitation.modified_at = now;
    diesel::update(vfolder_invitations::table.find(id.to_string()))
        .set((vfolder_invitations::state.eq(state.as_str()), vfolder_invitations::modified_at.eq(ts(now))))
        .execute(conn)?;
    Ok(invitation)
}

#[async_trait]
impl VFolderStore for SqliteStore {
    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()> {
        let folder = folder.clone();
        self.write(move |conn| insert(conn, &folder)).await
    }

    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>> {
        self.read(move |conn| get(conn, id)).await
    }

    async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        self.read(list).await
    }

    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>> {
        let email = email.to_owned();
        self.read(move |conn| accessible(conn, &email)).await
    }

    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| rename(conn, id, &name)).await
    }

    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> Result<()> {
        self.write(move |conn| update_options(conn, id, permission, cloneable)).await
    }

    async fn delete_vfolder(&self, id: VFolderId) -> Result<()> {
        self.write(move |conn| delete(conn, id)).await
    }

    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()> {
        let email = email.to_owned();
        self.write(move |conn| set_share(conn, id, &email, permission)).await
    }

    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>> {
        self.read(move |conn| shares(conn, id)).await
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        let invitation = invitation.clone();
        self.write(move |conn| insert_invitation(conn, &invitation)).await
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        self.read(move |conn| invitation(conn, id)).await
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        let invitee = invitee.to_owned();
        self.read(move |conn| pending_invitations(conn, &invitee)).await
    }

    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation> {
        let now = now.trunc_subsecs(6);
        self.write(move |conn| answer_invitation(conn, id, state, now)).await
    }
}
