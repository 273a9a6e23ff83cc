//! cove-cgroups: places containers in cgroups and applies
//! `linux.resources` on pure cgroup v2, hybrid and pure v1 hosts, with
//! runc's semantics (paths, file values, write order, fallbacks).
//!
//! - [`host_mode`] tells which kind of host this is (cached per process).
//! - [`manager`] resolves a container's `linux.cgroupsPath` (see
//!   [`CgroupSpec`]) and returns the [`CgroupManager`] for the host:
//!   v2 (one leaf in the unified tree), v1 (one directory per hierarchy) or
//!   hybrid (v1 hierarchies plus a leaf in the cgroup2 tree, as runc 1.1).
//! - [`manager_from_paths`] rebuilds a manager from [`CgroupManager::paths`]
//!   saved in a container's state, for `kill`, `pause`, `delete`, `update`.
//!
//! # Why the files are written directly, not through cgroups-rs
//!
//! cgroups-rs (0.5) would give us typed controllers, but not what decides
//! whether cove behaves like runc: runc's cgroupsPath resolution against
//! the caller's cgroup, the hybrid layout's extra v2 leaf, the cpuset
//! inheritance walk, the order of dependent writes (memory before or after
//! memory+swap, period/burst retried after quota), the v1-to-v2 value
//! conversions, and freezer polling. Each of these is a few lines over
//! plain files, and owning them keeps one small seam (`fs::CgroupDir`)
//! that the unit tests point at a scratch directory to check every file and
//! value without root. It also keeps the start path to plain syscalls.
//!
//! # Where cove differs from runc, on purpose
//!
//! - Hybrid hosts: `unified` keys are written into the v2 leaf, and
//!   hugepage limits go there too when hugetlb is bound to the cgroup2
//!   tree rather than to a v1 hierarchy (this machine); runc 1.1 refuses
//!   both. Controllers on the v2 tree are enabled only when such a limit
//!   needs them, so a hybrid host's v2 tree is otherwise left as it is.
//! - A relative cgroupsPath that cleans to nothing ("." or "..") is an
//!   error, not the caller's own cgroup, which `delete` would then remove.
//! - Swap limits asked for without swap accounting are skipped when they
//!   ask for nothing (no limit, or no swap beyond memory), on v1 as on v2.
//!
//! # The systemd driver
//!
//! With `--systemd-cgroup` [`manager`] returns a manager whose cgroup is a
//! transient systemd scope made over D-Bus (zbus, blocking API) and whose
//! limits go both into unit properties and into the files: see
//! `systemd.rs`. [`manager_from_state`] rebuilds it for `update` and
//! `delete`.

mod bpf_insn;
mod bpf_sys;
mod device_program;
mod device_rules;
mod error;
mod fs;
mod hybrid;
mod mode;
mod mounts;
mod path;
mod runc_stats;
#[cfg(test)]
mod scratch;
mod signal;
mod stats;
mod systemd;
mod systemd_devices;
mod v1;
mod v1_resources;
mod v2;
mod v2_resources;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use error::{Error, Result};
pub use mode::{host_mode, HostMode};
pub use mounts::mount_order;
pub use path::{parse_systemd_path, CgroupSpec, SystemdPath};
pub use runc_stats::RuncStats;
pub use stats::{CpuStats, MemoryStats, PidsStats, Stats};
pub use systemd::{expand_slice, range_to_bits};
pub use v2_resources::{blkio_weight_to_io_weight, shares_to_weight, swap_max};

use hybrid::HybridManager;
use mounts::Layout;
use v1::V1Manager;
use v2::V2Manager;

/// One container's cgroup, on whatever kind of host this is.
pub trait CgroupManager {
    /// Creates the cgroup in every hierarchy used (`mkdir -p`); idempotent.
    fn create(&self) -> Result<()>;
    /// Writes the limits of `res`.
    fn apply(&self, res: &oci_spec::runtime::LinuxResources) -> Result<()>;
    /// Moves `pid` into the cgroup in every hierarchy.
    fn add_task(&self, pid: i32) -> Result<()>;
    /// On a unified host, an `O_DIRECTORY|O_CLOEXEC` fd of the leaf for
    /// clone3's `CLONE_INTO_CGROUP`; `None` on hybrid and v1 hosts (and if
    /// the directory cannot be opened), where `add_task` is the way in.
    fn dir_fd(&self) -> Option<OwnedFd>;
    /// Every pid in the cgroup and below it, sorted.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Freezes every task and returns once the kernel says frozen.
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    /// Signals every task: v2 `cgroup.kill` for SIGKILL where the kernel
    /// has it, else each pid of `pids()` while the cgroup is frozen.
    fn kill_all(&self, signal: i32) -> Result<()>;
    /// Removes the leaf directories (never their parents, like runc),
    /// retrying briefly while the kernel still counts exiting tasks. Fine
    /// if they are already gone.
    fn destroy(&self) -> Result<()>;
    /// (controller, directory): a v1 controller name, `name=systemd`, or ""
    /// for the cgroup2 leaf. Saved in state; used to mount /sys/fs/cgroup
    /// inside the container.
    fn paths(&self) -> Vec<(String, PathBuf)>;
    /// Memory, pids and cpu usage.
    fn stats(&self) -> Result<Stats>;
    /// Every figure `runc events --stats` reports, in its shape.
    fn runc_stats(&self) -> Result<RuncStats>;
}

/// The file through which the kernel would take a proportional I/O weight
/// (`blockIO.weight`) for the cgroup at `paths` (a manager's
/// [`CgroupManager::paths`]), if it has one: BFQ's weight (v1 or v2), v2's
/// io.weight (io.cost), or CFQ-era blkio.weight. Kernels with neither BFQ
/// nor io.cost have none, and a weight cannot be set there at all.
pub fn io_weight_file(paths: &[(String, PathBuf)]) -> Option<PathBuf> {
    const V1: [&str; 2] = ["blkio.bfq.weight", "blkio.weight"];
    const V2: [&str; 2] = ["io.bfq.weight", "io.weight"];
    paths.iter().find_map(|(controller, dir)| {
        let names: &[&str] = match controller.as_str() {
            "blkio" => &V1,
            "" => &V2,
            _ => return None,
        };
        names.iter().map(|n| dir.join(n)).find(|f| f.exists())
    })
}

/// The ids of the device programs attached to a cgroup v2 directory
/// itself (for tests and diagnostics: cove attaches exactly one).
pub fn device_program_ids(dir: &std::path::Path) -> std::io::Result<Vec<u32>> {
    let fd = bpf_sys::open_dir(dir)?;
    bpf_sys::query_device_programs(std::os::fd::AsFd::as_fd(&fd))
}

/// The manager for `spec` on this host.
pub fn manager(spec: &CgroupSpec) -> Result<Box<dyn CgroupManager>> {
    let mode = host_mode();
    let layout = Layout::of_this_process()?;
    if spec.systemd {
        return systemd_manager(spec, mode, &layout);
    }
    manager_for(spec, mode, &layout)
}

/// The scope's cgroupfs manager inside a systemd manager. Checks the path
/// first (a malformed one gets the more useful error), then that systemd
/// and its bus are there: nothing is made before both hold.
fn systemd_manager(
    spec: &CgroupSpec,
    mode: HostMode,
    layout: &Layout,
) -> Result<Box<dyn CgroupManager>> {
    let parsed = parse_systemd_path(spec.path.as_deref(), &spec.id)?;
    let cgroup = parsed.cgroup_path()?;
    systemd::check_reachable()?;
    let files = manager_for(
        &CgroupSpec {
            path: Some(cgroup),
            id: spec.id.clone(),
            systemd: false,
        },
        mode,
        layout,
    )?;
    Ok(Box::new(systemd::SystemdManager::new(
        parsed.unit_name()?,
        parsed.name.clone(),
        parsed.slice_or_default().to_string(),
        mode,
        files,
    )))
}

fn manager_for(
    spec: &CgroupSpec,
    mode: HostMode,
    layout: &Layout,
) -> Result<Box<dyn CgroupManager>> {
    let inner = spec.inner_path()?;
    let resolved = path::resolve(&inner, layout, mode)?;
    let unified_mount = layout.unified.as_ref().map(|u| u.mount_point.clone());
    Ok(match mode {
        HostMode::Unified => {
            let leaf = resolved.unified.ok_or_else(|| Error::Unsupported {
                what: "cgroup v2".into(),
                reason: "no cgroup2 mount in /proc/self/mountinfo".into(),
            })?;
            Box::new(V2Manager::new(leaf, unified_mount))
        }
        HostMode::Hybrid => Box::new(HybridManager::new(
            V1Manager::new(resolved.v1),
            resolved
                .unified
                .map(|leaf| V2Manager::new(leaf, unified_mount)),
        )),
        HostMode::Legacy => Box::new(V1Manager::new(resolved.v1)),
    })
}

/// Rebuilds a manager from `paths()` saved earlier. The kind follows the
/// keys: only "" is v2; v1 names with "" is hybrid; v1 names alone, v1.
pub fn manager_from_paths(paths: &[(String, PathBuf)]) -> Box<dyn CgroupManager> {
    let unified = paths
        .iter()
        .find(|(name, _)| name.is_empty())
        .map(|(_, dir)| dir.clone());
    let v1: Vec<(String, PathBuf)> = paths
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .cloned()
        .collect();
    // The mount point only matters to create and to hybrid limits; without
    // readable mounts the manager still kills, freezes and removes.
    let layout = Layout::of_this_process().ok();
    let unified = unified.map(|leaf| {
        let mount_point = v2::mount_point_of(&leaf, layout.as_ref());
        V2Manager::new(leaf, mount_point)
    });
    match (v1.is_empty(), unified) {
        (true, Some(unified)) => Box::new(unified),
        (false, Some(unified)) => Box::new(HybridManager::new(V1Manager::new(v1), Some(unified))),
        (_, None) => Box::new(V1Manager::new(v1)),
    }
}

/// Whether the cgroup at `paths` (saved [`CgroupManager::paths`]) is frozen,
/// read straight from its freezer file: what `manager_from_paths(paths)
/// .is_frozen()` answers, without building a manager (which reads
/// /proc/self/cgroup and the mount table). For `state` and `list`, which ask
/// it of every container. With v1 hierarchies (v1 or hybrid) the v1
/// freezer answers, as runc's pause uses it there; on pure v2 cgroup.events.
/// Unreadable or missing counts as not frozen.
pub fn frozen_at(paths: &[(String, PathBuf)]) -> bool {
    let v1 = paths.iter().any(|(name, _)| !name.is_empty());
    if v1 {
        paths
            .iter()
            .find(|(name, _)| name == "freezer")
            .and_then(|(_, dir)| std::fs::read_to_string(dir.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    } else {
        paths
            .iter()
            .find(|(name, _)| name.is_empty())
            .and_then(|(_, dir)| {
                fs::CgroupDir::new(dir.clone())
                    .read_keyed("cgroup.events", "frozen")
                    .ok()
            })
            == Some(Some(1))
    }
}

/// Whether a cgroup may already exist at `paths`, with one or two stats:
/// the v2 leaf and, with v1 hierarchies, the devices leaf (the one runc
/// checks for the same reason). `create` asks this before it reads every
/// hierarchy's cgroup.procs and the freezer of a cgroup that would then be
/// someone else's; a fresh path exists in none of them, and the reads
/// would all fail. A cgroup made by hand in some v1 hierarchies only,
/// neither of these, goes unnoticed, as it does in runc.
pub fn may_exist(paths: &[(String, PathBuf)]) -> bool {
    let mut checked = false;
    for (name, dir) in paths {
        if name.is_empty() || name == "devices" {
            checked = true;
            if dir.exists() {
                return true;
            }
        }
    }
    // Neither kind in the list (an unusual v1 set): look at them all.
    !checked && paths.iter().any(|(_, dir)| dir.exists())
}

/// [`manager_from_paths`], or for a container made with
/// `--systemd-cgroup` (`systemd`), a manager that also speaks to systemd:
/// `apply` sets the unit's properties, `destroy` stops the unit.
pub fn manager_from_state(paths: &[(String, PathBuf)], systemd: bool) -> Box<dyn CgroupManager> {
    let files = manager_from_paths(paths);
    if !systemd {
        return files;
    }
    Box::new(systemd::SystemdManager::attached(paths, host_mode(), files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::{resources, Scratch};

    const MOUNTINFO: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    const PROC_CGROUP: &str = "3:name=systemd:/\n2:memory:/\n1:cpu:/\n0::/\n";

    fn spec(path: &str) -> CgroupSpec {
        CgroupSpec {
            path: Some(path.into()),
            id: "ct".into(),
            systemd: false,
        }
    }

    #[test]
    fn may_exist_stats_the_v2_and_devices_leaves_only() {
        let there = Scratch::new(&[]);
        let gone = there.path.join("not-made");
        let p = |name: &str, dir: &PathBuf| (name.to_string(), dir.clone());
        // A fresh path: no leaf exists, the reads are skipped.
        assert!(!may_exist(&[
            p("memory", &gone),
            p("devices", &gone),
            p("", &gone)
        ]));
        assert!(may_exist(&[
            p("memory", &gone),
            p("devices", &gone),
            p("", &there.path)
        ]));
        assert!(may_exist(&[p("devices", &there.path), p("", &gone)]));
        // Made by hand in another v1 hierarchy only: not looked at (as runc).
        assert!(!may_exist(&[p("memory", &there.path), p("devices", &gone)]));
        // Neither kind listed: every leaf is looked at.
        assert!(may_exist(&[p("memory", &gone), p("pids", &there.path)]));
        assert!(!may_exist(&[p("memory", &gone)]));
    }

    #[test]
    fn frozen_at_reads_the_v1_freezer_else_the_v2_events() {
        let thawed = Scratch::new(&[("freezer.state", "THAWED\n")]);
        let frozen = Scratch::new(&[("freezer.state", "FROZEN\n")]);
        let v2_frozen = Scratch::new(&[("cgroup.events", "populated 1\nfrozen 1\n")]);
        let v2_thawed = Scratch::new(&[("cgroup.events", "populated 1\nfrozen 0\n")]);
        let p = |name: &str, s: &Scratch| (name.to_string(), s.path.clone());
        assert!(frozen_at(&[p("freezer", &frozen), p("", &v2_thawed)]));
        // With v1 hierarchies the v1 freezer answers, as pause uses it there.
        assert!(!frozen_at(&[p("freezer", &thawed), p("", &v2_frozen)]));
        assert!(frozen_at(&[p("", &v2_frozen)]));
        assert!(!frozen_at(&[p("", &v2_thawed)]));
        assert!(!frozen_at(&[]));
    }

    #[test]
    fn io_weight_file_is_found_per_controller_or_not_at_all() {
        let none = Scratch::new(&[("blkio.throttle.read_bps_device", "")]);
        let cfq = Scratch::new(&[("blkio.weight", "")]);
        let bfq_v2 = Scratch::new(&[("io.weight", ""), ("io.bfq.weight", "")]);
        let at = |controller: &str, s: &Scratch| vec![(controller.to_string(), s.path.clone())];
        assert_eq!(io_weight_file(&at("blkio", &none)), None);
        // A v2 knob in a v1 hierarchy's directory is not taken, nor the reverse.
        assert_eq!(io_weight_file(&at("", &cfq)), None);
        assert_eq!(io_weight_file(&at("memory", &cfq)), None);
        assert_eq!(
            io_weight_file(&at("blkio", &cfq)),
            Some(cfq.path.join("blkio.weight"))
        );
        assert_eq!(
            io_weight_file(&at("", &bfq_v2)),
            Some(bfq_v2.path.join("io.bfq.weight"))
        );
    }

    #[test]
    fn hybrid_paths_hold_every_v1_hierarchy_and_the_unified_leaf() {
        let layout = Layout::parse(MOUNTINFO, PROC_CGROUP);
        let manager = manager_for(&spec("/cove/ct"), HostMode::Hybrid, &layout).unwrap();
        assert_eq!(
            manager.paths(),
            [
                (
                    "memory".to_string(),
                    PathBuf::from("/sys/fs/cgroup/memory/cove/ct")
                ),
                (
                    "cpu".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu/cove/ct")
                ),
                (
                    "name=systemd".to_string(),
                    PathBuf::from("/sys/fs/cgroup/systemd/cove/ct")
                ),
                (
                    String::new(),
                    PathBuf::from("/sys/fs/cgroup/unified/cove/ct")
                ),
            ]
        );
        assert!(manager.dir_fd().is_none(), "no CLONE_INTO_CGROUP on hybrid");
    }

    #[test]
    fn legacy_paths_have_no_unified_leaf() {
        let layout = Layout::parse(MOUNTINFO, PROC_CGROUP);
        let manager = manager_for(&spec("/cove/ct"), HostMode::Legacy, &layout).unwrap();
        assert!(manager.paths().iter().all(|(name, _)| !name.is_empty()));
    }

    #[test]
    fn saved_paths_rebuild_the_same_kind_of_manager() {
        let layout = Layout::parse(MOUNTINFO, PROC_CGROUP);
        for mode in [HostMode::Hybrid, HostMode::Legacy] {
            let paths = manager_for(&spec("/cove/ct"), mode, &layout)
                .unwrap()
                .paths();
            assert_eq!(manager_from_paths(&paths).paths(), paths, "{mode:?}");
        }
        let v2 = vec![(String::new(), PathBuf::from("/sys/fs/cgroup/cove/ct"))];
        assert_eq!(manager_from_paths(&v2).paths(), v2);
    }

    #[test]
    fn systemd_paths_are_checked_before_systemd_is_looked_for() {
        let mut spec = spec("/not/slice/form");
        spec.systemd = true;
        assert!(matches!(manager(&spec), Err(Error::InvalidPath { .. })));
        spec.path = Some("bad-.slice:cove:ct".into());
        assert!(matches!(manager(&spec), Err(Error::InvalidPath { .. })));
    }

    #[test]
    fn hybrid_sends_hugetlb_and_unified_keys_to_the_v2_leaf() {
        let v1_dir = Scratch::new(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        let v2_dir = Scratch::new(&[
            ("cgroup.controllers", "hugetlb\n"),
            ("hugetlb.2MB.max", ""),
            ("cgroup.max.depth", ""),
        ]);
        let manager = HybridManager::new(
            V1Manager::new(vec![("memory".into(), v1_dir.path.clone())]),
            Some(V2Manager::new(v2_dir.path.clone(), None)),
        );
        manager
            .apply(&resources(
                r#"{"memory": {"limit": 1048576},
                    "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
                    "unified": {"cgroup.max.depth": "3"}}"#,
            ))
            .unwrap();
        let read =
            |dir: &Scratch, file: &str| std::fs::read_to_string(dir.path.join(file)).unwrap();
        assert_eq!(read(&v1_dir, "memory.limit_in_bytes"), "1048576");
        assert_eq!(read(&v2_dir, "hugetlb.2MB.max"), "2097152");
        assert_eq!(read(&v2_dir, "cgroup.max.depth"), "3");
    }
}
