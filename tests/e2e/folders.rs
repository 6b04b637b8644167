//! Virtual folders through the typed client and `bai folder`: create, upload (whole, and interrupted then resumed),
//! list, download (whole and resumed), file operations, sharing between two users, and errors decoded into the
//! shared error kinds.

use crate::common::start;
use backend_client::folders::transfer_url;
use backend_client::{Client, ClientConfig};
use backend_core::api::admin::{KeyPairSpec, UserSpec};
use backend_core::model::Role;
use backend_core::vfolder::{UsageMode, VFolderPermission};
use backend_core::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

const FIVE_MIB: usize = 5 << 20;

/// Bytes that differ from offset to offset, so a misplaced range shows.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn client_for(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    Client::new(ClientConfig::new(endpoint, access_key, secret_key)).unwrap()
}

/// The last `(done, total)` a progress callback heard.
type LastReport = Arc<Mutex<(u64, u64)>>;

/// A progress callback that remembers its last report.
fn recorder() -> (LastReport, impl Fn(u64, u64)) {
    let last = Arc::new(Mutex::new((0, 0)));
    let sink = last.clone();
    (last, move |done, total| *sink.lock().unwrap() = (done, total))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_creates_fills_and_empties_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(&dir.path().join("stack")).await;
    let admin = client_for(&stack.endpoint, &stack.admin.access_key.to_string(), &stack.admin.secret_key);

    let hosts = admin.folder_hosts().await.unwrap();
    assert!(hosts.allowed.iter().any(|h| h == "local"), "{hosts:?}");
    let folder =
        admin.create_folder("data", None, None, UsageMode::General, VFolderPermission::ReadWrite).await.unwrap();
    assert_eq!((folder.name.as_str(), folder.host.as_str()), ("data", "local"));
    let again = admin.create_folder("data", None, None, UsageMode::General, VFolderPermission::ReadWrite).await;
    assert_eq!(again.unwrap_err().kind(), ErrorKind::VFolderAlreadyExists);
    assert!(admin.list_folders().await.unwrap().iter().any(|f| f.name == "data" && f.id == folder.id));

    // A whole upload, then a byte-identical download.
    let original = content(FIVE_MIB + 123, 1);
    let local = dir.path().join("data.bin");
    std::fs::write(&local, &original).unwrap();
    let (last, progress) = recorder();
    admin.upload_file("data", &local, "data.bin", progress).await.unwrap();
    assert_eq!(*last.lock().unwrap(), (original.len() as u64, original.len() as u64));
    let files = admin.list_files("data", ".").await.unwrap();
    let entry = files.items.iter().find(|i| i.name == "data.bin").expect("the uploaded file is listed");
    assert_eq!(entry.size, original.len() as u64);

    let copy = dir.path().join("copy.bin");
    let (last, progress) = recorder();
    admin.download_file("data", "data.bin", &copy, progress).await.unwrap();
    assert!(std::fs::read(&copy).unwrap() == original, "downloaded bytes differ");
    assert_eq!(last.lock().unwrap().0, original.len() as u64);

    // A download that broke off after 1 MiB asks only for the rest.
    std::fs::write(&copy, &original[..1 << 20]).unwrap();
    let (last, progress) = recorder();
    admin.download_file("data", "data.bin", &copy, progress).await.unwrap();
    assert!(std::fs::read(&copy).unwrap() == original, "resumed download differs");
    assert_eq!(*last.lock().unwrap(), (original.len() as u64, original.len() as u64));

    // File operations.
    admin.mkdir("data", "sub/deeper", true, false).await.unwrap();
    admin.move_file("data", "data.bin", "sub/data.bin").await.unwrap();
    admin.rename_file("data", "sub/data.bin", "renamed.bin").await.unwrap();
    let names: Vec<String> = admin.list_files("data", "sub").await.unwrap().items.into_iter().map(|i| i.name).collect();
    assert!(names.contains(&"renamed.bin".to_owned()) && names.contains(&"deeper".to_owned()), "{names:?}");
    admin.delete_files("data", &["sub"], true).await.unwrap();
    assert!(admin.list_files("data", ".").await.unwrap().items.is_empty());

    // Errors come back as the shared kinds.
    let missing = admin.folder_info("no-such-folder").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::VFolderNotFound, "{missing:?}");
    let escape = admin.list_files("data", "../..").await.unwrap_err();
    assert_eq!(escape.kind(), ErrorKind::InvalidParams, "{escape:?}");
    let escape = admin.request_upload("data", "../outside.bin", 1).await.unwrap_err();
    assert_eq!(escape.kind(), ErrorKind::InvalidParams, "{escape:?}");

    admin.rename_folder("data", "data2").await.unwrap();
    assert_eq!(admin.folder_info("data2").await.unwrap().id, folder.id);
    admin.delete_folder("data2").await.unwrap();
    assert_eq!(admin.folder_info("data2").await.unwrap_err().kind(), ErrorKind::VFolderNotFound);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(&dir.path().join("stack")).await;
    let admin = client_for(&stack.endpoint, &stack.admin.access_key.to_string(), &stack.admin.secret_key);
    admin.create_folder("up", None, None, UsageMode::General, VFolderPermission::ReadWrite).await.unwrap();
    let original = content(FIVE_MIB, 2);
    let local = dir.path().join("big.bin");
    std::fs::write(&local, &original).unwrap();
    let size = original.len() as u64;
    let ticket = admin.request_upload("up", "big.bin", size).await.unwrap();
    assert_eq!(admin.upload_offset(&ticket).await.unwrap(), 0);

    // A first part goes through, then the connection dies in the middle of the second.
    let first = admin.upload_part(&ticket, &local, 0, 2 << 20, Arc::new(AtomicU64::new(0))).await.unwrap();
    assert_eq!(first, 2 << 20);
    let half: Vec<u8> = original[first as usize..first as usize + (1 << 20)].to_vec();
    let broken = futures::stream::iter(vec![
        Ok(half),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cable pulled")),
    ]);
    let cut = reqwest::Client::new()
        .patch(transfer_url(&ticket).unwrap())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", first)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", size - first)
        .body(reqwest::Body::wrap_stream(broken))
        .send()
        .await;
    assert!(cut.is_err() || !cut.unwrap().status().is_success(), "a broken body is not a complete PATCH");
    let resumed_from = admin.upload_offset(&ticket).await.unwrap();
    assert!((first..size).contains(&resumed_from), "offset {resumed_from} after the break");

    let (last, progress) = recorder();
    admin.resume_upload(&ticket, &local, progress).await.unwrap();
    assert_eq!(*last.lock().unwrap(), (size, size));
    let copy = dir.path().join("copy.bin");
    admin.download_file("up", "big.bin", &copy, |_, _| {}).await.unwrap();
    assert!(std::fs::read(&copy).unwrap() == original, "the resumed upload differs from the file");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_shared_by_invitation_and_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(&dir.path().join("stack")).await;
    let admin = client_for(&stack.endpoint, &stack.admin.access_key.to_string(), &stack.admin.secret_key);
    let spec = UserSpec {
        email: "bob@example.com".into(),
        username: None,
        domain: "default".into(),
        role: Role::User,
        is_active: true,
        groups: vec![],
    };
    admin.create_user(&spec).await.unwrap();
    let kp = admin
        .create_keypair(&KeyPairSpec {
            user_id: "bob@example.com".into(),
            role: Role::User,
            rate_limit: 30_000,
            resource_policy: "default".into(),
        })
        .await
        .unwrap();
    let bob = client_for(&stack.endpoint, &kp.access_key.to_string(), &kp.secret_key);

    admin.create_folder("team", None, None, UsageMode::Data, VFolderPermission::ReadWrite).await.unwrap();
    let local = dir.path().join("notes.txt");
    std::fs::write(&local, b"shared notes\n").unwrap();
    admin.upload_file("team", &local, "notes.txt", |_, _| {}).await.unwrap();
    // Invisible to bob until shared: not found, not forbidden.
    assert_eq!(bob.folder_info("team").await.unwrap_err().kind(), ErrorKind::VFolderNotFound);

    let invited = admin.invite("team", VFolderPermission::ReadOnly, &["bob@example.com"]).await.unwrap();
    assert_eq!(invited.invited_ids, ["bob@example.com"]);
    let pending = bob.invitations().await.unwrap().invitations;
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].vfolder_name.as_str(), pending[0].perm), ("team", VFolderPermission::ReadOnly));
    bob.accept_invitation(&pending[0].id).await.unwrap();
    assert!(bob.invitations().await.unwrap().invitations.is_empty());

    let seen = bob.list_folders().await.unwrap();
    let team = seen.iter().find(|f| f.name == "team").expect("bob sees the shared folder");
    assert_eq!((team.permission, team.is_owner), (VFolderPermission::ReadOnly, false));
    let copy = dir.path().join("bob.txt");
    bob.download_file("team", "notes.txt", &copy, |_, _| {}).await.unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), b"shared notes\n");
    assert_eq!(bob.mkdir("team", "mine", false, false).await.unwrap_err().kind(), ErrorKind::Forbidden);
    assert_eq!(bob.request_upload("team", "x.txt", 1).await.unwrap_err().kind(), ErrorKind::Forbidden);

    let unshared = admin.unshare("team", &["bob@example.com"]).await.unwrap();
    assert_eq!(unshared.unshared_emails, ["bob@example.com"]);
    assert_eq!(bob.folder_info("team").await.unwrap_err().kind(), ErrorKind::VFolderNotFound);

    // Invited again with rw, bob may write, then leaves.
    admin.invite("team", VFolderPermission::ReadWrite, &["bob@example.com"]).await.unwrap();
    let pending = bob.invitations().await.unwrap().invitations;
    bob.accept_invitation(&pending[0].id).await.unwrap();
    bob.mkdir("team", "bobs", false, false).await.unwrap();
    bob.leave("team").await.unwrap();
    assert_eq!(bob.folder_info("team").await.unwrap_err().kind(), ErrorKind::VFolderNotFound);
    let names: Vec<String> = admin.list_files("team", ".").await.unwrap().items.into_iter().map(|i| i.name).collect();
    assert!(names.contains(&"bobs".to_owned()), "{names:?}");
    stack.shutdown().await;
}

/// The `bai` binary, built once for these tests.
fn bai() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
                .args(["build", "-q", "-p", "backend-client", "--bin", "bai"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("running cargo to build bai");
            let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/bai");
            assert!(status.success() && built.is_file(), "building bai failed");
            built
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bai_folder_commands_round_trip_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(&dir.path().join("stack")).await;
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bai())
            .args(args)
            .current_dir(&work)
            .env("BACKEND_ENDPOINT", &stack.endpoint)
            .env("BACKEND_ACCESS_KEY", stack.admin.access_key.to_string())
            .env("BACKEND_SECRET_KEY", &stack.admin.secret_key)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(0), "bai {args:?}: {stdout}{stderr}");
        stdout
    };
    let original = content(3 << 20, 3);
    std::fs::write(work.join("blob.bin"), &original).unwrap();

    ok(&["folder", "create", "cli", "local"]);
    assert!(ok(&["folder", "ls"]).lines().any(|l| l.starts_with("cli ")));
    // Not a terminal: no progress bar redraws in the output.
    let uploaded = ok(&["folder", "upload", "cli", "blob.bin"]);
    assert_eq!(uploaded.trim(), "uploaded blob.bin to cli/blob.bin");
    let listing = ok(&["folder", "ls-files", "cli"]);
    assert!(listing.lines().any(|l| l.starts_with("blob.bin") && l.contains(&original.len().to_string())), "{listing}");
    ok(&["folder", "mkdir", "cli", "d"]);
    ok(&["folder", "mv", "cli", "blob.bin", "d/blob.bin"]);
    ok(&["folder", "download", "cli", "d/blob.bin", "-o", "back.bin"]);
    assert!(std::fs::read(work.join("back.bin")).unwrap() == original, "bai download differs");
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "folder", "info", "cli"])).unwrap();
    assert_eq!(json["name"], "cli");
    ok(&["folder", "rm-files", "cli", "d", "-r"]);
    assert!(!ok(&["folder", "ls-files", "cli"]).contains("blob.bin"));

    let (code, _, stderr) = run(&["folder", "info", "nope"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: Virtual folder not found"), "{stderr}");
    ok(&["folder", "rm", "cli"]);
    assert!(!ok(&["folder", "ls"]).lines().any(|l| l.starts_with("cli ")));
    stack.shutdown().await;
}
