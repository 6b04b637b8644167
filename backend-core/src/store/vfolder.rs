//! [`VFolderStore`]: the records of virtual folders, their shares and the invitations to them.

use crate::error::Result;
use crate::ids::{InvitationId, VFolderId};
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderPermission};
use chrono::{DateTime, Utc};

store_trait! {
    /// Virtual folders, shares and invitations.
    pub trait VFolderStore {
        /// Adds a folder. `AlreadyExists` when its owner has a folder of that name, `NotFound` when the owning user
        /// or group is unknown.
        async fn insert_vfolder(&self, folder: &VFolder) -> Result<()>;
        /// A folder by id.
        async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>>;
        /// Every folder, by owner then name (for admins).
        async fn list_vfolders(&self) -> Result<Vec<VFolder>>;
        /// The folders a user may use, each with the user's permission, by name: the user's own (`wd`), those of the
        /// groups the user belongs to (the folder's `permission`), and those shared with the user (the shared
        /// permission). A folder reachable several ways appears once, with the highest permission. An unknown user
        /// has none.
        async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>>;
        /// Renames a folder. `AlreadyExists` when its owner has another folder of that name, `NotFound` when unknown.
        async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()>;
        /// Changes a folder's group permission and cloneable flag. `NotFound` when unknown.
        async fn update_vfolder_options(&self, id: VFolderId, permission: VFolderPermission, cloneable: bool)
            -> Result<()>;
        /// Deletes a folder's record with its shares and invitations. `NotFound` when unknown.
        async fn delete_vfolder(&self, id: VFolderId) -> Result<()>;
        /// Shares a folder with a user (`Some`), changing an existing share, or removes the share (`None`; removing
        /// one that does not exist is not an error). `NotFound` when the folder or the user is unknown.
        async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>)
            -> Result<()>;
        /// The users a folder is shared with and their permissions, by e-mail.
        async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>>;
        /// Adds an invitation. `AlreadyExists` when the invitee has a pending invitation to the folder, `NotFound`
        /// when the folder is unknown. The invitee needs a user record only to accept.
        async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()>;
        /// An invitation by id.
        async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>>;
        /// The pending invitations sent to a user, oldest first.
        async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>>;
        /// Moves a pending invitation to `state`; `Accepted` also shares the folder with the invitee at the
        /// invitation's permission, in the same transaction. `NotFound` when unknown (or when accepting for an
        /// invitee without a user record), `Conflict` when it is no longer pending, `InvalidParams` when `state` is
        /// `Pending`.
        async fn answer_vfolder_invitation(
            &self,
            id: InvitationId,
            state: InvitationState,
            now: DateTime<Utc>,
        ) -> Result<VFolderInvitation>;
    }
}
