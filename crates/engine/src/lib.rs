//! cove-engine: an OCI runtime spec in, an isolated process out.
//!
//! The front ends (`cove-oci`, `cove`) call [`container`] and [`exec`]; the
//! modules below them are the steps of the runtime-spec, one concern each.

pub mod capabilities;
pub mod console;
pub mod container;
pub mod devices;
pub mod error;
pub mod exec;
pub mod foreground;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod restore;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;
pub mod sys;

pub use error::{Error, Result};
