//! `bai folder ...`: virtual folders, their files, transfers with progress bars, and sharing, through `/folders`.

use super::{print_answer, print_json, print_table, Failure};
use crate::Client;
use backend_core::vfolder::{UsageMode, VFolderPermission};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `bai folder ...`
#[derive(Debug, Subcommand)]
pub enum FolderCommand {
    /// Create a folder.
    Create {
        /// Its name.
        name: String,
        /// The storage host (the server's default when absent).
        host: Option<String>,
        /// Make it a project folder of this group.
        #[arg(long)]
        group: Option<String>,
        /// general, model or data.
        #[arg(long, default_value = "general", value_parser = parse_usage_mode)]
        usage_mode: UsageMode,
        /// What group members may do: ro, rw or wd.
        #[arg(long, default_value = "rw", value_parser = parse_permission)]
        permission: VFolderPermission,
    },
    /// List the folders you may use.
    #[command(alias = "list")]
    Ls,
    /// Show a folder.
    Info {
        /// Its name.
        name: String,
    },
    /// Delete a folder and its files.
    #[command(alias = "delete")]
    Rm {
        /// Its name.
        name: String,
    },
    /// Rename a folder.
    Rename {
        /// Its name.
        name: String,
        /// The new name.
        new_name: String,
    },
    /// Show the storage hosts you may use.
    Hosts,
    /// Upload files (resumable; an interrupted upload continues where it stopped).
    Upload {
        /// The folder.
        name: String,
        /// Local files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The directory in the folder to put them in (the top when absent).
        #[arg(long, default_value = "")]
        dst: String,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Download a file.
    Download {
        /// The folder.
        name: String,
        /// The file's path in the folder.
        path: String,
        /// Where to write it (its base name in the current directory when absent).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Continue a download that broke off, keeping the bytes already in the local file.
        #[arg(long = "continue", short = 'c')]
        resume: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List a directory of a folder.
    LsFiles {
        /// The folder.
        name: String,
        /// The directory (the top when absent).
        #[arg(default_value = ".")]
        path: String,
    },
    /// Make a directory.
    Mkdir {
        /// The folder.
        name: String,
        /// The directory.
        path: String,
        /// Make missing parents too.
        #[arg(long, short)]
        parents: bool,
        /// An existing directory is not an error.
        #[arg(long)]
        exist_ok: bool,
    },
    /// Move (or rename) a file or directory inside a folder.
    Mv {
        /// The folder.
        name: String,
        /// What to move.
        src: String,
        /// Where to.
        dst: String,
    },
    /// Give a file or directory a new name in its directory.
    RenameFile {
        /// The folder.
        name: String,
        /// The file or directory.
        path: String,
        /// Its new name.
        new_name: String,
    },
    /// Delete files.
    RmFiles {
        /// The folder.
        name: String,
        /// The paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Delete directories with their contents.
        #[arg(long, short)]
        recursive: bool,
    },
    /// Invite users to share a folder.
    Invite {
        /// The folder.
        name: String,
        /// The users' e-mails.
        #[arg(required = true)]
        emails: Vec<String>,
        /// The permission offered: ro, rw or wd.
        #[arg(long, default_value = "rw", value_parser = parse_permission)]
        perm: VFolderPermission,
    },
    /// List the invitations you received.
    Invitations,
    /// Accept an invitation.
    Accept {
        /// The invitation's id.
        id: String,
    },
    /// Share a folder with users directly.
    Share {
        /// The folder.
        name: String,
        /// The users' e-mails.
        #[arg(required = true)]
        emails: Vec<String>,
        /// The permission: ro, rw or wd.
        #[arg(long, default_value = "rw", value_parser = parse_permission)]
        perm: VFolderPermission,
    },
    /// Withdraw shares of a folder.
    Unshare {
        /// The folder.
        name: String,
        /// The users' e-mails.
        #[arg(required = true)]
        emails: Vec<String>,
    },
    /// Give up your share of someone else's folder.
    Leave {
        /// The folder.
        name: String,
    },
}

fn parse_permission(text: &str) -> Result<VFolderPermission, String> {
    text.parse().map_err(|e: backend_core::Error| e.to_string())
}

fn parse_usage_mode(text: &str) -> Result<UsageMode, String> {
    text.parse().map_err(|e: backend_core::Error| e.to_string())
}

/// Runs one `bai folder` command.
pub async fn run(client: &Client, command: FolderCommand, json: bool) -> Result<(), Failure> {
    let done = |msg: String| print_answer(json, &serde_json::json!({ "result": msg }), |_| outln!("{msg}"));
    match command {
        FolderCommand::Create { name, host, group, usage_mode, permission } => {
            let folder = client.create_folder(&name, host.as_deref(), group.as_deref(), usage_mode, permission).await?;
            print_answer(json, &folder, |f| outln!("folder {} ({}) created on {}", f.name, f.id, f.host));
        }
        FolderCommand::Ls => print_answer(json, &client.list_folders().await?, |folders| {
            let rows: Vec<[String; 6]> = folders
                .iter()
                .map(|f| {
                    let owner = f.user_email.clone().or_else(|| f.group_name.clone()).unwrap_or_default();
                    let usage = f.usage_mode.as_str().to_owned();
                    [f.name.clone(), f.id.clone(), f.host.clone(), f.permission.to_string(), owner, usage]
                })
                .collect();
            print_table(["NAME", "ID", "HOST", "PERMISSION", "OWNER", "USAGE"], &as_str_rows(&rows));
        }),
        FolderCommand::Info { name } => print_answer(json, &client.folder_info(&name).await?, |f| {
            let owner = f.user_email.clone().or_else(|| f.group_name.clone()).unwrap_or_default();
            outln!("Name:        {}", f.name);
            outln!("ID:          {}", f.id);
            outln!("Host:        {}", f.host);
            outln!("Owner:       {owner} ({}{})", f.ownership_type, if f.is_owner { ", you" } else { "" });
            outln!("Permission:  {}", f.permission);
            outln!("Usage mode:  {}", f.usage_mode.as_str());
            outln!("Status:      {}", f.status);
            outln!("Files:       {}", f.num_files.or(f.num_files_legacy).map_or("-".into(), |n| n.to_string()));
            outln!("Used:        {}", f.used_bytes.map_or("-".into(), |n| format!("{n} bytes")));
            outln!("Created:     {}", f.created_at);
        }),
        FolderCommand::Rm { name } => {
            client.delete_folder(&name).await?;
            done(format!("folder {name} deleted"));
        }
        FolderCommand::Rename { name, new_name } => {
            client.rename_folder(&name, &new_name).await?;
            done(format!("folder {name} renamed to {new_name}"));
        }
        FolderCommand::Hosts => print_answer(json, &client.folder_hosts().await?, |h| {
            outln!("Default: {}", h.default.as_deref().unwrap_or("-"));
            outln!("Allowed: {}", h.allowed.join(", "));
        }),
        FolderCommand::Upload { name, files, dst, quiet } => {
            for file in &files {
                let remote = remote_path(&dst, file)?;
                let bar = progress_bar(quiet || json, &format!("{} -> {name}/{remote}", file.display()));
                let outcome = client.upload_file(&name, file, &remote, |done, total| update(&bar, done, total)).await;
                bar.finish_and_clear();
                outcome?;
                if !json {
                    outln!("uploaded {} to {name}/{remote}", file.display());
                }
            }
            if json {
                print_json(&serde_json::json!({ "uploaded": files }));
            }
        }
        FolderCommand::Download { name, path, output, resume, quiet } => {
            let local = match output {
                Some(local) => local,
                None => PathBuf::from(Path::new(&path).file_name().ok_or_else(|| Failure {
                    title: "Invalid arguments".into(),
                    msg: format!("{path:?} names no file; give --output"),
                })?),
            };
            if !resume {
                // A fresh download replaces the file; without this an old file would be taken for a partial one.
                match std::fs::remove_file(&local) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Failure::io(format!("cannot replace {}", local.display()), e))
                    }
                    _ => {}
                }
            }
            let bar = progress_bar(quiet || json, &format!("{name}/{path} -> {}", local.display()));
            let outcome = client.download_file(&name, &path, &local, |done, total| update(&bar, done, total)).await;
            bar.finish_and_clear();
            outcome?;
            done(format!("downloaded {name}/{path} to {}", local.display()));
        }
        FolderCommand::LsFiles { name, path } => print_answer(json, &client.list_files(&name, &path).await?, |list| {
            let rows: Vec<[String; 5]> = list
                .items
                .iter()
                .map(|i| [i.name.clone(), i.kind.clone(), i.size.to_string(), i.mode.clone(), i.modified.clone()])
                .collect();
            print_table(["NAME", "TYPE", "SIZE", "MODE", "MODIFIED"], &as_str_rows(&rows));
        }),
        FolderCommand::Mkdir { name, path, parents, exist_ok } => {
            client.mkdir(&name, &path, parents, exist_ok).await?;
            done(format!("made {name}/{path}"));
        }
        FolderCommand::Mv { name, src, dst } => {
            client.move_file(&name, &src, &dst).await?;
            done(format!("moved {name}/{src} to {name}/{dst}"));
        }
        FolderCommand::RenameFile { name, path, new_name } => {
            client.rename_file(&name, &path, &new_name).await?;
            done(format!("renamed {name}/{path} to {new_name}"));
        }
        FolderCommand::RmFiles { name, paths, recursive } => {
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            client.delete_files(&name, &refs, recursive).await?;
            done(format!("deleted {} from {name}", paths.join(", ")));
        }
        FolderCommand::Invite { name, emails, perm } => {
            let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
            print_answer(json, &client.invite(&name, perm, &refs).await?, |a| {
                if a.invited_ids.is_empty() {
                    outln!("nobody invited (pending invitations already?)");
                }
                for id in &a.invited_ids {
                    outln!("invited {id} to {name} ({perm})");
                }
            });
        }
        FolderCommand::Invitations => print_answer(json, &client.invitations().await?, |list| {
            let rows: Vec<[String; 5]> = list
                .invitations
                .iter()
                .map(|i| [i.id.clone(), i.vfolder_name.clone(), i.inviter.clone(), i.perm.to_string(), i.state.clone()])
                .collect();
            print_table(["ID", "FOLDER", "INVITER", "PERMISSION", "STATE"], &as_str_rows(&rows));
        }),
        FolderCommand::Accept { id } => {
            client.accept_invitation(&id).await?;
            done(format!("accepted invitation {id}"));
        }
        FolderCommand::Share { name, emails, perm } => {
            let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
            print_answer(json, &client.share(&name, perm, &refs).await?, |a| {
                for email in &a.shared_emails {
                    outln!("shared {name} with {email} ({perm})");
                }
            });
        }
        FolderCommand::Unshare { name, emails } => {
            let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
            print_answer(json, &client.unshare(&name, &refs).await?, |a| {
                for email in &a.unshared_emails {
                    outln!("unshared {name} from {email}");
                }
            });
        }
        FolderCommand::Leave { name } => {
            client.leave(&name).await?;
            done(format!("left {name}"));
        }
    }
    Ok(())
}

/// Where a local file goes in the folder: its base name, under `dir` when given.
fn remote_path(dir: &str, file: &Path) -> Result<String, Failure> {
    let base = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| Failure {
        title: "Invalid arguments".into(),
        msg: format!("{} names no file", file.display()),
    })?;
    let dir = dir.trim_matches('/');
    Ok(if dir.is_empty() || dir == "." { base.to_owned() } else { format!("{dir}/{base}") })
}

/// Where the transfer goes, then its bar with bytes done and total, the rate and the time left.
const PROGRESS_TEMPLATE: &str =
    "{msg}\n{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// A bytes/rate/ETA bar on standard error, hidden when asked or when standard output is not a terminal (a script
/// reading the output wants no redraws).
fn progress_bar(hidden: bool, what: &str) -> ProgressBar {
    if hidden || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(PROGRESS_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn update(bar: &ProgressBar, done: u64, total: u64) {
    bar.set_length(total);
    bar.set_position(done);
}

fn as_str_rows<const N: usize>(rows: &[[String; N]]) -> Vec<[&str; N]> {
    rows.iter().map(|r| r.each_ref().map(String::as_str)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_keep_the_base_name_under_the_destination() {
        assert_eq!(remote_path("", Path::new("/tmp/a/data.bin")).unwrap(), "data.bin");
        assert_eq!(remote_path("/in/", Path::new("data.bin")).unwrap(), "in/data.bin");
        assert_eq!(remote_path(".", Path::new("x/y.txt")).unwrap(), "y.txt");
        assert!(remote_path("", Path::new("/")).is_err());
    }

    #[test]
    fn the_progress_template_is_valid() {
        assert!(ProgressStyle::with_template(PROGRESS_TEMPLATE).is_ok());
        // Hidden bars swallow updates, as scripts and --quiet want.
        let bar = progress_bar(true, "x");
        update(&bar, 5, 10);
        assert!(bar.is_hidden());
    }

    #[test]
    fn permissions_and_modes_are_checked_when_parsed() {
        assert_eq!(parse_permission("ro").unwrap(), VFolderPermission::ReadOnly);
        assert!(parse_permission("rwx").is_err());
        assert_eq!(parse_usage_mode("model").unwrap(), UsageMode::Model);
        assert!(parse_usage_mode("other").is_err());
    }
}
