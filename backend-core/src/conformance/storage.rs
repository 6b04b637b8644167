//! The [`StorageBackend`] suite.

use crate::error::ErrorKind;
use crate::storage::StorageBackend;

/// Runs every check on volume `host`.
pub async fn run(storage: &dyn StorageBackend, host: &str) {
    assert!(storage.hosts().iter().any(|h| h == host), "the volume is listed");
    let name = format!("f-{}", uuid::Uuid::new_v4().simple());
    let path = storage.create_folder(host, &name).await.expect("create");
    assert_eq!(storage.create_folder(host, &name).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(storage.folder_path(host, &name).await.unwrap(), path);
    tokio::fs::write(path.join("data.bin"), vec![7u8; 1000]).await.unwrap();
    tokio::fs::create_dir(path.join("sub")).await.unwrap();
    tokio::fs::write(path.join("sub/more.bin"), vec![7u8; 24]).await.unwrap();
    assert_eq!(storage.usage(host, &name).await.unwrap(), 1024);
    for bad in ["../escape", "a/b", "", ".ssh", "/abs"] {
        assert_eq!(storage.create_folder(host, bad).await.unwrap_err().kind(), ErrorKind::InvalidParams, "{bad:?}");
    }
    assert_eq!(storage.create_folder("no-such-host", "x").await.unwrap_err().kind(), ErrorKind::NotFound);
    storage.delete_folder(host, &name).await.expect("delete");
    assert_eq!(storage.folder_path(host, &name).await.unwrap_err().kind(), ErrorKind::NotFound);
}
