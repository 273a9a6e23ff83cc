//! Where cove keeps things.
//!
//! ```text
//! <data>/ct/<CTID>/ct.toml              the CT's config
//! <data>/ct/<CTID>/private/{upper,work} the CT's own files (overlay upper)
//! <data>/templates/<name>/rootfs        a template's root filesystem
//! <data>/templates/<name>/manifest.toml what it was built from
//! <run>/ct/<CTID>/bundle/{config.json,rootfs}  the OCI bundle of a running CT
//! <run>/ct/<CTID>/console.log           the CT's console, written by its monitor
//! <run>/ct/<CTID>/monitor.json          the monitor's pid while it lives
//! <run>/ct/<CTID>/last-exit.json        how the CT's init last ended
//! <run>/oci/<CTID>/                     the engine's state of the container
//! <run>/lock/<CTID>.lock                the CT's lock
//! ```
//!
//! `<data>` is `/var/lib/cove` (`--data-dir`, `COVE_DATA`), `<run>` is
//! `/run/cove` (`--run-dir`, `COVE_RUN`). The CT's cgroup is
//! `<parent>/<CTID>`, `<parent>` being `/cove` (`COVE_CGROUP_PARENT`): an
//! absolute path of cove's own, never under the caller's cgroup.

use std::path::{Path, PathBuf};

use crate::ctid::Ctid;
use crate::error::{Error, Result};

pub const DEFAULT_DATA: &str = "/var/lib/cove";
pub const DEFAULT_RUN: &str = "/run/cove";
pub const DEFAULT_CGROUP_PARENT: &str = "/cove";

#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub run: PathBuf,
    pub cgroup_parent: String,
}

impl Paths {
    /// The flag wins over the environment, which wins over the default.
    pub fn resolve(data: Option<&Path>, run: Option<&Path>) -> Result<Paths> {
        let pick = |flag: Option<&Path>, var: &str, default: &str| -> PathBuf {
            flag.map(Path::to_path_buf)
                .or_else(|| {
                    std::env::var_os(var)
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                })
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let data = absolute(&pick(data, "COVE_DATA", DEFAULT_DATA))?;
        let run = absolute(&pick(run, "COVE_RUN", DEFAULT_RUN))?;
        for (what, dir) in [("data directory", &data), ("run directory", &run)] {
            check_overlay_safe(what, dir)?;
        }
        let cgroup_parent = std::env::var("COVE_CGROUP_PARENT")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
        if !cgroup_parent.starts_with('/')
            || cgroup_parent.split('/').any(|c| c == "." || c == "..")
            || cgroup_parent.contains(char::is_whitespace)
        {
            return Err(Error::BadInput(format!(
                "COVE_CGROUP_PARENT={cgroup_parent:?}: must be an absolute cgroup path without . or .."
            )));
        }
        let cgroup_parent = cgroup_parent.trim_end_matches('/').to_string();
        Ok(Paths {
            data,
            run,
            cgroup_parent,
        })
    }

    pub fn cts(&self) -> PathBuf {
        self.data.join("ct")
    }

    pub fn templates(&self) -> PathBuf {
        self.data.join("templates")
    }

    pub fn template(&self, name: &str) -> PathBuf {
        self.templates().join(name)
    }

    /// The engine's state root.
    pub fn oci_root(&self) -> PathBuf {
        self.run.join("oci")
    }

    pub fn locks(&self) -> PathBuf {
        self.run.join("lock")
    }

    pub fn ct(&self, ctid: &Ctid) -> CtPaths {
        let dir = self.cts().join(ctid.as_str());
        let private = dir.join("private");
        let run = self.run.join("ct").join(ctid.as_str());
        let bundle = run.join("bundle");
        CtPaths {
            config: dir.join("ct.toml"),
            upper: private.join("upper"),
            work: private.join("work"),
            private,
            dir,
            rootfs: bundle.join("rootfs"),
            bundle,
            console_log: run.join("console.log"),
            console_sock: run.join("console.sock"),
            notify_sock: run.join("notify"),
            monitor: run.join("monitor.json"),
            last_exit: run.join("last-exit.json"),
            monitor_log: run.join("monitor.log"),
            run,
            lock: self.locks().join(format!("{ctid}.lock")),
            oci_root: self.oci_root(),
            cgroups_path: format!("{}/{ctid}", self.cgroup_parent),
        }
    }
}

/// Every path that belongs to one CT.
#[derive(Debug, Clone)]
pub struct CtPaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub private: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub run: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub console_log: PathBuf,
    pub console_sock: PathBuf,
    /// The monitor's notify socket for a CT whose init is systemd, bound
    /// into the CT at /run/host/notify (see [`crate::systemd::CtNotify`]).
    pub notify_sock: PathBuf,
    pub monitor: PathBuf,
    pub monitor_log: PathBuf,
    pub last_exit: PathBuf,
    pub lock: PathBuf,
    pub oci_root: PathBuf,
    pub cgroups_path: String,
}

/// Creates `dir` (and its parents) and makes it 0700. What lies below it,
/// a CT's mounted root or private files or a template, holds set-uid
/// programs that the host's unprivileged users must not be able to reach.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod", dir, e))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
    Ok(cwd.join(p))
}

/// overlayfs takes its layers in one option string where `,` separates
/// options, `:` separates lower layers and `\` escapes: a directory holding
/// one of them cannot be named there.
fn check_overlay_safe(what: &str, dir: &Path) -> Result<()> {
    let s = dir.to_string_lossy();
    if s.contains([',', ':', '\\', '\n']) {
        return Err(Error::BadInput(format!(
            "{what} {}: overlayfs cannot use a path containing , : or \\",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_paths_are_laid_out() {
        let p = Paths::resolve(Some(Path::new("/d")), Some(Path::new("/r"))).unwrap();
        let ct = p.ct(&Ctid::parse("101").unwrap());
        assert_eq!(ct.config, Path::new("/d/ct/101/ct.toml"));
        assert_eq!(ct.upper, Path::new("/d/ct/101/private/upper"));
        assert_eq!(ct.rootfs, Path::new("/r/ct/101/bundle/rootfs"));
        assert_eq!(ct.lock, Path::new("/r/lock/101.lock"));
        assert_eq!(ct.oci_root, Path::new("/r/oci"));
        assert!(ct.cgroups_path.ends_with("/101") && ct.cgroups_path.starts_with('/'));
    }

    #[test]
    fn overlay_unsafe_dirs_are_refused() {
        assert!(Paths::resolve(Some(Path::new("/a,b")), Some(Path::new("/r"))).is_err());
        assert!(Paths::resolve(Some(Path::new("/d")), Some(Path::new("/r:x"))).is_err());
    }
}
