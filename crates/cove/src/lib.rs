//! cove: vzctl-style system containers (CTs) on a stock Linux kernel.
//!
//! The data flow, module by module:
//!
//! ```text
//! cli ─> commands ─> ct (create/set/list/status)      config   (ct.toml)
//!                    lifecycle (start/stop/destroy)   template (the store)
//!                    exec (exec/enter)                 │
//!                         │                            ▼
//!                         └──> monitor ──> overlay + spec (ct.toml -> OCI spec) ──> cove-engine
//! ```
//!
//! `cove` holds no isolation logic: a CT is an OCI bundle generated at each
//! start, run by the engine. What is cove's own: CT configs and names
//! (`config`, `ctid`), the template store (`template`), the root overlay
//! (`overlay`), the per-CT lock (`lock`), the monitor process (`monitor`),
//! the run-time records (`runstate`) and the CT's network (`net`: veth,
//! addresses, routes, DNS files, published ports; the kernel work is in
//! the cove-net crate). Exit codes: see [`error`].

pub mod cgroup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod ct;
pub mod ctid;
pub mod error;
pub mod exec;
pub mod lifecycle;
pub mod lock;
pub mod migrate;
pub mod migrate_online;
pub mod migrate_recv;
pub mod monitor;
pub mod net;
pub mod overlay;
pub mod paths;
pub mod runstate;
pub mod signals;
pub mod spec;
pub mod suspend;
pub mod systemd;
pub mod template;
pub mod trim;

pub use error::{Error, Result};
