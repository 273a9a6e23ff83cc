//! cove's error type and its exit codes.
//!
//! Every variant names the CT, template, path or syscall it is about, so the
//! front end prints one line a user can act on. The exit codes are stable
//! and modelled on vzctl's (`include/vzerror.h`), so scripts written for
//! vzctl read them the same way:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | bad input: unknown CT or template, bad flag or value, bad config file |
//! | 3 | a system call or an external tool failed |
//! | 9 | the CT is locked by another cove command |
//! | 31 | the CT is not running |
//! | 32 | the CT is running (and the command needs it stopped) |
//! | 33 | the CT did not stop |
//! | 44 | a CT with this CTID already exists |
//! | 50 | `migrate`: the pre-flight check failed (nothing was changed) |
//! | 51 | `migrate`: DEST cannot be reached over ssh, or has no cove |
//! | 52 | `migrate`: a step failed and was rolled back (the CT as before, DEST clean) |
//! | 53 | `migrate`: an interrupted or half rolled back migration: run `cove migrate --abort CTID` |
//!
//! `cove exec` and `cove enter` exit with the command's own status instead
//! (128 + N when it was killed by signal N).

use std::path::PathBuf;

/// The documented exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const BAD_INPUT: i32 = 1;
    pub const SYSTEM: i32 = 3;
    pub const LOCKED: i32 = 9;
    pub const NOT_RUNNING: i32 = 31;
    pub const RUNNING: i32 = 32;
    pub const STOP_FAILED: i32 = 33;
    pub const CT_EXISTS: i32 = 44;
    pub const MIGRATE_PREFLIGHT: i32 = 50;
    pub const MIGRATE_UNREACHABLE: i32 = 51;
    pub const MIGRATE_ROLLED_BACK: i32 = 52;
    pub const MIGRATE_PENDING: i32 = 53;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value on the command line that cannot be used.
    #[error("{0}")]
    BadInput(String),
    #[error("CT {0} does not exist (see `cove list -a`)")]
    NoSuchCt(String),
    #[error("CT {0} already exists (choose another CTID, or `cove destroy {0}` first)")]
    CtExists(String),
    /// A config or manifest file that does not parse or holds a bad value.
    #[error("{path}: {msg}")]
    BadConfig { path: PathBuf, msg: String },
    #[error("template {0} does not exist (see `cove template list`)")]
    NoSuchTemplate(String),
    #[error("template {0} already exists (use --force to replace it)")]
    TemplateExists(String),
    #[error("template {name} is still used by CT {users} (destroy those CTs first)")]
    TemplateInUse { name: String, users: String },
    #[error("CT {0} is locked by another cove command (try again once it has finished)")]
    Locked(String),
    #[error("CT {0} is not running")]
    NotRunning(String),
    #[error("CT {0} is already running")]
    AlreadyRunning(String),
    #[error("CT {ctid} is running: {hint}")]
    Running { ctid: String, hint: &'static str },
    #[error("CT {ctid} did not stop: {msg}")]
    StopFailed { ctid: String, msg: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{0}")]
    Engine(#[from] cove_engine::Error),
    #[error("cgroup: {0}")]
    Cgroup(#[from] cove_cgroups::Error),
    /// A tool cove runs (a template's build script, tar) failed.
    #[error("{0}")]
    Tool(String),
    /// The CT's monitor reported a failure while starting it.
    #[error("{msg}")]
    Monitor { code: i32, msg: String },
    /// `cove migrate`: what went wrong, with one of the 50-53 codes (or
    /// DEST's own code for what DEST's cove refused).
    #[error("{msg}")]
    Migrate { code: i32, msg: String },
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

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn bad_config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadConfig {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// The process exit code for this error (see the table above).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadInput(_)
            | Error::NoSuchCt(_)
            | Error::BadConfig { .. }
            | Error::NoSuchTemplate(_)
            | Error::TemplateExists(_)
            | Error::TemplateInUse { .. } => exit::BAD_INPUT,
            Error::CtExists(_) => exit::CT_EXISTS,
            Error::Locked(_) => exit::LOCKED,
            Error::NotRunning(_) | Error::Engine(cove_engine::Error::NotRunning) => {
                exit::NOT_RUNNING
            }
            Error::Running { .. } | Error::AlreadyRunning(_) => exit::RUNNING,
            Error::StopFailed { .. } => exit::STOP_FAILED,
            Error::Monitor { code, .. } | Error::Migrate { code, .. } => *code,
            Error::Io { .. }
            | Error::Sys { .. }
            | Error::Engine(_)
            | Error::Cgroup(_)
            | Error::Tool(_) => exit::SYSTEM,
        }
    }

    /// The message as one line: the front end promises a single line on
    /// stderr, and some tools' messages carry newlines.
    pub fn one_line(&self) -> String {
        let text = self.to_string();
        let parts: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_vzctl() {
        assert_eq!(Error::Locked("101".into()).exit_code(), 9);
        assert_eq!(Error::NotRunning("101".into()).exit_code(), 31);
        assert_eq!(
            Error::Running {
                ctid: "101".into(),
                hint: "x"
            }
            .exit_code(),
            32
        );
        assert_eq!(Error::CtExists("101".into()).exit_code(), 44);
        assert_eq!(Error::NoSuchCt("101".into()).exit_code(), 1);
    }

    #[test]
    fn messages_are_one_line() {
        let e = Error::Tool("tar: a\n\n  b\n".into());
        assert_eq!(e.one_line(), "tar: a; b");
    }
}
