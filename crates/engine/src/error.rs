//! The engine's error type. Every variant names the thing that failed so a
//! front end can print one line a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {source}")]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("container with id {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} does not exist")]
    NotExist(String),
    #[error("invalid container id {0:?}: {1}")]
    InvalidId(String, &'static str),
    #[error("container not running")]
    NotRunning,
    #[error("container {id} is {status}, {what}")]
    WrongState {
        id: String,
        status: String,
        what: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
    #[error("{what}: {source}")]
    SysAt { what: String, source: nix::Error },
    #[error("cgroup: {0}")]
    Cgroup(#[from] cove_cgroups::Error),
    #[error("container init failed: {0}")]
    Init(String),
    /// The other end of the setup channel closed: seen by the runtime, the
    /// child died; seen by the child, the runtime gave up (and says why).
    #[error("container init failed: the container process exited during setup")]
    PeerGone,
    #[error("hook {path}: {msg}")]
    Hook { path: PathBuf, msg: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
    pub fn sys_at(what: impl Into<String>, source: nix::Error) -> Self {
        Error::SysAt {
            what: what.into(),
            source,
        }
    }
}
