//! The cgroup v2 manager: one directory in the unified hierarchy (the
//! whole story on a unified host; the companion leaf on a hybrid host).

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fs::{create_cgroup, remove_cgroup, CgroupDir};
use crate::runc_stats::{self, RuncStats};
use crate::stats::{self, Stats};
use crate::{signal, v2_resources, CgroupManager};

#[derive(Debug, Clone)]
pub(crate) struct V2Manager {
    leaf: CgroupDir,
    /// The cgroup2 mount point, when known: controllers are handed down
    /// from there. A manager rebuilt from saved paths on a host whose
    /// mounts cannot be read has only the leaf.
    mount_point: Option<PathBuf>,
}

/// Which controllers `create` enables on the way down to the leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delegation {
    /// Every controller the parent has, as runc does on a unified host.
    All,
    /// None: on a hybrid host the v2 tree is for tracking, and a
    /// controller is enabled only when a limit needs it.
    None,
}

impl V2Manager {
    pub(crate) fn new(leaf: PathBuf, mount_point: Option<PathBuf>) -> Self {
        let mount_point = mount_point.filter(|m| leaf.starts_with(m));
        Self {
            leaf: CgroupDir::new(leaf),
            mount_point,
        }
    }

    pub(crate) fn leaf(&self) -> &CgroupDir {
        &self.leaf
    }

    /// The cgroups from the mount point down to the leaf's parent: the ones
    /// whose cgroup.subtree_control decides what the leaf may use.
    fn ancestors(&self) -> Vec<PathBuf> {
        let Some(mount_point) = &self.mount_point else {
            return Vec::new();
        };
        let Ok(below) = self.leaf.path().strip_prefix(mount_point) else {
            return Vec::new();
        };
        if below.as_os_str().is_empty() {
            // The leaf is the root cgroup: it has no ancestors to set up.
            return Vec::new();
        }
        let mut ancestors = vec![mount_point.clone()];
        let mut current = mount_point.clone();
        let components: Vec<_> = below.components().collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            current.push(component);
            ancestors.push(current.clone());
        }
        ancestors
    }

    pub(crate) fn create_with(&self, delegation: Delegation) -> Result<()> {
        if delegation == Delegation::All {
            for ancestor in self.ancestors() {
                create_cgroup(&ancestor)?;
                enable_controllers(&CgroupDir::new(ancestor), None);
            }
        }
        create_cgroup(self.leaf.path())
    }

    /// Enables `wanted` controllers from the mount point down to the leaf,
    /// for limits on a hybrid host's v2 tree.
    pub(crate) fn enable(&self, wanted: &[&str]) {
        if wanted.is_empty() {
            return;
        }
        for ancestor in self.ancestors() {
            enable_controllers(&CgroupDir::new(ancestor), Some(wanted));
        }
    }

    /// Whether the hierarchy offers `controller` at all (it may be bound
    /// to a v1 hierarchy instead).
    pub(crate) fn controller_available(&self, controller: &str) -> bool {
        let top = match &self.mount_point {
            Some(mount_point) => CgroupDir::new(mount_point),
            None => self.leaf.clone(),
        };
        top.read("cgroup.controllers")
            .map(|list| list.split_whitespace().any(|c| c == controller))
            .unwrap_or(false)
    }

    fn wait_frozen(&self, want: bool) -> Result<()> {
        let expected = if want { 1 } else { 0 };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut polls: u32 = 0;
        loop {
            if self.leaf.read_keyed("cgroup.events", "frozen")? == Some(expected) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if want {
                    let _ = self.leaf.write("cgroup.freeze", "0");
                }
                return Err(Error::FreezeTimeout {
                    path: self.leaf.file("cgroup.events"),
                    state: if want { "frozen 1" } else { "frozen 0" },
                });
            }
            polls += 1;
            sleep(Duration::from_millis(if polls < 10 { 1 } else { 10 }));
        }
    }

    fn freezer_file(&self) -> Result<()> {
        if self.leaf.exists("cgroup.freeze") {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: "freeze".into(),
                reason: format!(
                    "{} does not exist (kernel before 5.2)",
                    self.leaf.file("cgroup.freeze").display()
                ),
            })
        }
    }
}

/// Writes "+ctrl ..." for the controllers the cgroup offers (all, or those
/// in `wanted`) that its subtree_control lacks. Best effort, like runc: a
/// cgroup with processes of its own cannot delegate ("no internal
/// processes"), and a failure here shows up as a clear error when a limit
/// is written.
fn enable_controllers(dir: &CgroupDir, wanted: Option<&[&str]>) {
    let available = dir.read("cgroup.controllers").unwrap_or_default();
    let enabled = dir.read("cgroup.subtree_control").unwrap_or_default();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| match wanted {
            Some(wanted) => wanted.contains(c),
            None => true,
        })
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    if dir
        .write("cgroup.subtree_control", &missing.join(" "))
        .is_ok()
    {
        return;
    }
    for one in &missing {
        if let Err(e) = dir.write("cgroup.subtree_control", one) {
            tracing::debug!(error = %e, "controller not delegated");
        }
    }
}

impl CgroupManager for V2Manager {
    fn create(&self) -> Result<()> {
        self.create_with(Delegation::All)
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        v2_resources::apply(&self.leaf, res)
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        self.leaf.add_pid(pid)
    }

    fn dir_fd(&self) -> Option<OwnedFd> {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(self.leaf.path())
        {
            Ok(dir) => Some(OwnedFd::from(dir)),
            Err(e) => {
                tracing::debug!(
                    cgroup = %self.leaf.path().display(),
                    error = %e,
                    "no cgroup fd for CLONE_INTO_CGROUP"
                );
                None
            }
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = self.leaf.pids_recursive()?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<()> {
        self.freezer_file()?;
        self.leaf.write("cgroup.freeze", "1")?;
        self.wait_frozen(true)
    }

    fn thaw(&self) -> Result<()> {
        self.freezer_file()?;
        self.leaf.write("cgroup.freeze", "0")?;
        self.wait_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool> {
        Ok(self.leaf.read_keyed("cgroup.events", "frozen")? == Some(1))
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL && self.leaf.exists("cgroup.kill") {
            // The kernel kills every task of the subtree, forks included.
            return self.leaf.write("cgroup.kill", "1");
        }
        signal::signal_all(self, signal)
    }

    fn destroy(&self) -> Result<()> {
        remove_cgroup(self.leaf.path())
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        vec![(String::new(), self.leaf.path().to_path_buf())]
    }

    fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            memory: stats::v2_memory(&self.leaf)?,
            pids: stats::v2_pids(&self.leaf)?,
            cpu: stats::v2_cpu(&self.leaf)?,
        })
    }

    fn runc_stats(&self) -> Result<RuncStats> {
        Ok(RuncStats {
            cpu: runc_stats::v2_cpu(&self.leaf)?,
            memory: runc_stats::v2_memory(&self.leaf)?,
            pids: runc_stats::v2_pids(&self.leaf)?,
            blkio: runc_stats::v2_blkio(&self.leaf)?,
            hugetlb: runc_stats::v2_hugetlb(&self.leaf)?,
            ..RuncStats::default()
        })
    }
}

/// The cgroup2 mount point that holds `leaf`, from this process's mounts.
pub(crate) fn mount_point_of(
    leaf: &Path,
    layout: Option<&crate::mounts::Layout>,
) -> Option<PathBuf> {
    layout?
        .unified
        .as_ref()
        .map(|u| u.mount_point.clone())
        .filter(|m| leaf.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_run_from_the_mount_point_to_the_leafs_parent() {
        let manager = V2Manager::new(
            PathBuf::from("/sys/fs/cgroup/cove/a/ct"),
            Some(PathBuf::from("/sys/fs/cgroup")),
        );
        assert_eq!(
            manager.ancestors(),
            [
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/cove"),
                PathBuf::from("/sys/fs/cgroup/cove/a"),
            ]
        );
        let unknown_mount = V2Manager::new(PathBuf::from("/sys/fs/cgroup/ct"), None);
        assert!(unknown_mount.ancestors().is_empty());
    }
}
