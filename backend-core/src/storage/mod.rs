//! Storage for virtual folders: named volumes ("hosts"), each a directory that every manager and agent mounts at
//! the same path (NFS, SMB, a distributed file system, or a local directory in development). A folder is the
//! directory `<volume root>/<folder id>`.
//!
//! Every `path` argument is relative to the folder's root and `/`-separated; a path that is absolute, contains
//! `..`, names a reserved entry, or resolves (through symlinks) outside the folder is refused with `InvalidParams`.
//!
//! [`local::LocalStorage`] is the implementation (a network file system's mount point is a local path); it must pass
//! [`crate::conformance::storage`]. [`token`] signs the short-lived tokens that authorise transfers.

pub mod local;
pub mod token;

pub use local::LocalStorage;

use crate::error::Result;
use crate::ids::VFolderId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::io::AsyncRead;

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
}

/// One entry of a folder's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// Its path relative to the folder's root.
    pub path: String,
    /// File, directory or symlink.
    pub kind: FileKind,
    /// Size in bytes (of the link itself for a symlink).
    pub size: u64,
    /// Unix mode bits.
    pub mode: u32,
    /// Creation time, where the file system records it.
    pub created: Option<DateTime<Utc>>,
    /// Last modification.
    pub modified: DateTime<Utc>,
}

/// An upload in progress (or just completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The upload's id.
    pub id: String,
    /// The volume.
    pub host: String,
    /// The folder.
    pub vfolder: VFolderId,
    /// The file's path in the folder.
    pub path: String,
    /// The file's full size in bytes.
    pub size: u64,
    /// Bytes received so far.
    pub offset: u64,
    /// True once every byte arrived and the file is in place.
    pub complete: bool,
}

/// Keeps virtual folders on volumes.
#[async_trait]
pub trait StorageBackend: Send + Sync {
    /// The volume names.
    fn hosts(&self) -> Vec<String>;
    /// Creates a folder's empty directory; `AlreadyExists` when it exists, `NotFound` for an unknown volume.
    async fn create_folder(&self, host: &str, id: VFolderId) -> Result<PathBuf>;
    /// Removes a folder and everything in it; `NotFound` when absent.
    async fn delete_folder(&self, host: &str, id: VFolderId) -> Result<()>;
    /// The folder's directory (the same on every machine; for mounting); `NotFound` when absent.
    async fn folder_path(&self, host: &str, id: VFolderId) -> Result<PathBuf>;
    /// Bytes used by the folder's files.
    async fn usage(&self, host: &str, id: VFolderId) -> Result<u64>;

    /// Creates a directory. With `parents`, missing parents too; with `exist_ok`, an existing directory is not an
    /// error (`AlreadyExists` otherwise).
    async fn mkdir(&self, host: &str, id: VFolderId, path: &str, parents: bool, exist_ok: bool) -> Result<()>;
    /// The entries of a directory (`""` or `.` is the root), by name. `NotFound` when absent.
    async fn list_files(&self, host: &str, id: VFolderId, path: &str) -> Result<Vec<DirEntry>>;
    /// Renames a file or directory within its directory (`new_name` is a bare name). `NotFound` when absent,
    /// `AlreadyExists` when the new name is taken.
    async fn rename_file(&self, host: &str, id: VFolderId, path: &str, new_name: &str) -> Result<()>;
    /// Moves a file or directory to another path in the folder (into `dst` when it is an existing directory).
    async fn move_file(&self, host: &str, id: VFolderId, src: &str, dst: &str) -> Result<()>;
    /// Deletes files, and directories with `recursive` (`InvalidParams` for a directory without it). Nothing is
    /// deleted when one path is refused or missing.
    async fn delete_files(&self, host: &str, id: VFolderId, paths: &[String], recursive: bool) -> Result<()>;

    /// Starts an upload of `size` bytes to `path` (missing parent directories are created when it completes). The
    /// partial data lives on the volume, so an upload survives a restart of the process serving it.
    async fn begin_upload(&self, host: &str, id: VFolderId, path: &str, size: u64) -> Result<UploadStatus>;
    /// Where an upload stands. `NotFound` for an unknown (or finished and forgotten) upload.
    async fn upload_status(&self, upload: &str) -> Result<UploadStatus>;
    /// Appends the bytes `data` yields at `offset`, streaming them to disk. `Conflict` when `offset` is not the
    /// upload's current offset, `PayloadTooLarge` when the data runs past its size (what fit is kept). The upload
    /// completes when the offset reaches the size: the file moves into place, replacing one of that name.
    async fn append_upload(
        &self,
        upload: &str,
        offset: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<UploadStatus>;
    /// Abandons an upload and deletes its partial data.
    async fn cancel_upload(&self, upload: &str) -> Result<()>;

    /// Opens a regular file for reading, with its length. `NotFound` when absent, `InvalidParams` for a directory.
    async fn open_file(&self, host: &str, id: VFolderId, path: &str) -> Result<(tokio::fs::File, u64)>;
}
