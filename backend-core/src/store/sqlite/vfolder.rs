//! Virtual folders of the SQLite store ([`VFolderStore`]): folder records, shares and invitations. Owners are kept
//! by `users.uuid` or `groups.id`, as in the PostgreSQL store, and resolved to e-mails and group names on the way
//! out.

use super::*;
use crate::store::rows::{not_found, taken};
use crate::store::VFolderStore;
use async_trait::async_trait;
use chrono::SubsecRound;

fn folder_row(conn: &mut SqliteConnection, id: VFolderId) -> Tx<FolderRow> {
    vfolders::table
        .find(id.to_string())
        .select(FolderRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| not_found(format!("virtual folder {id}")))
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
    Ok(owned_folders(conn, Some(vec![uuid_col(id.0)]))?.pop())
}

fn list(conn: &mut SqliteConnection) -> Tx<Vec<VFolder>> {
    owned_folders(conn, None)
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

fn insert_invitation(conn: &mut SqliteConnection, i: &VFolderInvitation) -> Tx<()> {
    folder_row(conn, i.vfolder)?;
    insert_invitation_in(conn, i)
}

fn invitation(conn: &mut SqliteConnection, id: InvitationId) -> Tx<Option<VFolderInvitation>> {
    let row =
        vfolder_invitations::table.find(id.to_string()).select(InvitationRow::as_select()).first(conn).optional()?;
    row.map(InvitationRow::into_model).transpose()
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
        self.read(move |conn| accessible_folders(conn, &email)).await
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
        self.read(move |conn| folder_shares(conn, id)).await
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
        self.read(move |conn| pending_invitations_of(conn, &invitee)).await
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
