//! The `bai` command line: its arguments ([`Cli`]) and the bodies of its subcommands; the binary parses and calls
//! [`run`].
//!
//! Configured like the official client by `BACKEND_ENDPOINT`, `BACKEND_ACCESS_KEY` and `BACKEND_SECRET_KEY`, each
//! overridden by its flag. `bai run` and `bai exec` stream the code's output as it arrives and exit with the code's
//! exit code; every other failure prints `error: <title>: <msg>` and exits 1 (2 for usage errors).

use crate::{Client, ClientConfig, ConfigError};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Write;

/// `println!` that does not panic when standard output is closed (`bai session ls | head -1`); see [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that does not panic when standard output is closed; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

pub mod admin;
pub mod folder;
pub mod session;

/// Command-line client of the Backend.AI API.
#[derive(Debug, Parser)]
#[command(name = "bai", version)]
pub struct Cli {
    /// The manager's URL.
    #[arg(long, global = true, help_heading = "Global options", env = "BACKEND_ENDPOINT", default_value = crate::config::DEFAULT_ENDPOINT)]
    endpoint: String,
    /// The keypair's access key.
    #[arg(long, global = true, help_heading = "Global options", env = "BACKEND_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// The keypair's secret key.
    #[arg(long, global = true, help_heading = "Global options", env = "BACKEND_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Admins: act for this keypair.
    #[arg(long, global = true, help_heading = "Global options")]
    owner_access_key: Option<String>,
    /// Print the answers as JSON.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands of `bai`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a session, run code in it, and destroy it; exits with the code's exit code.
    Run(session::RunArgs),
    /// Manage sessions.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Run code in an existing session; exits with the code's exit code.
    Exec {
        /// The session's name or id.
        session: String,
        /// The code, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        code: String,
    },
    /// Interrupt the code running in a session.
    Interrupt {
        /// The session's name or id.
        session: String,
    },
    /// Show the server's API version.
    Version,
    /// Administration: domains, groups, users, resource policies, scaling groups, keypairs.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Virtual folders: create, share, list files, upload and download.
    #[command(subcommand, alias = "vfolder")]
    Folder(folder::FolderCommand),
}

/// A failure as the user sees it: `error: <title>: <msg>`.
#[derive(Debug)]
pub struct Failure {
    pub(crate) title: String,
    pub(crate) msg: String,
}

impl From<backend_core::Error> for Failure {
    fn from(e: backend_core::Error) -> Self {
        use backend_core::Error;
        let title = e.kind().title().to_owned();
        match e {
            Error::Remote { problem, .. } => Failure { title: problem.title, msg: problem.msg },
            // The title already says what kind of error it is.
            Error::Unavailable { msg } | Error::InvalidParams { msg } | Error::Internal { msg } => {
                Failure { title, msg }
            }
            other => Failure { title, msg: other.to_string() },
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure { title: "Invalid configuration".into(), msg: e.to_string() }
    }
}

impl Failure {
    pub(crate) fn io(context: String, e: std::io::Error) -> Self {
        Failure { title: "I/O error".into(), msg: format!("{context}: {e}") }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let title = self.title.trim_end_matches('.');
        if self.msg.is_empty() {
            write!(f, "{title}")
        } else {
            write!(f, "{title}: {}", self.msg)
        }
    }
}

impl std::error::Error for Failure {}

/// Runs a parsed command line to its end and answers the process exit code, having printed any failure.
pub async fn run(cli: Cli) -> i32 {
    let code = match dispatch(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    code
}

async fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let client = connect(&cli)?;
    let json = cli.json;
    match cli.command {
        Command::Version => print_answer(json, &client.version().await?, |v| outln!("{} ({})", v.version, v.manager)),
        Command::Run(args) => return session::run_in_new_session(&client, args, json).await,
        Command::Exec { session, code } => {
            let code = if code == "-" { session::read_code("-")? } else { code };
            return Ok(session::exit_status(session::execute(&client, &session, &code, json).await?));
        }
        Command::Interrupt { session } => {
            client.interrupt(&session).await?;
            print_answer(json, &serde_json::json!({}), |_| outln!("interrupted {session}"));
        }
        Command::Session(command) => session::run(&client, command, json).await?,
        Command::Admin(command) => admin::run(&client, command, json).await?,
        Command::Folder(command) => folder::run(&client, command, json).await?,
    }
    Ok(0)
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    use crate::config::{ACCESS_KEY_ENV, DEFAULT_ENDPOINT, SECRET_KEY_ENV};
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let endpoint = Some(cli.endpoint.clone()).filter(|e| !e.trim().is_empty()).unwrap_or(DEFAULT_ENDPOINT.into());
    let access_key =
        given(&cli.access_key).ok_or(ConfigError::Missing { what: "the access key", env: ACCESS_KEY_ENV })?;
    let secret_key =
        given(&cli.secret_key).ok_or(ConfigError::Missing { what: "the secret key", env: SECRET_KEY_ENV })?;
    let client = Client::new(ClientConfig::new(endpoint, access_key, secret_key))?;
    Ok(match &cli.owner_access_key {
        Some(owner) => client.acting_for(owner.clone()),
        None => client,
    })
}

/// Writes to standard output. A reader that went away (a closed pipe) wants no more output, so the text is dropped
/// and the command goes on, as it does for streamed output; any other write error ends the command.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    match std::io::stdout().lock().write_fmt(args) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
        _ => {}
    }
}

/// Prints an answer: as JSON, or as `human` renders it.
pub(crate) fn print_answer<T: Serialize>(json: bool, answer: &T, human: impl FnOnce(&T)) {
    if json {
        print_json(answer);
    } else {
        human(answer);
    }
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(crate) fn print_table<const N: usize>(header: [&str; N], rows: &[[&str; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str; N]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(&header);
    rows.iter().for_each(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn failures_read_title_then_message() {
        let remote = backend_core::Error::from_problem(
            404,
            backend_core::Problem {
                kind: "https://api.backend.ai/probs/session-not-found".into(),
                title: "No such session.".into(),
                msg: "session not found: s1".into(),
            },
        );
        assert_eq!(Failure::from(remote).to_string(), "No such session: session not found: s1");
    }
}
