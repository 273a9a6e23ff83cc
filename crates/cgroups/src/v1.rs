//! The cgroup v1 manager: one directory per mounted hierarchy (a legacy
//! host, and the v1 half of a hybrid host).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fs::{create_cgroup, remove_cgroup, CgroupDir, CreateGuard};
use crate::runc_stats::{self, RuncStats};
use crate::stats::{self, Stats};
use crate::v1_resources::{self, V1Dirs};
use crate::{signal, CgroupManager};

#[derive(Debug, Clone)]
pub(crate) struct V1Manager {
    /// (controller, directory); co-mounted controllers share a directory.
    dirs: Vec<(String, CgroupDir)>,
}

impl V1Manager {
    pub(crate) fn new(dirs: Vec<(String, PathBuf)>) -> Self {
        Self {
            dirs: dirs
                .into_iter()
                .map(|(name, path)| (name, CgroupDir::new(path)))
                .collect(),
        }
    }

    pub(crate) fn dir(&self, controller: &str) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|(name, _)| name == controller)
            .map(|(_, dir)| dir)
    }

    /// Each directory once, in controller order.
    fn unique_dirs(&self) -> Vec<&CgroupDir> {
        let mut seen: Vec<&Path> = Vec::new();
        let mut dirs = Vec::new();
        for (_, dir) in &self.dirs {
            if !seen.contains(&dir.path()) {
                seen.push(dir.path());
                dirs.push(dir);
            }
        }
        dirs
    }

    fn freezer(&self) -> Result<&CgroupDir> {
        self.dir("freezer").ok_or_else(|| Error::Unsupported {
            what: "freeze".into(),
            reason: "the v1 freezer controller is not mounted".into(),
        })
    }

    /// Writes `state` to freezer.state and waits until the kernel reports
    /// it. Freezing is asynchronous: tasks are frozen as they next leave
    /// the kernel, and the cgroup reads FREEZING until the last one is.
    fn set_freezer_state(&self, state: &'static str) -> Result<()> {
        let dir = self.freezer()?;
        dir.write("freezer.state", state)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut polls: u32 = 0;
        let mut since_write: u32 = 0;
        loop {
            if dir.read("freezer.state")?.trim() == state {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if state == "FROZEN" {
                    // Leave the container running rather than half-frozen.
                    let _ = dir.write("freezer.state", "THAWED");
                }
                return Err(Error::FreezeTimeout {
                    path: dir.file("freezer.state"),
                    state,
                });
            }
            polls += 1;
            since_write += 1;
            // A task that is itself in the middle of a vfork can keep the
            // v1 freezer in FREEZING forever; asking again gets past it.
            if since_write == 50 {
                since_write = 0;
                dir.write("freezer.state", state)?;
            }
            sleep(Duration::from_millis(if polls < 10 { 1 } else { 10 }));
        }
    }
}

/// Creates a cpuset cgroup and gives it, and every ancestor that lacks
/// them, the parent's cpuset.cpus and cpuset.mems. A new v1 cpuset cgroup
/// starts with both empty, and the kernel refuses to move a task into a
/// cpuset with no CPUs or memory nodes (ENOSPC).
fn create_cpuset(leaf: &Path) -> Result<()> {
    // Walk up to the first ancestor that has both set (at the latest the
    // mount point, which always has them).
    let mut chain = vec![leaf.to_path_buf()];
    let mut current = leaf;
    while let Some(parent) = current.parent() {
        if parent.exists() {
            let dir = CgroupDir::new(parent);
            if !dir.exists("cpuset.cpus") || cpuset_is_set(&dir) {
                break;
            }
        }
        chain.push(parent.to_path_buf());
        current = parent;
    }
    for path in chain.iter().rev() {
        create_cgroup(path)?;
        let Some(parent) = path.parent() else {
            continue;
        };
        let dir = CgroupDir::new(path);
        let parent = CgroupDir::new(parent);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if dir.read(file)?.trim().is_empty() {
                let inherited = parent.read(file)?;
                dir.write(file, inherited.trim())?;
            }
        }
    }
    Ok(())
}

fn cpuset_is_set(dir: &CgroupDir) -> bool {
    ["cpuset.cpus", "cpuset.mems"].iter().all(|file| {
        dir.read_raw(file)
            .map(|value| !value.trim().is_empty())
            .unwrap_or(false)
    })
}

impl CgroupManager for V1Manager {
    fn create(&self) -> Result<()> {
        let guard = CreateGuard::new(self.unique_dirs().into_iter().map(CgroupDir::path));
        for dir in self.unique_dirs() {
            let is_cpuset = self.dir("cpuset").map(CgroupDir::path) == Some(dir.path());
            if is_cpuset {
                create_cpuset(dir.path())?;
            } else {
                create_cgroup(dir.path())?;
            }
        }
        guard.commit();
        Ok(())
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        v1_resources::apply(&V1Dirs::new(&self.dirs), res)
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        for dir in self.unique_dirs() {
            dir.add_pid(pid)?;
        }
        Ok(())
    }

    fn dir_fd(&self) -> Option<OwnedFd> {
        // CLONE_INTO_CGROUP takes one cgroup2 directory; v1 tasks join by
        // writing cgroup.procs in each hierarchy.
        None
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in self.unique_dirs() {
            pids.extend(dir.pids_recursive()?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<()> {
        self.set_freezer_state("FROZEN")
    }

    fn thaw(&self) -> Result<()> {
        self.set_freezer_state("THAWED")
    }

    fn is_frozen(&self) -> Result<bool> {
        Ok(self.freezer()?.read("freezer.state")?.trim() == "FROZEN")
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        signal::signal_all(self, signal)
    }

    fn destroy(&self) -> Result<()> {
        // Try every hierarchy even if one fails, so one stuck directory
        // does not leak the others; report the first failure.
        let mut first_error = None;
        for dir in self.unique_dirs() {
            if let Err(e) = remove_cgroup(dir.path()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        self.dirs
            .iter()
            .map(|(name, dir)| (name.clone(), dir.path().to_path_buf()))
            .collect()
    }

    fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            memory: self.dir("memory").map(stats::v1_memory).transpose()?,
            pids: self.dir("pids").map(stats::v1_pids).transpose()?,
            cpu: self.dir("cpuacct").map(stats::v1_cpuacct).transpose()?,
        })
    }

    fn runc_stats(&self) -> Result<RuncStats> {
        let mut out = RuncStats {
            cpu: runc_stats::v1_cpu(self.dir("cpuacct"), self.dir("cpu"))?,
            ..RuncStats::default()
        };
        if let Some(dir) = self.dir("cpuset") {
            out.cpuset = runc_stats::v1_cpuset(dir)?;
        }
        if let Some(dir) = self.dir("memory") {
            out.memory = runc_stats::v1_memory(dir)?;
        }
        if let Some(dir) = self.dir("pids") {
            out.pids = runc_stats::v1_pids(dir)?;
        }
        if let Some(dir) = self.dir("blkio") {
            out.blkio = runc_stats::v1_blkio(dir)?;
        }
        if let Some(dir) = self.dir("hugetlb") {
            out.hugetlb = runc_stats::v1_hugetlb(dir)?;
        }
        Ok(out)
    }
}
