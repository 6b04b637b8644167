//! The virtual folder service: who may see and change which folder, quotas, sharing, transfer tokens, and the
//! resolution of a session's mounts. The `/folders` routes ([`crate::api::folders`]) are thin wrappers around it.
//! Its operations are [`Manager`] methods taking the request's [`RequestContext`]: the folder routes act as the
//! caller, a session's mounts as the session's owner.
//!
//! Visibility follows Backend.AI: a user sees their own folders, those of the groups they belong to and those shared
//! with them; admins also see every group folder of their domain (superadmins: of every domain) with `wd`. A folder
//! the caller cannot see is `vfolder-not-found` (404), never 403; a visible folder the caller may not change is 403.

use crate::service::context::{Acting, RequestContext};
use crate::Manager;
use backend_core::api::vfolder::{
    CreateVFolder, FileItem, FileList, InvitationInfo, ListVFolders, TransferTicket, VFolderHosts, VFolderInfo,
    VolumeInfo,
};
use backend_core::error::{Error, Result};
use backend_core::ids::{InvitationId, VFolderId};
use backend_core::model::{KeyPair, Role};
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

impl Manager {
    /// The folders a caller may use, each once with the caller's highest permission, by name.
    pub async fn accessible_folders(&self, c: &RequestContext) -> Result<Vec<VFolderAccess>> {
        let mut found = self.store.accessible_vfolders(c.email()).await?;
        if c.is_admin() {
            let known: BTreeSet<VFolderId> = found.iter().map(|a| a.folder.id).collect();
            for folder in self.store.list_vfolders().await? {
                if !known.contains(&folder.id)
                    && matches!(folder.owner, VFolderOwner::Group { .. })
                    && may_manage(c, &folder)
                {
                    found.push(VFolderAccess {
                        folder,
                        permission: VFolderPermission::ReadWriteDelete,
                        is_owner: false,
                    });
                }
            }
            for access in &mut found {
                if matches!(access.folder.owner, VFolderOwner::Group { .. }) && may_manage(c, &access.folder) {
                    access.permission = VFolderPermission::ReadWriteDelete;
                }
            }
        }
        found.sort_by(|a, b| a.folder.name.cmp(&b.folder.name).then(b.is_owner.cmp(&a.is_owner)));
        Ok(found)
    }

    /// The caller's folder of that name: the own one first, then the one with the highest permission.
    pub async fn find_folder(&self, c: &RequestContext, name: &str) -> Result<VFolderAccess> {
        named(&self.accessible_folders(c).await?, name).cloned()
    }

    /// The hosts the caller may create folders on: the policy's allowed hosts that storage has, in policy order.
    pub fn allowed_folder_hosts(&self, c: &RequestContext) -> Vec<String> {
        let have = self.storage.hosts();
        c.policy.iter().flat_map(|p| p.allowed_vfolder_hosts.iter()).filter(|h| have.contains(h)).cloned().collect()
    }

    /// `GET /folders/_/hosts`.
    pub fn folder_hosts(&self, c: &RequestContext) -> VFolderHosts {
        let allowed = self.allowed_folder_hosts(c);
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
    pub async fn create_folder(&self, c: &RequestContext, req: CreateVFolder) -> Result<VFolderAccess> {
        check_name(&req.name)?;
        if req.unmanaged_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::Unsupported { what: "unmanaged virtual folders".into() });
        }
        let allowed = self.allowed_folder_hosts(c);
        let host = match req.host.filter(|h| !h.is_empty()) {
            Some(host) => {
                if !self.storage.hosts().contains(&host) {
                    return Err(invalid(format!("no storage host {host:?}")));
                }
                if !allowed.contains(&host) {
                    return Err(Error::Forbidden {
                        msg: format!("you are not allowed to use the vfolder host {host:?}"),
                    });
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
                let domain = c.domain().to_owned();
                if self.store.group(&domain, &group).await?.is_none() {
                    return Err(Error::NotFound { what: format!("group {group:?}") });
                }
                if !c.is_admin() && !c.groups().contains(&group) {
                    return Err(Error::Forbidden { msg: format!("you are not a member of the group {group:?}") });
                }
                VFolderOwner::Group { domain, name: group }
            }
            None => VFolderOwner::User { email: c.email().to_owned() },
        };
        let visible = self.accessible_folders(c).await?;
        let max_count = c.policy.as_ref().map_or(0, |p| p.max_vfolder_count);
        if max_count > 0 {
            let own = visible.iter().filter(|a| a.is_owner).count();
            if own as u64 >= u64::from(max_count) {
                return Err(Error::QuotaExceeded {
                    msg: format!("you have {own} virtual folders, the most your resource policy allows ({max_count})"),
                });
            }
        }
        if visible.iter().any(|a| a.folder.name == req.name && a.folder.owner == owner) {
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
        self.store.insert_vfolder(&folder).await.map_err(|e| match e {
            Error::AlreadyExists { .. } => Error::VFolderAlreadyExists { name: folder.name.clone() },
            e => e,
        })?;
        if let Err(e) = self.storage.create_folder(&folder.host, folder.id).await {
            if let Err(undo) = self.store.delete_vfolder(folder.id).await {
                tracing::error!(folder = %folder.id, error = %undo, "could not remove the record of a folder whose directory failed");
            }
            return Err(e);
        }
        let is_owner = matches!(folder.owner, VFolderOwner::User { .. });
        let permission = if is_owner { VFolderPermission::ReadWriteDelete } else { folder.permission };
        Ok(VFolderAccess { folder, permission, is_owner })
    }

    /// `GET /folders`.
    pub async fn list_folders(&self, c: &RequestContext, q: &ListVFolders) -> Result<Vec<VFolderAccess>> {
        if q.all {
            return Err(invalid("deprecated use of the 'all' option"));
        }
        let mut found = match q.owner_user_email.as_deref().filter(|e| !e.is_empty() && *e != c.email()) {
            Some(email) => {
                if !c.is_admin() {
                    return Err(Error::Forbidden { msg: "only admins may list other users' folders".into() });
                }
                let user = self.store.user(email).await?;
                let user = user.ok_or_else(|| Error::NotFound { what: format!("user {email:?}") })?;
                // The other user, seen as a plain user under the caller's resource policy.
                let owner = KeyPair { user_id: email.to_owned(), role: Role::User, ..c.owner().clone() };
                let acting = Acting { caller: c.acting.caller.clone(), owner };
                let other = RequestContext { acting, user: Some(user), policy: c.policy.clone() };
                self.accessible_folders(&other).await?
            }
            None => self.accessible_folders(c).await?,
        };
        if let Some(group) = q.group_id.as_deref().filter(|g| !g.is_empty()) {
            found.retain(|a| match &a.folder.owner {
                VFolderOwner::User { .. } => true,
                VFolderOwner::Group { name, .. } => name == group,
            });
        }
        Ok(found)
    }

    async fn count_folder_files(&self, f: &VFolder) -> Result<u64> {
        let mut count = 0;
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            for entry in self.storage.list_files(&f.host, f.id, &dir).await? {
                match entry.kind {
                    FileKind::Directory => dirs.push(entry.path),
                    _ => count += 1,
                }
            }
        }
        Ok(count)
    }

    /// `GET /folders/{name}`.
    pub async fn folder_info(&self, c: &RequestContext, name: &str) -> Result<VFolderInfo> {
        let access = self.find_folder(c, name).await?;
        let f = &access.folder;
        let bytes = self.storage.usage(&f.host, f.id).await?;
        let files = self.count_folder_files(f).await?;
        Ok(info_of(&access, Some(FolderUsage { bytes, files })))
    }

    /// `POST /folders/{name}/rename`: the owner (a group folder: an admin) only.
    pub async fn rename_folder(&self, c: &RequestContext, name: &str, new_name: &str) -> Result<()> {
        check_name(new_name)?;
        let access = self.find_folder(c, name).await?;
        require_manager(c, &access.folder)?;
        self.store.rename_vfolder(access.folder.id, new_name).await.map_err(|e| match e {
            Error::AlreadyExists { .. } => Error::VFolderAlreadyExists { name: new_name.to_owned() },
            e => e,
        })
    }

    /// `POST /folders/{name}/update-options`: the owner (a group folder: an admin) only.
    pub async fn update_folder_options(
        &self,
        c: &RequestContext,
        name: &str,
        permission: Option<VFolderPermission>,
        cloneable: Option<bool>,
    ) -> Result<()> {
        let access = self.find_folder(c, name).await?;
        require_manager(c, &access.folder)?;
        let f = &access.folder;
        self.store
            .update_vfolder_options(f.id, permission.unwrap_or(f.permission), cloneable.unwrap_or(f.cloneable))
            .await
    }

    async fn remove_folder(&self, c: &RequestContext, access: VFolderAccess) -> Result<()> {
        let f = access.folder;
        require_manager(c, &f)?;
        let sessions = self.store.list_sessions(&SessionFilter::default()).await?;
        if let Some(s) =
            sessions.iter().find(|s| !s.status.is_final() && s.vfolder_mounts.iter().any(|mnt| mnt.vfolder_id == f.id))
        {
            return Err(Error::Conflict {
                msg: format!("the folder {:?} is mounted by the session {:?} ({})", f.name, s.name, s.status),
            });
        }
        self.store.delete_vfolder(f.id).await?;
        match self.storage.delete_folder(&f.host, f.id).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => {
                // The files are still there: bring the record back so they stay reachable (its shares are lost).
                if let Err(undo) = self.store.insert_vfolder(&f).await {
                    tracing::error!(folder = %f.id, error = %undo, "could not restore the record of an undeleted folder");
                }
                Err(e)
            }
        }
    }

    /// `DELETE /folders/{name}`.
    pub async fn delete_folder(&self, c: &RequestContext, name: &str) -> Result<()> {
        let access = self.find_folder(c, name).await?;
        self.remove_folder(c, access).await
    }

    /// `DELETE /folders` with an id.
    pub async fn delete_folder_by_id(&self, c: &RequestContext, id: &str) -> Result<()> {
        let id: VFolderId = id.parse().map_err(|_| invalid(format!("{id:?} is not a folder id")))?;
        let access = self
            .accessible_folders(c)
            .await?
            .into_iter()
            .find(|a| a.folder.id == id)
            .ok_or_else(|| not_found(&id.to_string()))?;
        self.remove_folder(c, access).await
    }

    /// A folder the caller may write to.
    pub async fn writable_folder(&self, c: &RequestContext, name: &str) -> Result<VFolder> {
        let access = self.find_folder(c, name).await?;
        require(&access, VFolderPermission::ReadWrite)?;
        Ok(access.folder)
    }

    /// `POST /folders/{name}/mkdir`.
    pub async fn make_folder_dir(
        &self,
        c: &RequestContext,
        name: &str,
        path: &str,
        parents: bool,
        exist_ok: bool,
    ) -> Result<()> {
        let f = self.writable_folder(c, name).await?;
        self.storage.mkdir(&f.host, f.id, path, parents, exist_ok).await
    }

    /// `GET /folders/{name}/files`.
    pub async fn list_folder_files(&self, c: &RequestContext, name: &str, path: &str) -> Result<FileList> {
        let f = self.find_folder(c, name).await?.folder;
        let entries = self.storage.list_files(&f.host, f.id, path).await?;
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
        Ok(FileList {
            items: entries.iter().map(file_item).collect(),
            files: serde_json::Value::Array(legacy).to_string(),
        })
    }

    /// `POST /folders/{name}/rename-file`.
    pub async fn rename_folder_file(&self, c: &RequestContext, name: &str, path: &str, new_name: &str) -> Result<()> {
        let f = self.writable_folder(c, name).await?;
        self.storage.rename_file(&f.host, f.id, path, new_name).await
    }

    /// `POST /folders/{name}/move-file`.
    pub async fn move_folder_file(&self, c: &RequestContext, name: &str, src: &str, dst: &str) -> Result<()> {
        let f = self.writable_folder(c, name).await?;
        self.storage.move_file(&f.host, f.id, src, dst).await
    }

    /// `DELETE /folders/{name}/delete-files`.
    pub async fn delete_folder_files(
        &self,
        c: &RequestContext,
        name: &str,
        files: &[String],
        recursive: bool,
    ) -> Result<()> {
        let f = self.writable_folder(c, name).await?;
        self.storage.delete_files(&f.host, f.id, files, recursive).await
    }

    /// Bytes used by every folder of a quota scope.
    pub async fn quota_scope_usage(&self, scope: &str) -> Result<u64> {
        let mut used = 0u64;
        for f in self.store.list_vfolders().await? {
            if f.owner.quota_scope() == scope {
                used = used.saturating_add(self.storage.usage(&f.host, f.id).await?);
            }
        }
        Ok(used)
    }

    /// `POST /folders/{name}/request-upload`: checks the quotas and starts an upload; `base` is the transfer base URL.
    pub async fn request_upload(
        &self,
        c: &RequestContext,
        name: &str,
        path: &str,
        size: u64,
        base: &str,
    ) -> Result<TransferTicket> {
        let f = self.writable_folder(c, name).await?;
        if let Some(limit) = c.policy.as_ref().and_then(|p| p.max_quota_scope_size) {
            let scope = f.owner.quota_scope();
            let used = self.quota_scope_usage(&scope).await?;
            if used.saturating_add(size) > limit {
                return Err(Error::QuotaExceeded {
                    msg: format!("{scope} uses {used} of its {limit} bytes; {size} more do not fit"),
                });
            }
        }
        if let Some(limit) = f.max_size {
            let used = self.storage.usage(&f.host, f.id).await?;
            if used.saturating_add(size) > limit {
                return Err(Error::QuotaExceeded {
                    msg: format!("the folder {:?} uses {used} of its {limit} bytes; {size} more do not fit", f.name),
                });
            }
        }
        let upload = self.storage.begin_upload(&f.host, f.id, path, size).await?;
        Ok(self.transfer_ticket(c, &f, TransferOp::Upload, upload.path, Some(upload.id), base))
    }

    /// Signs a token for one transfer and names the endpoint it is for.
    fn transfer_ticket(
        &self,
        c: &RequestContext,
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
            access_key: c.owner().access_key.as_str().to_owned(),
            expires: (Utc::now() + ttl).timestamp(),
        };
        TransferTicket {
            token: token::sign(&self.config.transfer.secret, &claims),
            url: format!("{}/{endpoint}", base.trim_end_matches('/')),
        }
    }

    /// `POST /folders/{name}/request-download`: checks the file is there and signs a token for it.
    pub async fn request_download(
        &self,
        c: &RequestContext,
        name: &str,
        path: &str,
        archive: bool,
        base: &str,
    ) -> Result<TransferTicket> {
        if archive {
            return Err(Error::Unsupported { what: "downloading directories as archives".into() });
        }
        let f = self.find_folder(c, name).await?.folder;
        // Opening checks the path now, so a bad one fails here rather than at the transfer.
        drop(self.storage.open_file(&f.host, f.id, path).await?);
        Ok(self.transfer_ticket(c, &f, TransferOp::Download, path.to_owned(), None, base))
    }

    /// `POST /folders/{name}/invite`: the owner of a user folder invites users by e-mail. Answers the e-mails invited
    /// (an invitee with a pending invitation already is skipped).
    pub async fn invite_to_folder(
        &self,
        c: &RequestContext,
        name: &str,
        permission: VFolderPermission,
        emails: &[String],
    ) -> Result<Vec<String>> {
        if name.starts_with('.') {
            return Err(Error::Forbidden { msg: "dot-prefixed folders cannot be shared".into() });
        }
        let access = self.find_folder(c, name).await?;
        if !access.is_owner {
            return Err(Error::Forbidden { msg: format!("only the owner of {name:?} may invite") });
        }
        let mut invitees = Vec::new();
        for email in emails {
            if self.store.user(email).await?.is_none() {
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
            match self.store.insert_vfolder_invitation(&invitation).await {
                Ok(()) => invited.push(invitee),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(invited)
    }

    /// `GET /folders/invitations/list`: the caller's pending invitations.
    pub async fn folder_invitations(&self, c: &RequestContext) -> Result<Vec<InvitationInfo>> {
        let mut out = Vec::new();
        for inv in self.store.pending_vfolder_invitations(c.email()).await? {
            let Some(folder) = self.store.vfolder(inv.vfolder).await? else { continue };
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

    async fn invitation(&self, id: &str) -> Result<VFolderInvitation> {
        let what = || Error::NotFound { what: format!("vfolder invitation {id:?}") };
        let parsed: InvitationId = id.parse().map_err(|_| what())?;
        self.store.vfolder_invitation(parsed).await?.ok_or_else(what)
    }

    /// `POST /folders/invitations/accept`: the invitee accepts; refused when they own a folder of that name.
    pub async fn accept_invitation(&self, c: &RequestContext, id: &str) -> Result<()> {
        let inv = self.invitation(id).await?;
        if inv.invitee != c.email() {
            return Err(Error::NotFound { what: format!("vfolder invitation {id:?}") });
        }
        let folder = self.store.vfolder(inv.vfolder).await?.ok_or_else(|| not_found(&inv.vfolder.to_string()))?;
        if self.accessible_folders(c).await?.iter().any(|a| a.folder.name == folder.name && a.folder.id != folder.id) {
            return Err(Error::VFolderAlreadyExists { name: folder.name });
        }
        self.store.answer_vfolder_invitation(inv.id, InvitationState::Accepted, Utc::now()).await?;
        Ok(())
    }

    /// `DELETE /folders/invitations/delete`: the invitee rejects or the inviter withdraws a pending invitation.
    pub async fn delete_invitation(&self, c: &RequestContext, id: &str) -> Result<()> {
        let inv = self.invitation(id).await?;
        let state = if inv.invitee == c.email() {
            InvitationState::Rejected
        } else if inv.inviter == c.email() {
            InvitationState::Canceled
        } else {
            return Err(Error::Forbidden { msg: "this invitation is someone else's".into() });
        };
        self.store.answer_vfolder_invitation(inv.id, state, Utc::now()).await?;
        Ok(())
    }

    /// `POST /folders/{name}/share`: an admin shares a group folder directly with members of its group.
    pub async fn share_folder(
        &self,
        c: &RequestContext,
        name: &str,
        permission: VFolderPermission,
        emails: &[String],
    ) -> Result<Vec<String>> {
        let f = self.find_folder(c, name).await?.folder;
        let VFolderOwner::Group { name: group, .. } = &f.owner else {
            return Err(invalid("only project (group) folders can be shared directly; invite users to a user folder"));
        };
        require_manager(c, &f)?;
        let mut shared = Vec::new();
        for email in emails {
            let user =
                self.store.user(email).await?.ok_or_else(|| Error::NotFound { what: format!("user {email:?}") })?;
            if !user.groups.contains(group) {
                return Err(invalid(format!("{email} is not a member of the group {group:?}")));
            }
            shared.push(email.clone());
        }
        for email in &shared {
            self.store.set_vfolder_share(f.id, email, Some(permission)).await?;
        }
        Ok(shared)
    }

    /// `DELETE /folders/{name}/unshare`: an admin (for group folders) or the owner (for user folders) removes shares.
    pub async fn unshare_folder(&self, c: &RequestContext, name: &str, emails: &[String]) -> Result<Vec<String>> {
        let f = self.find_folder(c, name).await?.folder;
        require_manager(c, &f)?;
        let current: BTreeSet<String> = self.store.vfolder_shares(f.id).await?.into_iter().map(|(e, _)| e).collect();
        let mut removed = Vec::new();
        for email in emails {
            if current.contains(email) {
                self.store.set_vfolder_share(f.id, email, None).await?;
                removed.push(email.clone());
            }
        }
        Ok(removed)
    }

    /// `POST /folders/{name}/leave`: a user the folder is shared with drops their share (an admin may name another).
    pub async fn leave_folder(&self, c: &RequestContext, name: &str, shared_user: Option<&str>) -> Result<()> {
        let access = self.find_folder(c, name).await?;
        let who = match shared_user.filter(|u| !u.is_empty()) {
            Some(other) if other != c.email() => {
                require_manager(c, &access.folder)?;
                other.to_owned()
            }
            _ => c.email().to_owned(),
        };
        let shares = self.store.vfolder_shares(access.folder.id).await?;
        if !shares.iter().any(|(e, _)| *e == who) {
            return Err(invalid(format!("{name:?} is not shared with {who}: there is nothing to leave")));
        }
        self.store.set_vfolder_share(access.folder.id, &who, None).await
    }

    /// Resolves a session's folders: the names in `mounts` and the keys of `mount_map`, each visible to the owner's
    /// user (else `vfolder-not-found` naming it), mounted at `/home/work/<name>` unless `mount_map` maps it elsewhere
    /// (absolute under `/home/work`, or relative to it; else 400), with the owner's permission.
    pub async fn resolve_mounts(
        &self,
        owner: &RequestContext,
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
        let visible = self.accessible_folders(owner).await?;
        let mut out: Vec<VFolderMount> = Vec::with_capacity(names.len());
        for name in names {
            let access = named(&visible, name)?;
            let kernel_path = kernel_path(name, mount_map.get(name).map(String::as_str))?;
            if out.iter().any(|o| o.kernel_path == kernel_path) {
                return Err(invalid(format!("two folders would be mounted at {kernel_path:?} (the second: {name:?})")));
            }
            let f = &access.folder;
            out.push(VFolderMount {
                name: name.to_owned(),
                vfolder_id: f.id,
                host_path: self.storage.folder_path(&f.host, f.id).await?,
                kernel_path,
                permission: access.permission,
            });
        }
        Ok(out)
    }
}

/// The folder of that name among `visible`: the own one first, then the one with the highest permission.
fn named<'a>(visible: &'a [VFolderAccess], name: &str) -> Result<&'a VFolderAccess> {
    visible
        .iter()
        .filter(|a| a.folder.name == name)
        .max_by_key(|a| (a.is_owner, a.permission))
        .ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> Error {
    Error::VFolderNotFound { name: name.to_owned() }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
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

/// True when the caller may manage a folder: its owner, or an admin of a group folder's domain (a superadmin: of
/// any domain).
fn may_manage(c: &RequestContext, folder: &VFolder) -> bool {
    match &folder.owner {
        VFolderOwner::User { email } => email == c.email(),
        VFolderOwner::Group { domain, .. } => c.is_superadmin() || (c.is_admin() && *domain == c.domain()),
    }
}

fn require_manager(c: &RequestContext, folder: &VFolder) -> Result<()> {
    if may_manage(c, folder) {
        Ok(())
    } else {
        Err(Error::Forbidden { msg: format!("only the owner of {:?} may do this", folder.name) })
    }
}

/// What a folder holds, measured on its volume.
#[derive(Debug, Clone, Copy)]
pub struct FolderUsage {
    /// Bytes used.
    pub bytes: u64,
    /// Files (directories not counted).
    pub files: u64,
}

/// The wire shape of a folder as one caller sees it (`used` only for `GET /folders/{name}`, which measures it).
pub fn info_of(access: &VFolderAccess, used: Option<FolderUsage>) -> VFolderInfo {
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
        cur_size: used.map_or(0, |u| u.bytes),
        num_files: used.map(|u| u.files),
        num_files_legacy: used.map(|u| u.files),
        used_bytes: used.map(|u| u.bytes),
    }
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
