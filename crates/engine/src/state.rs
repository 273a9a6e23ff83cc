//! Container state on disk: one directory per container under the root,
//! `state.json` written atomically, an flock held for every operation.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// Written by create before it makes the container's cgroup and read only
/// while no state.json exists: see [`Creating`].
pub const CREATING_FILE: &str = "creating.json";

/// Where a container being created has its cgroup. create writes it before
/// the first cgroup directory exists, so that if create is killed before
/// state.json is saved, `delete` still finds the cgroup and kills what runs
/// in it (the init may be waiting on the exec fifo) before removing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Creating {
    pub cgroup_paths: Vec<(String, PathBuf)>,
    pub systemd_cgroup: bool,
}

/// What is persisted for a container. The first fields are the OCI state;
/// the rest is what later commands need to find the container's resources.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/PID/stat) so a recycled pid is
    /// never taken for our init.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    pub cgroup_paths: Vec<(String, PathBuf)>,
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// Set once the init's exit was seen or the container was killed for good.
    #[serde(default)]
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OCI state as runc prints it (`state`, `list --format json`, hooks' stdin).
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
    pub owner: &'a str,
}

impl Saved {
    pub fn oci(&self, status: Status) -> OciState<'_> {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            pid,
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: self.annotations.as_ref().filter(|a| !a.is_empty()),
            owner: &self.owner,
        }
    }
}

/// A container's state directory, locked for as long as this lives.
pub struct StateDir {
    pub path: PathBuf,
    _lock: File,
}

fn flock_exclusive(f: &File, path: &Path) -> Result<()> {
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::EINTR {
            return Err(Error::sys_at(format!("flock {}", path.display()), e));
        }
    }
}

fn lock_dir(path: &Path) -> Result<File> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    flock_exclusive(&f, path)?;
    Ok(f)
}

impl StateDir {
    /// Makes the directory for a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create state root", root, e))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.into()))
            }
            Err(e) => return Err(Error::io("create state dir", &path, e)),
        }
        let lock = lock_dir(&path)?;
        Ok(StateDir { path, _lock: lock })
    }

    /// `<root>/<id>` locked, if it holds no state.json: what a create
    /// killed before its first save leaves (runc's delete removes it too).
    /// Under the directory's lock, so a create still running is waited for
    /// and never undone.
    pub fn open_stale(root: &Path, id: &str) -> Option<StateDir> {
        let path = root.join(id);
        let lock = File::open(&path).ok()?;
        (flock_exclusive(&lock, &path).is_ok() && !path.join(STATE_FILE).exists())
            .then_some(StateDir { path, _lock: lock })
    }

    /// What create wrote before making the cgroup, if it got that far.
    pub fn creating(&self) -> Option<Creating> {
        let bytes = std::fs::read(self.path.join(CREATING_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save_creating(&self, creating: &Creating) -> Result<()> {
        write_runtime(
            &self.path.join(CREATING_FILE),
            &serde_json::to_vec(creating).map_err(|e| Error::Other(e.to_string()))?,
        )
    }

    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        let path = root.join(id);
        let lock = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.into()))
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        flock_exclusive(&lock, &path)?;
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotExist(id.into()));
        }
        Ok(StateDir { path, _lock: lock })
    }

    pub fn load(&self) -> Result<Saved> {
        read_saved(&self.path)
    }

    pub fn save(&self, saved: &Saved) -> Result<()> {
        write_runtime(
            &self.path.join(STATE_FILE),
            &serde_json::to_vec(saved).map_err(|e| Error::Other(e.to_string()))?,
        )
    }

    /// The fd holding the lock. A forked child must close it: flock belongs
    /// to the open file, so a child keeping it would keep the lock.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    pub fn fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(Error::io("remove", &self.path, e))
            }
        })
    }
}

pub fn read_saved(dir: &Path) -> Result<Saved> {
    let p = dir.join(STATE_FILE);
    let bytes = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("{}: corrupt state: {e}", p.display())))
}

/// Write to a temp file, fsync, rename: a crash leaves the old or the new
/// file. For what must outlive the machine (a CT's config, unit files,
/// checkpoint records). The temp file has a name of its own, is created
/// exclusively and never through a symlink: a pid file's directory may be
/// writable by others.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, true)
}

/// Write to a temp file and rename, without fsync: readers see the old or
/// the new file, never a half-written one. For run-time state (the state
/// directory, pid files, a monitor's records), which lives in /run and
/// means nothing after a crash of the machine: an fsync there costs a
/// millisecond or more on a disk and buys nothing (runc does not sync its
/// state either).
pub fn write_runtime(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, false)
}

fn replace_file(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let written = f
        .write_all(data)
        .map_err(|e| Error::io("write", &tmp, e))
        .and_then(|()| {
            if durable {
                f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))
            } else {
                Ok(())
            }
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Field 22 (starttime) and field 3 (state) of /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    // One read into a buffer the line fits (some 300 bytes): a /proc file
    // reports size 0, and read_to_string would stat and seek it, then
    // start with a 32-byte buffer and take six reads. `list` does this for
    // every container.
    let mut buf = [0u8; 1024];
    let n = std::io::Read::read(
        &mut std::fs::File::open(format!("/proc/{pid}/stat")).ok()?,
        &mut buf,
    )
    .ok()?;
    let s = std::str::from_utf8(&buf[..n]).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True while our init (same pid and start time) exists and is not a zombie.
pub fn init_alive(saved: &Saved) -> bool {
    if saved.stopped || saved.pid <= 0 {
        return false;
    }
    matches!(proc_stat(saved.pid), Some((st, start)) if start == saved.pid_start && st != 'Z' && st != 'X')
}

/// RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano prints it.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut frac = format!("{:09}", now.subsec_nanos());
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The names under `root`, sorted: candidates only. One without a readable
/// state file (being created or removed) is the caller's to skip, which
/// reading the state does anyway; no stat of each here.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", root, e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert!(
            s.ends_with('Z') && s.len() >= 20 && &s[4..5] == "-" && &s[10..11] == "T",
            "{s}"
        );
    }

    #[test]
    fn proc_stat_of_self() {
        let (st, start) = proc_stat(std::process::id() as i32).expect("own stat");
        assert!(st.is_ascii_uppercase() && st != 'Z', "state {st}");
        assert!(start > 0);
    }
}
