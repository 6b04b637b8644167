//! `VirtualFolder`: the folders a caller may use, own, was invited to, or shares with its projects.

use super::{gql, paginate, GResult, Gql};
use crate::service::context::RequestContext;
use async_graphql::{Context, Object, SimpleObject};
use backend_core::query::ownership_type;
use backend_core::vfolder::{VFolderAccess, VFolderOwner};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A virtual folder as one caller sees it (the `VirtualFolder` type). Users and groups have no UUIDs here: `user`
/// and `group` answer `null`; `user_email` and `group_name` name the owner.
pub struct VirtualFolder(pub(super) VFolderAccess);

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl VirtualFolder {
    async fn id(&self) -> Uuid {
        self.0.folder.id.0
    }
    async fn host(&self) -> String {
        self.0.folder.host.clone()
    }
    async fn name(&self) -> String {
        self.0.folder.name.clone()
    }
    async fn user(&self) -> Option<Uuid> {
        None
    }
    async fn user_email(&self) -> Option<String> {
        match &self.0.folder.owner {
            VFolderOwner::User { email } => Some(email.clone()),
            VFolderOwner::Group { .. } => None,
        }
    }
    async fn group(&self) -> Option<Uuid> {
        None
    }
    async fn group_name(&self) -> Option<String> {
        match &self.0.folder.owner {
            VFolderOwner::Group { name, .. } => Some(name.clone()),
            VFolderOwner::User { .. } => None,
        }
    }
    async fn creator(&self) -> String {
        self.0.folder.creator.clone()
    }
    async fn status(&self) -> String {
        "ready".into()
    }
    async fn unmanaged_path(&self) -> Option<String> {
        None
    }
    async fn usage_mode(&self) -> String {
        self.0.folder.usage_mode.as_str().into()
    }
    async fn permission(&self) -> String {
        self.0.permission.as_str().into()
    }
    async fn ownership_type(&self) -> String {
        ownership_type(&self.0.folder).into()
    }
    async fn max_files(&self) -> i32 {
        0
    }
    /// MiB, as Backend.AI.
    async fn max_size(&self) -> Option<f64> {
        self.0.folder.max_size.map(|b| (b >> 20) as f64)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.folder.created_at
    }
    async fn last_used(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn num_files(&self) -> Option<i32> {
        None
    }
    /// Bytes used, read from the volume.
    async fn cur_size(&self, ctx: &Context<'_>) -> GResult<f64> {
        let f = &self.0.folder;
        Ok(gql(ctx).m.storage.usage(&f.host, f.id).await? as f64)
    }
    async fn cloneable(&self) -> bool {
        self.0.folder.cloneable
    }
}

/// A page of virtual folders.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct VirtualFolderList {
    pub(super) items: Vec<VirtualFolder>,
    pub(super) total_count: i32,
}

/// Which of the visible folders a list query answers.
#[derive(Clone, Copy)]
pub(super) enum FolderScope {
    All,
    Own,
    Invited,
    Project,
}

pub(super) async fn vfolders(
    g: &Gql,
    scope: FolderScope,
    access_key: Option<&str>,
    page: (i32, i32, Option<&str>, Option<&str>),
) -> GResult<VirtualFolderList> {
    let (limit, offset, filter, order) = page;
    let caller = RequestContext::resolve(&g.m, &g.caller, access_key).await?;
    let mut found = g.m.accessible_folders(&caller).await?;
    found.retain(|a| match scope {
        FolderScope::All => true,
        FolderScope::Own => a.is_owner,
        FolderScope::Invited => !a.is_owner && matches!(a.folder.owner, VFolderOwner::User { .. }),
        FolderScope::Project => matches!(a.folder.owner, VFolderOwner::Group { .. }),
    });
    let (page, total_count) = paginate(found, filter, order, limit, offset)?;
    Ok(VirtualFolderList { items: page.into_iter().map(VirtualFolder).collect(), total_count })
}
