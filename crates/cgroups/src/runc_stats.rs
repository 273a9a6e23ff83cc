//! Usage figures in the shape `runc events` prints them (runc's
//! types.Stats, as runc 1.1 fills it): the same field names, the same
//! fields left out when zero (Go's `omitempty`), the same units, and the
//! same sources on each kind of host: the v1 controllers on v1 and hybrid
//! hosts, the unified files on v2. Intel RDT and network interfaces are
//! not collected: `intel_rdt` is `{}` and `network_interfaces` is null, as
//! runc prints them for a container without either.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::CgroupDir;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuncStats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Per page size ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; `limit` u64::MAX (v2) or v1's page-aligned i64::MAX for none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 for no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Not collected; prints as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntelRdt {}

/// Never filled: cove-oci containers' interfaces are not counted (runc
/// fills them only from its own libcontainer network strategies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkInterface {}

// ---------------------------------------------------------------- reading

/// The file's text, `None` when it does not exist (a knob this kernel or
/// this cgroup lacks).
fn read_opt(dir: &CgroupDir, name: &str) -> Result<Option<String>> {
    match dir.read_raw(name) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: dir.file(name),
            source,
        }),
    }
}

fn parse_error(dir: &CgroupDir, name: &str, content: &str) -> Error {
    Error::Parse {
        path: dir.file(name),
        content: content.to_string(),
    }
}

/// One number; "max" is u64::MAX, as runc reads it. 0 when absent.
fn number(dir: &CgroupDir, name: &str) -> Result<u64> {
    let Some(text) = read_opt(dir, name)? else {
        return Ok(0);
    };
    let value = text.trim();
    if value == "max" {
        return Ok(u64::MAX);
    }
    value.parse().map_err(|_| parse_error(dir, name, &text))
}

fn signed(dir: &CgroupDir, name: &str) -> Result<i64> {
    let Some(text) = read_opt(dir, name)? else {
        return Ok(0);
    };
    text.trim()
        .parse()
        .map_err(|_| parse_error(dir, name, &text))
}

/// A flat keyed file ("key value" lines) as a map; empty when absent.
fn keyed(dir: &CgroupDir, name: &str) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    let Some(text) = read_opt(dir, name)? else {
        return Ok(map);
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            return Err(parse_error(dir, name, line));
        };
        let value = value.parse().map_err(|_| parse_error(dir, name, line))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

/// "0-2,4" as [0, 1, 2, 4].
fn cpu_list(text: &str) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Page sizes the kernel offers, named as runc names them ("2MB", "1GB").
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, page_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, name)| name).collect()
}

fn page_size_name(kb: u64) -> String {
    let units = ["KB", "MB", "GB", "TB", "PB"];
    let mut size = kb;
    let mut unit = 0;
    while size >= 1024 && size & 1023 == 0 && unit + 1 < units.len() {
        size /= 1024;
        unit += 1;
    }
    format!("{size}{}", units[unit])
}

// ---------------------------------------------------------------- v1

/// cpuacct.stat counts USER_HZ ticks (100 per second on Linux).
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

pub(crate) fn v1_cpu(cpuacct: Option<&CgroupDir>, cpu: Option<&CgroupDir>) -> Result<Cpu> {
    let mut out = Cpu::default();
    if let Some(dir) = cpuacct {
        out.usage.total = number(dir, "cpuacct.usage")?;
        if let Some(text) = read_opt(dir, "cpuacct.usage_percpu")? {
            out.usage.percpu = text
                .split_whitespace()
                .map(|v| {
                    v.parse()
                        .map_err(|_| parse_error(dir, "cpuacct.usage_percpu", &text))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(text) = read_opt(dir, "cpuacct.usage_all")? {
            // "cpu user system" then one line per cpu.
            for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [_, user, system] = fields[..] else {
                    return Err(parse_error(dir, "cpuacct.usage_all", line));
                };
                let parse = |v: &str| {
                    v.parse::<u64>()
                        .map_err(|_| parse_error(dir, "cpuacct.usage_all", line))
                };
                out.usage.percpu_user.push(parse(user)?);
                out.usage.percpu_kernel.push(parse(system)?);
            }
        }
        let stat = keyed(dir, "cpuacct.stat")?;
        out.usage.user = stat.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        out.usage.kernel = stat.get("system").copied().unwrap_or(0) * NS_PER_TICK;
    }
    if let Some(dir) = cpu {
        let stat = keyed(dir, "cpu.stat")?;
        out.throttling = Throttling {
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: stat.get("throttled_time").copied().unwrap_or(0),
        };
    }
    Ok(out)
}

pub(crate) fn v1_cpuset(dir: &CgroupDir) -> Result<CpuSet> {
    let list = |name: &str| -> Result<Vec<u16>> {
        let text = read_opt(dir, name)?.unwrap_or_default();
        cpu_list(&text).ok_or_else(|| parse_error(dir, name, &text))
    };
    Ok(CpuSet {
        cpus: list("cpuset.cpus")?,
        cpu_exclusive: number(dir, "cpuset.cpu_exclusive")?,
        mems: list("cpuset.mems")?,
        mem_hardwall: number(dir, "cpuset.mem_hardwall")?,
        mem_exclusive: number(dir, "cpuset.mem_exclusive")?,
        memory_migrate: number(dir, "cpuset.memory_migrate")?,
        memory_spread_page: number(dir, "cpuset.memory_spread_page")?,
        memory_spread_slab: number(dir, "cpuset.memory_spread_slab")?,
        memory_pressure: number(dir, "cpuset.memory_pressure")?,
        sched_load_balance: number(dir, "cpuset.sched_load_balance")?,
        sched_relax_domain_level: signed(dir, "cpuset.sched_relax_domain_level")?,
    })
}

fn v1_memory_entry(dir: &CgroupDir, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        limit: number(dir, &format!("{prefix}.limit_in_bytes"))?,
        usage: number(dir, &format!("{prefix}.usage_in_bytes"))?,
        max: number(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: number(dir, &format!("{prefix}.failcnt"))?,
    })
}

pub(crate) fn v1_memory(dir: &CgroupDir) -> Result<Memory> {
    let raw = keyed(dir, "memory.stat")?;
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: v1_memory_entry(dir, "memory")?,
        swap: v1_memory_entry(dir, "memory.memsw")?,
        kernel: v1_memory_entry(dir, "memory.kmem")?,
        kernel_tcp: v1_memory_entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

pub(crate) fn v1_pids(dir: &CgroupDir) -> Result<Pids> {
    let limit = number(dir, "pids.max")?;
    Ok(Pids {
        current: number(dir, "pids.current")?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

/// "8:0 Read 4096" lines; the "Total N" line is left out.
fn v1_blkio_entries(dir: &CgroupDir, name: &str) -> Result<Option<Vec<BlkioEntry>>> {
    let Some(text) = read_opt(dir, name)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (numbers, op, value) = match fields[..] {
            [numbers, op, value] => (numbers, op, value),
            [numbers, value] if numbers.contains(':') => (numbers, "", value),
            _ => continue,
        };
        let Some((major, minor)) = numbers.split_once(':') else {
            continue;
        };
        let parse = |v: &str| v.parse::<u64>().map_err(|_| parse_error(dir, name, line));
        out.push(BlkioEntry {
            major: parse(major)?,
            minor: parse(minor)?,
            op: op.to_string(),
            value: parse(value)?,
        });
    }
    Ok(Some(out))
}

/// runc's order: BFQ's files when they hold anything, then CFQ's, then the
/// throttle layer's (which counts every I/O, whatever the scheduler).
pub(crate) fn v1_blkio(dir: &CgroupDir) -> Result<Blkio> {
    for prefix in ["blkio.bfq.", "blkio."] {
        let file = |name: &str| format!("{prefix}{name}");
        let Some(bytes) = v1_blkio_entries(dir, &file("io_service_bytes_recursive"))? else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        let list = |name: &str| -> Result<Vec<BlkioEntry>> {
            Ok(v1_blkio_entries(dir, &file(name))?.unwrap_or_default())
        };
        return Ok(Blkio {
            io_service_bytes_recursive: bytes,
            io_serviced_recursive: list("io_serviced_recursive")?,
            io_queued_recursive: list("io_queued_recursive")?,
            io_service_time_recursive: list("io_service_time_recursive")?,
            io_wait_time_recursive: list("io_wait_time_recursive")?,
            io_merged_recursive: list("io_merged_recursive")?,
            io_time_recursive: list("time_recursive")?,
            sectors_recursive: list("sectors_recursive")?,
        });
    }
    Ok(Blkio {
        io_service_bytes_recursive: v1_blkio_entries(
            dir,
            "blkio.throttle.io_service_bytes_recursive",
        )?
        .unwrap_or_default(),
        io_serviced_recursive: v1_blkio_entries(dir, "blkio.throttle.io_serviced_recursive")?
            .unwrap_or_default(),
        ..Blkio::default()
    })
}

pub(crate) fn v1_hugetlb(dir: &CgroupDir) -> Result<BTreeMap<String, Hugetlb>> {
    let mut out = BTreeMap::new();
    for size in hugepage_sizes() {
        let file = |what: &str| format!("hugetlb.{size}.{what}");
        if !dir.exists(&file("usage_in_bytes")) {
            continue;
        }
        out.insert(
            size.clone(),
            Hugetlb {
                usage: number(dir, &file("usage_in_bytes"))?,
                max: number(dir, &file("max_usage_in_bytes"))?,
                failcnt: number(dir, &file("failcnt"))?,
            },
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------- v2

pub(crate) fn v2_cpu(dir: &CgroupDir) -> Result<Cpu> {
    let stat = keyed(dir, "cpu.stat")?;
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Ok(Cpu {
        usage: CpuUsage {
            total: get("usage_usec") * 1000,
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
            ..CpuUsage::default()
        },
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_usec") * 1000,
        },
    })
}

/// As runc: usage and limit of memory; swap as memory+swap (v1's sense);
/// no kernel figures (v2 counts them inside memory). Zeros when the memory
/// controller is not enabled here.
pub(crate) fn v2_memory(dir: &CgroupDir) -> Result<Memory> {
    if !dir.exists("memory.current") {
        return Ok(Memory::default());
    }
    let raw = keyed(dir, "memory.stat")?;
    let usage = MemoryEntry {
        usage: number(dir, "memory.current")?,
        limit: number(dir, "memory.max")?,
        ..MemoryEntry::default()
    };
    let mut swap = MemoryEntry::default();
    if dir.exists("memory.swap.current") {
        swap.usage = number(dir, "memory.swap.current")?;
        swap.limit = number(dir, "memory.swap.max")?;
    }
    swap.usage = swap.usage.wrapping_add(usage.usage);
    if swap.limit != u64::MAX {
        swap.limit = swap.limit.wrapping_add(usage.limit);
    }
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

pub(crate) fn v2_pids(dir: &CgroupDir) -> Result<Pids> {
    v1_pids(dir)
}

/// io.stat: "8:0 rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N".
pub(crate) fn v2_blkio(dir: &CgroupDir) -> Result<Blkio> {
    let mut out = Blkio::default();
    let Some(text) = read_opt(dir, "io.stat")? else {
        return Ok(out);
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            return Err(parse_error(dir, "io.stat", line));
        };
        let parse = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| parse_error(dir, "io.stat", line))
        };
        let (major, minor) = (parse(major)?, parse(minor)?);
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: parse(value)?,
            });
        }
    }
    Ok(out)
}

/// All page sizes or none, as runc (it stops at the first size missing).
pub(crate) fn v2_hugetlb(dir: &CgroupDir) -> Result<BTreeMap<String, Hugetlb>> {
    let mut out = BTreeMap::new();
    for size in hugepage_sizes() {
        let current = format!("hugetlb.{size}.current");
        if !dir.exists(&current) {
            return Ok(BTreeMap::new());
        }
        let events = keyed(dir, &format!("hugetlb.{size}.events"))?;
        out.insert(
            size,
            Hugetlb {
                usage: number(dir, &current)?,
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;

    #[test]
    fn page_sizes_are_named_as_runc_names_them() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
    }

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(cpu_list("0-2,4\n"), Some(vec![0, 1, 2, 4]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("x"), None);
    }

    #[test]
    fn v1_figures_map_to_runcs_fields() {
        let s = Scratch::new(&[
            ("cpuacct.usage", "3000\n"),
            ("cpuacct.usage_percpu", "1000 2000 \n"),
            (
                "cpuacct.usage_all",
                "cpu user system\n0 600 400\n1 1500 500\n",
            ),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
            ),
            ("memory.stat", "cache 4096\nrss 8192\n"),
            ("memory.usage_in_bytes", "12288\n"),
            ("memory.max_usage_in_bytes", "20480\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "0\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            ),
            ("blkio.throttle.io_serviced_recursive", "8:0 Read 1\n"),
        ]);
        let dir = s.dir();
        let cpu = v1_cpu(Some(&dir), Some(&dir)).unwrap();
        assert_eq!(cpu.usage.total, 3000);
        assert_eq!(cpu.usage.percpu, [1000, 2000]);
        assert_eq!(cpu.usage.percpu_user, [600, 1500]);
        assert_eq!(cpu.usage.percpu_kernel, [400, 500]);
        assert_eq!((cpu.usage.user, cpu.usage.kernel), (30_000_000, 10_000_000));
        assert_eq!(cpu.throttling.throttled_time, 5000);
        let memory = v1_memory(&dir).unwrap();
        assert_eq!(memory.cache, 4096);
        assert_eq!(memory.usage.limit, 9_223_372_036_854_771_712);
        assert_eq!(memory.swap, MemoryEntry::default(), "no memsw files");
        assert_eq!(
            v1_pids(&dir).unwrap(),
            Pids {
                current: 2,
                limit: 0
            }
        );
        let blkio = v1_blkio(&dir).unwrap();
        assert_eq!(blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(blkio.io_serviced_recursive[0].op, "Read");
    }

    #[test]
    fn v2_figures_map_to_runcs_fields() {
        let s = Scratch::new(&[
            (
                "cpu.stat",
                "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n",
            ),
            ("memory.current", "8192\n"),
            ("memory.max", "16384\n"),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "max\n"),
            ("memory.stat", "anon 4096\nfile 4096\n"),
            ("io.stat", "8:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"),
        ]);
        let dir = s.dir();
        let cpu = v2_cpu(&dir).unwrap();
        assert_eq!(
            (cpu.usage.total, cpu.usage.user, cpu.usage.kernel),
            (10_000, 6_000, 4_000)
        );
        assert_eq!(cpu.throttling.throttled_time, 7_000);
        let memory = v2_memory(&dir).unwrap();
        assert_eq!(memory.cache, 4096);
        assert_eq!((memory.usage.usage, memory.usage.limit), (8192, 16384));
        assert_eq!(
            (memory.swap.usage, memory.swap.limit),
            (12288, u64::MAX),
            "swap is memory+swap"
        );
        let blkio = v2_blkio(&dir).unwrap();
        assert_eq!(blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(blkio.io_serviced_recursive[1].op, "Write");
    }
}
