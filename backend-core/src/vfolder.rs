//! Virtual folders: the records the manager keeps about them (owner, volume, permissions, invitations) and what a
//! session mounts. Their files live on a volume of a [`crate::storage::StorageBackend`], in a directory named by the
//! folder's id, so renaming a folder touches only its record.

use crate::error::{Error, Result};
use crate::ids::{InvitationId, VFolderId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// What a user may do with a folder's files. Each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VFolderPermission {
    /// Read only.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
    /// Read, write and delete (the owner's).
    #[serde(rename = "wd")]
    ReadWriteDelete,
}

impl VFolderPermission {
    /// The wire name: `ro`, `rw` or `wd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "ro",
            Self::ReadWrite => "rw",
            Self::ReadWriteDelete => "wd",
        }
    }

    /// True when files may be written.
    pub fn can_write(self) -> bool {
        self >= Self::ReadWrite
    }
}

impl fmt::Display for VFolderPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VFolderPermission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ro" => Ok(Self::ReadOnly),
            "rw" => Ok(Self::ReadWrite),
            "wd" => Ok(Self::ReadWriteDelete),
            _ => Err(Error::InvalidParams { msg: format!("permission {s:?} is not one of ro, rw, wd") }),
        }
    }
}

/// What a folder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageMode {
    /// Anything.
    General,
    /// Models.
    Model,
    /// Data sets.
    Data,
}

impl UsageMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Model => "model",
            Self::Data => "data",
        }
    }
}

impl FromStr for UsageMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "general" => Ok(Self::General),
            "model" => Ok(Self::Model),
            "data" => Ok(Self::Data),
            _ => Err(Error::InvalidParams { msg: format!("usage mode {s:?} is not one of general, model, data") }),
        }
    }
}

/// Who owns a folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum VFolderOwner {
    /// A user, by e-mail.
    User {
        /// The user's e-mail.
        email: String,
    },
    /// A group (project): every member may use it with the folder's `permission`.
    Group {
        /// The group's domain.
        domain: String,
        /// The group's name.
        name: String,
    },
}

impl VFolderOwner {
    /// The quota scope the folder's bytes count against: `user:<email>` or `project:<domain>/<group>`.
    pub fn quota_scope(&self) -> String {
        match self {
            Self::User { email } => format!("user:{email}"),
            Self::Group { domain, name } => format!("project:{domain}/{name}"),
        }
    }
}

/// A virtual folder's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VFolder {
    /// Its id (its directory's name on the volume).
    pub id: VFolderId,
    /// Its name, unique per owner among folders.
    pub name: String,
    /// The volume ("storage host") it lives on.
    pub host: String,
    /// Its owner.
    pub owner: VFolderOwner,
    /// What it is for.
    pub usage_mode: UsageMode,
    /// What group members may do (group folders); a user folder's owner always has `wd`.
    pub permission: VFolderPermission,
    /// The e-mail of the user who created it.
    pub creator: String,
    /// Its own size limit in bytes, if any.
    pub max_size: Option<u64>,
    /// Whether others may clone it.
    pub cloneable: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A folder as one user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VFolderAccess {
    /// The folder.
    pub folder: VFolder,
    /// What this user may do.
    pub permission: VFolderPermission,
    /// True when the user owns it (a user folder of theirs).
    pub is_owner: bool,
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationState {
    /// Waiting for the invitee.
    Pending,
    /// Accepted: the invitee has a permission on the folder.
    Accepted,
    /// Declined by the invitee.
    Rejected,
    /// Withdrawn by the inviter.
    Canceled,
}

impl InvitationState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Canceled => "canceled",
        }
    }
}

/// An invitation to share a folder with another user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VFolderInvitation {
    /// Its id.
    pub id: InvitationId,
    /// The folder.
    pub vfolder: VFolderId,
    /// The inviter's e-mail.
    pub inviter: String,
    /// The invitee's e-mail.
    pub invitee: String,
    /// The permission offered.
    pub permission: VFolderPermission,
    /// Where it stands.
    pub state: InvitationState,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub modified_at: DateTime<Utc>,
}

/// A folder mounted into every kernel of a session, resolved by the manager at create time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VFolderMount {
    /// The folder's name.
    pub name: String,
    /// The folder.
    pub vfolder_id: VFolderId,
    /// Its directory, the same path on the manager and every agent.
    pub host_path: PathBuf,
    /// Where it appears in the kernel: `/home/work/<name>` unless mapped elsewhere.
    pub kernel_path: String,
    /// The session owner's permission (`ro` mounts read-only).
    pub permission: VFolderPermission,
}

/// Names a folder may not take: they would shadow files every kernel needs in `/home/work`.
pub const RESERVED_NAMES: &[&str] = &[
    ".ssh",
    ".jupyter",
    ".local",
    ".config",
    ".cache",
    ".terminfo",
    ".tmux.conf",
    ".bashrc",
    ".profile",
    ".linuxbrew",
    "bai_logs",
];

/// Checks a folder name: 1-64 characters of letters, digits, `-`, `_` and `.`, not starting with `.` unless it is
/// a dot-folder that is not reserved, not `.` or `..`, and not in [`RESERVED_NAMES`].
pub fn check_name(name: &str) -> Result<()> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.len() > 64 || !valid_chars || name == "." || name == ".." {
        return Err(Error::InvalidParams {
            msg: format!("folder name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
        });
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::InvalidParams { msg: format!("folder name {name:?} is reserved") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_order_and_parse() {
        assert!(VFolderPermission::ReadWriteDelete > VFolderPermission::ReadWrite);
        assert!(!VFolderPermission::ReadOnly.can_write());
        assert_eq!("rw".parse::<VFolderPermission>().unwrap(), VFolderPermission::ReadWrite);
        assert!("x".parse::<VFolderPermission>().is_err());
        assert_eq!(serde_json::to_string(&VFolderPermission::ReadOnly).unwrap(), "\"ro\"");
    }

    #[test]
    fn names() {
        for ok in ["data", "my-folder_1", ".dotted", "a.b"] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".", "..", ".ssh", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
