//! Virtual folders of the PostgreSQL store ([`VFolderStore`]): folder records, shares and invitations, on the
//! tables of the deployment migration. Owners are kept by `users.uuid` or `groups.id` and resolved to e-mails and
//! group names on the way out; the partial unique indexes on names and on pending invitations make the checks below
//! hold under concurrent managers (a losing writer gets `AlreadyExists`).

use super::*;
use crate::store::rows::{not_found, taken};
use crate::store::VFolderStore;
use async_trait::async_trait;

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

async fn insert(conn: &mut AsyncPgConnection, f: &VFolder) -> Tx<()> {
    let (user_id, group_id) = owner_columns(conn, &f.owner).await?;
    let already = || format!("virtual folder {:?} of {}", f.name, f.owner.quota_scope());
    if named_like(conn, (&user_id, &group_id), &f.name, None).await? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    let row = FolderRow::from_model(f, (user_id, group_id))?;
    diesel::insert_into(vfolders::table).values(&row).execute(conn).await.map_err(taken(already))?;
    Ok(())
}

async fn get(conn: &mut AsyncPgConnection, id: VFolderId) -> Tx<Option<VFolder>> {
    Ok(owned_folders(conn, Some(vec![id.0])).await?.pop())
}

async fn list(conn: &mut AsyncPgConnection) -> Tx<Vec<VFolder>> {
    owned_folders(conn, None).await
}

async fn rename(conn: &mut AsyncPgConnection, id: VFolderId, name: &str) -> Tx<()> {
    let row = folder_row(conn, id).await?;
    let already = || format!("virtual folder {name:?} of {}", row.quota_scope_id);
    if named_like(conn, (&row.user_id, &row.group_id), name, Some(&row.id)).await? > 0 {
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

async fn insert_invitation(conn: &mut AsyncPgConnection, i: &VFolderInvitation) -> Tx<()> {
    folder_row(conn, i.vfolder).await?;
    insert_invitation_in(conn, i).await
}

async fn invitation(conn: &mut AsyncPgConnection, id: InvitationId) -> Tx<Option<VFolderInvitation>> {
    let row = vfolder_invitations::table.find(id.0).select(InvitationRow::as_select()).first(conn).await.optional()?;
    row.map(InvitationRow::into_model).transpose()
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
        transaction!(self, Mode::Read, |conn| accessible_folders(conn, email))
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
        transaction!(self, Mode::Read, |conn| folder_shares(conn, id))
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        transaction!(self, Mode::Write, |conn| insert_invitation(conn, invitation))
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| invitation(conn, id))
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| pending_invitations_of(conn, invitee))
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
