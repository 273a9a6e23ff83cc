//! `linux.resources` written as cgroup v2 files, with runc's semantics
//! (runc's libcontainer/cgroups/fs2): v1-shaped values from the spec are
//! converted the way runc and crun convert them, and the `unified` map is
//! written last so it overrides anything derived from the other fields.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::device_rules::DeviceSet;
use crate::error::{Error, Result};
use crate::fs::CgroupDir;
use crate::v1_resources::{pids_max, rdma_lines};

/// cpu.shares (v1, 2..262144, default 1024) to cpu.weight (v2, 1..10000,
/// default 100), linearly, as runc and crun do. 0 stays "not set". Shares
/// outside the kernel's v1 range are clamped to it first, as v1 itself
/// would.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (v1, 10..1000) to io.weight (v2, 1..10000), linearly, as
/// runc does when BFQ is not there to take the v1 value as is.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// memory.swap.max from the spec's memory+swap total. `None`: leave the
/// file alone; `Some(-1)`: "max".
pub fn swap_max(swap: i64, limit: i64) -> Result<Option<i64>> {
    // As on v1, "unlimited memory" with no swap setting means unlimited
    // swap too.
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some(-1)),
        _ if limit == 0 || limit == -1 => Err(Error::InvalidResources(
            "memory.swap needs a memory.limit".into(),
        )),
        _ if limit < 0 => Err(Error::InvalidResources(format!(
            "memory.limit {limit} is invalid"
        ))),
        _ if swap < limit => Err(Error::InvalidResources(format!(
            "memory.swap {swap} (memory+swap) is below memory.limit {limit}"
        ))),
        _ => Ok(Some(swap - limit)),
    }
}

/// Writes every limit in `res` into one v2 cgroup directory, in runc's
/// order.
pub(crate) fn apply(dir: &CgroupDir, res: &LinuxResources) -> Result<()> {
    if let Some(pids) = res.pids() {
        dir.write("pids.max", &pids_max(pids))?;
    }
    if let Some(memory) = res.memory() {
        set_memory(dir, memory)?;
    }
    if let Some(block_io) = res.block_io() {
        set_io(dir, block_io)?;
    }
    if let Some(cpu) = res.cpu() {
        set_cpu(dir, cpu)?;
    }
    if let Some(rules) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        // v2 has no device files: access is checked by an eBPF program
        // attached to the cgroup.
        let set = DeviceSet::from_spec(rules)?;
        dir.install_device_program(&set)?;
    }
    if let Some(cpu) = res.cpu() {
        set_cpuset(dir, cpu)?;
    }
    if let Some(limits) = res.hugepage_limits() {
        set_hugetlb(dir, limits)?;
    }
    if let Some(rdma) = res.rdma() {
        for line in rdma_lines(rdma) {
            dir.write("rdma.max", &line)?;
        }
    }
    if let Some(network) = res.network() {
        if network.class_id().is_some() || network.priorities().is_some() {
            // net_cls/net_prio have no v2 files (v2 uses socket-cgroup
            // matching in iptables/eBPF instead); runc ignores them as well.
            tracing::debug!("linux.resources.network ignored on cgroup v2");
        }
    }
    if let Some(unified) = res.unified() {
        set_unified(dir, unified)?;
    }
    Ok(())
}

/// A v2 number: -1 is "max".
fn v2_number(value: i64) -> String {
    if value == -1 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

fn set_memory(dir: &CgroupDir, memory: &LinuxMemory) -> Result<()> {
    let limit = memory.limit().unwrap_or(0);
    let swap = memory.swap().unwrap_or(0);
    let reservation = memory.reservation().unwrap_or(0);
    if memory.swappiness().is_some() {
        tracing::debug!("memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness");
    }
    if memory.disable_oom_killer() == Some(true) {
        tracing::debug!("memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer");
    }
    if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
        tracing::debug!(
            "memory.kernel/kernelTCP ignored: cgroup v2 accounts kernel memory in memory.max"
        );
    }
    if limit == 0 && swap == 0 && reservation == 0 {
        return Ok(());
    }

    // v1 refuses a limit below the usage by itself; v2 would instead
    // reclaim and OOM-kill. checkBeforeUpdate asks for v1's behaviour.
    if memory.check_before_update() == Some(true) && limit > 0 {
        let usage = dir.read_u64("memory.current")?;
        if usage >= limit as u64 {
            return Err(Error::MemoryBelowUsage {
                path: dir.file("memory.max"),
                limit,
                usage,
            });
        }
    }

    if let Some(swap_max) = swap_max(swap, limit)? {
        let value = v2_number(swap_max);
        match dir.write_raw("memory.swap.max", &value) {
            Ok(()) => {}
            // Without swap accounting there is no file; "no limit" and "no
            // swap" are then already true.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && (swap_max == -1 || swap_max == 0) =>
            {
                tracing::debug!("memory.swap.max skipped: kernel does not account swap");
            }
            Err(e) => return Err(dir.write_error("memory.swap.max", &value, e)),
        }
    }
    if limit != 0 {
        dir.write("memory.max", &v2_number(limit))?;
    }
    if reservation != 0 {
        dir.write("memory.low", &v2_number(reservation))?;
    }
    Ok(())
}

fn set_io(dir: &CgroupDir, blkio: &LinuxBlockIo) -> Result<()> {
    let weight = blkio.weight().unwrap_or(0);
    let devices = blkio.weight_device().as_deref().unwrap_or_default();
    if blkio.leaf_weight().is_some() {
        tracing::debug!("blockIO.leafWeight ignored: cgroup v2 has no leaf weights");
    }
    // BFQ takes the v1 weight range as is, and is the only scheduler with
    // per-device weights; without it, io.weight with a converted value.
    let bfq = (weight != 0 || !devices.is_empty()) && dir.exists("io.bfq.weight");
    if weight != 0 {
        if bfq {
            dir.write("io.bfq.weight", &weight.to_string())?;
        } else {
            dir.write("io.weight", &blkio_weight_to_io_weight(weight).to_string())?;
        }
    }
    if bfq {
        for device in devices {
            if let Some(w) = device.weight().filter(|w| *w != 0) {
                dir.write(
                    "io.bfq.weight",
                    &format!("{}:{} {w}", device.major(), device.minor()),
                )?;
            }
        }
    } else if !devices.is_empty() {
        tracing::debug!("blockIO.weightDevice ignored: needs the BFQ scheduler on cgroup v2");
    }
    let throttles = [
        ("rbps", blkio.throttle_read_bps_device()),
        ("wbps", blkio.throttle_write_bps_device()),
        ("riops", blkio.throttle_read_iops_device()),
        ("wiops", blkio.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for device in list.as_deref().unwrap_or_default() {
            let value = format!(
                "{}:{} {key}={}",
                device.major(),
                device.minor(),
                device.rate()
            );
            dir.write("io.max", &value)?;
        }
    }
    Ok(())
}

fn set_cpu(dir: &CgroupDir, cpu: &LinuxCpu) -> Result<()> {
    if cpu.realtime_runtime().unwrap_or(0) != 0 || cpu.realtime_period().unwrap_or(0) != 0 {
        return Err(Error::Unsupported {
            what: "cpu.realtimeRuntime/realtimePeriod".into(),
            reason: "cgroup v2 has no realtime group scheduling".into(),
        });
    }
    let weight = shares_to_weight(cpu.shares().unwrap_or(0));
    if weight != 0 {
        dir.write("cpu.weight", &weight.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        dir.write("cpu.idle", &idle.to_string())?;
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    // As on v1: a new burst can be refused (EINVAL) until the new quota is
    // in; retry it after cpu.max.
    let mut burst_pending = None;
    if let Some(burst) = cpu.burst() {
        let value = burst.to_string();
        match dir.write_raw("cpu.max.burst", &value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("cpu.burst ignored: kernel has no cpu.max.burst")
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => {
                burst_pending = Some(value)
            }
            Err(e) => return Err(dir.write_error("cpu.max.burst", &value, e)),
        }
    }
    if quota != 0 || period != 0 {
        let mut value = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        // Without a period the kernel keeps the current one.
        if period != 0 {
            value.push_str(&format!(" {period}"));
        }
        dir.write("cpu.max", &value)?;
        if let Some(value) = burst_pending {
            dir.write("cpu.max.burst", &value)?;
        }
    }
    Ok(())
}

fn set_cpuset(dir: &CgroupDir, cpu: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        dir.write("cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        dir.write("cpuset.mems", mems)?;
    }
    Ok(())
}

fn set_hugetlb(dir: &CgroupDir, limits: &[LinuxHugepageLimit]) -> Result<()> {
    let mut has_rsvd = true;
    for limit in limits {
        let value = v2_number(limit.limit());
        let prefix = format!("hugetlb.{}", limit.page_size());
        dir.write(&format!("{prefix}.max"), &value)?;
        if !has_rsvd {
            continue;
        }
        let rsvd = format!("{prefix}.rsvd.max");
        match dir.write_raw(&rsvd, &value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => has_rsvd = false,
            Err(e) => return Err(dir.write_error(&rsvd, &value, e)),
        }
    }
    Ok(())
}

/// The v2 controller a `unified` key belongs to ("memory.high" ->
/// "memory"); `None` for the core "cgroup.*" files.
pub(crate) fn unified_key_controller(key: &str) -> Option<&str> {
    match key.split_once('.') {
        Some(("cgroup", _)) | None => None,
        Some((controller, _)) => Some(controller),
    }
}

fn set_unified(dir: &CgroupDir, unified: &std::collections::HashMap<String, String>) -> Result<()> {
    // Sorted, so repeated runs write in the same order.
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let value = &unified[key];
        // A key is a file name in the container's cgroup, never a path
        // out of it.
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(Error::InvalidResources(format!(
                "unified key {key:?} is not a cgroup file name"
            )));
        }
        match dir.write_raw(key, value) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                // Say which controller is missing rather than "no such file".
                if let Some(controller) = unified_key_controller(key) {
                    let available = dir.read("cgroup.controllers").unwrap_or_default();
                    if !available.split_whitespace().any(|c| c == controller) {
                        return Err(Error::ControllerMissing {
                            what: format!("unified {key}"),
                            controller: controller.to_string(),
                            looked_in: dir.file("cgroup.controllers"),
                        });
                    }
                }
                return Err(dir.write_error(key, value, e));
            }
            Err(e) => return Err(dir.write_error(key, value, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::{resources, writes, Scratch};

    fn apply_to(scratch: &Scratch, json: &str) -> Result<()> {
        apply(&scratch.dir(), &resources(json))
    }

    #[test]
    fn shares_convert_to_weight_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of the v1 range: clamped as v1 would, never wrapped.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn blkio_weight_converts_to_io_weight() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_max_is_swap_minus_memory() {
        assert_eq!(swap_max(0, 0).unwrap(), None);
        assert_eq!(swap_max(0, 1024).unwrap(), None);
        assert_eq!(swap_max(0, -1).unwrap(), Some(-1));
        assert_eq!(swap_max(-1, 1024).unwrap(), Some(-1));
        assert_eq!(swap_max(3072, 1024).unwrap(), Some(2048));
        assert_eq!(swap_max(1024, 1024).unwrap(), Some(0));
        assert!(swap_max(1024, 0).is_err(), "swap needs a memory limit");
        assert!(swap_max(512, 1024).is_err(), "memory+swap below memory");
    }

    #[test]
    fn memory_maps_to_max_swap_max_and_low() {
        let scratch = Scratch::new(&[
            ("memory.max", ""),
            ("memory.swap.max", ""),
            ("memory.low", ""),
        ]);
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 268435456, "swap": 536870912, "reservation": 1048576,
                "swappiness": 30, "disableOOMKiller": true}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("memory.swap.max", "268435456"),
                ("memory.max", "268435456"),
                ("memory.low", "1048576"),
            ])
        );
    }

    #[test]
    fn unlimited_memory_is_max_and_missing_swap_file_is_fine() {
        let scratch = Scratch::new(&[("memory.max", "")]);
        apply_to(&scratch, r#"{"memory": {"limit": -1}}"#).unwrap();
        assert_eq!(scratch.writes(), writes(&[("memory.max", "max")]));
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let scratch = Scratch::new(&[("memory.max", ""), ("memory.current", "104857600\n")]);
        let err = apply_to(
            &scratch,
            r#"{"memory": {"limit": 52428800, "checkBeforeUpdate": true}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MemoryBelowUsage {
                    usage: 104857600,
                    ..
                }
            ),
            "{err}"
        );
        assert!(scratch.writes().is_empty());
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 209715200, "checkBeforeUpdate": true}}"#,
        )
        .unwrap();
        assert_eq!(scratch.writes(), writes(&[("memory.max", "209715200")]));
    }

    #[test]
    fn cpu_maps_to_weight_max_burst_and_idle() {
        let scratch = Scratch::new(&[
            ("cpu.weight", ""),
            ("cpu.max", ""),
            ("cpu.max.burst", ""),
            ("cpu.idle", ""),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
        ]);
        apply_to(
            &scratch,
            r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 5000,
                "idle": 1, "cpus": "1", "mems": "0"}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("cpu.weight", "39"),
                ("cpu.idle", "1"),
                ("cpu.max.burst", "5000"),
                ("cpu.max", "50000 100000"),
                ("cpuset.cpus", "1"),
                ("cpuset.mems", "0"),
            ])
        );
    }

    #[test]
    fn cpu_max_without_quota_is_max() {
        for (json, expected) in [
            (r#"{"cpu": {"quota": -1}}"#, "max"),
            (r#"{"cpu": {"period": 250000}}"#, "max 250000"),
            (r#"{"cpu": {"quota": 20000}}"#, "20000"),
        ] {
            let scratch = Scratch::new(&[("cpu.max", "")]);
            apply_to(&scratch, json).unwrap();
            assert_eq!(scratch.writes(), writes(&[("cpu.max", expected)]), "{json}");
        }
    }

    #[test]
    fn realtime_cpu_is_refused() {
        let scratch = Scratch::new(&[]);
        let err = apply_to(&scratch, r#"{"cpu": {"realtimeRuntime": 1000}}"#).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }

    #[test]
    fn pids_limit_maps_to_pids_max() {
        let scratch = Scratch::new(&[("pids.max", "")]);
        apply_to(&scratch, r#"{"pids": {"limit": 0}}"#).unwrap();
        apply_to(&scratch, r#"{"pids": {"limit": 42}}"#).unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[("pids.max", "max"), ("pids.max", "42")])
        );
    }

    const IO_JSON: &str = r#"{"blockIO": {"weight": 500, "leafWeight": 10,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]}}"#;

    #[test]
    fn io_uses_bfq_weights_when_present() {
        let scratch = Scratch::new(&[("io.bfq.weight", ""), ("io.weight", ""), ("io.max", "")]);
        apply_to(&scratch, IO_JSON).unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("io.bfq.weight", "500"),
                ("io.bfq.weight", "8:0 200"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:0 wbps=2097152"),
                ("io.max", "8:0 riops=100"),
                ("io.max", "8:0 wiops=200"),
            ])
        );
    }

    #[test]
    fn io_weight_is_converted_without_bfq() {
        let scratch = Scratch::new(&[("io.weight", ""), ("io.max", "")]);
        apply_to(&scratch, IO_JSON).unwrap();
        assert_eq!(scratch.writes()[0], ("io.weight".into(), "4950".into()));
        assert_eq!(scratch.writes().len(), 5);
    }

    #[test]
    fn hugetlb_maps_to_max_and_rsvd_max() {
        let scratch = Scratch::new(&[("hugetlb.2MB.max", ""), ("hugetlb.2MB.rsvd.max", "")]);
        apply_to(
            &scratch,
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("hugetlb.2MB.max", "8388608"),
                ("hugetlb.2MB.rsvd.max", "8388608"),
            ])
        );
    }

    #[test]
    fn unified_keys_are_written_last_and_override() {
        let scratch = Scratch::new(&[("memory.max", ""), ("memory.high", ""), ("pids.max", "")]);
        apply_to(
            &scratch,
            r#"{"memory": {"limit": 1048576}, "pids": {"limit": 10},
                "unified": {"memory.max": "2097152", "memory.high": "1048576"}}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[
                ("pids.max", "10"),
                ("memory.max", "1048576"),
                ("memory.high", "1048576"),
                ("memory.max", "2097152"),
            ])
        );
    }

    #[test]
    fn unified_key_must_be_a_file_name() {
        let scratch = Scratch::new(&[]);
        for key in ["../memory.max", "a/b", ".."] {
            let json = format!(r#"{{"unified": {{"{key}": "1"}}}}"#);
            let err = apply_to(&scratch, &json).unwrap_err();
            assert!(matches!(err, Error::InvalidResources(_)), "{key}: {err}");
        }
    }

    #[test]
    fn unified_key_of_a_missing_controller_names_it() {
        let scratch = Scratch::new(&[("cgroup.controllers", "cpu pids\n")]);
        let err = apply_to(&scratch, r#"{"unified": {"memory.high": "1"}}"#).unwrap_err();
        assert!(matches!(err, Error::ControllerMissing { .. }), "{err}");
    }

    #[test]
    fn device_rules_become_a_device_program_on_v2() {
        let scratch = Scratch::new(&[]);
        apply_to(
            &scratch,
            r#"{"devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
        )
        .unwrap();
        assert_eq!(
            scratch.writes(),
            writes(&[(
                "<device program>",
                "default deny, 1 exceptions, 13 instructions"
            )])
        );
        // A rule the v1 kernel would ignore is refused before anything is
        // loaded.
        let err = apply_to(
            &scratch,
            r#"{"devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "access": "rwm"},
                            {"allow": false, "type": "c", "major": 1, "minor": 1, "access": "rwm"}]}"#,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidResources(_)), "{err}");
    }

    #[test]
    fn unified_key_controller_prefix() {
        assert_eq!(unified_key_controller("memory.high"), Some("memory"));
        assert_eq!(unified_key_controller("hugetlb.2MB.max"), Some("hugetlb"));
        assert_eq!(unified_key_controller("cgroup.max.depth"), None);
    }
}
