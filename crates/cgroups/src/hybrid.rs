//! The hybrid manager: v1 hierarchies for the limits, plus a leaf in the
//! cgroup2 tree, as runc 1.1 makes on such hosts. The v2 leaf lets
//! systemd-style tools (and a container's own systemd) see the container as
//! one unit, gives `cgroup.kill`, and takes what only v2 offers here: the
//! `unified` map, and controllers bound to no v1 hierarchy (hugetlb on
//! this machine).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fs::CreateGuard;
use crate::runc_stats::{self, RuncStats};
use crate::stats::Stats;
use crate::v1::V1Manager;
use crate::v2::{Delegation, V2Manager};
use crate::v2_resources::{self, unified_key_controller};
use crate::CgroupManager;

#[derive(Debug, Clone)]
pub(crate) struct HybridManager {
    v1: V1Manager,
    /// `None` when the cgroup2 tree is not mounted after all.
    unified: Option<V2Manager>,
}

impl HybridManager {
    pub(crate) fn new(v1: V1Manager, unified: Option<V2Manager>) -> Self {
        Self { v1, unified }
    }

    /// Splits `res` into what the v1 hierarchies take and what goes to the
    /// v2 leaf.
    fn split(&self, res: &LinuxResources) -> Result<(LinuxResources, LinuxResources)> {
        let mut v1 = res.clone();
        let mut v2 = LinuxResources::default();
        if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            if self.unified.is_none() {
                return Err(Error::Unsupported {
                    what: "linux.resources.unified".into(),
                    reason: "the cgroup2 tree of this hybrid host is not mounted".into(),
                });
            }
            v2.set_unified(Some(unified.clone()));
        }
        v1.set_unified(None);
        let hugetlb_wanted = res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|l| !l.is_empty());
        if hugetlb_wanted && self.v1.dir("hugetlb").is_none() {
            if let Some(unified) = &self.unified {
                if unified.controller_available("hugetlb") {
                    v2.set_hugepage_limits(res.hugepage_limits().clone());
                    v1.set_hugepage_limits(None);
                }
            }
        }
        Ok((v1, v2))
    }
}

impl CgroupManager for HybridManager {
    fn create(&self) -> Result<()> {
        let leaves: Vec<PathBuf> = self.paths().into_iter().map(|(_, dir)| dir).collect();
        let guard = CreateGuard::new(leaves.iter().map(PathBuf::as_path));
        self.v1.create()?;
        if let Some(unified) = &self.unified {
            unified.create_with(Delegation::None)?;
        }
        guard.commit();
        Ok(())
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        let (v1_part, v2_part) = self.split(res)?;
        self.v1.apply(&v1_part)?;
        let Some(unified) = &self.unified else {
            return Ok(());
        };
        let mut controllers: Vec<&str> = Vec::new();
        if v2_part.hugepage_limits().is_some() {
            controllers.push("hugetlb");
        }
        if let Some(map) = v2_part.unified() {
            controllers.extend(map.keys().filter_map(|k| unified_key_controller(k)));
        }
        if controllers.is_empty() && v2_part.unified().is_none() {
            return Ok(());
        }
        controllers.sort_unstable();
        controllers.dedup();
        unified.enable(&controllers);
        v2_resources::apply(unified.leaf(), &v2_part)
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        self.v1.add_task(pid)?;
        if let Some(unified) = &self.unified {
            unified.add_task(pid)?;
        }
        Ok(())
    }

    fn dir_fd(&self) -> Option<OwnedFd> {
        // CLONE_INTO_CGROUP would place the child in the v2 leaf only; it
        // joins the v1 hierarchies by cgroup.procs anyway, so add_task does
        // it all in one place.
        None
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = self.v1.pids()?;
        if let Some(unified) = &self.unified {
            pids.extend(unified.pids()?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    // The v1 freezer, as runc uses on hybrid hosts: `runc pause` there
    // shows in freezer.state, which is what tools read.
    fn freeze(&self) -> Result<()> {
        self.v1.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.v1.thaw()
    }

    fn is_frozen(&self) -> Result<bool> {
        self.v1.is_frozen()
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL {
            if let Some(unified) = self
                .unified
                .as_ref()
                .filter(|u| u.leaf().exists("cgroup.kill"))
            {
                unified.leaf().write("cgroup.kill", "1")?;
                // A task that joined only the v1 hierarchies (moved there
                // by someone else) is not in the v2 leaf: sweep those too.
                // No freeze here: the v1 freezer would wait on the tasks
                // that are already dying from the v2 kill.
                return crate::signal::signal_listed(&self.v1.pids()?, signal);
            }
        }
        crate::signal::signal_all(self, signal)
    }

    fn destroy(&self) -> Result<()> {
        let v1 = self.v1.destroy();
        let v2 = self.unified.as_ref().map_or(Ok(()), V2Manager::destroy);
        v1.and(v2)
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        let mut paths = self.v1.paths();
        if let Some(unified) = &self.unified {
            paths.extend(unified.paths());
        }
        paths
    }

    fn stats(&self) -> Result<Stats> {
        self.v1.stats()
    }

    /// The v1 figures, as runc 1.1 reports on such hosts; hugepages from
    /// the v2 leaf when that is where cove put their limits.
    fn runc_stats(&self) -> Result<RuncStats> {
        let mut out = self.v1.runc_stats()?;
        if self.v1.dir("hugetlb").is_none() {
            if let Some(unified) = &self.unified {
                out.hugetlb = runc_stats::v2_hugetlb(unified.leaf())?;
            }
        }
        Ok(out)
    }
}
