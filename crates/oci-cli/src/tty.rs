//! `run` / `exec -t` in the foreground without --console-socket: cove-oci
//! plays the console socket itself, receives the pty master and relays it
//! to its own terminal, as runc does.

use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

pub struct ConsoleListener {
    listener: UnixListener,
    pub path: PathBuf,
}

impl ConsoleListener {
    pub fn bind(root: &Path, id: &str) -> Result<ConsoleListener, String> {
        // Same mode as the engine gives a new state root: private to root.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| format!("create {}: {e}", root.display()))?;
        let path = root.join(format!(".console-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("console socket {}: {e}", path.display()))?;
        Ok(ConsoleListener { listener, path })
    }

    /// The container already connected and sent the master during create.
    pub fn receive_master(&self) -> Result<OwnedFd, String> {
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| format!("console socket accept: {e}"))?;
        cove_engine::console::receive_master(&conn)
            .map_err(|e| format!("receive console master: {e}"))?
            .ok_or_else(|| "the container sent no console master".into())
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// process.terminal of the bundle's config.json, read cheaply.
pub fn bundle_wants_tty(bundle: &Path) -> bool {
    // Only process.terminal is built; serde skips the rest unbuilt. A
    // serde_json::Value of the whole spec would allocate every name of a
    // seccomp profile (podman's has some 400) only to drop them again.
    #[derive(serde::Deserialize)]
    struct Process {
        #[serde(default)]
        terminal: Option<bool>,
    }
    #[derive(serde::Deserialize)]
    struct TerminalOnly {
        #[serde(default)]
        process: Option<Process>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<TerminalOnly>(&b).ok())
        .and_then(|s| s.process?.terminal)
        .unwrap_or(false)
}
