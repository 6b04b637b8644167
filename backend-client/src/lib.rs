//! A typed async client of the Backend.AI API and the library behind the `bai` command-line tool.
//!
//! [`Client`] signs every request with a keypair (see [`signing`]) and speaks the wire types of
//! [`backend_core::api`]; an error answer is decoded from its problem+json body into
//! [`backend_core::Error::Remote`], and a server that cannot be reached is [`backend_core::Error::Unavailable`].
//! Administration is one generic call set per kind: `client.admin::<Domain>().list()` ([`admin`]). [`cli`] is the
//! `bai` command line; its [`cli::admin`] subcommands are also `backend-manager`'s.
//!
//! ```no_run
//! use backend_client::{Client, ClientConfig};
//! use backend_core::api::{ConsoleItem, CreateSessionRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8081", "AKIA...", "secret"))?;
//! let session = client
//!     .create_session(&CreateSessionRequest { image: Some("python".into()), ..Default::default() })
//!     .await?;
//! let mut no_input = |_prompt: &str| None;
//! let exit_code = client
//!     .run_code(&session.session_name, "print(6 * 7)", |item| {
//!         if let ConsoleItem::Stdout(text) = item {
//!             print!("{text}");
//!         }
//!     }, &mut no_input)
//!     .await?;
//! assert_eq!(exit_code, 0);
//! client.destroy_session(&session.session_name, false).await?;
//! # Ok(()) }
//! ```

pub mod cli;
mod client;
pub mod config;
pub mod signing;

pub use client::{admin, folders, Client, EOF_INPUT, TIMEOUT_EXIT_CODE};
pub use config::{ClientConfig, ConfigError};
pub use signing::signed_headers;
