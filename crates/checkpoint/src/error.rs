//! cove-checkpoint's errors: each names what failed, and CRIU's own first
//! error line where CRIU is the one that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CRIU cannot checkpoint anything on this host; nothing was touched.
    #[error("CRIU cannot work on this host: {0}")]
    Unavailable(String),
    /// CRIU answered that the request failed.
    #[error("criu {what} failed: {detail}")]
    Criu { what: &'static str, detail: String },
    #[error("criu: {0}")]
    Protocol(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] cove_engine::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
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
}
