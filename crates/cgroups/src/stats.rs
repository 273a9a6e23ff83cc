//! Usage figures of one container's cgroup, read from v1 or v2 files into
//! one shape (the base of `events --stats`).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fs::CgroupDir;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// `None` when the host has no memory controller for this cgroup.
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
    pub cpu: Option<CpuStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes in use now.
    pub usage: u64,
    /// The limit in bytes; `None` for no limit.
    pub limit: Option<u64>,
    /// The highest usage seen (`None` on kernels without memory.peak).
    pub max_usage: Option<u64>,
    /// Processes the OOM killer killed in this cgroup (`None` when the
    /// kernel does not count them).
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` for no limit.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// CPU time of all tasks, in nanoseconds.
    pub usage_total_ns: u64,
    pub usage_user_ns: Option<u64>,
    pub usage_system_ns: Option<u64>,
}

/// v1 reports "no limit" as the largest page-aligned count that fits in
/// an i64 (9223372036854771712 with 4 KiB pages).
fn v1_limit(value: u64) -> Option<u64> {
    if value >= (i64::MAX as u64) & !0xffff {
        None
    } else {
        Some(value)
    }
}

pub(crate) fn v1_memory(dir: &CgroupDir) -> Result<MemoryStats> {
    Ok(MemoryStats {
        usage: dir.read_u64("memory.usage_in_bytes")?,
        limit: v1_limit(dir.read_u64("memory.limit_in_bytes")?),
        max_usage: dir.read_u64_opt("memory.max_usage_in_bytes")?,
        oom_kills: dir.read_keyed("memory.oom_control", "oom_kill")?,
    })
}

pub(crate) fn v1_pids(dir: &CgroupDir) -> Result<PidsStats> {
    Ok(PidsStats {
        current: dir.read_u64("pids.current")?,
        limit: dir.read_limit("pids.max")?,
    })
}

pub(crate) fn v1_cpuacct(dir: &CgroupDir) -> Result<CpuStats> {
    Ok(CpuStats {
        usage_total_ns: dir.read_u64("cpuacct.usage")?,
        usage_user_ns: dir.read_u64_opt("cpuacct.usage_user")?,
        usage_system_ns: dir.read_u64_opt("cpuacct.usage_sys")?,
    })
}

/// v2 memory figures; `None` when the memory controller is not enabled for
/// this cgroup (no memory.current).
pub(crate) fn v2_memory(dir: &CgroupDir) -> Result<Option<MemoryStats>> {
    let Some(usage) = dir.read_u64_opt("memory.current")? else {
        return Ok(None);
    };
    Ok(Some(MemoryStats {
        usage,
        limit: dir.read_limit("memory.max")?,
        max_usage: dir.read_u64_opt("memory.peak")?,
        oom_kills: dir.read_keyed("memory.events", "oom_kill")?,
    }))
}

pub(crate) fn v2_pids(dir: &CgroupDir) -> Result<Option<PidsStats>> {
    let Some(current) = dir.read_u64_opt("pids.current")? else {
        return Ok(None);
    };
    Ok(Some(PidsStats {
        current,
        limit: dir.read_limit("pids.max")?,
    }))
}

/// cpu.stat exists in every v2 cgroup, with or without the cpu controller.
pub(crate) fn v2_cpu(dir: &CgroupDir) -> Result<Option<CpuStats>> {
    let Some(usage_usec) = dir.read_keyed("cpu.stat", "usage_usec")? else {
        return Ok(None);
    };
    let ns = |usec: u64| usec.saturating_mul(1000);
    Ok(Some(CpuStats {
        usage_total_ns: ns(usage_usec),
        usage_user_ns: dir.read_keyed("cpu.stat", "user_usec")?.map(ns),
        usage_system_ns: dir.read_keyed("cpu.stat", "system_usec")?.map(ns),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_unlimited_memory_reads_as_no_limit() {
        assert_eq!(v1_limit(9_223_372_036_854_771_712), None);
        assert_eq!(v1_limit(64 << 20), Some(64 << 20));
    }
}
