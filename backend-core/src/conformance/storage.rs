//! The [`StorageBackend`] suite.
//!
//! It needs the volume to be reachable at [`StorageBackend::folder_path`] from the test process, because it plants
//! symlinks in folders the way a user inside a session would.

use crate::error::Error;
use crate::ids::VFolderId;
use crate::storage::{FileKind, StorageBackend};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Runs every check on volume `host`.
pub async fn run(storage: &dyn StorageBackend, host: &str) {
    assert!(storage.hosts().iter().any(|h| h == host), "the volume is listed");
    folders_are_created_found_and_deleted(storage, host).await;
    file_operations_work(storage, host).await;
    traversal_is_refused(storage, host).await;
    symlinks_cannot_escape(storage, host).await;
    uploads_resume_and_complete(storage, host).await;
    uploads_refuse_bad_offsets_and_overruns(storage, host).await;
    uploads_can_be_cancelled(storage, host).await;
}

/// Asserts the error's variant, by name, with the result in the message.
macro_rules! assert_err {
    ($result:expr, $variant:ident, $what:expr) => {
        match $result {
            Err(Error::$variant { .. }) => {}
            other => panic!("{}: expected {}, got {:?}", $what, stringify!($variant), other.map(|_| ())),
        }
    };
}

/// Bytes that differ from position to position, so misplaced data shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// Yields its data a few bytes at a time, then optionally fails, like a connection that drops.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    fail_at_end: bool,
}

impl Trickle {
    fn new(data: Vec<u8>, step: usize, fail_at_end: bool) -> Self {
        Self { data, pos: 0, step, fail_at_end }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos == self.data.len() {
            if self.fail_at_end {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection dropped")));
            }
            return Poll::Ready(Ok(()));
        }
        let n = self.step.min(self.data.len() - self.pos).min(buf.remaining());
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

async fn read_all(storage: &dyn StorageBackend, host: &str, id: VFolderId, path: &str) -> Vec<u8> {
    let (mut file, len) = storage.open_file(host, id, path).await.unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await.expect("read");
    assert_eq!(len, bytes.len() as u64, "open_file reports the length of {path}");
    bytes
}

async fn new_folder(storage: &dyn StorageBackend, host: &str) -> (VFolderId, std::path::PathBuf) {
    let id = VFolderId::new();
    let dir = storage.create_folder(host, id).await.expect("create folder");
    (id, dir)
}

async fn names(storage: &dyn StorageBackend, host: &str, id: VFolderId, path: &str) -> Vec<String> {
    storage.list_files(host, id, path).await.expect("list").into_iter().map(|e| e.name).collect()
}

/// Folders: creation, lookup, usage, deletion and unknown volumes.
pub async fn folders_are_created_found_and_deleted(storage: &dyn StorageBackend, host: &str) {
    let (id, dir) = new_folder(storage, host).await;
    assert!(dir.is_dir(), "the folder is a directory");
    assert_eq!(storage.folder_path(host, id).await.expect("folder path"), dir);
    assert_err!(storage.create_folder(host, id).await, AlreadyExists, "creating a folder twice");
    assert_err!(storage.create_folder("no-such-volume", VFolderId::new()).await, NotFound, "unknown volume");
    assert_err!(storage.folder_path("no-such-volume", id).await, NotFound, "unknown volume");
    assert_err!(storage.folder_path(host, VFolderId::new()).await, NotFound, "absent folder");
    assert_err!(storage.usage(host, VFolderId::new()).await, NotFound, "usage of an absent folder");

    assert_eq!(storage.usage(host, id).await.expect("usage"), 0);
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("one"), vec![1; 1000]).unwrap();
    std::fs::write(dir.join("a/b/two"), vec![2; 234]).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("a/etc")).unwrap();
    std::os::unix::fs::symlink("one", dir.join("again")).unwrap();
    assert_eq!(storage.usage(host, id).await.expect("usage"), 1234, "regular files only, symlinks not followed");

    storage.delete_folder(host, id).await.expect("delete folder");
    assert!(!dir.exists(), "the directory is gone");
    assert_err!(storage.delete_folder(host, id).await, NotFound, "deleting an absent folder");
    assert_err!(storage.list_files(host, id, "").await, NotFound, "listing a deleted folder");
}

/// mkdir, list, rename, move, delete and open, within one folder.
pub async fn file_operations_work(storage: &dyn StorageBackend, host: &str) {
    let (id, dir) = new_folder(storage, host).await;
    storage.mkdir(host, id, "data", false, false).await.expect("mkdir");
    assert_err!(storage.mkdir(host, id, "data", false, false).await, AlreadyExists, "mkdir of an existing dir");
    storage.mkdir(host, id, "data", false, true).await.expect("mkdir exist_ok");
    assert_err!(storage.mkdir(host, id, "x/y/z", false, false).await, NotFound, "mkdir without parents");
    storage.mkdir(host, id, "x/y/z", true, false).await.expect("mkdir parents");
    assert!(dir.join("x/y/z").is_dir());
    assert_err!(storage.mkdir(host, id, "", true, true).await, InvalidParams, "mkdir of the root");
    std::fs::write(dir.join("data/b.txt"), b"hello").unwrap();
    std::fs::write(dir.join("data/a.txt"), b"hi").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("data/c-link")).unwrap();
    assert_err!(storage.mkdir(host, id, "data/a.txt", false, true).await, AlreadyExists, "mkdir over a file");

    let entries = storage.list_files(host, id, "data").await.expect("list");
    let summary: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.path.as_str(), e.kind, e.size)).collect();
    assert_eq!(
        summary,
        vec![
            ("a.txt", "data/a.txt", FileKind::File, 2),
            ("b.txt", "data/b.txt", FileKind::File, 5),
            ("c-link", "data/c-link", FileKind::Symlink, 5),
        ]
    );
    assert_eq!(entries[0].mode & 0o170000, 0o100000, "the mode carries the file type bits");
    assert_eq!(names(storage, host, id, "").await, vec!["data", "x"]);
    assert_eq!(names(storage, host, id, ".").await, vec!["data", "x"]);
    assert_err!(storage.list_files(host, id, "nothing").await, NotFound, "listing an absent directory");
    assert_err!(storage.list_files(host, id, "data/a.txt").await, InvalidParams, "listing a file");

    assert_eq!(read_all(storage, host, id, "data/b.txt").await, b"hello");
    assert_eq!(read_all(storage, host, id, "data/c-link").await, b"hi", "a link inside the folder is followed");
    assert_err!(storage.open_file(host, id, "data").await, InvalidParams, "opening a directory");
    assert_err!(storage.open_file(host, id, "data/none").await, NotFound, "opening an absent file");

    storage.rename_file(host, id, "data/b.txt", "bee.txt").await.expect("rename");
    assert_eq!(names(storage, host, id, "data").await, vec!["a.txt", "bee.txt", "c-link"]);
    assert_err!(storage.rename_file(host, id, "data/bee.txt", "a.txt").await, AlreadyExists, "rename onto a file");
    assert_err!(storage.rename_file(host, id, "data/none", "z").await, NotFound, "renaming an absent file");
    for bad in ["", ".", "..", "a/b", "/z"] {
        assert_err!(storage.rename_file(host, id, "data/bee.txt", bad).await, InvalidParams, bad);
    }

    storage.move_file(host, id, "data/bee.txt", "x/y").await.expect("move into a directory");
    assert_eq!(read_all(storage, host, id, "x/y/bee.txt").await, b"hello");
    storage.move_file(host, id, "x/y/bee.txt", "moved.txt").await.expect("move to a path");
    assert_eq!(read_all(storage, host, id, "moved.txt").await, b"hello");
    assert_err!(storage.move_file(host, id, "moved.txt", "data/a.txt").await, AlreadyExists, "move onto a file");
    assert_err!(storage.move_file(host, id, "none", "x").await, NotFound, "moving an absent file");
    assert_err!(storage.move_file(host, id, "x", "x/y").await, InvalidParams, "moving a directory into itself");
    storage.move_file(host, id, "x/y", "").await.expect("move to the root");
    assert!(dir.join("y/z").is_dir());

    let paths = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_err!(storage.delete_files(host, id, &paths(&["moved.txt", "data"]), false).await, InvalidParams, "dir");
    assert_err!(storage.delete_files(host, id, &paths(&["moved.txt", "none"]), false).await, NotFound, "absent");
    assert!(dir.join("moved.txt").exists(), "nothing is deleted when one path is refused");
    storage.delete_files(host, id, &paths(&["moved.txt", "data/c-link"]), false).await.expect("delete files");
    assert!(!dir.join("moved.txt").exists() && dir.join("data/a.txt").exists(), "the link's target stays");
    storage.delete_files(host, id, &paths(&["data", "y"]), true).await.expect("delete recursively");
    assert_eq!(names(storage, host, id, "").await, vec!["x"]);
    storage.delete_folder(host, id).await.expect("delete folder");
}

/// Paths that are absolute or climb out are refused by every operation.
pub async fn traversal_is_refused(storage: &dyn StorageBackend, host: &str) {
    let (id, dir) = new_folder(storage, host).await;
    std::fs::create_dir(dir.join("a")).unwrap();
    std::fs::write(dir.join("a/f"), b"f").unwrap();
    for bad in ["../x", "/etc/passwd", "a/../../x", "a/..", "..", "a/\0b"] {
        let s = storage;
        assert_err!(s.list_files(host, id, bad).await, InvalidParams, format!("list {bad:?}"));
        assert_err!(s.open_file(host, id, bad).await, InvalidParams, format!("open {bad:?}"));
        assert_err!(s.mkdir(host, id, bad, true, true).await, InvalidParams, format!("mkdir {bad:?}"));
        assert_err!(s.rename_file(host, id, bad, "z").await, InvalidParams, format!("rename {bad:?}"));
        assert_err!(s.move_file(host, id, bad, "a").await, InvalidParams, format!("move from {bad:?}"));
        assert_err!(s.move_file(host, id, "a/f", bad).await, InvalidParams, format!("move to {bad:?}"));
        let paths = vec!["a/f".to_owned(), bad.to_owned()];
        assert_err!(s.delete_files(host, id, &paths, true).await, InvalidParams, format!("delete {bad:?}"));
        assert_err!(s.begin_upload(host, id, bad, 1).await, InvalidParams, format!("upload {bad:?}"));
    }
    assert!(dir.join("a/f").exists(), "nothing was deleted");
    for bad in ["", "../x", "..", "a/f/../../../../etc", "0123456789abcdef0123456789abcdef"] {
        assert_err!(storage.upload_status(bad).await, NotFound, format!("upload id {bad:?}"));
        assert_err!(storage.append_upload(bad, 0, &mut &b"x"[..]).await, NotFound, format!("upload id {bad:?}"));
    }
    storage.delete_folder(host, id).await.expect("delete folder");
}

/// Symlinks planted in a folder (to `/etc`, to another folder, to a file elsewhere) cannot take any operation out.
pub async fn symlinks_cannot_escape(storage: &dyn StorageBackend, host: &str) {
    let (id, dir) = new_folder(storage, host).await;
    let (other, other_dir) = new_folder(storage, host).await;
    let other_name = other_dir.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::write(other_dir.join("secret.txt"), b"secret").unwrap();
    std::fs::create_dir(other_dir.join("sub")).unwrap();
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
    link("/etc", "etc");
    link("/etc/passwd", "passwd");
    link(&format!("../{other_name}"), "escape");
    link(&format!("../{other_name}/secret.txt"), "secret-link");
    link(&other_dir.to_string_lossy(), "absolute-escape");
    std::fs::create_dir(dir.join("inside")).unwrap();
    std::fs::write(dir.join("inside/mine.txt"), b"mine").unwrap();
    link("inside", "inside-link");
    let other_before = names(storage, host, other, "").await;

    let s = storage;
    for through in ["etc", "escape", "absolute-escape", "escape/sub"] {
        let what = |op: &str| format!("{op} through {through}");
        assert_err!(s.list_files(host, id, through).await, InvalidParams, what("list"));
        assert_err!(s.list_files(host, id, &format!("{through}/")).await, InvalidParams, what("list"));
        let inner = format!("{through}/new");
        assert_err!(s.mkdir(host, id, &inner, false, false).await, InvalidParams, what("mkdir"));
        assert_err!(s.mkdir(host, id, &format!("{through}/x/y"), true, false).await, InvalidParams, what("mkdir -p"));
        assert_err!(s.rename_file(host, id, &format!("{through}/secret.txt"), "z").await, InvalidParams, what("rn"));
        assert_err!(s.move_file(host, id, &format!("{through}/secret.txt"), "z").await, InvalidParams, what("mv"));
        assert_err!(s.move_file(host, id, "inside/mine.txt", through).await, InvalidParams, what("mv into"));
        assert_err!(s.move_file(host, id, "inside/mine.txt", &inner).await, InvalidParams, what("mv to"));
        let paths = vec![format!("{through}/secret.txt")];
        assert_err!(s.delete_files(host, id, &paths, true).await, InvalidParams, what("delete"));
        assert_err!(s.begin_upload(host, id, &inner, 3).await, InvalidParams, what("upload"));
        assert_err!(s.open_file(host, id, &format!("{through}/secret.txt")).await, InvalidParams, what("open"));
    }
    for file in ["passwd", "secret-link", "etc/passwd", "escape/secret.txt"] {
        assert_err!(s.open_file(host, id, file).await, InvalidParams, format!("open {file}"));
    }
    assert_eq!(names(storage, host, other, "").await, other_before, "the other folder is untouched");
    assert_eq!(read_all(storage, host, other, "secret.txt").await, b"secret");
    assert!(dir.join("inside/mine.txt").exists(), "the source of refused moves stays");

    // A link that resolves inside the folder is fine.
    assert_eq!(names(storage, host, id, "inside-link").await, vec!["mine.txt"]);
    assert_eq!(read_all(storage, host, id, "inside-link/mine.txt").await, b"mine");

    // An upload whose directory becomes a link to elsewhere after it began cannot land there.
    let upload = storage.begin_upload(host, id, "later/up.txt", 3).await.expect("begin upload");
    link(&format!("../{other_name}"), "later");
    assert_err!(s.append_upload(&upload.id, 0, &mut &b"abc"[..]).await, InvalidParams, "upload through a late link");
    assert!(!other_dir.join("up.txt").exists(), "nothing was written to the other folder");
    storage.cancel_upload(&upload.id).await.expect("cancel");

    // An upload onto a link replaces the link, not its target.
    let upload = storage.begin_upload(host, id, "secret-link", 3).await.expect("begin upload");
    storage.append_upload(&upload.id, 0, &mut &b"new"[..]).await.expect("append");
    assert_eq!(read_all(storage, host, id, "secret-link").await, b"new");
    assert_eq!(read_all(storage, host, other, "secret.txt").await, b"secret");

    // Renaming, moving and deleting a link acts on the link itself.
    storage.rename_file(host, id, "passwd", "pw").await.expect("rename a link");
    storage.move_file(host, id, "pw", "inside").await.expect("move a link");
    assert_eq!(std::fs::read_link(dir.join("inside/pw")).unwrap(), Path::new("/etc/passwd"));
    let paths = vec!["escape".to_owned(), "etc".to_owned(), "absolute-escape".to_owned(), "inside/pw".to_owned()];
    storage.delete_files(host, id, &paths, true).await.expect("delete links");
    assert!(!dir.join("escape").exists() && std::fs::symlink_metadata(dir.join("escape")).is_err());
    assert_eq!(read_all(storage, host, other, "secret.txt").await, b"secret", "the targets survive");
    assert!(Path::new("/etc/passwd").exists());

    storage.delete_folder(host, id).await.expect("delete folder");
    assert_eq!(read_all(storage, host, other, "secret.txt").await, b"secret", "deleting a folder stays inside");
    storage.delete_folder(host, other).await.expect("delete folder");
}

/// An upload interrupted midway resumes from the offset its status reports and lands byte-identical.
pub async fn uploads_resume_and_complete(storage: &dyn StorageBackend, host: &str) {
    let (id, _) = new_folder(storage, host).await;
    let data = pattern(3 * 1024 * 1024 + 17);
    let begun = storage.begin_upload(host, id, "deep/er/data.bin", data.len() as u64).await.expect("begin");
    assert_eq!((begun.offset, begun.complete, begun.path.as_str()), (0, false, "deep/er/data.bin"));
    assert_eq!((begun.host.as_str(), begun.vfolder, begun.size), (host, id, data.len() as u64));
    assert_eq!(storage.upload_status(&begun.id).await.expect("status"), begun);

    let cut = 1024 * 1024 + 4321;
    let mut dropped = Trickle::new(data[..cut].to_vec(), 7000, true);
    assert!(storage.append_upload(&begun.id, 0, &mut dropped).await.is_err(), "a dropped connection is an error");
    let status = storage.upload_status(&begun.id).await.expect("status");
    assert_eq!(status.offset, cut as u64, "what arrived is kept");
    assert!(!status.complete);
    assert_err!(storage.list_files(host, id, "deep").await, NotFound, "nothing is in place before completion");

    let second = 2 * 1024 * 1024;
    let mut more = Trickle::new(data[cut..second].to_vec(), 65536, false);
    let status = storage.append_upload(&begun.id, status.offset, &mut more).await.expect("append");
    assert_eq!((status.offset, status.complete), (second as u64, false));
    let mut rest = &data[second..];
    let done = storage.append_upload(&begun.id, status.offset, &mut rest).await.expect("append the rest");
    assert_eq!((done.offset, done.complete), (data.len() as u64, true));
    assert!(read_all(storage, host, id, "deep/er/data.bin").await == data, "the file is byte-identical");
    assert_eq!(storage.usage(host, id).await.expect("usage"), data.len() as u64);
    assert!(storage.upload_status(&begun.id).await.is_err(), "a completed upload is forgotten");

    // A new upload replaces the file; an empty one completes at once.
    let upload = storage.begin_upload(host, id, "deep/er/data.bin", 2).await.expect("begin");
    storage.append_upload(&upload.id, 0, &mut &b"ok"[..]).await.expect("append");
    assert_eq!(read_all(storage, host, id, "deep/er/data.bin").await, b"ok");
    let empty = storage.begin_upload(host, id, "empty", 0).await.expect("begin");
    assert!(empty.complete);
    assert_eq!(read_all(storage, host, id, "empty").await, b"");

    assert_err!(storage.begin_upload(host, id, "deep", 1).await, InvalidParams, "uploading onto a directory");
    assert_err!(storage.begin_upload(host, id, "", 1).await, InvalidParams, "uploading onto the root");
    assert_err!(storage.begin_upload(host, VFolderId::new(), "f", 1).await, NotFound, "absent folder");
    assert_err!(storage.begin_upload("no-such-volume", id, "f", 1).await, NotFound, "unknown volume");
    storage.delete_folder(host, id).await.expect("delete folder");
}

/// Offsets other than the current one conflict, data beyond the size is refused, concurrent appends don't mix.
pub async fn uploads_refuse_bad_offsets_and_overruns(storage: &dyn StorageBackend, host: &str) {
    let (id, _) = new_folder(storage, host).await;
    let upload = storage.begin_upload(host, id, "f.bin", 10).await.expect("begin");
    assert_err!(storage.append_upload(&upload.id, 3, &mut &b"abc"[..]).await, Conflict, "offset past the data");
    storage.append_upload(&upload.id, 0, &mut &b"abcd"[..]).await.expect("append");
    assert_err!(storage.append_upload(&upload.id, 0, &mut &b"abcd"[..]).await, Conflict, "offset already written");
    assert_err!(storage.append_upload(&upload.id, 5, &mut &b"x"[..]).await, Conflict, "offset past the data");
    assert_eq!(storage.upload_status(&upload.id).await.expect("status").offset, 4, "conflicts write nothing");
    let mut too_much = &b"efghijKLMNOP"[..];
    assert_err!(storage.append_upload(&upload.id, 4, &mut too_much).await, PayloadTooLarge, "overrun");
    assert_eq!(read_all(storage, host, id, "f.bin").await, b"abcdefghij", "what fit is kept");

    let size = 2 * 1024 * 1024 + 5;
    let upload = storage.begin_upload(host, id, "race.bin", size as u64).await.expect("begin");
    let (a, b) = (vec![b'a'; size], vec![b'b'; size]);
    let mut ra = Trickle::new(a.clone(), 10_000, false);
    let mut rb = Trickle::new(b.clone(), 10_000, false);
    let (first, second) =
        tokio::join!(storage.append_upload(&upload.id, 0, &mut ra), storage.append_upload(&upload.id, 0, &mut rb));
    let ok = [&first, &second].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one of two concurrent appends at one offset wins: {first:?} {second:?}");
    let written = read_all(storage, host, id, "race.bin").await;
    assert!(written == a || written == b, "the winner's bytes are not mixed with the loser's");
    storage.delete_folder(host, id).await.expect("delete folder");
}

/// A cancelled upload leaves nothing behind.
pub async fn uploads_can_be_cancelled(storage: &dyn StorageBackend, host: &str) {
    let (id, _) = new_folder(storage, host).await;
    let upload = storage.begin_upload(host, id, "dir/f.bin", 10).await.expect("begin");
    storage.append_upload(&upload.id, 0, &mut &b"abc"[..]).await.expect("append");
    storage.cancel_upload(&upload.id).await.expect("cancel");
    assert_err!(storage.upload_status(&upload.id).await, NotFound, "a cancelled upload");
    assert_err!(storage.append_upload(&upload.id, 3, &mut &b"def"[..]).await, NotFound, "appending after cancel");
    assert_eq!(names(storage, host, id, "").await, Vec::<String>::new(), "nothing was placed");
    assert_eq!(storage.usage(host, id).await.expect("usage"), 0);
    storage.delete_folder(host, id).await.expect("delete folder");
}
