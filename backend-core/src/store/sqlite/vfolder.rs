//! Virtual folders of the SQLite store: folder records, shares and invitations. Each function runs inside the
//! caller's transaction. Owners are kept by `users.uuid` or `groups.id`, as in the PostgreSQL store, and resolved to
//! e-mails and group names on the way out.

use super::schema::{association_groups_users, groups, users, vfolder_invitations, vfolder_permissions, vfolders};
use super::{parse, parse_ts, taken, ts, Failure, Tx};
use crate::error::Error;
use crate::ids::{InvitationId, VFolderId};
use crate::store::{sort_folders, AccessSet};
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderOwner, VFolderPermission};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

fn not_found(what: String) -> Failure {
    Error::NotFound { what }.into()
}

fn to_i64(what: &str, n: u64) -> Tx<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidParams { msg: format!("{what} {n} is too large") }.into())
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = vfolders, check_for_backend(diesel::sqlite::Sqlite))]
struct FolderRow {
    id: String,
    host: String,
    name: String,
    quota_scope_id: String,
    usage_mode: String,
    permission: String,
    ownership_type: String,
    user_id: Option<String>,
    group_id: Option<String>,
    creator: String,
    max_size: Option<i64>,
    cloneable: bool,
    created_at: String,
}

/// A folder row with its owner's e-mail (user folders) or domain and name (group folders).
type OwnedRow = (FolderRow, Option<String>, Option<String>, Option<String>);

impl FolderRow {
    fn into_model(self, email: Option<String>, domain: Option<String>, group: Option<String>) -> Tx<VFolder> {
        let owner = match (self.ownership_type.as_str(), email, domain, group) {
            ("user", Some(email), _, _) => VFolderOwner::User { email },
            ("group", _, Some(domain), Some(name)) => VFolderOwner::Group { domain, name },
            (kind, ..) => return Err(super::corrupt("vfolder owner", kind, "the owner is missing")),
        };
        Ok(VFolder {
            id: VFolderId(parse::<Uuid>("vfolder id", &self.id)?),
            usage_mode: parse("usage mode", &self.usage_mode)?,
            permission: parse("vfolder permission", &self.permission)?,
            max_size: self
                .max_size
                .map(|n| u64::try_from(n).map_err(|e| super::corrupt("max size", &n.to_string(), e)))
                .transpose()?,
            created_at: parse_ts(&self.created_at)?,
            owner,
            name: self.name,
            host: self.host,
            creator: self.creator,
            cloneable: self.cloneable,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = vfolder_invitations, check_for_backend(diesel::sqlite::Sqlite))]
struct InvitationRow {
    id: String,
    permission: String,
    inviter: String,
    invitee: String,
    state: String,
    vfolder: String,
    created_at: String,
    modified_at: String,
}

impl InvitationRow {
    fn from_model(i: &VFolderInvitation) -> Self {
        Self {
            id: i.id.to_string(),
            permission: i.permission.as_str().to_owned(),
            inviter: i.inviter.clone(),
            invitee: i.invitee.clone(),
            state: i.state.as_str().to_owned(),
            vfolder: i.vfolder.to_string(),
            created_at: ts(i.created_at),
            modified_at: ts(i.modified_at),
        }
    }

    fn into_model(self) -> Tx<VFolderInvitation> {
        Ok(VFolderInvitation {
            id: InvitationId(parse::<Uuid>("invitation id", &self.id)?),
            vfolder: VFolderId(parse::<Uuid>("vfolder id", &self.vfolder)?),
            permission: parse("invitation permission", &self.permission)?,
            state: parse_state(&self.state)?,
            created_at: parse_ts(&self.created_at)?,
            modified_at: parse_ts(&self.modified_at)?,
            inviter: self.inviter,
            invitee: self.invitee,
        })
    }
}

fn parse_state(s: &str) -> Tx<InvitationState> {
    [InvitationState::Pending, InvitationState::Accepted, InvitationState::Rejected, InvitationState::Canceled]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| super::corrupt("invitation state", s, "not a known state"))
}

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

pub(super) fn insert(conn: &mut SqliteConnection, f: &VFolder) -> Tx<()> {
    let (user_id, group_id) = owner_columns(conn, &f.owner)?;
    let already = || format!("virtual folder {:?} of {}", f.name, f.owner.quota_scope());
    if named_like(conn, (&user_id, &group_id), &f.name, None)? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    let row = FolderRow {
        id: f.id.to_string(),
        host: f.host.clone(),
        name: f.name.clone(),
        quota_scope_id: f.owner.quota_scope(),
        usage_mode: f.usage_mode.as_str().to_owned(),
        permission: f.permission.as_str().to_owned(),
        ownership_type: if user_id.is_some() { "user" } else { "group" }.to_owned(),
        user_id,
        group_id,
        creator: f.creator.clone(),
        max_size: f.max_size.map(|n| to_i64("max size", n)).transpose()?,
        cloneable: f.cloneable,
        created_at: ts(f.created_at),
    };
    diesel::insert_into(vfolders::table).values(&row).execute(conn).map_err(taken(already))?;
    Ok(())
}

pub(super) fn get(conn: &mut SqliteConnection, id: VFolderId) -> Tx<Option<VFolder>> {
    Ok(load(conn, Some(vec![id.to_string()]))?.pop())
}

pub(super) fn list(conn: &mut SqliteConnection) -> Tx<Vec<VFolder>> {
    load(conn, None)
}

pub(super) fn accessible(conn: &mut SqliteConnection, email: &str) -> Tx<Vec<VFolderAccess>> {
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

pub(super) fn rename(conn: &mut SqliteConnection, id: VFolderId, name: &str) -> Tx<()> {
    let row = folder_row(conn, id)?;
    let already = || format!("virtual folder {name:?} of {}", row.quota_scope_id);
    if named_like(conn, (&row.user_id, &row.group_id), name, Some(&row.id))? > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::update(vfolders::table.find(&row.id)).set(vfolders::name.eq(name)).execute(conn).map_err(taken(already))?;
    Ok(())
}

pub(super) fn update_options(
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

pub(super) fn delete(conn: &mut SqliteConnection, id: VFolderId) -> Tx<()> {
    let id = id.to_string();
    // The foreign keys cascade too; deleting explicitly keeps the rule whatever the connection's pragmas.
    diesel::delete(vfolder_permissions::table.filter(vfolder_permissions::vfolder.eq(&id))).execute(conn)?;
    diesel::delete(vfolder_invitations::table.filter(vfolder_invitations::vfolder.eq(&id))).execute(conn)?;
    if diesel::delete(vfolders::table.find(&id)).execute(conn)? == 0 {
        return Err(not_found(format!("virtual folder {id}")));
    }
    Ok(())
}

pub(super) fn set_share(
    conn: &mut SqliteConnection,
    id: VFolderId,
    email: &str,
    permission: Option<VFolderPermission>,
) -> Tx<()> {
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

pub(super) fn shares(conn: &mut SqliteConnection, id: VFolderId) -> Tx<Vec<(String, VFolderPermission)>> {
    let rows: Vec<(String, String)> = vfolder_permissions::table
        .inner_join(users::table)
        .filter(vfolder_permissions::vfolder.eq(id.to_string()))
        .order(users::email.asc())
        .select((users::email, vfolder_permissions::permission))
        .load(conn)?;
    rows.into_iter().map(|(email, p)| Ok((email, parse("vfolder permission", &p)?))).collect()
}

pub(super) fn insert_invitation(conn: &mut SqliteConnection, i: &VFolderInvitation) -> Tx<()> {
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

pub(super) fn invitation(conn: &mut SqliteConnection, id: InvitationId) -> Tx<Option<VFolderInvitation>> {
    let row =
        vfolder_invitations::table.find(id.to_string()).select(InvitationRow::as_select()).first(conn).optional()?;
    row.map(InvitationRow::into_model).transpose()
}

pub(super) fn pending_invitations(conn: &mut SqliteConnection, invitee: &str) -> Tx<Vec<VFolderInvitation>> {
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

pub(super) fn answer_invitation(
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
