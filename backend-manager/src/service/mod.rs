//! The service layer: every operation the REST API, GraphQL and the command-line tools offer, with its checks. The
//! metadata store is reached only through here.

pub mod admin;
pub mod context;
pub mod session;
pub mod vfolder;
