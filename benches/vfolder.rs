//! Virtual-folder transfer figures, printed as a table (a bench binary, not a timed test), each beside its baseline
//! from the same run: a file uploaded to a folder (request-upload, then tus PATCHes) and downloaded back
//! (request-download, then a streamed GET) through a standalone manager running as its own process, against `cp` of
//! the same file on the same disk; with the manager's peak resident memory during each transfer (VmHWM, reset
//! before each through `/proc/<pid>/clear_refs`), which shows that transfers are streamed, not buffered.
//!
//! `cargo bench --bench vfolder` moves 1 GiB three times each way; `BENCH_QUICK=1` moves 256 MiB once;
//! `BENCH_VFOLDER_MIB` sets the size.

use backend_client::{Client, ClientConfig};
use backend_core::vfolder::{UsageMode, VFolderPermission};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

/// Builds the release manager binary and answers its path.
fn manager_binary() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["build", "-q", "--release", "-p", "backend-manager", "--bin", "backend-manager"])
        .current_dir(root)
        .status()?;
    anyhow::ensure!(status.success(), "building backend-manager failed");
    Ok(root.join("target/release/backend-manager"))
}

/// A standalone manager process; killed on drop.
struct ManagerProcess(Child);

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ManagerProcess {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Resets the peak resident set size the kernel keeps for the process.
    fn reset_peak(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")?;
        Ok(())
    }

    /// Peak resident set size since the last reset, in MiB.
    fn peak_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{}/status", self.pid()))?;
        Ok(kib / 1024.0)
    }
}

/// Starts `backend-manager standalone` on a free port with its data in `dir`; answers the process and a client.
async fn start_manager(binary: &Path, dir: &Path) -> anyhow::Result<(ManagerProcess, Client)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.join("manager.log"))?;
    let child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .args(["standalone", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let process = ManagerProcess(child);
    let credentials = dir.join("credentials.env");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&credentials) {
            if text.contains("BACKEND_SECRET_KEY") {
                break text;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the manager did not start; see {}",
            dir.join("manager.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let value = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("export {key}=")).map(str::to_owned)).unwrap_or_default()
    };
    let client = Client::new(ClientConfig::new(
        value("BACKEND_ENDPOINT"),
        value("BACKEND_ACCESS_KEY"),
        value("BACKEND_SECRET_KEY"),
    ))?;
    Ok((process, client))
}

/// Writes `mib` MiB of incompressible bytes.
fn make_file(path: &Path, mib: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            // xorshift: cheap bytes no file system or transport could compress away.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn row(name: &str, mib: usize, time: Duration, baseline: Duration, peak: Option<f64>) {
    let rate = mib as f64 / time.as_secs_f64();
    let vs = baseline.as_secs_f64() / time.as_secs_f64() * 100.0;
    let peak = peak.map_or("-".to_owned(), |p| format!("{p:.0}"));
    println!("| {name:<40} | {mib:>5} | {:>8.3} | {rate:>8.0} | {vs:>6.0}% | {peak:>9} |", time.as_secs_f64());
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let mib: usize = match std::env::var("BENCH_VFOLDER_MIB") {
        Ok(v) => v.parse()?,
        Err(_) if quick => 256,
        Err(_) => 1024,
    };
    let rounds = if quick { 1 } else { 3 };
    let binary = manager_binary()?;
    // Beside the build, on the same disk as everything else here (not a tmpfs).
    let scratch_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-vfolder");
    std::fs::create_dir_all(&scratch_root)?;
    let scratch = tempfile::tempdir_in(&scratch_root)?;
    let source = scratch.path().join("source.bin");
    make_file(&source, mib)?;
    let data = scratch.path().join("manager");
    std::fs::create_dir_all(&data)?;
    let (manager, client) = start_manager(&binary, &data).await?;

    let mut copies = Vec::new();
    for i in 0..rounds {
        let target = scratch.path().join(format!("copy-{i}.bin"));
        let started = Instant::now();
        anyhow::ensure!(Command::new("cp").arg(&source).arg(&target).status()?.success(), "cp failed");
        copies.push(started.elapsed());
        std::fs::remove_file(&target)?;
    }
    let cp = median(copies);

    client.create_folder("bench", Some("local"), None, UsageMode::General, VFolderPermission::ReadWrite).await?;
    let (mut uploads, mut downloads) = (Vec::new(), Vec::new());
    let (mut upload_peak, mut download_peak) = (0f64, 0f64);
    for i in 0..rounds {
        let remote = format!("file-{i}.bin");
        manager.reset_peak()?;
        let started = Instant::now();
        client.upload_file("bench", &source, &remote, |_, _| {}).await?;
        uploads.push(started.elapsed());
        upload_peak = upload_peak.max(manager.peak_mib()?);

        let local = scratch.path().join(format!("download-{i}.bin"));
        manager.reset_peak()?;
        let started = Instant::now();
        client.download_file("bench", &remote, &local, |_, _| {}).await?;
        downloads.push(started.elapsed());
        download_peak = download_peak.max(manager.peak_mib()?);
        anyhow::ensure!(std::fs::metadata(&local)?.len() == (mib as u64) << 20, "the download is incomplete");
        std::fs::remove_file(&local)?;
        client.delete_files("bench", &[remote.as_str()], false).await?;
    }
    client.delete_folder("bench").await?;

    println!(
        "| measurement ({mib} MiB file, median of {rounds}) | MiB | seconds | MiB/s | vs cp | manager peak RSS MiB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    row("cp (baseline)", mib, cp, cp, None);
    row("upload: request-upload + tus PATCH", mib, median(uploads), cp, Some(upload_peak));
    row("download: request-download + GET", mib, median(downloads), cp, Some(download_peak));
    Ok(())
}
