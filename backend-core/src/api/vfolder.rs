//! Wire types of the virtual folder API (`/folders/...`) in the shapes Backend.AI's client 23.09 sends and reads.
//!
//! Requests accept Backend.AI's aliases (`group_id` for `group`, `user_ids` for `emails`, ...) and its lenient
//! booleans (`"true"`, `1`), because the official client sends some parameters as query strings.

use crate::vfolder::{UsageMode, VFolderPermission};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// A boolean as Backend.AI's `t.ToBool` reads it: a JSON boolean, a number, or a string such as `"true"`/`"0"`.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Bool(bool),
        Int(i64),
        Text(String),
        Null(()),
    }
    match Any::deserialize(d)? {
        Any::Bool(b) => Ok(b),
        Any::Int(n) => Ok(n != 0),
        Any::Null(()) => Ok(false),
        Any::Text(t) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!("{other:?} is not a boolean"))),
        },
    }
}

/// Like [`lenient_bool`], keeping `null` and absence apart from `false`.
pub fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => lenient_bool(v).map(Some).map_err(serde::de::Error::custom),
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Int(u64),
        Text(String),
    }
    match Any::deserialize(d)? {
        Any::Int(n) => Ok(n),
        Any::Text(t) => t.trim().parse().map_err(|_| serde::de::Error::custom(format!("{t:?} is not a size"))),
    }
}

fn default_true() -> bool {
    true
}

fn default_rw() -> VFolderPermission {
    VFolderPermission::ReadWrite
}

/// A size in bytes as a number or a text such as `"10g"` (Backend.AI's `BinarySize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BinarySize {
    /// Bytes.
    Bytes(u64),
    /// Text with an optional binary suffix.
    Text(String),
}

impl BinarySize {
    /// The size in bytes.
    pub fn bytes(&self) -> crate::error::Result<u64> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(t) if t.trim().is_empty() => Ok(0),
            Self::Text(t) => {
                let amount = crate::slots::parse_amount(t.trim())?;
                u64::try_from(amount.trunc()).map_err(|_| crate::error::Error::InvalidParams {
                    msg: format!("quota {t:?} is not a size in bytes"),
                })
            }
        }
    }
}

/// Body of `POST /folders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVFolder {
    /// The folder's name.
    pub name: String,
    /// The volume (default: the first allowed one).
    #[serde(default)]
    pub host: Option<String>,
    /// A project folder: the group's name.
    #[serde(default, alias = "groupId", alias = "group_id")]
    pub group: Option<String>,
    /// What it is for (default `general`).
    #[serde(default)]
    pub usage_mode: Option<UsageMode>,
    /// Group members' permission (default `rw`).
    #[serde(default)]
    pub permission: Option<VFolderPermission>,
    /// Unmanaged folders are not supported; must be empty.
    #[serde(default, alias = "unmanagedPath")]
    pub unmanaged_path: Option<String>,
    /// The folder's own size limit (`0`: none).
    #[serde(default)]
    pub quota: Option<BinarySize>,
    /// Whether others may clone it.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub cloneable: bool,
}

/// A folder as `POST /folders`, `GET /folders` and `GET /folders/{name}` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VFolderInfo {
    /// Its id, as 32 hex digits.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The quota scope its bytes count against (`user:<email>` or `project:<domain>/<group>`).
    pub quota_scope_id: String,
    /// Its volume.
    pub host: String,
    /// Always `ready`.
    pub status: String,
    /// `general`, `model` or `data`.
    pub usage_mode: UsageMode,
    /// When it was created.
    pub created_at: String,
    /// Same as `created_at` (legacy).
    #[serde(default)]
    pub created: String,
    /// True for the owner.
    pub is_owner: bool,
    /// The caller's permission.
    pub permission: VFolderPermission,
    /// The owning user's e-mail (user folders).
    pub user: Option<String>,
    /// The owning group's name (project folders).
    pub group: Option<String>,
    /// Who created it.
    pub creator: String,
    /// The owning user's e-mail (user folders).
    pub user_email: Option<String>,
    /// The owning group's name (project folders).
    pub group_name: Option<String>,
    /// `user` or `group`.
    pub ownership_type: String,
    /// Same as `ownership_type` (legacy).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether others may clone it.
    pub cloneable: bool,
    /// Not limited: 0.
    pub max_files: u64,
    /// Its size limit in MiB, if any.
    pub max_size: Option<u64>,
    /// Bytes used (info only; 0 in lists).
    pub cur_size: u64,
    /// Files in it, recursively (info only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_files: Option<u64>,
    /// Same as `num_files` (legacy).
    #[serde(default, rename = "numFiles", skip_serializing_if = "Option::is_none")]
    pub num_files_legacy: Option<u64>,
    /// Bytes used (info only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
}

/// Parameters of `GET /folders` (body or query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListVFolders {
    /// Deprecated by Backend.AI; refused when true.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub all: bool,
    /// Only this group's folders besides user folders.
    #[serde(default, alias = "groupId")]
    pub group_id: Option<String>,
    /// Admins: list the folders this user sees.
    #[serde(default, alias = "ownerUserEmail")]
    pub owner_user_email: Option<String>,
}

/// Body of `DELETE /folders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteVFolderById {
    /// The folder's id (hex or hyphenated).
    pub id: String,
}

/// One volume in `GET /folders/_/hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The storage backend's kind (`vfs`).
    pub backend: String,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Exposed usage figures (none).
    pub usage: BTreeMap<String, serde_json::Value>,
    /// Scaling groups serving SFTP (none).
    pub sftp_scaling_groups: Vec<String>,
}

/// Reply of `GET /folders/_/hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VFolderHosts {
    /// The host used when `POST /folders` names none.
    pub default: Option<String>,
    /// The hosts the caller may create folders on.
    pub allowed: Vec<String>,
    /// Details of each allowed host.
    #[serde(default)]
    pub volume_info: BTreeMap<String, VolumeInfo>,
}

/// Body of `POST /folders/{name}/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameVFolder {
    /// The new name.
    pub new_name: String,
}

/// Body of `POST /folders/{name}/update-options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVFolderOptions {
    /// New cloneable flag.
    #[serde(default, deserialize_with = "lenient_opt_bool")]
    pub cloneable: Option<bool>,
    /// New group permission.
    #[serde(default)]
    pub permission: Option<VFolderPermission>,
}

/// Body of `POST /folders/{name}/mkdir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mkdir {
    /// The directory.
    pub path: String,
    /// Create missing parents (default true, as Backend.AI).
    #[serde(default = "default_true", deserialize_with = "lenient_bool")]
    pub parents: bool,
    /// An existing directory is not an error.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub exist_ok: bool,
}

/// Parameters of `GET /folders/{name}/files` (body or query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFiles {
    /// The directory (`""` or `.`: the root).
    #[serde(default)]
    pub path: String,
}

/// One entry of `GET /folders/{name}/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileItem {
    /// Its name.
    pub name: String,
    /// `FILE`, `DIRECTORY` or `SYMLINK`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// The last three octal digits of its mode (`644`).
    pub mode: String,
    /// Creation time (ISO 8601; the modification time where unknown).
    pub created: String,
    /// Last modification (ISO 8601).
    pub modified: String,
}

/// Reply of `GET /folders/{name}/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// The entries.
    pub items: Vec<FileItem>,
    /// The legacy listing the official CLI prints: a JSON array (in a string) of
    /// `{filename, size, mode, ctime, atime, mtime}`.
    pub files: String,
}

/// Body of `POST /folders/{name}/rename-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameFile {
    /// The file or directory.
    pub target_path: String,
    /// Its new bare name.
    pub new_name: String,
    /// Ignored (Backend.AI ignores it since 22.03).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_dir: bool,
}

/// Body of `POST /folders/{name}/move-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveFile {
    /// What to move.
    pub src: String,
    /// Where to.
    pub dst: String,
}

/// Body of `DELETE /folders/{name}/delete-files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteFiles {
    /// The paths.
    pub files: Vec<String>,
    /// Delete directories with their contents.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub recursive: bool,
}

/// Body of `POST /folders/{name}/request-upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestUpload {
    /// The file's path in the folder.
    pub path: String,
    /// Its size in bytes.
    #[serde(deserialize_with = "lenient_u64")]
    pub size: u64,
}

/// Body of `POST /folders/{name}/request-download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDownload {
    /// The file's path in the folder.
    #[serde(alias = "file")]
    pub path: String,
    /// Directory archives are not supported; must be false.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archive: bool,
}

/// Reply of `request-upload` and `request-download`: send the token as `?token=` to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferTicket {
    /// The transfer token.
    pub token: String,
    /// The transfer endpoint (`.../upload` for tus, `.../download` for GET).
    pub url: String,
}

/// Body of `POST /folders/{name}/invite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The permission offered (default `rw`).
    #[serde(default = "default_rw", alias = "permission")]
    pub perm: VFolderPermission,
    /// The invitees' e-mails.
    #[serde(alias = "user_ids", alias = "userIDs")]
    pub emails: Vec<String>,
}

/// Reply of `POST /folders/{name}/invite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    /// The e-mails invited (those with a pending invitation already are left out).
    pub invited_ids: Vec<String>,
}

/// One invitation in `GET /folders/invitations/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationInfo {
    /// Its id.
    pub id: String,
    /// The inviter's e-mail.
    pub inviter: String,
    /// The invitee's e-mail.
    pub invitee: String,
    /// The permission offered.
    pub perm: VFolderPermission,
    /// `pending`, ...
    pub state: String,
    /// When it was made.
    pub created_at: String,
    /// When it last changed.
    pub modified_at: String,
    /// The folder's id.
    pub vfolder_id: String,
    /// The folder's name.
    pub vfolder_name: String,
}

/// Reply of `GET /folders/invitations/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitations {
    /// Pending invitations to the caller.
    pub invitations: Vec<InvitationInfo>,
}

/// Body of `POST /folders/invitations/accept` and `DELETE /folders/invitations/delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRef {
    /// The invitation's id.
    pub inv_id: String,
}

/// Body of `POST /folders/{name}/share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The permission (default `rw`).
    #[serde(default = "default_rw", alias = "perm")]
    pub permission: VFolderPermission,
    /// The users' e-mails.
    pub emails: Vec<String>,
}

/// Reply of `POST /folders/{name}/share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// The e-mails now sharing the folder.
    pub shared_emails: Vec<String>,
}

/// Body of `DELETE /folders/{name}/unshare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unshare {
    /// The users' e-mails.
    pub emails: Vec<String>,
}

/// Reply of `DELETE /folders/{name}/unshare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unshared {
    /// The e-mails no longer sharing the folder.
    pub unshared_emails: Vec<String>,
}

/// Body of `POST /folders/{name}/leave`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// Admins: remove this user's share instead of their own (an e-mail here).
    #[serde(default, alias = "sharedUserUuid")]
    pub shared_user_uuid: Option<String>,
}

/// A reply carrying only a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message.
    pub msg: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_client_bodies_parse() {
        let c: CreateVFolder = serde_json::from_value(serde_json::json!({
            "name": "f", "host": null, "unmanaged_path": null, "group": null, "usage_mode": "general",
            "permission": "rw", "quota": "0", "cloneable": false
        }))
        .unwrap();
        assert_eq!(c.quota.unwrap().bytes().unwrap(), 0);
        let m: Mkdir = serde_json::from_value(serde_json::json!({"path": "a/b"})).unwrap();
        assert!(m.parents && !m.exist_ok);
        let i: Invite = serde_json::from_value(serde_json::json!({"perm": "ro", "user_ids": ["a@x"]})).unwrap();
        assert_eq!(i.perm, VFolderPermission::ReadOnly);
        let l: ListVFolders = serde_json::from_value(serde_json::json!({"all": "false"})).unwrap();
        assert!(!l.all);
        let u: RequestUpload = serde_json::from_value(serde_json::json!({"path": "x", "size": "12"})).unwrap();
        assert_eq!(u.size, 12);
        assert_eq!(BinarySize::Text("1g".into()).bytes().unwrap(), 1 << 30);
    }
}
