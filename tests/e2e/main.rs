//! End-to-end tests: real managers, agents and kernel runners on 127.0.0.1, driven over HTTP.

mod accelerators;
mod bad_input;
mod client;
mod cluster;
mod common;
mod docker;
mod files;
mod folders;
mod lifecycle;
mod limits;
mod mounts;
mod restart;
mod robustness;
mod streams;
