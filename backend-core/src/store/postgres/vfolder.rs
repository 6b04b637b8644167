//! Virtual folders of the PostgreSQL store ([`VFolderStore`]): folder records, shares and invitations, on the
//! tables of the deployment migration. Owners are kept by `users.uuid` or `groups.id` and resolved to e-mails and
//! group names on the way out; the partial unique indexes on names and on pending invitations make the checks below
//! hold under concurrent managers (a losing writer gets `AlreadyExists`).

use super::*;
use crate::store::rows::{not_found, sort_folders, taken, AccessSet};
use crate::store::VFolderStore;
use crate::vfolder::{InvitationState, VFolderAccess, VFolderPermission};
use async_trait::async_trait;
use diesel::prelude::NullableExpressionMethods;

/// Folders with their owners resolved: every folder, or those with the given ids.
async fn load(conn: &mut AsyncPgConnection, ids: Option<Vec<Uuid>>) -> Tx<Vec<VFolder>> {
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
    let rows: Vec<OwnedRow> = query.load(conn).await?;
    let mut folders = rows
        .into_iter()
        .map(|(row, email, domain, group)| row.into_model(email, domain, group))
        .collect::<Tx<Vec<_>>>()?;
    sort_folders(&mut folders);
    Ok(folders)
}

/// A folder's row, locked until the transaction ends so that a concurrent rename or delete waits.
async fn folder_row(conn: &mut AsyncPgConnection, id: VFolderId) -> Tx<FolderRow> {
    vfolders::table
        .find(id.0)
        .select(FolderRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| not_found(format!("virtual folder {id}")))
}

async fn user_uuid(conn: &mut AsyncPgConnection, email: &str) -> Tx<Option<Uuid>> {
    Ok(users::table.filter(users::email.eq(email)).select(users::uuid).first(conn).await.optional()?)
}

/// The owner's `(user, group)` columns. `NotFound` when the user or group is unknown.
async fn owner_columns(conn: &mut AsyncPgConnection, owner: &VFolderOwner) -> Tx<(Option<Uuid>, Option<Uuid>)> {
    match owner {
        VFolderOwner::User { email } => {
            let uuid = user_uuid(conn, email).await?.ok_or_else(|| not_found(format!("user {email}")))?;
            Ok((Some(uuid), None))
        }
        VFolderOwner::Group { domain, name } => {
            let id = groups::table
                .filter(groups::domain_name.eq(domain))
                .filter(groups::name.eq(name))
                .select(groups::id)
                .first::<Uuid>(conn)
                .await
                .optional()?
                .ok_or_else(|| not_found(format!("group {name} in domain {domain}")))?;
            Ok((None, Some(id)))
        }
    }
}

/// How many folders other than `except` the owner of `(user, group)` has under `name`.
async fn named_like(
    conn: &mut AsyncPgConnection,
    owner: (Option<Uuid>, Option<Uuid>),
    name: &str,
    except: Option<Uuid>,
) -> Tx<i64> {
    let mut query = vfolders::table.filter(vfolders::name.eq(name.to_owned())).into_boxed();
    query = match owner {
        (Some(user), _) => query.filter(vfolders::user_id.eq(user)),
        (None, Some(group)) => query.filter(vfolders::group_id.eq(group)),
        (None, None) => return Ok(0),
    };
    if let Some(id) = except {
        query = query.filter(vfolders::id.ne(id));
    }
    Ok(query.count().get_result(conn).await?)
}

async fn insert(conn: &mut AsyncPgConnection, f: &VFolder) -> Tx<()> {
    let (user_id, group_id) = owner_columns(conn, &f.owner).await?;
    let already = || format!("virtual folder {:?} of {}", f.name, f.owner.quota_scope());
    if named_like(conn, (user_id, group_id), &f.name, None).await? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    let row = FolderRow::from_model(f, (user_id, group_id))?;
    diesel::insert_into(vfolders::table).values(&row).execute(conn).await.map_err(taken(already))?;
    Ok(())
}

async fn get(conn: &mut AsyncPgConnection, id: VFolderId) -> Tx<Option<VFolder>> {
    Ok(load(conn, Some(vec![id.0])).await?.pop())
}

async fn list(conn: &mut AsyncPgConnection) -> Tx<Vec<VFolder>> {
    load(conn, None).await
}

async fn accessible(conn: &mut AsyncPgConnection, email: &str) -> Tx<Vec<VFolderAccess>> {
    let Some(uuid) = user_uuid(conn, email).await? else { return Ok(vec![]) };
    let mut access = AccessSet::default();
    let own: Vec<Uuid> = vfolders::table.filter(vfolders::user_id.eq(uuid)).select(vfolders::id).load(conn).await?;
    for id in own {
        access.grant(VFolderId(id), VFolderPermission::ReadWriteDelete, true);
    }
    let group_ids: Vec<Uuid> = association_groups_users::table
        .filter(association_groups_users::user_id.eq(uuid))
        .select(association_groups_users::group_id)
        .load(conn)
        .await?;
    let of_groups: Vec<(Uuid, String)> = vfolders::table
        .filter(vfolders::group_id.eq_any(group_ids))
        .select((vfolders::id, vfolders::permission))
        .load(conn)
        .await?;
    let shared: Vec<(Uuid, String)> = vfolder_permissions::table
        .filter(vfolder_permissions::user_id.eq(uuid))
        .select((vfolder_permissions::vfolder, vfolder_permissions::permission))
        .load(conn)
        .await?;
    for (id, permission) in of_groups.into_iter().chain(shared) {
        access.grant(VFolderId(id), parse("vfolder permission", &permission)?, false);
    }
    let folders = load(conn, Some(access.ids().iter().map(|id| id.0).collect())).await?;
    Ok(access.resolve(folders))
}

async fn rename(conn: &mut AsyncPgConnection, id: VFolderId, name: &str) -> Tx<()> {
    let row = folder_row(conn, id).await?;
    let already = || format!("virtual folder {name:?} of {}", row.quota_scope_id);
    if named_like(conn, (row.user_id, row.group_id), name, Some(row.id)).await? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::update(vfolders::table.find(row.id))
        .set(vfolders::name.eq(name))
        .execute(conn)
        .await
        .map_err(taken(already))?;
    Ok(())
}

async fn update_options(
    conn: &mut AsyncPgConnection,
    id: VFolderId,
    permission: VFolderPermission,
    cloneable: bool,
) -> Tx<()> {
    let n = diesel::update(vfolders::table.find(id.0))
        .set((vfolders::permission.eq(permission.as_str()), vfolders::cloneable.eq(cloneable)))
        .execute(conn)
        .await?;
    if n == 0 {
        return Err(not_found(format!("virtual folder {id}")));
    }
    Ok(())
}

async fn delete(conn: &mut AsyncPgConnection, id: VFolderId) -> Tx<()> {
    // Shares and invitations go with the folder through `ON DELETE CASCADE`.
    if diesel::delete(vfolders::table.find(id.0)).execute(conn).await? == 0 {
        return Err(not_found(format!("virtual folder {id}")));
    }
    Ok(())
}

async fn set_share(
    conn: &mut AsyncPgConnection,
    id: VFolderId,
    email: &str,
    permission: Option<VFolderPermission>,
) -> Tx<()> {
    // The folder's lock keeps a concurrent delete from slipping between the check and the write.
    let folder = folder_row(conn, id).await?;
    let user = user_uuid(conn, email).await?.ok_or_else(|| not_found(format!("user {email}")))?;
    match permission {
        Some(permission) => {
            diesel::insert_into(vfolder_permissions::table)
                .values((
                    vfolder_permissions::vfolder.eq(folder.id),
                    vfolder_permissions::user_id.eq(user),
                    vfolder_permissions::permission.eq(permission.as_str()),
                ))
                .on_conflict((vfolder_permissions::vfolder, vfolder_permissions::user_id))
                .do_update()
                .set(vfolder_permissions::permission.eq(excluded(vfolder_permissions::permission)))
                .execute(conn)
                .await?;
        }
        None => {
            let target = vfolder_permissions::table
                .filter(vfolder_permissions::vfolder.eq(folder.id))
                .filter(vfolder_permissions::user_id.eq(user));
            diesel::delete(target).execute(conn).await?;
        }
    }
    Ok(())
}

async fn shares(conn: &mut AsyncPgConnection, id: VFolderId) -> Tx<Vec<(String, VFolderPermission)>> {
    let rows: Vec<(String, String)> = vfolder_permissions::table
        .inner_join(users::table)
        .filter(vfolder_permissions::vfolder.eq(id.0))
        .order(users::email.asc())
        .select((users::email, vfolder_permissions::permission))
        .load(conn)
        .await?;
    rows.into_iter().map(|(email, p)| Ok((email, parse("vfolder permission", &p)?))).collect()
}

async fn insert_invitation(conn: &mut AsyncPgConnection, i: &VFolderInvitation) -> Tx<()> {
    folder_row(conn, i.vfolder).await?;
    let row = InvitationRow::from_model(i);
    let already = || format!("a pending invitation of {} to virtual folder {}", i.invitee, i.vfolder);
    let pending: i64 = vfolder_invitations::table
        .filter(vfolder_invitations::vfolder.eq(row.vfolder))
        .filter(vfolder_invitations::invitee.eq(&row.invitee))
        .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
        .count()
        .get_result(conn)
        .await?;
    if pending > 0 && i.state == InvitationState::Pending {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::insert_into(vfolder_invitations::table).values(&row).execute(conn).await.map_err(taken(already))?;
    Ok(())
}

async fn invitation(conn: &mut AsyncPgConnection, id: InvitationId) -> Tx<Option<VFolderInvitation>> {
    let row = vfolder_invitations::table.find(id.0).select(InvitationRow::as_select()).first(conn).await.optional()?;
    row.map(InvitationRow::into_model).transpose()
}

async fn pending_invitations(conn: &mut AsyncPgConnection, invitee: &str) -> Tx<Vec<VFolderInvitation>> {
    vfolder_invitations::table
        .filter(vfolder_invitations::invitee.eq(invitee))
        .filter(vfolder_invitations::state.eq(InvitationState::Pending.as_str()))
        .order((vfolder_invitations::created_at.asc(), vfolder_invitations::seq.asc()))
        .select(InvitationRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(InvitationRow::into_model)
        .collect()
}

async fn answer_invitation(
    conn: &mut AsyncPgConnection,
    id: InvitationId,
    state: InvitationState,
    now: DateTime<Utc>,
) -> Tx<VFolderInvitation> {
    if state == InvitationState::Pending {
        return Err(Error::InvalidParams { msg: "an invitation cannot be answered with pending".into() }.into());
    }
    // The row lock makes a second answer wait, then see the first one's state.
    let row = vfolder_invitations::table
        .find(id.0)
        .select(InvitationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| not_found(format!("invitation {id}")))?;
    let mut invitation = row.into_model()?;
    if invitation.state != InvitationState::Pending {
        return Err(Error::Conflict { msg: format!("invitation {id} is already {}", invitation.state.as_str()) }.into());
    }
    if state == InvitationState::Accepted {
        set_share(conn, invitation.vfolder, &invitation.invitee, Some(invitation.permission)).await?;
    }
    invitation.state = state;
    invitation.modified_at = ts(now);
    diesel::update(vfolder_invitations::table.find(id.0))
        .set((
            vfolder_invitations::state.eq(state.as_str()),
            vfolder_invitations::modified_at.eq(invitation.modified_at),
        ))
        .execute(conn)
        .await?;
    Ok(invitation)
}

#[async_trait]
impl VFolderStore for PostgresStore {
    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()> {
        transaction!(self, Mode::Write, |conn| insert(conn, folder))
    }

    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>> {
        transaction!(self, Mode::Read, |conn| get(conn, id))
    }

    async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        transaction!(self, Mode::Read, |conn| list(conn))
    }

    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>> {
        transaction!(self, Mode::Read, |conn| accessible(conn, email))
    }

    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| rename(conn, id, name))
    }

    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> Result<()> {
        transaction!(self, Mode::Write, |conn| update_options(conn, id, permission, cloneable))
    }

    async fn delete_vfolder(&self, id: VFolderId) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete(conn, id))
    }

    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()> {
        transaction!(self, Mode::Write, |conn| set_share(conn, id, email, permission))
    }

    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>> {
        transaction!(self, Mode::Read, |conn| shares(conn, id))
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        transaction!(self, Mode::Write, |conn| insert_invitation(conn, invitation))
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| invitation(conn, id))
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| pending_invitations(conn, invitee))
    }

    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation> {
        transaction!(self, Mode::Write, |conn| answer_invitation(conn, id, state, now))
    }
}
