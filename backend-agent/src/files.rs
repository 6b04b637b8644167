//! File transfers into and out of a kernel's work directory (`/home/work` inside the kernel).
//!
//! Every path is relative to the work directory and confined to it: absolute paths, `..` components, and paths
//! whose canonical form (after resolving the symlinks of the parts that exist) leaves the work directory are refused
//! with `invalid-api-params`.

use crate::Agent;
use backend_core::error::{Error, Result};
use backend_core::ids::KernelId;
use bytes::Buf;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;
use tokio::io::AsyncWriteExt;

/// The largest file an upload may carry.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The entry's name.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Mode as `ls -l` shows it (`-rw-r--r--`).
    pub mode: String,
    /// Last modification, seconds since the epoch.
    pub mtime: f64,
    /// Last status change, seconds since the epoch.
    pub ctime: f64,
    /// Last access, seconds since the epoch.
    pub atime: f64,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
}

/// Resolves `rel` inside `work`, refusing anything that would leave it. The result is the canonical path of the
/// deepest existing part joined with the parts that do not exist yet.
pub fn confine(work: &Path, rel: &str) -> Result<PathBuf> {
    let rel_path = Path::new(rel);
    let mut parts = Vec::new();
    for c in rel_path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid(format!("{rel:?}: `..` is not allowed in paths"))),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(format!("{rel:?}: paths must be relative to the work directory")))
            }
        }
    }
    let root = work.canonicalize().map_err(|e| Error::io(format!("resolving {}", work.display()), e))?;
    let escapes = || invalid(format!("{rel:?} points outside of the work directory"));
    let mut resolved = root.clone();
    let mut rest = parts.into_iter();
    for part in rest.by_ref() {
        let next = resolved.join(&part);
        if std::fs::symlink_metadata(&next).is_err() {
            resolved = next;
            break;
        }
        // Exists (possibly as a dangling symlink, which cannot be resolved and so is refused).
        resolved = next.canonicalize().map_err(|_| escapes())?;
        if !resolved.starts_with(&root) {
            return Err(escapes());
        }
    }
    for part in rest {
        resolved.push(part);
    }
    if !resolved.starts_with(&root) {
        return Err(escapes());
    }
    Ok(resolved)
}

/// `ls -l`'s rendering of a mode (Python's `stat.filemode`).
pub fn filemode(ft: std::fs::FileType, mode: u32) -> String {
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let bits =
        [(0o400, 'r'), (0o200, 'w'), (0o100, 'x'), (0o40, 'r'), (0o20, 'w'), (0o10, 'x'), (0o4, 'r'), (0o2, 'w')];
    for (bit, c) in bits {
        s.push(if mode & bit != 0 { c } else { '-' });
    }
    s.push(if mode & 0o1 != 0 { 'x' } else { '-' });
    let mut chars: Vec<char> = s.chars().collect();
    for (idx, bit, lower, upper) in [(3, 0o4000, 's', 'S'), (6, 0o2000, 's', 'S'), (9, 0o1000, 't', 'T')] {
        if mode & bit != 0 {
            chars[idx] = if chars[idx] == 'x' { lower } else { upper };
        }
    }
    chars.into_iter().collect()
}

fn secs(t: std::io::Result<std::time::SystemTime>) -> f64 {
    t.ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Agent {
    fn kernel_work_dir(&self, id: KernelId) -> Result<PathBuf> {
        self.kernels.get(id)?;
        self.runtime.work_dir(id)
    }

    /// Writes a file under the kernel's work directory from a stream of chunks (parent directories are created).
    /// Returns the number of bytes written.
    pub async fn put_file<S, B, E>(&self, id: KernelId, rel: &str, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<B, E>> + Send,
        B: Buf + Send,
        E: std::fmt::Display,
    {
        let work = self.kernel_work_dir(id)?;
        let path = confine(&work, rel)?;
        if path == work.canonicalize().map_err(|e| Error::io("resolving the work directory", e))? {
            return Err(invalid("an upload needs a file name"));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(format!("creating {rel:?}'s directory"), e))?;
        }
        // The parents now exist: resolve again so a directory swapped for a symlink meanwhile is caught.
        let path = confine(&work, rel)?;
        let tmp = path.with_file_name(format!(
            ".{}.upload-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            uuid::Uuid::new_v4().simple()
        ));
        let written = async {
            let mut file =
                tokio::fs::File::create(&tmp).await.map_err(|e| Error::io(format!("creating {rel:?}"), e))?;
            let mut written = 0u64;
            futures::pin_mut!(body);
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(|e| invalid(format!("the upload was cut: {e}")))?;
                written += chunk.remaining() as u64;
                if written > MAX_FILE_BYTES {
                    return Err(Error::PayloadTooLarge { limit: MAX_FILE_BYTES });
                }
                while chunk.has_remaining() {
                    let n = chunk.chunk().len();
                    file.write_all(chunk.chunk()).await.map_err(|e| Error::io(format!("writing {rel:?}"), e))?;
                    chunk.advance(n);
                }
            }
            file.flush().await.map_err(|e| Error::io(format!("writing {rel:?}"), e))?;
            Ok(written)
        }
        .await;
        match written {
            Ok(n) => {
                tokio::fs::rename(&tmp, &path).await.map_err(|e| Error::io(format!("storing {rel:?}"), e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Reads a file under the kernel's work directory.
    pub async fn get_file(&self, id: KernelId, rel: &str) -> Result<Vec<u8>> {
        let work = self.kernel_work_dir(id)?;
        let path = confine(&work, rel)?;
        let meta = tokio::fs::metadata(&path).await.map_err(|_| Error::NotFound { what: format!("file {rel:?}") })?;
        if !meta.is_file() {
            return Err(invalid(format!("{rel:?} is not a regular file")));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(Error::PayloadTooLarge { limit: MAX_FILE_BYTES });
        }
        tokio::fs::read(&path).await.map_err(|e| Error::io(format!("reading {rel:?}"), e))
    }

    /// Lists a directory under the kernel's work directory, sorted by name.
    pub async fn list_files(&self, id: KernelId, rel: &str) -> Result<Vec<FileEntry>> {
        let work = self.kernel_work_dir(id)?;
        let path = confine(&work, rel)?;
        let mut dir =
            tokio::fs::read_dir(&path).await.map_err(|_| Error::NotFound { what: format!("directory {rel:?}") })?;
        let mut out = Vec::new();
        while let Some(entry) = dir.next_entry().await.map_err(|e| Error::io(format!("listing {rel:?}"), e))? {
            let Ok(meta) = entry.metadata().await else { continue };
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "other"
            };
            out.push(FileEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: kind.to_owned(),
                size: meta.len(),
                mode: filemode(ft, meta.permissions().mode()),
                mtime: secs(meta.modified()),
                ctime: {
                    use std::os::unix::fs::MetadataExt;
                    meta.ctime() as f64 + f64::from(meta.ctime_nsec() as u32) / 1e9
                },
                atime: secs(meta.accessed()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines_paths() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("sub")).unwrap();
        let root = work.canonicalize().unwrap();
        assert_eq!(confine(&work, "a.txt").unwrap(), root.join("a.txt"));
        assert_eq!(confine(&work, "./sub/new/b.txt").unwrap(), root.join("sub/new/b.txt"));
        assert_eq!(confine(&work, "").unwrap(), root);
        assert!(confine(&work, "../escape").is_err());
        assert!(confine(&work, "sub/../../x").is_err());
        assert!(confine(&work, "/etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc", work.join("out")).unwrap();
        assert!(confine(&work, "out/passwd").is_err());
        assert!(confine(&work, "out").is_err());
        std::os::unix::fs::symlink("/nonexistent/x", work.join("dangling")).unwrap();
        assert!(confine(&work, "dangling").is_err());
        std::os::unix::fs::symlink(root.join("sub"), work.join("in")).unwrap();
        assert_eq!(confine(&work, "in/c").unwrap(), root.join("sub/c"));
    }

    #[test]
    fn renders_modes() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::symlink_metadata(dir.path()).unwrap();
        assert_eq!(filemode(meta.file_type(), 0o755), "drwxr-xr-x");
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let meta = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(filemode(meta.file_type(), 0o644), "-rw-r--r--");
        assert_eq!(filemode(meta.file_type(), 0o4755), "-rwsr-xr-x");
        assert_eq!(filemode(meta.file_type(), 0o1644), "-rw-r--r-T");
    }
}
