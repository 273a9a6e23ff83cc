//! The crate's error type: every variant names the cgroup file or directory
//! (or the pid) that the failing operation was about.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },

    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },

    #[error("cannot list {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },

    #[error("cannot send signal {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: i32,
        source: io::Error,
    },

    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },

    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("invalid linux.resources: {0}")]
    InvalidResources(String),

    /// The kernel refused a memory limit below the current usage (v1 does so
    /// itself with EBUSY; on v2 `checkBeforeUpdate` asks us to).
    #[error("cannot set memory limit {limit} in {path}: below the current usage {usage}")]
    MemoryBelowUsage {
        path: PathBuf,
        limit: i64,
        usage: u64,
    },

    /// A limit needs a controller that is not there; `looked_in` is where
    /// (the mount table for v1, cgroup.controllers for v2).
    #[error("cannot set {what}: controller {controller:?} is not available (see {looked_in})")]
    ControllerMissing {
        what: String,
        controller: String,
        looked_in: PathBuf,
    },

    /// The systemd driver: systemd or its bus is not there, or refused.
    #[error("systemd cgroup driver: {0}")]
    Systemd(String),

    #[error("{what} is not supported: {reason}")]
    Unsupported { what: String, reason: String },

    /// bpf(2) failed for the v2 device program; `log` holds the
    /// verifier's words when loading failed.
    #[error("cannot install the device program on cgroup {cgroup}: {what}: {source}{}", if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
    Bpf {
        what: String,
        cgroup: PathBuf,
        source: io::Error,
        log: String,
    },

    #[error("cgroup {path} did not reach state {state} in time")]
    FreezeTimeout { path: PathBuf, state: &'static str },

    #[error("cgroup {path} still busy after {attempts} attempts to remove it: {source}")]
    RemoveBusy {
        path: PathBuf,
        attempts: u32,
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
