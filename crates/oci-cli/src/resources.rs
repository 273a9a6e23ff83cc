//! `update` and `events`: changing a running container's limits and
//! reading its usage, in runc's flags and JSON shapes.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use cove_engine::container;
use cove_engine::state::Status;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, Spec};
use serde_json::json;

use crate::cli::UpdateArgs;

/// "512m", "1g", "1024", "-1": go-units' RAMInBytes (binary multiples).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let full = t.to_ascii_lowercase();
    let lower = full
        .strip_suffix('b')
        .filter(|r| !r.is_empty())
        .unwrap_or(&full);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("invalid size {s:?}: use a number with an optional k, m, g or t suffix")
    })?;
    if v < 0.0 {
        return Err(format!("invalid size {s:?}: negative"));
    }
    Ok((v * mult as f64) as i64)
}

/// Go durations as runc's --interval takes them: "5s", "100ms", "1m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 5s, 500ms, 1m");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err("the interval must be greater than 0".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn merged(spec: &Spec, a: &UpdateArgs) -> Result<LinuxResources, String> {
    if let Some(src) = &a.resources {
        let mut text = String::new();
        if src.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("read resources from stdin: {e}"))?;
        } else {
            text =
                std::fs::read_to_string(src).map_err(|e| format!("read {}: {e}", src.display()))?;
        }
        let given: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("resources: malformed JSON: {e}"))?;
        // Fields given replace the current ones; the rest stays (as runc).
        let current = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
        merge_json(&mut merged, given);
        return serde_json::from_value(merged).map_err(|e| format!("resources: {e}"));
    }
    let mut r = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut mem = (*r.memory()).unwrap_or_default();
    let mut cpu = r.cpu().clone().unwrap_or_default();
    if let Some(v) = &a.memory {
        mem.set_limit(Some(parse_bytes(v)?));
    }
    if let Some(v) = &a.memory_reservation {
        mem.set_reservation(Some(parse_bytes(v)?));
    }
    if let Some(v) = &a.memory_swap {
        mem.set_swap(Some(parse_bytes(v)?));
    }
    if let Some(v) = &a.kernel_memory {
        mem.set_kernel(Some(parse_bytes(v)?));
    }
    if let Some(v) = &a.kernel_memory_tcp {
        mem.set_kernel_tcp(Some(parse_bytes(v)?));
    }
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    if mem != LinuxMemory::default() {
        r.set_memory(Some(mem));
    }
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }
    Ok(r)
}

fn merge_json(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge_json(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn update(root: &Path, a: &UpdateArgs) -> Result<i32, String> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err("Intel RDT is not supported by cove-oci".into());
    }
    container::update(root, &a.id, |spec| merged(spec, a)).map_err(|e| e.to_string())?;
    Ok(0)
}

/// One `{"type": "stats", "id", "data"}` event, data in runc's shape.
fn stats_json(id: &str, s: &cove_cgroups::RuncStats) -> serde_json::Value {
    json!({"type": "stats", "id": id, "data": s})
}

pub fn events(root: &Path, id: &str, stats_once: bool, interval: &str) -> Result<i32, String> {
    let every = parse_duration(interval)?;
    let c = container::load(root, id).map_err(|e| e.to_string())?;
    if c.status == Status::Stopped {
        return Err("container not running".into());
    }
    let paths = c.saved.cgroup_paths.clone();
    let saved = c.saved.clone();
    drop(c);
    let cg = cove_cgroups::manager_from_paths(&paths);
    let read = || cg.runc_stats().map_err(|e| e.to_string());
    let oom_kills = || {
        cg.stats()
            .map(|s| s.memory.and_then(|m| m.oom_kills).unwrap_or(0))
            .map_err(|e| e.to_string())
    };
    if stats_once {
        println!("{}", stats_json(id, &read()?));
        return Ok(0);
    }
    let mut ooms = oom_kills()?;
    loop {
        std::thread::sleep(every);
        if !cove_engine::state::init_alive(&saved) {
            return Ok(0);
        }
        let s = read()?;
        let now = oom_kills()?;
        if now > ooms {
            println!("{}", json!({"type": "oom", "id": id}));
            ooms = now;
        }
        println!("{}", stats_json(id, &s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_runc_reads_them() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("4kb"), Ok(4096));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("five").is_err());
    }
}
