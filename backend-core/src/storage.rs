//! Storage for virtual folders: named volumes ("hosts"), each a directory that every manager and agent mounts at
//! the same path (NFS, SMB, a distributed file system, or a local directory in development).

use crate::error::{Error, Result};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keeps virtual folders on volumes.
#[async_trait]
pub trait StorageBackend: Send + Sync {
    /// The volume names.
    fn hosts(&self) -> Vec<String>;
    /// Creates an empty folder; `AlreadyExists` when it exists.
    async fn create_folder(&self, host: &str, folder: &str) -> Result<PathBuf>;
    /// Removes a folder and everything in it; `NotFound` when absent.
    async fn delete_folder(&self, host: &str, folder: &str) -> Result<()>;
    /// The folder's path on this machine (for mounting); `NotFound` when absent.
    async fn folder_path(&self, host: &str, folder: &str) -> Result<PathBuf>;
    /// Bytes used by the folder's files.
    async fn usage(&self, host: &str, folder: &str) -> Result<u64>;
}

/// Volumes that are directories of this machine.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    volumes: BTreeMap<String, PathBuf>,
}

impl LocalStorage {
    /// Volumes by name and root directory (created when missing).
    pub fn new(volumes: impl IntoIterator<Item = (String, PathBuf)>) -> Result<Self> {
        let volumes: BTreeMap<_, _> = volumes.into_iter().collect();
        for root in volumes.values() {
            std::fs::create_dir_all(root).map_err(|e| Error::io(format!("creating volume {}", root.display()), e))?;
        }
        Ok(Self { volumes })
    }

    fn folder_dir(&self, host: &str, folder: &str) -> Result<PathBuf> {
        let root = self.volumes.get(host).ok_or_else(|| Error::NotFound { what: format!("storage host {host:?}") })?;
        let valid = !folder.is_empty()
            && folder.len() <= 128
            && !folder.starts_with('.')
            && folder.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(Error::InvalidParams { msg: format!("invalid folder name {folder:?}") });
        }
        Ok(root.join(folder))
    }
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

#[async_trait]
impl StorageBackend for LocalStorage {
    fn hosts(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }

    async fn create_folder(&self, host: &str, folder: &str) -> Result<PathBuf> {
        let dir = self.folder_dir(host, folder)?;
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists { msg: format!("folder {folder:?} on {host:?}") })
            }
            Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }

    async fn delete_folder(&self, host: &str, folder: &str) -> Result<()> {
        let dir = self.folder_path(host, folder).await?;
        tokio::fs::remove_dir_all(&dir).await.map_err(|e| Error::io(format!("removing {}", dir.display()), e))
    }

    async fn folder_path(&self, host: &str, folder: &str) -> Result<PathBuf> {
        let dir = self.folder_dir(host, folder)?;
        if tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            Ok(dir)
        } else {
            Err(Error::NotFound { what: format!("folder {folder:?} on {host:?}") })
        }
    }

    async fn usage(&self, host: &str, folder: &str) -> Result<u64> {
        let dir = self.folder_path(host, folder).await?;
        tokio::task::spawn_blocking(move || dir_size(&dir))
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::io("measuring folder usage", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_storage_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new([("local".to_owned(), dir.path().join("vol"))]).unwrap();
        crate::conformance::storage::run(&storage, "local").await;
    }
}
