//! The service layer: every operation the REST API, GraphQL and the command-line tools offer, with its checks. The
//! metadata store is reached only through here.
//!
//! One calling shape: a service is a group of [`Manager`](crate::Manager) methods in its own module
//! ([`session`]: `m.create_session(..)`, `m.execute(..)`, `m.destroy_session(..)`; [`vfolder`]:
//! `m.create_folder(..)`, `m.folder_info(..)`, `m.resolve_mounts(..)`). A handler resolves what its request acts
//! as once ([`context`]: [`context::acting_for`] when only the owner's access key matters,
//! [`context::RequestContext`] when its user and resource policy are checked), passes it to one service call, and
//! renders the answer; handlers never read the store themselves. Administration ([`admin`]) works on the store
//! alone, so that the offline command-line tools can use it without a running manager.

pub mod admin;
pub mod context;
pub mod read;
pub mod session;
pub mod vfolder;
