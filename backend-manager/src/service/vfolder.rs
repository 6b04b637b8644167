//! The virtual folder service: who may see and change which folder, quotas, sharing, transfer tokens, and the
//! resolution of a session's mounts. The `/folders` routes ([`crate::api::folders`]) are thin wrappers around it.
//!
//! Visibility follows Backend.AI: a user sees their own folders, those of the groups they belong to and those shared
//! with them; admins also see every group folder of their domain (superadmins: of every domain) with `wd`. A folder
//! the caller cannot see is `vfolder-not-found` (404), never 403; a visible folder the caller may not change is 403.

use crate::Manager;
use backend_core::api::vfolder::{
    CreateVFolder, FileItem, FileList, InvitationInfo, ListVFolders, TransferTicket, VFolderHosts, VFolderInfo,
    VolumeInfo,
};
use backend_core::error::{Error, Result};
use backend_core::ids::{InvitationId, VFolderId};
use backend_core::model::{KeyPair, KeyPairResourcePolicy, Role, User};
use backend_core::storage::token::{self, TransferClaims, TransferOp};
use backend_core::storage::{DirEntry, FileKind};
use backend_core::store::SessionFilter;
use backend_core::vfolder::{
    check_name, InvitationState, UsageMode, VFolder, VFolderAccess, VFolderInvitation, VFolderMount, VFolderOwner,
    VFolderPermission, RESERVED_NAMES,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// How long an upload token stays valid.
pub const UPLOAD_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(24);
/// How long a download token stays valid.
pub const DOWNLOAD_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(1);
/// Where sessions see folders.
pub const WORK_DIR: &str = "/home/work";

/// The caller of a folder operation: its keypair, its user and its resource policy.
#[derive(Debug, Clone)]
pub struct FolderCaller {
    /// The keypair that signed the request.
    pub keypair: KeyPair,
    /// Its user (the keypair's `user_id`).
    pub user: User,
    /// The keypair's resource policy (`None`: the policy is unknown, so no host is allowed).
    pub policy: Option<KeyPairResourcePolicy>,
}

impl FolderCaller {
    /// Loads the user and policy of a keypair. A keypair whose user record is missing acts as a user of the
    /// default domain without groups.
    pub async fn load(m: &Manager, keypair: &KeyPair) -> Result<Self> {
        let user = match m.store.user(&keypair.user_id).await? {
            Some(user) => user,
            None => User {
                email: keypair.user_id.clone(),
                username: keypair.user_id.clone(),
                domain: backend_core::store::fixtures::DEFAULT.into(),
                role: keypair.role,
                is_active: true,
                groups: Vec::new(),
                created_at: keypair.created_at,
            },
        };
        let policy = m.store.resource_policy(&keypair.resource_policy).await?;
        Ok(Self { keypair: keypair.clone(), user, policy })
    }

    /// The caller's e-mail.
    pub fn email(&self) -> &str {
        &self.user.email
    }

    fn is_admin(&self) -> bool {
        self.keypair.role.is_admin()
    }

    fn may_manage(&self, folder: &VFolder) -> bool {
        match &folder.owner {
            VFolderOwner::User { email } => email == self.email(),
            VFolderOwner::Group { domain, .. } => {
                self.keypair.role == Role::Superadmin || (self.is_admin() && *domain == self.user.domain)
            }
        }
    }
}

fn not_found(name: &str) -> Error {
    Error::VFolderNotFound { name: name.to_owned() }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
}

/// The folders a caller may use, each once with the caller's highest permission, by name.
pub async fn accessible(m: &Manager, c: &FolderCaller) -> Result<Vec<VFolderAccess>> {
    let mut found = m.store.accessible_vfolders(c.email()).await?;
    if c.is_admin() {
        let known: BTreeSet<VFolderId> = found.iter().map(|a| a.folder.id).collect();
        for folder in m.store.list_vfolders().await? {
            if !known.contains(&folder.id)
                && matches!(folder.owner, VFolderOwner::Group { .. })
                && c.may_manage(&folder)
            {
                found.push(VFolderAccess { folder, permission: VFolderPermission::ReadWriteDelete, is_owner: false });
            }
        }
        for access in &mut found {
            if matches!(access.folder.owner, VFolderOwner::Group { .. }) && c.may_manage(&access.folder) {
                access.permission = VFolderPermission::ReadWriteDelete;
            }
        }
    }
    found.sort_by(|a, b| a.folder.name.cmp(&b.folder.name).then(b.is_owner.cmp(&a.is_owner)));
    Ok(found)
}

/// The caller's folder of that name: the own one first, then the one with the highest permission.
pub async fn find(m: &Manager, c: &FolderCaller, name: &str) -> Result<VFolderAccess> {
    accessible(m, c)
        .await?
        .into_iter()
        .filter(|a| a.folder.name == name)
        .max_by_key(|a| (a.is_owner, a.permission))
        .ok_or_else(|| not_found(name))
}

fn require(access: &VFolderAccess, needed: VFolderPermission) -> Result<()> {
    if access.permission >= needed {
        Ok(())
    } else {
        Err(Error::Forbidden {
            msg: format!("your permission on {:?} is {}; this needs {}", access.folder.name, access.permission, needed),
        })
    }
}

fn require_manager(c: &FolderCaller, folder: &VFolder) -> Result<()> {
    if c.may_manage(folder) {
        Ok(())
    } else {
        Err(Error::Forbidden { msg: format!("only the owner of {:?} may do this", folder.name) })
    }
}

/// The hosts the caller may create folders on: the policy's allowed hosts that storage has, in policy order.
pub fn allowed_hosts(m: &Manager, c: &FolderCaller) -> Vec<String> {
    let have = m.storage.hosts();
    c.policy.iter().flat_map(|p| p.allowed_vfolder_hosts.iter()).filter(|h| have.contains(h)).cloned().collect()
}

/// `GET /folders/_/hosts`.
pub fn hosts(m: &Manager, c: &FolderCaller) -> VFolderHosts {
    let allowed = allowed_hosts(m, c);
    let volume_info = allowed
        .iter()
        .map(|h| {
            let info = VolumeInfo {
                backend: "vfs".into(),
                capabilities: vec!["vfolder".into()],
                usage: BTreeMap::new(),
                sftp_scaling_groups: Vec::new(),
            };
            (h.clone(), info)
        })
        .collect();
    let mut sorted = allowed.clone();
    sorted.sort();
    VFolderHosts { default: allowed.first().cloned(), allowed: sorted, volume_info }
}

/// Creates a folder (record and directory; a failure leaves neither).
pub async fn create(m: &Manager, c: &FolderCaller, req: CreateVFolder) -> Result<VFolderAccess> {
    check_name(&req.name)?;
    if req.unmanaged_path.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(Error::Unsupported { what: "unmanaged virtual folders".into() });
    }
    let allowed = allowed_hosts(m, c);
    let host = match req.host.filter(|h| !h.is_empty()) {
        Some(host) => {
            if !m.storage.hosts().contains(&host) {
                return Err(invalid(format!("no storage host {host:?}")));
            }
            if !allowed.contains(&host) {
                return Err(Error::Forbidden { msg: format!("you are not allowed to use the vfolder host {host:?}") });
            }
            host
        }
        None => allowed
            .first()
            .cloned()
            .ok_or_else(|| Error::Forbidden { msg: "no vfolder host is allowed by your resource policy".into() })?,
    };
    let owner = match req.group.filter(|g| !g.is_empty()) {
        Some(group) => {
            if req.name.starts_with('.') {
                return Err(invalid("dot-prefixed folders cannot be group folders"));
            }
            let domain = c.user.domain.clone();
            if m.store.group(&domain, &group).await?.is_none() {
                return Err(Error::NotFound { what: format!("group {group:?}") });
            }
            if !c.is_admin() && !c.user.groups.contains(&group) {
                return Err(Error::Forbidden { msg: format!("you are not a member of the group {group:?}") });
            }
            VFolderOwner::Group { domain, name: group }
        }
        None => VFolderOwner::User { email: c.email().to_owned() },
    };
    let max_count = c.policy.as_ref().map_or(0, |p| p.max_vfolder_count);
    if max_count > 0 {
        let own = accessible(m, c).await?.iter().filter(|a| a.is_owner).count();
        if own as u64 >= u64::from(max_count) {
            return Err(Error::QuotaExceeded {
                msg: format!("you have {own} virtual folders, the most your resource policy allows ({max_count})"),
            });
        }
    }
    if accessible(m, c).await?.iter().any(|a| a.folder.name == req.name && a.folder.owner == owner) {
        return Err(Error::VFolderAlreadyExists { name: req.name });
    }
    let max_size = match req.quota.as_ref().map(|q| q.bytes()).transpose()? {
        Some(0) | None => None,
        Some(n) => Some(n),
    };
    let folder = VFolder {
        id: VFolderId::new(),
        name: req.name,
        host,
        owner,
        usage_mode: req.usage_mode.unwrap_or(UsageMode::General),
        permission: req.permission.unwrap_or(VFolderPermission::ReadWrite),
        creator: c.email().to_owned(),
        max_size,
        cloneable: req.cloneable,
        created_at: Utc::now(),
    };
    // The record goes first: it is what enforces unique names, so a losing racer never touches the volume.
    m.store.insert_vfolder(&folder).await.map_err(|e| match e {
        Error::AlreadyExists { .. } => Error::VFolderAlreadyExists { name: folder.name.clone() },
        e => e,
    })?;
    if let Err(e) = m.storage.create_folder(&folder.host, folder.id).await {
        if let Err(undo) = m.store.delete_vfolder(folder.id).await {
            tracing::error!(folder = %folder.id, error = %undo, "could not remove the record of a folder whose directory failed");
        }
        return Err(e);
    }
    let is_owner = matches!(folder.owner, VFolderOwner::User { .. });
    let permission = if is_owner { VFolderPermission::ReadWriteDelete } else { folder.permission };
    Ok(VFolderAccess { folder, permission, is_owner })
}

/// The wire shape of a folder as one caller sees it (`used` for info: bytes and file count).
pub fn info_of(access: &VFolderAccess, used: Option<(u64, u64)>) -> VFolderInfo {
    let f = &access.folder;
    let (user, group, kind) = match &f.owner {
        VFolderOwner::User { email } => (Some(email.clone()), None, "user"),
        VFolderOwner::Group { name, .. } => (None, Some(name.clone()), "group"),
    };
    let created = f.created_at.to_rfc3339();
    VFolderInfo {
        id: f.id.0.simple().to_string(),
        name: f.name.clone(),
        quota_scope_id: f.owner.quota_scope(),
        host: f.host.clone(),
        status: "ready".into(),
        usage_mode: f.usage_mode,
        created_at: created.clone(),
        created,
        is_owner: access.is_owner,
        permission: access.permission,
        user: user.clone(),
        group: group.clone(),
        creator: f.creator.clone(),
        user_email: user,
        group_name: group,
        ownership_type: kind.into(),
        kind: kind.into(),
        cloneable: f.cloneable,
        max_files: 0,
        max_size: f.max_size.map(|b| b >> 20),
        cur_size: used.map_or(0, |u| u.0),
        num_files: used.map(|u| u.1),
        num_files_legacy: used.map(|u| u.1),
        used_bytes: used.map(|u| u.0),
    }
}

/// `GET /folders`.
pub async fn list(m: &Manager, c: &FolderCaller, q: &ListVFolders) -> Result<Vec<VFolderAccess>> {
    if q.all {
        return Err(invalid("deprecated use of the 'all' option"));
    }
    let mut found = match q.owner_user_email.as_deref().filter(|e| !e.is_empty() && *e != c.email()) {
        Some(email) => {
            if !c.is_admin() {
                return Err(Error::Forbidden { msg: "only admins may list other users' folders".into() });
            }
            let keypair = KeyPair { user_id: email.to_owned(), role: Role::User, ..c.keypair.clone() };
            let other = FolderCaller::load(m, &keypair).await?;
            if m.store.user(email).await?.is_none() {
                return Err(Error::NotFound { what: format!("user {email:?}") });
            }
            accessible(m, &other).await?
        }
        None => accessible(m, c).await?,
    };
    if let Some(group) = q.group_id.as_deref().filter(|g| !g.is_empty()) {
        found.retain(|a| match &a.folder.owner {
            VFolderOwner::User { .. } => true,
            VFolderOwner::Group { name, .. } => name == group,
        });
    }
    Ok(found)
}

async fn count_files(m: &Manager, f: &VFolder) -> Result<u64> {
    let mut count = 0;
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        for entry in m.storage.list_files(&f.host, f.id, &dir).await? {
            match entry.kind {
                FileKind::Directory => dirs.push(entry.path),
                _ => count += 1,
            }
        }
    }
    Ok(count)
}

/// `GET /folders/{name}`.
pub async fn info(m: &Manager, c: &FolderCaller, name: &str) -> Result<VFolderInfo> {
    let access = find(m, c, name).await?;
    let f = &access.folder;
    let used = m.storage.usage(&f.host, f.id).await?;
    let files = count_files(m, f).await?;
    Ok(info_of(&access, Some((used, files))))
}

/// `POST /folders/{name}/rename`: the owner (a group folder: an admin) only.
pub async fn rename(m: &Manager, c: &FolderCaller, name: &str, new_name: &str) -> Result<()> {
    check_name(new_name)?;
    let access = find(m, c, name).await?;
    require_manager(c, &access.folder)?;
    m.store.rename_vfolder(access.folder.id, new_name).await.map_err(|e| match e {
        Error::AlreadyExists { .. } => Error::VFolderAlreadyExists { name: new_name.to_owned() },
        e => e,
    })
}

/// `POST /folders/{name}/update-options`: the owner (a group folder: an admin) only.
pub async fn update_options(
    m: &Manager,
    c: &FolderCaller,
    name: &str,
    permission: Option<VFolderPermission>,
    cloneable: Option<bool>,
) -> Result<()> {
    let access = find(m, c, name).await?;
    require_manager(c, &access.folder)?;
    let f = &access.folder;
    m.store.update_vfolder_options(f.id, permission.unwrap_or(f.permission), cloneable.unwrap_or(f.cloneable)).await
}

async fn delete_folder(m: &Manager, c: &FolderCaller, access: VFolderAccess) -> Result<()> {
    let f = access.folder;
    require_manager(c, &f)?;
    let sessions = m.store.list_sessions(&SessionFilter::default()).await?;
    if let Some(s) =
        sessions.iter().find(|s| !s.status.is_final() && s.vfolder_mounts.iter().any(|mnt| mnt.vfolder_id == f.id))
    {
        return Err(Error::Conflict {
            msg: format!("the folder {:?} is mounted by the session {:?} ({})", f.name, s.name, s.status),
        });
    }
    m.store.delete_vfolder(f.id).await?;
    match m.storage.delete_folder(&f.host, f.id).await {
        Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => {
            // The files are still there: bring the record back so they stay reachable (its shares are lost).
            if let Err(undo) = m.store.insert_vfolder(&f).await {
                tracing::error!(folder = %f.id, error = %undo, "could not restore the record of an undeleted folder");
            }
            Err(e)
        }
    }
}

/// `DELETE /folders/{name}`.
pub async fn delete(m: &Manager, c: &FolderCaller, name: &str) -> Result<()> {
    let access = find(m, c, name).await?;
    delete_folder(m, c, access).await
}

/// `DELETE /folders` with an id.
pub async fn delete_by_id(m: &Manager, c: &FolderCaller, id: &str) -> Result<()> {
    let id: VFolderId = id.parse().map_err(|_| invalid(format!("{id:?} is not a folder id")))?;
    let access =
        accessible(m, c).await?.into_iter().find(|a| a.folder.id == id).ok_or_else(|| not_found(&id.to_string()))?;
    delete_folder(m, c, access).await
}

/// A folder the caller may write to.
pub async fn writable(m: &Manager, c: &FolderCaller, name: &str) -> Result<VFolder> {
    let access = find(m, c, name).await?;
    require(&access, VFolderPermission::ReadWrite)?;
    Ok(access.folder)
}

/// `POST /folders/{name}/mkdir`.
pub async fn mkdir(m: &Manager, c: &FolderCaller, name: &str, path: &str, parents: bool, exist_ok: bool) -> Result<()> {
    let f = writable(m, c, name).await?;
    m.storage.mkdir(&f.host, f.id, path, parents, exist_ok).await
}

fn file_item(e: &DirEntry) -> FileItem {
    let kind = match e.kind {
        FileKind::File => "FILE",
        FileKind::Directory => "DIRECTORY",
        FileKind::Symlink => "SYMLINK",
    };
    let octal = format!("{:o}", e.mode & 0o7777);
    FileItem {
        name: e.name.clone(),
        kind: kind.into(),
        size: e.size,
        mode: octal[octal.len().saturating_sub(3)..].to_owned(),
        created: e.created.unwrap_or(e.modified).to_rfc3339(),
        modified: e.modified.to_rfc3339(),
    }
}

fn filemode(e: &DirEntry) -> String {
    let mut s = String::with_capacity(10);
    s.push(match e.kind {
        FileKind::Directory => 'd',
        FileKind::Symlink => 'l',
        FileKind::File => '-',
    });
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn timestamp(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// `GET /folders/{name}/files`.
pub async fn list_files(m: &Manager, c: &FolderCaller, name: &str, path: &str) -> Result<FileList> {
    let f = find(m, c, name).await?.folder;
    let entries = m.storage.list_files(&f.host, f.id, path).await?;
    let legacy: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "filename": e.name,
                "size": e.size,
                "mode": filemode(e),
                "ctime": timestamp(e.created.unwrap_or(e.modified)),
                "atime": 0,
                "mtime": timestamp(e.modified),
            })
        })
        .collect();
    Ok(FileList { items: entries.iter().map(file_item).collect(), files: serde_json::Value::Array(legacy).to_string() })
}

/// `POST /folders/{name}/rename-file`.
pub async fn rename_file(m: &Manager, c: &FolderCaller, name: &str, path: &str, new_name: &str) -> Result<()> {
    let f = writable(m, c, name).await?;
    m.storage.rename_file(&f.host, f.id, path, new_name).await
}

/// `POST /folders/{name}/move-file`.
pub async fn move_file(m: &Manager, c: &FolderCaller, name: &str, src: &str, dst: &str) -> Result<()> {
    let f = writable(m, c, name).await?;
    m.storage.move_file(&f.host, f.id, src, dst).await
}

/// `DELETE /folders/{name}/delete-files`.
pub async fn delete_files(m: &Manager, c: &FolderCaller, name: &str, files: &[String], recursive: bool) -> Result<()> {
    let f = writable(m, c, name).await?;
    m.storage.delete_files(&f.host, f.id, files, recursive).await
}

/// Bytes used by every folder of a quota scope.
pub async fn quota_scope_usage(m: &Manager, scope: &str) -> Result<u64> {
    let mut used = 0u64;
    for f in m.store.list_vfolders().await? {
        if f.owner.quota_scope() == scope {
            used = used.saturating_add(m.storage.usage(&f.host, f.id).await?);
        }
    }
    Ok(used)
}

/// `POST /folders/{name}/request-upload`: checks the quotas and starts an upload; `base` is the transfer base URL.
pub async fn request_upload(
    m: &Manager,
    c: &FolderCaller,
    name: &str,
    path: &str,
    size: u64,
    base: &str,
) -> Result<TransferTicket> {
    let f = writable(m, c, name).await?;
    if let Some(limit) = c.policy.as_ref().and_then(|p| p.max_quota_scope_size) {
        let scope = f.owner.quota_scope();
        let used = quota_scope_usage(m, &scope).await?;
        if used.saturating_add(size) > limit {
            return Err(Error::QuotaExceeded {
                msg: format!("{scope} uses {used} of its {limit} bytes; {size} more do not fit"),
            });
        }
    }
    if let Some(limit) = f.max_size {
        let used = m.storage.usage(&f.host, f.id).await?;
        if used.saturating_add(size) > limit {
            return Err(Error::QuotaExceeded {
                msg: format!("the folder {:?} uses {used} of its {limit} bytes; {size} more do not fit", f.name),
            });
        }
    }
    let upload = m.storage.begin_upload(&f.host, f.id, path, size).await?;
    Ok(ticket(m, c, &f, TransferOp::Upload, upload.path, Some(upload.id), base))
}

/// Signs a token for one transfer and names the endpoint it is for.
fn ticket(
    m: &Manager,
    c: &FolderCaller,
    f: &VFolder,
    op: TransferOp,
    path: String,
    upload: Option<String>,
    base: &str,
) -> TransferTicket {
    let (ttl, endpoint) = match op {
        TransferOp::Upload => (UPLOAD_TOKEN_TTL, "upload"),
        TransferOp::Download => (DOWNLOAD_TOKEN_TTL, "download"),
    };
    let claims = TransferClaims {
        op,
        host: f.host.clone(),
        vfolder: f.id,
        path,
        upload,
        access_key: c.keypair.access_key.as_str().to_owned(),
        expires: (Utc::now() + ttl).timestamp(),
    };
    TransferTicket {
        token: token::sign(&m.config.transfer.secret, &claims),
        url: format!("{}/{endpoint}", base.trim_end_matches('/')),
    }
}

/// `POST /folders/{name}/request-download`: checks the file is there and signs a token for it.
pub async fn request_download(
    m: &Manager,
    c: &FolderCaller,
    name: &str,
    path: &str,
    archive: bool,
    base: &str,
) -> Result<TransferTicket> {
    if archive {
        return Err(Error::Unsupported { what: "downloading directories as archives".into() });
    }
    let f = find(m, c, name).await?.folder;
    // Opening checks the path now, so a bad one fails here rather than at the transfer.
    drop(m.storage.open_file(&f.host, f.id, path).await?);
    Ok(ticket(m, c, &f, TransferOp::Download, path.to_owned(), None, base))
}

/// `POST /folders/{name}/invite`: the owner of a user folder invites users by e-mail. Answers the e-mails invited
/// (an invitee with a pending invitation already is skipped).
pub async fn invite(
    m: &Manager,
    c: &FolderCaller,
    name: &str,
    permission: VFolderPermission,
    emails: &[String],
) -> Result<Vec<String>> {
    if name.starts_with('.') {
        return Err(Error::Forbidden { msg: "dot-prefixed folders cannot be shared".into() });
    }
    let access = find(m, c, name).await?;
    if !access.is_owner {
        return Err(Error::Forbidden { msg: format!("only the owner of {name:?} may invite") });
    }
    let mut invitees = Vec::new();
    for email in emails {
        if m.store.user(email).await?.is_none() {
            return Err(Error::NotFound { what: format!("user {email:?}") });
        }
        if email != c.email() && !invitees.contains(email) {
            invitees.push(email.clone());
        }
    }
    let now = Utc::now();
    let mut invited = Vec::new();
    for invitee in invitees {
        let invitation = VFolderInvitation {
            id: InvitationId::new(),
            vfolder: access.folder.id,
            inviter: c.email().to_owned(),
            invitee: invitee.clone(),
            permission,
            state: InvitationState::Pending,
            created_at: now,
            modified_at: now,
        };
        match m.store.insert_vfolder_invitation(&invitation).await {
            Ok(()) => invited.push(invitee),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(invited)
}

/// `GET /folders/invitations/list`: the caller's pending invitations.
pub async fn invitations(m: &Manager, c: &FolderCaller) -> Result<Vec<InvitationInfo>> {
    let mut out = Vec::new();
    for inv in m.store.pending_vfolder_invitations(c.email()).await? {
        let Some(folder) = m.store.vfolder(inv.vfolder).await? else { continue };
        out.push(InvitationInfo {
            id: inv.id.to_string(),
            inviter: inv.inviter,
            invitee: inv.invitee,
            perm: inv.permission,
            state: inv.state.as_str().into(),
            created_at: inv.created_at.to_rfc3339(),
            modified_at: inv.modified_at.to_rfc3339(),
            vfolder_id: inv.vfolder.to_string(),
            vfolder_name: folder.name,
        });
    }
    Ok(out)
}

async fn invitation(m: &Manager, id: &str) -> Result<VFolderInvitation> {
    let what = || Error::NotFound { what: format!("vfolder invitation {id:?}") };
    let parsed: InvitationId = id.parse().map_err(|_| what())?;
    m.store.vfolder_invitation(parsed).await?.ok_or_else(what)
}

/// `POST /folders/invitations/accept`: the invitee accepts; refused when they own a folder of that name.
pub async fn accept_invitation(m: &Manager, c: &FolderCaller, id: &str) -> Result<()> {
    let inv = invitation(m, id).await?;
    if inv.invitee != c.email() {
        return Err(Error::NotFound { what: format!("vfolder invitation {id:?}") });
    }
    let folder = m.store.vfolder(inv.vfolder).await?.ok_or_else(|| not_found(&inv.vfolder.to_string()))?;
    if accessible(m, c).await?.iter().any(|a| a.folder.name == folder.name && a.folder.id != folder.id) {
        return Err(Error::VFolderAlreadyExists { name: folder.name });
    }
    m.store.answer_vfolder_invitation(inv.id, InvitationState::Accepted, Utc::now()).await?;
    Ok(())
}

/// `DELETE /folders/invitations/delete`: the invitee rejects or the inviter withdraws a pending invitation.
pub async fn delete_invitation(m: &Manager, c: &FolderCaller, id: &str) -> Result<()> {
    let inv = invitation(m, id).await?;
    let state = if inv.invitee == c.email() {
        InvitationState::Rejected
    } else if inv.inviter == c.email() {
        InvitationState::Canceled
    } else {
        return Err(Error::Forbidden { msg: "this invitation is someone else's".into() });
    };
    m.store.answer_vfolder_invitation(inv.id, state, Utc::now()).await?;
    Ok(())
}

/// `POST /folders/{name}/share`: an admin shares a group folder directly with members of its group.
pub async fn share(
    m: &Manager,
    c: &FolderCaller,
    name: &str,
    permission: VFolderPermission,
    emails: &[String],
) -> Result<Vec<String>> {
    let f = find(m, c, name).await?.folder;
    let VFolderOwner::Group { name: group, .. } = &f.owner else {
        return Err(invalid("only project (group) folders can be shared directly; invite users to a user folder"));
    };
    require_manager(c, &f)?;
    let mut shared = Vec::new();
    for email in emails {
        let user = m.store.user(email).await?.ok_or_else(|| Error::NotFound { what: format!("user {email:?}") })?;
        if !user.groups.contains(group) {
            return Err(invalid(format!("{email} is not a member of the group {group:?}")));
        }
        shared.push(email.clone());
    }
    for email in &shared {
        m.store.set_vfolder_share(f.id, email, Some(permission)).await?;
    }
    Ok(shared)
}

/// `DELETE /folders/{name}/unshare`: an admin (for group folders) or the owner (for user folders) removes shares.
pub async fn unshare(m: &Manager, c: &FolderCaller, name: &str, emails: &[String]) -> Result<Vec<String>> {
    let f = find(m, c, name).await?.folder;
    require_manager(c, &f)?;
    let current: BTreeSet<String> = m.store.vfolder_shares(f.id).await?.into_iter().map(|(e, _)| e).collect();
    let mut removed = Vec::new();
    for email in emails {
        if current.contains(email) {
            m.store.set_vfolder_share(f.id, email, None).await?;
            removed.push(email.clone());
        }
    }
    Ok(removed)
}

/// `POST /folders/{name}/leave`: a user the folder is shared with drops their share (an admin may name another).
pub async fn leave(m: &Manager, c: &FolderCaller, name: &str, shared_user: Option<&str>) -> Result<()> {
    let access = find(m, c, name).await?;
    let who = match shared_user.filter(|u| !u.is_empty()) {
        Some(other) if other != c.email() => {
            require_manager(c, &access.folder)?;
            other.to_owned()
        }
        _ => c.email().to_owned(),
    };
    let shares = m.store.vfolder_shares(access.folder.id).await?;
    if !shares.iter().any(|(e, _)| *e == who) {
        return Err(invalid(format!("{name:?} is not shared with {who}: there is nothing to leave")));
    }
    m.store.set_vfolder_share(access.folder.id, &who, None).await
}

fn kernel_path(name: &str, mapped: Option<&str>) -> Result<String> {
    let Some(target) = mapped.filter(|t| !t.is_empty()) else { return Ok(format!("{WORK_DIR}/{name}")) };
    let bad = |why: &str| invalid(format!("mount path {target:?} of the folder {name:?} {why}"));
    let relative = if let Some(rest) = target.strip_prefix('/') {
        rest.strip_prefix("home/work/").ok_or_else(|| bad("must be under /home/work"))?
    } else {
        target
    };
    let relative = relative.trim_end_matches('/');
    if relative.is_empty() {
        return Err(bad("must name a directory inside /home/work"));
    }
    let parts: Vec<&str> = relative.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(bad("must not contain '..', '.' or empty components"));
    }
    if RESERVED_NAMES.contains(&parts[0]) {
        return Err(bad("is reserved"));
    }
    Ok(format!("{WORK_DIR}/{relative}"))
}

/// Resolves a session's folders: the names in `mounts` and the keys of `mount_map`, each visible to the owner's
/// user (else `vfolder-not-found` naming it), mounted at `/home/work/<name>` unless `mount_map` maps it elsewhere
/// (absolute under `/home/work`, or relative to it; else 400), with the owner's permission.
pub async fn resolve_mounts(
    m: &Manager,
    owner: &KeyPair,
    mounts: &[String],
    mount_map: &BTreeMap<String, String>,
) -> Result<Vec<VFolderMount>> {
    let mut names: Vec<&str> = Vec::new();
    for name in mounts.iter().map(String::as_str).chain(mount_map.keys().map(String::as_str)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let caller = FolderCaller::load(m, owner).await?;
    let mut out: Vec<VFolderMount> = Vec::with_capacity(names.len());
    for name in names {
        let access = find(m, &caller, name).await?;
        let kernel_path = kernel_path(name, mount_map.get(name).map(String::as_str))?;
        if out.iter().any(|o| o.kernel_path == kernel_path) {
            return Err(invalid(format!("two folders would be mounted at {kernel_path:?} (the second: {name:?})")));
        }
        let f = &access.folder;
        out.push(VFolderMount {
            name: name.to_owned(),
            vfolder_id: f.id,
            host_path: m.storage.folder_path(&f.host, f.id).await?,
            kernel_path,
            permission: access.permission,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_paths() {
        assert_eq!(kernel_path("data", None).unwrap(), "/home/work/data");
        assert_eq!(kernel_path("data", Some("/home/work/x/y")).unwrap(), "/home/work/x/y");
        assert_eq!(kernel_path("data", Some("rel")).unwrap(), "/home/work/rel");
        for bad in ["/etc", "/home/work/", "a/../b", "/home/work/.ssh", "./a", "/home/workx"] {
            assert!(kernel_path("data", Some(bad)).is_err(), "{bad}");
        }
    }
}
