//! `linux.resources` written as cgroup v1 files, with runc's semantics
//! (runc's libcontainer/cgroups/fs): the same files, values, order and
//! fallbacks, so a bundle gets the same limits under cove as under runc.
//!
//! A zero value means "not set" wherever runc treats it so (memory limits,
//! cpu shares, quota, period, realtime, blkio weights, classid).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxNetwork,
    LinuxPids, LinuxRdma, LinuxResources,
};

use crate::device_rules::DeviceSet;
use crate::error::{Error, Result};
use crate::fs::CgroupDir;

/// The v1 directories of one container, by controller name.
pub(crate) struct V1Dirs<'a> {
    dirs: &'a [(String, CgroupDir)],
}

impl<'a> V1Dirs<'a> {
    pub(crate) fn new(dirs: &'a [(String, CgroupDir)]) -> Self {
        Self { dirs }
    }

    fn get(&self, controller: &str) -> Option<&'a CgroupDir> {
        self.dirs
            .iter()
            .find(|(name, _)| name == controller)
            .map(|(_, dir)| dir)
    }

    /// The directory for `controller`, or the error runc gives when a limit
    /// needs a controller the host does not have.
    fn require(&self, controller: &str, what: &str) -> Result<&'a CgroupDir> {
        self.get(controller)
            .ok_or_else(|| Error::ControllerMissing {
                what: what.to_string(),
                controller: controller.to_string(),
                looked_in: "/proc/self/mountinfo".into(),
            })
    }
}

/// Writes every limit in `res`, controller by controller in runc's order.
pub(crate) fn apply(dirs: &V1Dirs, res: &LinuxResources) -> Result<()> {
    if let Some(cpu) = res.cpu() {
        set_cpuset(dirs, cpu)?;
    }
    if let Some(rules) = res.devices() {
        set_devices(dirs, rules)?;
    }
    if let Some(memory) = res.memory() {
        set_memory(dirs, memory)?;
    }
    if let Some(cpu) = res.cpu() {
        set_cpu(dirs, cpu)?;
    }
    if let Some(pids) = res.pids() {
        set_pids(dirs, pids)?;
    }
    if let Some(block_io) = res.block_io() {
        set_blkio(dirs, block_io)?;
    }
    if let Some(limits) = res.hugepage_limits() {
        set_hugetlb(dirs, limits)?;
    }
    if let Some(network) = res.network() {
        set_network(dirs, network)?;
    }
    if let Some(rdma) = res.rdma() {
        set_rdma(dirs, rdma)?;
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::Unsupported {
            what: "linux.resources.unified".into(),
            reason: "this host has no cgroup v2 hierarchy".into(),
        });
    }
    Ok(())
}

fn set_cpuset(dirs: &V1Dirs, cpu: &LinuxCpu) -> Result<()> {
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = dirs.require("cpuset", "cpu.cpus/cpu.mems")?;
    if let Some(cpus) = cpus {
        dir.write("cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems {
        dir.write("cpuset.mems", mems)?;
    }
    Ok(())
}

/// The device rules, by difference (as runc): the set the cgroup holds now
/// (read from devices.list) and the set the rules make give the fewest
/// writes between them. A new cgroup inherits "a *:* rwm" and gets "deny
/// all" first; an `update` of a running container that changes one rule
/// writes that one rule, so its processes never see a device vanish for a
/// moment. devices.list is read back after to check the kernel agrees.
fn set_devices(dirs: &V1Dirs, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    // runc treats a missing devices hierarchy as fatal: the container would
    // otherwise reach every device node it can mknod or open.
    let dir = dirs.require("devices", "linux.resources.devices")?;
    let target = DeviceSet::from_spec(rules)?;
    let current = read_device_list(dir)?;
    for rule in current.transition(&target) {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        dir.write(file, &rule.v1_line())?;
    }
    if dir.is_scratch() {
        return Ok(());
    }
    let now = read_device_list(dir)?;
    let same = if target.default_allow {
        // A deny list's exceptions do not show in devices.list.
        now.default_allow
    } else {
        now == target
    };
    if !same {
        return Err(Error::InvalidResources(format!(
            "{} does not hold the device rules written to it: the parent cgroup \
             may not allow some of them",
            dir.file("devices.list").display()
        )));
    }
    Ok(())
}

fn read_device_list(dir: &CgroupDir) -> Result<DeviceSet> {
    let text = dir.read("devices.list")?;
    DeviceSet::from_list(&text).map_err(|_| Error::Parse {
        path: dir.file("devices.list"),
        content: text,
    })
}

fn set_memory(dirs: &V1Dirs, memory: &LinuxMemory) -> Result<()> {
    let limit = memory.limit().unwrap_or(0);
    let mut swap = memory.swap().unwrap_or(0);
    let reservation = memory.reservation().unwrap_or(0);
    let swappiness = memory.swappiness();
    let disable_oom_killer = memory.disable_oom_killer().unwrap_or(false);
    if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
        // Kernel memory limits are deprecated in v1 and gone from recent
        // kernels; runc ignores them too.
        tracing::debug!("memory.kernel/kernelTCP ignored");
    }
    if limit == 0 && swap == 0 && reservation == 0 && swappiness.is_none() && !disable_oom_killer {
        return Ok(());
    }
    let dir = dirs.require("memory", "linux.resources.memory")?;
    let has_memsw = dir.exists("memory.memsw.limit_in_bytes");

    // "Unlimited memory" with no swap setting means unlimited swap too,
    // as long as the kernel accounts swap.
    if limit == -1 && swap == 0 && has_memsw {
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        // Swap accounting is off (swapaccount=0): there is no knob. Asking
        // for no swap limit, or for none beyond memory, is already true.
        if swap == -1 || swap == limit {
            tracing::debug!(swap, "swap limit skipped: kernel does not account swap");
            swap = 0;
        } else {
            return Err(Error::Unsupported {
                what: format!("memory.swap {swap}"),
                reason: format!(
                    "{} does not exist (swap accounting is off)",
                    dir.file("memory.memsw.limit_in_bytes").display()
                ),
            });
        }
    }

    // The kernel requires memory <= memory+swap at every moment, so when
    // both change the order of the two writes depends on where they go.
    let mut wrote = false;
    if limit != 0 && swap != 0 {
        let current = dir.read_u64("memory.limit_in_bytes")?;
        if swap == -1 || current < swap as u64 {
            write_memsw(dir, swap)?;
            write_memory_limit(dir, limit)?;
            wrote = true;
        }
    }
    if !wrote {
        write_memory_limit(dir, limit)?;
        write_memsw(dir, swap)?;
    }

    if reservation != 0 {
        dir.write("memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if disable_oom_killer {
        dir.write("memory.oom_control", "1")?;
    }
    if let Some(swappiness) = swappiness {
        if swappiness > 100 {
            return Err(Error::InvalidResources(format!(
                "memory.swappiness {swappiness} is out of range 0-100"
            )));
        }
        dir.write("memory.swappiness", &swappiness.to_string())?;
    }
    Ok(())
}

fn write_memory_limit(dir: &CgroupDir, limit: i64) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let value = limit.to_string();
    match dir.write_raw("memory.limit_in_bytes", &value) {
        Ok(()) => Ok(()),
        // EBUSY: the kernel could not reclaim down to the new limit.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let usage = dir.read_u64("memory.usage_in_bytes")?;
            Err(Error::MemoryBelowUsage {
                path: dir.file("memory.limit_in_bytes"),
                limit,
                usage,
            })
        }
        Err(e) => Err(dir.write_error("memory.limit_in_bytes", &value, e)),
    }
}

fn write_memsw(dir: &CgroupDir, swap: i64) -> Result<()> {
    if swap == 0 {
        return Ok(());
    }
    dir.write("memory.memsw.limit_in_bytes", &swap.to_string())
}

fn set_cpu(dirs: &V1Dirs, cpu: &LinuxCpu) -> Result<()> {
    let shares = cpu.shares().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    let quota = cpu.quota().unwrap_or(0);
    let rt_period = cpu.realtime_period().unwrap_or(0);
    let rt_runtime = cpu.realtime_runtime().unwrap_or(0);
    let burst = cpu.burst();
    let idle = cpu.idle();
    if shares == 0
        && period == 0
        && quota == 0
        && rt_period == 0
        && rt_runtime == 0
        && burst.is_none()
        && idle.is_none()
    {
        return Ok(());
    }
    let dir = dirs.require("cpu", "linux.resources.cpu")?;

    if shares != 0 {
        let value = shares.to_string();
        dir.write("cpu.shares", &value)?;
        // The kernel clamps shares to [2, 262144] silently; say so instead.
        let effective = dir.read_u64("cpu.shares")?;
        if shares > effective {
            return Err(Error::InvalidResources(format!(
                "cpu.shares {shares} is above the maximum {effective}"
            )));
        }
        if shares < effective {
            return Err(Error::InvalidResources(format!(
                "cpu.shares {shares} is below the minimum {effective}"
            )));
        }
    }

    // The kernel checks quota/period (and burst) against the parent's
    // bandwidth with the *old* value of the other knob, so a new period or
    // burst can be refused with EINVAL until the new quota is in. Retry
    // those after the quota, as runc does.
    let mut period_pending = None;
    if period != 0 {
        let value = period.to_string();
        match dir.write_raw("cpu.cfs_period_us", &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => {
                period_pending = Some(value)
            }
            Err(e) => return Err(dir.write_error("cpu.cfs_period_us", &value, e)),
        }
    }
    let mut burst_pending = None;
    if let Some(burst) = burst {
        let value = burst.to_string();
        match dir.write_raw("cpu.cfs_burst_us", &value) {
            Ok(()) => {}
            // Kernels before 5.14 have no burst knob.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("cpu.burst ignored: kernel has no cpu.cfs_burst_us")
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => {
                burst_pending = Some(value)
            }
            Err(e) => return Err(dir.write_error("cpu.cfs_burst_us", &value, e)),
        }
    }
    if quota != 0 {
        dir.write("cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(value) = period_pending {
            dir.write("cpu.cfs_period_us", &value)?;
        }
        if let Some(value) = burst_pending {
            dir.write("cpu.cfs_burst_us", &value)?;
        }
    }
    if let Some(idle) = idle {
        dir.write("cpu.idle", &idle.to_string())?;
    }

    // Same dance for the realtime pair.
    let mut rt_period_pending = None;
    if rt_period != 0 {
        let value = rt_period.to_string();
        match dir.write_raw("cpu.rt_period_us", &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && rt_runtime != 0 => {
                rt_period_pending = Some(value)
            }
            Err(e) => return Err(dir.write_error("cpu.rt_period_us", &value, e)),
        }
    }
    if rt_runtime != 0 {
        dir.write("cpu.rt_runtime_us", &rt_runtime.to_string())?;
        if let Some(value) = rt_period_pending {
            dir.write("cpu.rt_period_us", &value)?;
        }
    }
    Ok(())
}

/// pids.max: a positive limit, or "max" for -1 and 0 (no limit).
pub(crate) fn pids_max(pids: &LinuxPids) -> String {
    if pids.limit() > 0 {
        pids.limit().to_string()
    } else {
        "max".to_string()
    }
}

fn set_pids(dirs: &V1Dirs, pids: &LinuxPids) -> Result<()> {
    let dir = dirs.require("pids", "linux.resources.pids")?;
    dir.write("pids.max", &pids_max(pids))
}

fn set_blkio(dirs: &V1Dirs, blkio: &LinuxBlockIo) -> Result<()> {
    let weight = blkio.weight().unwrap_or(0);
    let leaf_weight = blkio.leaf_weight().unwrap_or(0);
    let devices = blkio.weight_device().as_deref().unwrap_or_default();
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            blkio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            blkio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            blkio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            blkio.throttle_write_iops_device(),
        ),
    ];
    let any_throttle = throttles
        .iter()
        .any(|(_, list)| list.as_ref().is_some_and(|l| !l.is_empty()));
    if weight == 0 && leaf_weight == 0 && devices.is_empty() && !any_throttle {
        return Ok(());
    }
    let dir = dirs.require("blkio", "linux.resources.blockIO")?;

    // With the BFQ scheduler (CFQ is gone since 5.0) the weights live in
    // blkio.bfq.*; CFQ-era kernels have blkio.weight*.
    let (weight_file, weight_device_file) = if dir.exists("blkio.bfq.weight") {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if weight != 0 {
        dir.write(weight_file, &weight.to_string())?;
    }
    if leaf_weight != 0 {
        dir.write("blkio.leaf_weight", &leaf_weight.to_string())?;
    }
    for device in devices {
        if let Some(w) = device.weight().filter(|w| *w != 0) {
            let value = format!("{}:{} {w}", device.major(), device.minor());
            dir.write(weight_device_file, &value)?;
        }
        if let Some(w) = device.leaf_weight().filter(|w| *w != 0) {
            let value = format!("{}:{} {w}", device.major(), device.minor());
            dir.write("blkio.leaf_weight_device", &value)?;
        }
    }
    for (file, list) in throttles {
        for device in list.as_deref().unwrap_or_default() {
            let value = format!("{}:{} {}", device.major(), device.minor(), device.rate());
            dir.write(file, &value)?;
        }
    }
    Ok(())
}

fn set_hugetlb(dirs: &V1Dirs, limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = dirs.require("hugetlb", "linux.resources.hugepageLimits")?;
    // Reservation limits (5.7+) also bound pages reserved by mmap but not
    // yet faulted in; set them to the same value where the kernel has them.
    let mut has_rsvd = true;
    for limit in limits {
        let value = limit.limit().to_string();
        let prefix = format!("hugetlb.{}", limit.page_size());
        dir.write(&format!("{prefix}.limit_in_bytes"), &value)?;
        if !has_rsvd {
            continue;
        }
        let rsvd = format!("{prefix}.rsvd.limit_in_bytes");
        match dir.write_raw(&rsvd, &value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => has_rsvd = false,
            Err(e) => return Err(dir.write_error(&rsvd, &value, e)),
        }
    }
    Ok(())
}

fn set_network(dirs: &V1Dirs, network: &LinuxNetwork) -> Result<()> {
    if let Some(class_id) = network.class_id().filter(|id| *id != 0) {
        let dir = dirs.require("net_cls", "linux.resources.network.classID")?;
        dir.write("net_cls.classid", &class_id.to_string())?;
    }
    let priorities = network.priorities().as_deref().unwrap_or_default();
    if !priorities.is_empty() {
        let dir = dirs.require("net_prio", "linux.resources.network.priorities")?;
        for priority in priorities {
            let value = format!("{} {}", priority.name(), priority.priority());
            dir.write("net_prio.ifpriomap", &value)?;
        }
    }
    Ok(())
}

/// rdma.max lines, "mlx4_0 hca_handle=2 hca_object=2000", one per device
/// in name order. The format is the same on v1 and v2.
pub(crate) fn rdma_lines(rdma: &std::collections::HashMap<String, LinuxRdma>) -> Vec<String> {
    let sorted: BTreeMap<&String, &LinuxRdma> = rdma.iter().collect();
    sorted
        .into_iter()
        .filter(|(_, limit)| limit.hca_handles().is_some() || limit.hca_objects().is_some())
        .map(|(device, limit)| {
            let mut line = device.clone();
            if let Some(handles) = limit.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limit.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            line
        })
        .collect()
}

fn set_rdma(dirs: &V1Dirs, rdma: &std::collections::HashMap<String, LinuxRdma>) -> Result<()> {
    let lines = rdma_lines(rdma);
    if lines.is_empty() {
        return Ok(());
    }
    let dir = dirs.require("rdma", "linux.resources.rdma")?;
    for line in lines {
        dir.write("rdma.max", &line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::{resources, writes, Scratch};

    /// Every controller pointing at one scratch directory, so one journal
    /// shows all writes in order.
    fn all_controllers(scratch: &Scratch) -> Vec<(String, CgroupDir)> {
        [
            "cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "net_cls",
            "net_prio", "rdma",
        ]
        .iter()
        .map(|name| (name.to_string(), scratch.dir()))
        .collect()
    }

    fn apply_to(scratch: &Scratch, json: &str) -> Result<()> {
        let dirs = all_controllers(scratch);
        apply(&V1Dirs::new(&dirs), &resources(json))
    }

    const MEMORY_FILES: &[(&str, &str)] = &[
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("memory.soft_limit_in_bytes", ""),
        ("memory.swappiness", ""),
        ("memory.oom_control", ""),
    ];

    #[test]
    fn memory_lowered_from_unlimited_writes_memory_before_memsw() {
        let scratch = Scratch::new(MEMORY_FILES);
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432,
                "swappiness": 10, "disableOOMKiller": true}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "134217728"),
                ("memory.soft_limit_in_bytes", "33554432"),
                ("memory.oom_control", "1"),
                ("memory.swappiness", "10"),
            ])
        );
    }

    #[test]
    fn memory_raised_above_the_old_limit_writes_memsw_first() {
        let scratch = Scratch::new(&[
            ("memory.limit_in_bytes", "67108864\n"),
            ("memory.memsw.limit_in_bytes", "67108864\n"),
        ]);
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("memory.memsw.limit_in_bytes", "536870912"),
                ("memory.limit_in_bytes", "268435456"),
            ])
        );
    }

    #[test]
    fn unlimited_memory_without_swap_setting_unlimits_swap_too() {
        let scratch = Scratch::new(MEMORY_FILES);
        apply_to(&scratch, r#"{"memory": {"limit": -1}}"#).unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1"),
            ])
        );
    }

    #[test]
    fn swap_equal_to_memory_is_skipped_without_swap_accounting() {
        let scratch = Scratch::new(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 1048576, "swap": 1048576}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[("memory.limit_in_bytes", "1048576")])
        );
        let err = apply_to(
            &scratch,
            r#"{"memory": {"limit": 1048576, "swap": 2097152}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }

    #[test]
    fn swappiness_above_100_is_refused() {
        let scratch = Scratch::new(MEMORY_FILES);
        let err = apply_to(&scratch, r#"{"memory": {"swappiness": 101}}"#).unwrap_err();
        assert!(matches!(err, Error::InvalidResources(_)), "{err}");
    }

    #[test]
    fn cpu_fields_map_to_cfs_rt_and_cpuset_files() {
        let scratch = Scratch::new(&[
            ("cpu.shares", ""),
            ("cpu.cfs_period_us", ""),
            ("cpu.cfs_quota_us", ""),
            ("cpu.cfs_burst_us", ""),
            ("cpu.idle", ""),
            ("cpu.rt_period_us", ""),
            ("cpu.rt_runtime_us", ""),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
        ]);
        apply_to(
            &scratch,
            r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
                "idle": 0, "realtimeRuntime": 950000, "realtimePeriod": 1000000,
                "cpus": "0-1", "mems": "0"}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_burst_us", "10000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpu.idle", "0"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "950000"),
            ])
        );
    }

    #[test]
    fn missing_burst_knob_is_ignored() {
        let scratch = Scratch::new(&[("cpu.cfs_quota_us", "")]);
        apply_to(&scratch, r#"{"cpu": {"quota": 20000, "burst": 1000}}"#).unwrap();
        assert_eq!(scratch.writes(), writes(&[("cpu.cfs_quota_us", "20000")]));
    }

    #[test]
    fn pids_limit_zero_and_minus_one_mean_max() {
        for (limit, expected) in [(-1, "max"), (0, "max"), (20, "20")] {
            let scratch = Scratch::new(&[("pids.max", "")]);
            apply_to(&scratch, &format!(r#"{{"pids": {{"limit": {limit}}}}}"#)).unwrap();
            assert_eq!(scratch.writes(), writes(&[("pids.max", expected)]));
        }
    }

    const BLKIO_JSON: &str = r#"{"blockIO": {"weight": 300, "leafWeight": 200,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 100}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}}"#;

    #[test]
    fn blkio_uses_bfq_files_when_the_kernel_has_them() {
        let scratch = Scratch::new(&[
            ("blkio.bfq.weight", ""),
            ("blkio.bfq.weight_device", ""),
            ("blkio.leaf_weight", ""),
            ("blkio.leaf_weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_iops_device", ""),
        ]);
        apply_to(&scratch, BLKIO_JSON).unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("blkio.bfq.weight", "300"),
                ("blkio.leaf_weight", "200"),
                ("blkio.bfq.weight_device", "8:0 500"),
                ("blkio.leaf_weight_device", "8:0 100"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio.throttle.write_iops_device", "8:16 100"),
            ])
        );
    }

    #[test]
    fn blkio_uses_cfq_files_without_bfq() {
        let scratch = Scratch::new(&[
            ("blkio.weight", ""),
            ("blkio.weight_device", ""),
            ("blkio.leaf_weight", ""),
            ("blkio.leaf_weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_iops_device", ""),
        ]);
        apply_to(&scratch, BLKIO_JSON).unwrap();
        let files: Vec<String> = scratch.writes().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            &files[..3],
            ["blkio.weight", "blkio.leaf_weight", "blkio.weight_device"]
        );
    }

    #[test]
    fn hugetlb_sets_reservation_limits_where_present() {
        let json = r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304},
                                          {"pageSize": "1GB", "limit": 0}]}"#;
        let with_rsvd = Scratch::new(&[
            ("hugetlb.2MB.limit_in_bytes", ""),
            ("hugetlb.2MB.rsvd.limit_in_bytes", ""),
            ("hugetlb.1GB.limit_in_bytes", ""),
            ("hugetlb.1GB.rsvd.limit_in_bytes", ""),
        ]);
        apply_to(&with_rsvd, json).unwrap();
        assert_eq!(
            with_rsvd.writes(),
            writes(&[
                ("hugetlb.2MB.limit_in_bytes", "4194304"),
                ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
                ("hugetlb.1GB.limit_in_bytes", "0"),
                ("hugetlb.1GB.rsvd.limit_in_bytes", "0"),
            ])
        );
        let without_rsvd = Scratch::new(&[
            ("hugetlb.2MB.limit_in_bytes", ""),
            ("hugetlb.1GB.limit_in_bytes", ""),
        ]);
        apply_to(&without_rsvd, json).unwrap();
        assert_eq!(without_rsvd.writes().len(), 2);
    }

    #[test]
    fn network_class_id_and_priorities() {
        let scratch = Scratch::new(&[("net_cls.classid", ""), ("net_prio.ifpriomap", "")]);
        apply_to(
            &scratch,
            r#"{"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5},
                {"name": "lo", "priority": 2}]}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("net_cls.classid", "1048577"),
                ("net_prio.ifpriomap", "eth0 5"),
                ("net_prio.ifpriomap", "lo 2"),
            ])
        );
    }

    #[test]
    fn rdma_limits_one_line_per_device() {
        let scratch = Scratch::new(&[("rdma.max", "")]);
        apply_to(
            &scratch,
            r#"{"rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_handle=3"),
            ])
        );
    }

    #[test]
    fn devices_of_a_new_cgroup_start_from_deny_all() {
        // A new cgroup inherits its parent's "a *:* rwm".
        let scratch = Scratch::new(&[
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm\n"),
        ]);
        apply_to(
            &scratch,
            r#"{"devices": [
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rw"},
                {"allow": false, "type": "b", "major": 8, "minor": 0},
                {"allow": true, "type": "p"},
                {"allow": true, "type": "u", "major": 5, "minor": 1, "access": "r"}]}"#,
        )
        .unwrap();
        // Sorted by (major, minor, type); the deny of a device never
        // allowed writes nothing; the fifo rule is skipped.
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("devices.deny", "a"),
                ("devices.allow", "c 1:3 rwm"),
                ("devices.allow", "c 5:1 r"),
                ("devices.allow", "c 136:* rw"),
            ])
        );
    }

    #[test]
    fn device_update_writes_only_the_difference() {
        // What a running container's cgroup holds after create.
        let scratch = Scratch::new(&[
            ("devices.allow", ""),
            ("devices.deny", ""),
            (
                "devices.list",
                "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 136:* rwm\n",
            ),
        ]);
        apply_to(
            &scratch,
            r#"{"devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "access": "m"},
                            {"allow": true, "type": "b", "access": "m"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"},
                            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 42, "minor": 1, "access": "rw"}]}"#,
        )
        .unwrap();
        // No "deny a": the container never loses /dev/null meanwhile.
        assert_eq!(
            scratch.writes(),
            writes(&[("devices.deny", "c 1:5 wm"), ("devices.allow", "c 42:1 rw"),])
        );
    }

    #[test]
    fn devices_list_starting_with_deny_all_is_not_doubled() {
        let scratch = Scratch::new(&[
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm\n"),
        ]);
        apply_to(
            &scratch,
            r#"{"devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 5}]}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[("devices.deny", "a"), ("devices.allow", "c 1:5 rwm")])
        );
    }

    #[test]
    fn a_limit_without_its_controller_is_an_error() {
        let scratch = Scratch::new(&[]);
        let dirs = vec![("cpu".to_string(), scratch.dir())];
        let err = apply(&V1Dirs::new(&dirs), &resources(r#"{"pids": {"limit": 5}}"#)).unwrap_err();
        assert!(matches!(err, Error::ControllerMissing { .. }), "{err}");
        // Absent resources need no controller.
        apply(&V1Dirs::new(&dirs), &resources("{}")).unwrap();
    }

    #[test]
    fn unified_keys_are_refused_on_pure_v1() {
        let scratch = Scratch::new(&[]);
        let err = apply_to(&scratch, r#"{"unified": {"memory.high": "1G"}}"#).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }
}
