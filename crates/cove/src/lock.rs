//! One lock per CT, taken by every command that changes the CT.
//!
//! The lock is an flock on `<run>/lock/<CTID>.lock`. flock belongs to the
//! open file, so a forked monitor that keeps the descriptor keeps the lock
//! until it closes it: that is how `cove start` hands its lock over to the
//! monitor until the CT runs.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock, or returns None at once when someone holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        Self::take(path, false)
    }

    /// Takes the lock, waiting for whoever holds it.
    pub fn acquire(path: &Path) -> Result<Lock> {
        Self::take(path, true)?
            .ok_or_else(|| Error::Tool(format!("flock {}: not taken", path.display())))
    }

    fn take(path: &Path, wait: bool) -> Result<Option<Lock>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io("open", path, e))?;
            let op = if wait {
                libc::LOCK_EX
            } else {
                libc::LOCK_EX | libc::LOCK_NB
            };
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
                let e = nix::errno::Errno::last();
                match e {
                    nix::errno::Errno::EINTR => continue,
                    nix::errno::Errno::EWOULDBLOCK => return Ok(None),
                    e => return Err(Error::sys(format!("flock {}", path.display()), e)),
                }
            }
            // `destroy` unlinks the file while holding it: whoever was
            // waiting on the old inode got a lock on a file nobody else can
            // open any more, and must try again on the current one.
            let held = file.metadata().map_err(|e| Error::io("stat", path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(Lock {
                        file,
                        path: path.to_path_buf(),
                    }))
                }
                _ => continue,
            }
        }
    }

    /// The descriptor holding the lock (a forked child that must not keep
    /// the lock closes its copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Removes the lock file while still holding it, then releases it.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_is_refused_until_release() {
        let dir = std::env::temp_dir().join(format!("cove-lock-test-{}", std::process::id()));
        let path = dir.join("1.lock");
        let a = Lock::try_acquire(&path).unwrap().expect("first lock");
        assert!(Lock::try_acquire(&path).unwrap().is_none());
        drop(a);
        let b = Lock::try_acquire(&path)
            .unwrap()
            .expect("lock after release");
        b.remove();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
