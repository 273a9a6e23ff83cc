//! A CT's config turned into the OCI runtime spec of a system container:
//! the one place where cove decides what a CT is. Everything here is data;
//! the engine does the isolating.
//!
//! A system container, as OpenVZ and LXC have it: its own pid, mount, uts,
//! ipc, network and cgroup namespaces; a real init as PID 1 with a console;
//! root with a broad set of capabilities (all but those that reach the
//! host's kernel, clock, audit and logs); a small seccomp deny list for the
//! calls capabilities do not fence; the kernel's views that leak or change
//! the host masked or read-only; its cgroup under cove's own parent.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, Spec,
};
use serde_json::json;

use crate::config::{CtConfig, Resources};
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::template::InitInfo;

/// Capabilities a CT's root does not get, and why: each reaches beyond
/// the CT's namespaces.
pub const DROPPED_CAPS: [(Capability, &str); 10] = [
    (Capability::SysModule, "loads code into the host's kernel"),
    (Capability::SysRawio, "raw I/O ports and memory of the host"),
    (Capability::SysTime, "the clock is the host's"),
    (Capability::MacAdmin, "the host's LSM policy"),
    (Capability::MacOverride, "bypasses the host's LSM policy"),
    (Capability::SysPacct, "process accounting is host-wide"),
    (Capability::Syslog, "reads and clears the host's kernel log"),
    (Capability::AuditControl, "the host's audit rules"),
    (Capability::WakeAlarm, "wakes the host from suspend"),
    (Capability::BlockSuspend, "keeps the host from suspending"),
];

/// Calls a CT's root could otherwise make with the capabilities it keeps,
/// and that act on the host: module loading by other names, kexec, swap
/// devices, and open_by_handle_at, which with CAP_DAC_READ_SEARCH opens any
/// host file by handle (the "shocker" escape).
pub const DENIED_SYSCALLS: [&str; 8] = [
    "open_by_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
];

pub const ENV_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the spec is made from.
pub struct SpecInput<'a> {
    pub ctid: &'a Ctid,
    pub cfg: &'a CtConfig,
    pub init: &'a InitInfo,
    /// The CT's mounted root (the overlay).
    pub rootfs: &'a Path,
    pub cgroups_path: &'a str,
    /// The capabilities this process may hand on (its bounding set): a CT
    /// cannot get what its monitor does not have.
    pub available_caps: &'a HashSet<Capability>,
}

/// The capabilities of a CT's root: every one available but the dropped.
pub fn ct_capabilities(available: &HashSet<Capability>) -> Vec<Capability> {
    let dropped: HashSet<Capability> = DROPPED_CAPS.iter().map(|(c, _)| *c).collect();
    let mut caps: Vec<Capability> = available
        .iter()
        .filter(|c| !dropped.contains(c))
        .copied()
        .collect();
    caps.sort_by_key(|c| c.to_string());
    caps
}

/// This process's bounding set in oci-spec's terms; capabilities newer
/// than oci-spec knows are left out.
pub fn available_capabilities() -> Result<HashSet<Capability>> {
    let set = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| Error::Tool(format!("cannot read the capability bounding set: {e}")))?;
    Ok(set
        .into_iter()
        .filter_map(|c| {
            c.to_string()
                .trim_start_matches("CAP_")
                .parse::<Capability>()
                .ok()
        })
        .collect())
}

/// `linux.resources` for the CT's limits.
pub fn resources(r: &Resources) -> Result<LinuxResources> {
    let bad = |e: oci_spec::OciSpecError| Error::Tool(format!("building linux.resources: {e}"));
    let mut res = LinuxResources::default();
    // Every device is denied first; the engine adds the rules for the
    // nodes it creates in /dev.
    res.set_devices(Some(vec![
        oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(bad)?,
    ]));
    if let Some(m) = r.memory {
        let limit =
            i64::try_from(m.0).map_err(|_| Error::BadInput(format!("memory {m} is too large")))?;
        res.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(bad)?,
        ));
    }
    if let Some(cpus) = r.cpus {
        const PERIOD: u64 = 100_000;
        // The kernel refuses a quota under 1 ms.
        let quota = ((cpus * PERIOD as f64).round() as i64).max(1_000);
        res.set_cpu(Some(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(PERIOD)
                .build()
                .map_err(bad)?,
        ));
    }
    if let Some(p) = r.pids {
        res.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(i64::from(p))
                .build()
                .map_err(bad)?,
        ));
    }
    Ok(res)
}

fn seccomp() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        // The 32-bit ABIs get their own sections, so the deny list cannot be
        // side-stepped through int 0x80 or x32 syscall numbers.
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}]
    })
}

pub fn system_spec(input: &SpecInput) -> Result<Spec> {
    let caps = ct_capabilities(input.available_caps);
    let mut spec = json!({
        "ociVersion": cove_engine::spec::SPEC_VERSION,
        "root": {"path": input.rootfs, "readonly": false},
        "hostname": input.cfg.hostname,
        "process": {
            // The init's console is a pty whose master the monitor holds.
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": [input.init.path],
            // `container` tells init systems they run in a container.
            "env": [ENV_PATH, "TERM=linux", "container=cove", format!("container_ctid={}", input.ctid)],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": input.cgroups_path,
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}, {"type": "cgroup"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        },
        "annotations": {"org.cove.ctid": input.ctid.as_str(), "org.cove.template": input.cfg.template}
    });
    if cfg!(target_arch = "x86_64") {
        spec["linux"]["seccomp"] = seccomp();
    }
    let mut spec: Spec = serde_json::from_value(spec)
        .map_err(|e| Error::Tool(format!("building the CT's spec: {e}")))?;
    let res = resources(&input.cfg.resources)?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(res));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Bytes;

    fn input_parts() -> (Ctid, CtConfig, InitInfo, HashSet<Capability>) {
        let ctid = Ctid::parse("101").unwrap();
        let cfg = CtConfig {
            ctid: "101".into(),
            template: "busybox".into(),
            name: None,
            hostname: "ct101".into(),
            init: None,
            stop_signal: None,
            resources: Resources {
                memory: Some(Bytes(256 << 20)),
                cpus: Some(1.5),
                pids: Some(64),
            },
        };
        let init = InitInfo {
            path: "/sbin/init".into(),
            stop_signal: libc::SIGUSR2,
        };
        let avail: HashSet<Capability> = [
            Capability::SysAdmin,
            Capability::SysModule,
            Capability::NetAdmin,
            Capability::SysTime,
            Capability::Chown,
        ]
        .into_iter()
        .collect();
        (ctid, cfg, init, avail)
    }

    #[test]
    fn spec_is_a_system_container() {
        let (ctid, cfg, init, avail) = input_parts();
        let spec = system_spec(&SpecInput {
            ctid: &ctid,
            cfg: &cfg,
            init: &init,
            rootfs: Path::new("/run/cove/ct/101/bundle/rootfs"),
            cgroups_path: "/cove/101",
            available_caps: &avail,
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "ct101");
        assert_eq!(v["process"]["args"], json!(["/sbin/init"]));
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["linux"]["cgroupsPath"], "/cove/101");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "network", "cgroup"]);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 64);
        let bounding: Vec<&str> = v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(bounding.contains(&"CAP_SYS_ADMIN") && bounding.contains(&"CAP_NET_ADMIN"));
        assert!(!bounding.contains(&"CAP_SYS_MODULE") && !bounding.contains(&"CAP_SYS_TIME"));
        let mounts: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        // The engine's own checks accept it (the rootfs need not exist for these).
        cove_seccomp::compile(spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap()).unwrap();
    }

    #[test]
    fn no_limits_means_only_the_device_rule() {
        let res = resources(&Resources::default()).unwrap();
        assert!(res.memory().is_none() && res.cpu().is_none() && res.pids().is_none());
        assert_eq!(res.devices().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn tiny_cpu_shares_keep_the_kernel_minimum_quota() {
        let res = resources(&Resources {
            cpus: Some(0.001),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(1_000));
    }
}
