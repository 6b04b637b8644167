//! Volumes that are directories of this machine (a network file system's mount point is one).
//!
//! # Confinement
//!
//! Users fill folders from inside their sessions, so anything in a folder, symlinks included, is written by an
//! adversary who may change it while we work. Every caller's path goes through two gates:
//!
//! 1. Lexically, before any file system call ([`components`]): it is `/`-separated and relative; absolute paths,
//!    `..`, NUL bytes and backslashes are refused, while empty and `.` components are dropped.
//! 2. On the file system, by holding what we operate on: the directory that contains the target is *opened*
//!    (following symlinks, which may legitimately point elsewhere in the folder), and then the directory we
//!    actually hold is checked to lie inside the folder's canonical root, by reading its real path from
//!    `/proc/self/fd/<fd>`. The operation then names the target as `/proc/self/fd/<fd>/<name>`, which the kernel
//!    resolves to the held directory, so swapping a directory for a symlink after the check has no effect: the
//!    check and the use concern the same open directory (no time-of-check/time-of-use gap).
//!
//! The last component is never followed when writing or deleting: `rename`, `unlink`, `mkdir` and
//! `remove_dir_all` act on a symlink itself. Reads (`open_file`, `list_files`) may follow a symlink, but the file or
//! directory actually opened is checked to be inside the folder the same way, and must be a regular file (opened
//! with `O_NONBLOCK`, so a FIFO cannot hang the thread) or a directory. `usage` walks without following symlinks
//! (`O_NOFOLLOW` on every directory it descends into).
//!
//! Without `/proc` (not Linux) the same checks run on `canonicalize`d paths, which leaves a race: a directory
//! swapped for a symlink between the check and the system call would be followed. On such systems run the
//! storage only where session containers cannot write to the volume concurrently.
//!
//! Remaining races, which stay inside the folder and so are not a confinement issue: `rename_file` and
//! `move_file` check that the new name is free and then rename (std has no `RENAME_NOREPLACE`), so a file created in
//! between is replaced.
//!
//! # Uploads
//!
//! An upload's state lives on the volume, so another process, or this one after a restart, can resume it:
//! `<volume>/.uploads/<id>.json` holds where it goes and its size, `<id>.part` the bytes so far (its length is the
//! offset). Folders are `<volume>/<uuid hex>`, so no caller path can reach `.uploads`. Appends to one upload are
//! serialised within this process; two processes appending to the same upload at once are not (the offset check
//! makes the second fail in practice, but not atomically).

use super::{DirEntry, FileKind, StorageBackend, UploadStatus};
use crate::error::{Error, Result};
use crate::ids::VFolderId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The staging directory of uploads in each volume.
const UPLOADS: &str = ".uploads";
/// An upload untouched for this long is abandoned (its token, valid a day, has long expired): its files are removed
/// when the next upload on the volume begins.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);
/// How much of an upload is read before it is handed to the disk.
const CHUNK: usize = 1 << 20;

/// Volumes that are directories of this machine.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    volumes: BTreeMap<String, PathBuf>,
    /// Whether `/proc/self/fd` can anchor paths to open directories (see the module docs).
    proc_fd: bool,
    /// One lock per upload being appended to, so concurrent appends run one after the other.
    appending: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The user and group that own what the storage creates (see [`LocalStorage::with_owner`]).
    owner: Option<(u32, u32)>,
}

impl LocalStorage {
    /// Volumes by name and root directory (created when missing). Roots are made absolute: folder paths go to
    /// kernels (bind mounts) that do not share this process's working directory.
    pub fn new(volumes: impl IntoIterator<Item = (String, PathBuf)>) -> Result<Self> {
        let mut absolute = BTreeMap::new();
        for (name, root) in volumes {
            std::fs::create_dir_all(&root).map_err(|e| Error::io(format!("creating volume {}", root.display()), e))?;
            let root = std::fs::canonicalize(&root)
                .map_err(|e| Error::io(format!("resolving volume {}", root.display()), e))?;
            absolute.insert(name, root);
        }
        let volumes = absolute;
        let proc_fd = Path::new("/proc/self/fd").is_dir();
        Ok(Self { volumes, proc_fd, appending: Arc::default(), owner: None })
    }

    /// Makes folders, directories and uploaded files belong to `uid`:`gid`: the user kernels run as (1000 in the
    /// kernel images), so code in a session can write into the folders it mounts read-write. Needs the privilege
    /// to change owners (root), which a storage service serving several users has anyway.
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    fn volume(&self, host: &str) -> Result<&PathBuf> {
        self.volumes.get(host).ok_or_else(|| Error::NotFound { what: format!("storage volume {host}") })
    }

    fn folder_dir(&self, host: &str, id: VFolderId) -> Result<PathBuf> {
        Ok(self.volume(host)?.join(id.0.simple().to_string()))
    }

    /// The folder, which must exist as a real directory (not a symlink).
    fn folder(&self, host: &str, id: VFolderId) -> Result<Folder> {
        let dir = self.folder_dir(host, id)?;
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(folder_not_found(id)),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(folder_not_found(id)),
            Err(e) => return Err(Error::io(format!("reading folder {id}"), e)),
        }
        let root = std::fs::canonicalize(&dir).map_err(|e| Error::io(format!("resolving folder {id}"), e))?;
        Ok(Folder { root, proc_fd: self.proc_fd, owner: self.owner })
    }

    fn upload_files(&self, upload: &str) -> Result<(String, UploadFiles)> {
        let valid = upload.len() == 32 && upload.bytes().all(|b| b.is_ascii_hexdigit());
        if valid {
            for (host, root) in &self.volumes {
                let files = UploadFiles::new(root, upload);
                if files.meta.exists() {
                    return Ok((host.clone(), files));
                }
            }
        }
        Err(upload_not_found(upload))
    }

    fn append_lock(&self, upload: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.appending.lock().expect("append locks").entry(upload.to_owned()).or_default().clone()
    }

    fn forget_append_lock(&self, upload: &str) {
        self.appending.lock().expect("append locks").remove(upload);
    }

    /// Moves a finished upload's data into place and forgets the upload.
    fn complete_upload(&self, upload: &str, meta: &UploadMeta, files: &UploadFiles) -> Result<()> {
        let folder = self.folder(&meta.host, meta.vfolder)?;
        let parts = components(&meta.path)?;
        let (last, parents) = parts.split_last().ok_or_else(|| invalid("the upload's path is the folder itself"))?;
        let dir = folder.make_dirs(parents)?;
        let target = dir.child(last);
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(invalid(format!("{} is a directory", meta.path)));
        }
        give(self.owner, &files.part, &meta.path)?;
        std::fs::rename(&files.part, &target).map_err(|e| io_error(e, &meta.path, "placing upload"))?;
        remove_if_present(&files.meta).map_err(|e| Error::io(format!("forgetting upload {upload}"), e))?;
        Ok(())
    }
}

/// Removes the files of uploads not written to for `age` (best effort: a failure only leaves them for next time).
fn remove_abandoned_uploads(area: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(area) else { return };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|idle| idle >= age));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs blocking file system work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)?
}

#[async_trait]
impl StorageBackend for LocalStorage {
    fn hosts(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }

    async fn create_folder(&self, host: &str, id: VFolderId) -> Result<PathBuf> {
        let dir = self.folder_dir(host, id)?;
        let owner = self.owner;
        blocking(move || match std::fs::create_dir(&dir) {
            Ok(()) => give(owner, &dir, &id.to_string()).map(|()| dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::AlreadyExists { msg: format!("folder {id}") }),
            Err(e) => Err(Error::io(format!("creating folder {id}"), e)),
        })
        .await
    }

    async fn delete_folder(&self, host: &str, id: VFolderId) -> Result<()> {
        let dir = self.folder_dir(host, id)?;
        blocking(move || {
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(folder_not_found(id)),
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(folder_not_found(id)),
                Err(e) => return Err(Error::io(format!("reading folder {id}"), e)),
            }
            // remove_dir_all does not follow symlinks, so links inside the folder cannot widen the deletion.
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("deleting folder {id}"), e))
        })
        .await
    }

    async fn folder_path(&self, host: &str, id: VFolderId) -> Result<PathBuf> {
        let dir = self.folder_dir(host, id)?;
        blocking(move || match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(folder_not_found(id)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(folder_not_found(id)),
            Err(e) => Err(Error::io(format!("reading folder {id}"), e)),
        })
        .await
    }

    async fn usage(&self, host: &str, id: VFolderId) -> Result<u64> {
        let folder = self.folder(host, id)?;
        blocking(move || folder.usage()).await
    }

    async fn mkdir(&self, host: &str, id: VFolderId, path: &str, parents: bool, exist_ok: bool) -> Result<()> {
        let folder = self.folder(host, id)?;
        let path = path.to_owned();
        blocking(move || {
            let parts = components(&path)?;
            let (last, ancestors) = parts.split_last().ok_or_else(|| invalid("cannot create the folder's root"))?;
            let dir = if parents { folder.make_dirs(ancestors)? } else { folder.open_dir(ancestors, &path)? };
            let target = dir.child(last);
            match std::fs::create_dir(&target) {
                Ok(()) => give(folder.owner, &target, &path),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let is_dir = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
                    if exist_ok && is_dir {
                        Ok(())
                    } else {
                        Err(Error::AlreadyExists { msg: path.clone() })
                    }
                }
                Err(e) => Err(io_error(e, &path, "creating directory")),
            }
        })
        .await
    }

    async fn list_files(&self, host: &str, id: VFolderId, path: &str) -> Result<Vec<DirEntry>> {
        let folder = self.folder(host, id)?;
        let path = path.to_owned();
        blocking(move || {
            let parts = components(&path)?;
            let dir = folder.open_dir(&parts, &path)?;
            let prefix = parts.join("/");
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(dir.path()).map_err(|e| io_error(e, &path, "listing"))? {
                let entry = entry.map_err(|e| io_error(e, &path, "listing"))?;
                // DirEntry::metadata does not follow symlinks.
                let meta = entry.metadata().map_err(|e| io_error(e, &path, "listing"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                entries.push(dir_entry(name, path, &meta));
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    async fn rename_file(&self, host: &str, id: VFolderId, path: &str, new_name: &str) -> Result<()> {
        let folder = self.folder(host, id)?;
        let (path, new_name) = (path.to_owned(), new_name.to_owned());
        blocking(move || {
            if new_name.contains('/') || components(&new_name)?.len() != 1 {
                return Err(invalid(format!("{new_name:?} is not a file name")));
            }
            let (dir, last) = folder.open_parent(&path)?;
            let (src, dst) = (dir.child(&last), dir.child(&new_name));
            exists(&src, &path)?;
            if std::fs::symlink_metadata(&dst).is_ok() {
                return Err(Error::AlreadyExists { msg: new_name });
            }
            std::fs::rename(&src, &dst).map_err(|e| io_error(e, &path, "renaming"))
        })
        .await
    }

    async fn move_file(&self, host: &str, id: VFolderId, src: &str, dst: &str) -> Result<()> {
        let folder = self.folder(host, id)?;
        let (src, dst) = (src.to_owned(), dst.to_owned());
        blocking(move || {
            let (src_dir, src_name) = folder.open_parent(&src)?;
            let from = src_dir.child(&src_name);
            exists(&from, &src)?;
            // An existing directory (or a link to one inside the folder) receives the source under its own name.
            let (dst_dir, dst_name) = if components(&dst)?.is_empty() {
                (folder.open_root()?, src_name)
            } else {
                let (parent, name) = folder.open_parent(&dst)?;
                let target = parent.child(&name);
                if std::fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
                    (folder.open_dir_at(&target, libc::O_DIRECTORY, &dst)?, src_name)
                } else {
                    (parent, name)
                }
            };
            let to = dst_dir.child(&dst_name);
            if std::fs::symlink_metadata(&to).is_ok() {
                return Err(Error::AlreadyExists { msg: dst });
            }
            std::fs::rename(&from, &to).map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => invalid(format!("cannot move {src} into itself")),
                _ => io_error(e, &src, "moving"),
            })
        })
        .await
    }

    async fn delete_files(&self, host: &str, id: VFolderId, paths: &[String], recursive: bool) -> Result<()> {
        let folder = self.folder(host, id)?;
        let paths = paths.to_vec();
        blocking(move || {
            let mut targets = Vec::with_capacity(paths.len());
            for path in &paths {
                let (dir, name) = folder.open_parent(path)?;
                let meta = exists(&dir.child(&name), path)?;
                if meta.is_dir() && !recursive {
                    return Err(invalid(format!("{path} is a directory; delete it recursively")));
                }
                targets.push((dir, name, meta.is_dir(), path));
            }
            for (dir, name, is_dir, path) in targets {
                let target = dir.child(&name);
                let removed = if is_dir { std::fs::remove_dir_all(&target) } else { std::fs::remove_file(&target) };
                match removed {
                    // Listed twice, or deleted along with a directory listed before it.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    other => other.map_err(|e| io_error(e, path, "deleting"))?,
                }
            }
            Ok(())
        })
        .await
    }

    async fn begin_upload(&self, host: &str, id: VFolderId, path: &str, size: u64) -> Result<UploadStatus> {
        let folder = self.folder(host, id)?;
        let volume = self.volume(host)?.clone();
        let meta = UploadMeta { host: host.to_owned(), vfolder: id, path: path.to_owned(), size, created: Utc::now() };
        let upload = uuid::Uuid::new_v4().simple().to_string();
        let files = UploadFiles::new(&volume, &upload);
        let status = {
            let (meta, upload, files) = (meta.clone(), upload.clone(), files.clone());
            blocking(move || {
                let parts = components(&meta.path)?;
                if parts.is_empty() {
                    return Err(invalid("cannot upload to the folder's root"));
                }
                // Refuse early what completion would refuse; missing parents are created then.
                match folder.open_parent(&meta.path) {
                    Ok((dir, name)) => {
                        if std::fs::symlink_metadata(dir.child(&name)).is_ok_and(|m| m.is_dir()) {
                            return Err(invalid(format!("{} is a directory", meta.path)));
                        }
                    }
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                std::fs::create_dir_all(volume.join(UPLOADS)).map_err(|e| Error::io("creating upload area", e))?;
                remove_abandoned_uploads(&volume.join(UPLOADS), ABANDONED_AFTER);
                File::create_new(&files.part).map_err(|e| Error::io(format!("starting upload {upload}"), e))?;
                let json = serde_json::to_vec(&meta).map_err(Error::internal)?;
                let tmp = files.meta.with_extension("json.tmp");
                std::fs::write(&tmp, json)
                    .and_then(|()| std::fs::rename(&tmp, &files.meta))
                    .map_err(|e| Error::io(format!("starting upload {upload}"), e))?;
                Ok(meta.status(&upload, 0, false))
            })
            .await?
        };
        if size == 0 {
            let this = self.clone();
            return blocking(move || {
                this.complete_upload(&upload, &meta, &files)?;
                Ok(meta.status(&upload, 0, true))
            })
            .await;
        }
        Ok(status)
    }

    async fn upload_status(&self, upload: &str) -> Result<UploadStatus> {
        let this = self.clone();
        let upload = upload.to_owned();
        blocking(move || {
            let (_, files) = this.upload_files(&upload)?;
            let meta = files.read_meta(&upload)?;
            let offset = files.offset(&upload)?;
            Ok(meta.status(&upload, offset, false))
        })
        .await
    }

    async fn append_upload(
        &self,
        upload: &str,
        offset: u64,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<UploadStatus> {
        let (_, files) = self.upload_files(upload)?;
        let lock = self.append_lock(upload);
        let _appending = lock.lock().await;
        let (meta, current) = {
            let (files, id) = (files.clone(), upload.to_owned());
            blocking(move || Ok((files.read_meta(&id)?, files.offset(&id)?))).await?
        };
        if offset != current {
            return Err(Error::Conflict { msg: format!("upload {upload} is at offset {current}, not {offset}") });
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&files.part)
            .map_err(|e| Error::io(format!("opening upload {upload}"), e))?;
        let (written, overrun) = stream_to_file(file, offset, meta.size, data)
            .await
            .map_err(|e| Error::io(format!("receiving upload {upload}"), e))?;
        let complete = written == meta.size;
        if complete {
            let (this, id, meta, files) = (self.clone(), upload.to_owned(), meta.clone(), files.clone());
            blocking(move || this.complete_upload(&id, &meta, &files)).await?;
            self.forget_append_lock(upload);
        }
        if overrun {
            return Err(Error::PayloadTooLarge { limit: meta.size });
        }
        Ok(meta.status(upload, written, complete))
    }

    async fn cancel_upload(&self, upload: &str) -> Result<()> {
        let (_, files) = self.upload_files(upload)?;
        let upload = upload.to_owned();
        self.forget_append_lock(&upload);
        blocking(move || {
            remove_if_present(&files.part)
                .and_then(|()| remove_if_present(&files.meta))
                .map_err(|e| Error::io(format!("cancelling upload {upload}"), e))
        })
        .await
    }

    async fn open_file(&self, host: &str, id: VFolderId, path: &str) -> Result<(tokio::fs::File, u64)> {
        let folder = self.folder(host, id)?;
        let path = path.to_owned();
        let (file, len) = blocking(move || {
            let (dir, name) = folder.open_parent(&path)?;
            // Following a final symlink is allowed as long as what it reaches is inside the folder.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.child(&name))
                .map_err(|e| io_error(e, &path, "opening"))?;
            folder.check_inside(&file, &dir.child(&name), &path)?;
            let meta = file.metadata().map_err(|e| io_error(e, &path, "opening"))?;
            if !meta.is_file() {
                return Err(invalid(format!("{path} is not a regular file")));
            }
            Ok((file, meta.len()))
        })
        .await?;
        Ok((tokio::fs::File::from_std(file), len))
    }
}

/// Writes what `data` yields to `file` from `offset` up to `size`, and returns the new offset and whether the data
/// ran past `size`. A blocking thread writes one chunk while the next is read, with the buffers reused (tokio's
/// `File` would copy every chunk and start a blocking task for each). What arrived before a read error is written
/// before the error is returned, so the client can resume from there.
async fn stream_to_file(
    file: File,
    offset: u64,
    size: u64,
    data: &mut (dyn AsyncRead + Send + Unpin),
) -> io::Result<(u64, bool)> {
    // Two chunks in flight: one being written, one waiting; buffers come back to be reused.
    let (chunks, mut to_write) = tokio::sync::mpsc::channel::<(Vec<u8>, usize)>(2);
    let (give_back, mut spare) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        use std::io::{Seek, Write};
        let mut file = file;
        file.seek(io::SeekFrom::Start(offset))?;
        while let Some((buf, len)) = to_write.blocking_recv() {
            file.write_all(&buf[..len])?;
            let _ = give_back.send(buf);
        }
        Ok(())
    });
    let mut written = offset;
    let mut overrun = false;
    let mut read_error = None;
    loop {
        let room = usize::try_from(size - written).unwrap_or(usize::MAX).min(CHUNK);
        if room == 0 {
            // Read one byte beyond the size to tell a body that ends exactly from one that runs over.
            let mut probe = [0u8; 1];
            match data.read(&mut probe).await {
                Ok(n) => overrun = n > 0,
                Err(e) => read_error = Some(e),
            }
            break;
        }
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        // Fill the chunk before writing, so that small network reads become large disk writes.
        let mut filled = 0;
        while filled < room {
            match data.read(&mut buf[filled..room]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        if filled > 0 {
            if chunks.send((buf, filled)).await.is_err() {
                break; // The writer failed; its error is reported below.
            }
            written += filled as u64;
        }
        if filled < room || read_error.is_some() {
            break;
        }
    }
    drop(chunks);
    writer.await.map_err(io::Error::other)??;
    match read_error {
        Some(e) => Err(e),
        None => Ok((written, overrun)),
    }
}

/// A folder's canonical root.
struct Folder {
    root: PathBuf,
    proc_fd: bool,
    owner: Option<(u32, u32)>,
}

/// Gives what the storage just created to the configured owner (never following a symlink).
fn give(owner: Option<(u32, u32)>, path: &Path, shown: &str) -> Result<()> {
    match owner {
        Some((uid, gid)) => {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| io_error(e, shown, "changing owner"))
        }
        None => Ok(()),
    }
}

/// A directory held open and known to be inside its folder.
struct Dir {
    file: File,
    /// Its canonical path, used where `/proc/self/fd` is unavailable.
    real: PathBuf,
    proc_fd: bool,
}

impl Dir {
    /// A name in this directory, as a path that resolves through the open directory itself where possible.
    fn child(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn path(&self) -> PathBuf {
        if self.proc_fd {
            PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
        } else {
            self.real.clone()
        }
    }
}

impl Folder {
    /// Checks that an open file or directory is inside the folder; `path` is how it was opened.
    fn check_inside(&self, file: &File, opened: &Path, shown: &str) -> Result<PathBuf> {
        let real = if self.proc_fd {
            std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        } else {
            std::fs::canonicalize(opened)
        }
        .map_err(|e| io_error(e, shown, "resolving"))?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(invalid(format!("{shown} leads outside the folder")))
        }
    }

    fn open_root(&self) -> Result<Dir> {
        self.open_dir(&[], "")
    }

    /// Opens the directory at `parts` (symlinks followed, the result checked).
    fn open_dir(&self, parts: &[String], shown: &str) -> Result<Dir> {
        let mut path = self.root.clone();
        path.extend(parts);
        self.open_dir_at(&path, libc::O_DIRECTORY, shown)
    }

    fn open_dir_at(&self, path: &Path, flags: i32, shown: &str) -> Result<Dir> {
        let file =
            OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => invalid(format!("{shown} is not a directory")),
                Some(libc::ELOOP) => invalid(format!("{shown} is a symlink")),
                _ => io_error(e, shown, "opening"),
            })?;
        let real = self.check_inside(&file, path, shown)?;
        Ok(Dir { file, real, proc_fd: self.proc_fd })
    }

    /// Opens the directory containing `path` and returns it with the last component's name.
    fn open_parent(&self, path: &str) -> Result<(Dir, String)> {
        let mut parts = components(path)?;
        let name = parts.pop().ok_or_else(|| invalid("the path is the folder's root"))?;
        Ok((self.open_dir(&parts, path)?, name))
    }

    /// Opens the directory at `parts`, creating missing ones one at a time, each checked before the next.
    fn make_dirs(&self, parts: &[String]) -> Result<Dir> {
        let mut dir = self.open_root()?;
        for (i, part) in parts.iter().enumerate() {
            let shown = parts[..=i].join("/");
            let child = dir.child(part);
            match std::fs::create_dir(&child) {
                Ok(()) => give(self.owner, &child, &shown)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(e, &shown, "creating directory")),
            }
            dir = self.open_dir_at(&child, libc::O_DIRECTORY, &shown)?;
        }
        Ok(dir)
    }

    /// Bytes of the regular files below the root; symlinks are not followed.
    fn usage(&self) -> Result<u64> {
        let mut total = 0u64;
        let mut pending = vec![self.open_root()?];
        while let Some(dir) = pending.pop() {
            let listing = std::fs::read_dir(dir.path()).map_err(|e| Error::io("measuring folder usage", e))?;
            for entry in listing {
                let entry = entry.map_err(|e| Error::io("measuring folder usage", e))?;
                let Ok(file_type) = entry.file_type() else { continue };
                if file_type.is_file() {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                } else if file_type.is_dir() {
                    let name = entry.file_name();
                    match self.open_dir_at(
                        &dir.path().join(&name),
                        libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        &name.to_string_lossy(),
                    ) {
                        Ok(sub) => pending.push(sub),
                        // Removed, or swapped for a symlink, since it was listed.
                        Err(Error::NotFound { .. } | Error::InvalidParams { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(total)
    }
}

/// Splits a caller's relative path into its components, refusing anything that could leave the folder.
fn components(path: &str) -> Result<Vec<String>> {
    if path.starts_with('/') {
        return Err(invalid(format!("{path:?} is absolute")));
    }
    if path.contains('\0') {
        return Err(invalid("the path contains a NUL byte"));
    }
    if path.contains('\\') {
        return Err(invalid(format!("{path:?} contains a backslash")));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("{path:?} contains \"..\""))),
            part => parts.push(part.to_owned()),
        }
    }
    Ok(parts)
}

/// What `.uploads/<id>.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadMeta {
    host: String,
    vfolder: VFolderId,
    path: String,
    size: u64,
    created: DateTime<Utc>,
}

impl UploadMeta {
    fn status(&self, id: &str, offset: u64, complete: bool) -> UploadStatus {
        UploadStatus {
            id: id.to_owned(),
            host: self.host.clone(),
            vfolder: self.vfolder,
            path: self.path.clone(),
            size: self.size,
            offset,
            complete,
        }
    }
}

/// The two files of an upload.
#[derive(Debug, Clone)]
struct UploadFiles {
    meta: PathBuf,
    part: PathBuf,
}

impl UploadFiles {
    fn new(volume: &Path, upload: &str) -> Self {
        let dir = volume.join(UPLOADS);
        Self { meta: dir.join(format!("{upload}.json")), part: dir.join(format!("{upload}.part")) }
    }

    fn read_meta(&self, upload: &str) -> Result<UploadMeta> {
        let bytes = match std::fs::read(&self.meta) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(upload_not_found(upload)),
            Err(e) => return Err(Error::io(format!("reading upload {upload}"), e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("upload {upload}: {e}")))
    }

    /// Bytes received: the length of the partial data.
    fn offset(&self, upload: &str) -> Result<u64> {
        match std::fs::metadata(&self.part) {
            Ok(m) => Ok(m.len()),
            // Completed (moved into place) while we looked, or cancelled.
            Err(e) if e.kind() == ErrorKind::NotFound => Err(upload_not_found(upload)),
            Err(e) => Err(Error::io(format!("reading upload {upload}"), e)),
        }
    }
}

fn dir_entry(name: String, path: String, meta: &Metadata) -> DirEntry {
    let kind = if meta.file_type().is_symlink() {
        FileKind::Symlink
    } else if meta.is_dir() {
        FileKind::Directory
    } else {
        FileKind::File
    };
    let modified = DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32).unwrap_or_default();
    DirEntry {
        name,
        path,
        kind,
        size: meta.len(),
        mode: meta.mode(),
        created: meta.created().ok().map(DateTime::<Utc>::from),
        modified,
    }
}

/// The entry's metadata (not following a symlink), or `NotFound`.
fn exists(path: &Path, shown: &str) -> Result<Metadata> {
    std::fs::symlink_metadata(path).map_err(|e| io_error(e, shown, "reading"))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn io_error(e: io::Error, path: &str, doing: &str) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound { what: format!("file {path}") },
        ErrorKind::AlreadyExists => Error::AlreadyExists { msg: path.to_owned() },
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR) => Error::NotFound { what: format!("file {path}") },
            Some(libc::EISDIR) => invalid(format!("{path} is a directory")),
            _ => Error::io(format!("{doing} {path}"), e),
        },
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParams { msg: msg.into() }
}

fn folder_not_found(id: VFolderId) -> Error {
    Error::NotFound { what: format!("folder {id}") }
}

fn upload_not_found(upload: &str) -> Error {
    Error::NotFound { what: format!("upload {upload}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_and_escapes_refused() {
        assert_eq!(components("").unwrap(), Vec::<String>::new());
        assert_eq!(components(".").unwrap(), Vec::<String>::new());
        assert_eq!(components("a//b/./c/").unwrap(), vec!["a", "b", "c"]);
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "a\0b", "a\\..\\b"] {
            assert!(matches!(components(bad), Err(Error::InvalidParams { .. })), "{bad:?} refused");
        }
    }

    #[tokio::test]
    async fn folder_paths_are_absolute_whatever_the_volume_was_named_by() {
        let dir = tempfile::tempdir_in(".").unwrap();
        let relative = dir.path().strip_prefix(std::env::current_dir().unwrap()).unwrap().join("vol");
        assert!(relative.is_relative());
        let storage = LocalStorage::new([("local".to_owned(), relative)]).unwrap();
        let path = storage.create_folder("local", VFolderId::new()).await.unwrap();
        assert!(path.is_absolute(), "{}", path.display());
    }

    #[tokio::test]
    async fn abandoned_uploads_are_removed_when_another_begins() {
        let volume = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new([("local".to_owned(), volume.path().join("vol"))]).unwrap();
        let id = VFolderId::new();
        storage.create_folder("local", id).await.unwrap();
        let old = storage.begin_upload("local", id, "old.bin", 10).await.unwrap();
        let area = volume.path().join("vol").join(UPLOADS);
        remove_abandoned_uploads(&area, std::time::Duration::from_secs(3600));
        assert!(storage.upload_status(&old.id).await.is_ok(), "a fresh upload stays");
        remove_abandoned_uploads(&area, std::time::Duration::ZERO);
        assert!(storage.upload_status(&old.id).await.is_err(), "an idle one goes");
        assert_eq!(std::fs::read_dir(&area).unwrap().count(), 0, "with its data");
    }

    #[tokio::test]
    async fn what_the_storage_creates_belongs_to_the_kernel_user() {
        use std::os::unix::fs::MetadataExt;
        // Root may give files away; anyone else can only "give" them to themselves, which still runs every path.
        let (uid, gid) = if running_as_root() { (1000, 1000) } else { (own_uid(), own_gid()) };
        let volume = tempfile::tempdir().unwrap();
        let storage =
            LocalStorage::new([("local".to_owned(), volume.path().join("vol"))]).unwrap().with_owner(uid, gid);
        let id = VFolderId::new();
        let root = storage.create_folder("local", id).await.unwrap();
        storage.mkdir("local", id, "a/b", true, false).await.unwrap();
        let upload = storage.begin_upload("local", id, "c/d.txt", 3).await.unwrap();
        storage.append_upload(&upload.id, 0, &mut &b"abc"[..]).await.unwrap();
        for path in [root.clone(), root.join("a"), root.join("a/b"), root.join("c"), root.join("c/d.txt")] {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", path.display());
        }
    }

    fn running_as_root() -> bool {
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
    }

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap()
    }

    fn own_gid() -> u32 {
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::gid(&m)).unwrap()
    }

    #[tokio::test]
    async fn local_storage_passes_the_storage_suite() {
        let volume = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new([("local".to_owned(), volume.path().join("vol"))]).unwrap();
        crate::conformance::storage::run(&storage, "local").await;
    }

    #[tokio::test]
    async fn the_canonical_path_fallback_passes_the_storage_suite() {
        let volume = tempfile::tempdir().unwrap();
        let mut storage = LocalStorage::new([("local".to_owned(), volume.path().join("vol"))]).unwrap();
        storage.proc_fd = false;
        crate::conformance::storage::run(&storage, "local").await;
    }

    #[tokio::test]
    async fn an_upload_survives_a_new_storage_instance() {
        let volume = tempfile::tempdir().unwrap();
        let volumes = [("local".to_owned(), volume.path().to_path_buf())];
        let first = LocalStorage::new(volumes.clone()).unwrap();
        let id = VFolderId::new();
        first.create_folder("local", id).await.unwrap();
        let upload = first.begin_upload("local", id, "a/b.bin", 6).await.unwrap();
        first.append_upload(&upload.id, 0, &mut &b"abc"[..]).await.unwrap();
        drop(first);

        let second = LocalStorage::new(volumes).unwrap();
        let status = second.upload_status(&upload.id).await.unwrap();
        assert_eq!((status.offset, status.size, status.path.as_str()), (3, 6, "a/b.bin"));
        let done = second.append_upload(&upload.id, 3, &mut &b"def"[..]).await.unwrap();
        assert!(done.complete);
        let (mut file, len) = second.open_file("local", id, "a/b.bin").await.unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await.unwrap();
        assert_eq!((len, bytes.as_slice()), (6, &b"abcdef"[..]));
    }
}
