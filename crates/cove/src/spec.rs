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
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, Spec,
};
use serde_json::json;

use crate::cgroup::CgroupView;
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

/// One group of calls cove's default seccomp profile refuses.
pub struct Denied {
    pub syscalls: &'static [&'static str],
    /// What the call returns instead.
    pub errno: i32,
    pub why: &'static str,
}

/// cove's default profile: everything allowed but what a CT's root could
/// do to the host with the capabilities it keeps (CAP_SYS_ADMIN,
/// CAP_DAC_READ_SEARCH, CAP_SYS_BOOT...), in the spirit of LXC's deny list
/// (kexec_load, open_by_handle_at, the module calls, `umount -f`) and of
/// the calls systemd-nspawn leaves out of its allow list because the
/// kernel does not namespace what they touch (kexec, open_by_handle_at,
/// swap, bpf, perf_event_open, fanotify, quotactl, the keyring).
///
/// Left allowed on purpose: `reboot` (in a pid namespace the kernel turns
/// it into a signal to the CT's init), `setns`/`unshare`/`mount` (nested
/// containers; the CT's mounts are its own), `modify_ldt`, `userfaultfd`
/// and the pkey calls (nspawn allows or they touch only the caller), and
/// what the dropped capabilities already fence (clock, raw I/O, syslog,
/// acct; the module calls are denied anyway, as LXC does).
pub const DEFAULT_DENIED: &[Denied] = &[
    Denied {
        syscalls: &["open_by_handle_at"],
        errno: libc::EPERM,
        why: "with CAP_DAC_READ_SEARCH it opens any host file by handle (the \"shocker\" escape)",
    },
    Denied {
        syscalls: &["kexec_load", "kexec_file_load"],
        errno: libc::EPERM,
        why: "CAP_SYS_BOOT stays for reboot, but kexec would replace the host's kernel",
    },
    Denied {
        syscalls: &["init_module", "finit_module", "delete_module"],
        errno: libc::EPERM,
        why: "the host's kernel modules (CAP_SYS_MODULE is dropped too)",
    },
    Denied {
        syscalls: &["swapon", "swapoff"],
        errno: libc::EPERM,
        why: "swap is the host's",
    },
    Denied {
        syscalls: &["bpf", "perf_event_open"],
        errno: libc::EPERM,
        why: "with CAP_SYS_ADMIN they trace and read the host's kernel; bpffs is not namespaced \
              (systemd in a CT falls back when bpf is refused)",
    },
    Denied {
        syscalls: &["fanotify_init", "fanotify_mark"],
        errno: libc::EPERM,
        why: "filesystem-wide marks watch the host's accesses to shared filesystems",
    },
    Denied {
        syscalls: &["quotactl", "quotactl_fd"],
        errno: libc::EPERM,
        why: "quotas belong to the host's filesystems",
    },
    Denied {
        syscalls: &["lookup_dcookie", "nfsservctl"],
        errno: libc::EPERM,
        why: "obsolete host-wide interfaces",
    },
    Denied {
        syscalls: &["add_key", "keyctl", "request_key"],
        // ENOSYS rather than EPERM: software (systemd first) then takes
        // the keyring for absent, as on a kernel built without keys, and
        // goes on without it.
        errno: libc::ENOSYS,
        why: "the keyring is not namespaced: a CT's root would share the host root's user keyring",
    },
];

/// `umount2(target, flags)` with MNT_FORCE: on a network filesystem the
/// forced abort hits every mount of that superblock, the host's included
/// (LXC's reject_force_umount).
const MNT_FORCE: u64 = 1;

pub const ENV_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the spec is made from.
pub struct SpecInput<'a> {
    pub ctid: &'a Ctid,
    pub cfg: &'a CtConfig,
    pub init: &'a InitInfo,
    /// The CT's mounted root (the overlay).
    pub rootfs: &'a Path,
    /// The payload cgroup (see [`crate::cgroup`]).
    pub cgroups_path: &'a str,
    pub cgroup_view: &'a CgroupView,
    /// The capabilities this process may hand on (its bounding set): a CT
    /// cannot get what its monitor does not have.
    pub available_caps: &'a HashSet<Capability>,
    /// The monitor's notify socket for a CT whose init is systemd (see
    /// [`crate::systemd::CtNotify`]): bound at /run/host/notify on a tmpfs
    /// /run, and named by NOTIFY_SOCKET in the init's environment.
    pub notify_socket: Option<&'a Path>,
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

/// OpenVZ's cpuunits (a CT's relative CPU weight, 1000 by default) as
/// cgroup v1 cpu.shares (1024 by default; the engine turns shares into
/// cpu.weight on v2 as runc does).
pub fn cpu_shares(units: u32) -> u64 {
    (u64::from(units) * 1024 / 1000).max(2)
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
        let too_large = |what: &str| Error::BadInput(format!("{what} is too large"));
        let limit = i64::try_from(m.0).map_err(|_| too_large("memory"))?;
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if let Some(sw) = r.swap {
            // OCI's memory.swap is memory and swap together.
            let total =
                m.0.checked_add(sw.0)
                    .ok_or_else(|| too_large("memory + swap"))?;
            memory = memory.swap(i64::try_from(total).map_err(|_| too_large("memory + swap"))?);
        }
        res.set_memory(Some(memory.build().map_err(bad)?));
    }
    if r.cpus.is_some() || r.cpuunits.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(cpus) = r.cpus {
            const PERIOD: u64 = 100_000;
            // The kernel refuses a quota under 1 ms.
            let quota = ((cpus * PERIOD as f64).round() as i64).max(1_000);
            cpu = cpu.quota(quota).period(PERIOD);
        }
        if let Some(units) = r.cpuunits {
            cpu = cpu.shares(cpu_shares(units));
        }
        res.set_cpu(Some(cpu.build().map_err(bad)?));
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

/// The ABIs a profile covers: the 32-bit ones get their own sections, so
/// a deny list cannot be side-stepped through int 0x80 or x32 numbers.
const ARCHITECTURES: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

/// cove's default profile as OCI `linux.seccomp`.
pub fn default_seccomp() -> serde_json::Value {
    let mut rules: Vec<serde_json::Value> = DEFAULT_DENIED
        .iter()
        .map(|d| json!({"names": d.syscalls, "action": "SCMP_ACT_ERRNO", "errnoRet": d.errno}))
        .collect();
    rules.push(json!({
        "names": ["umount2"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::EPERM,
        "args": [{"index": 1, "value": MNT_FORCE, "valueTwo": MNT_FORCE, "op": "SCMP_CMP_MASKED_EQ"}]
    }));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": rules
    })
}

/// What a CT's `seccomp` setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompSetting {
    /// cove's built-in profile ([`default_seccomp`]); also when unset.
    Default,
    /// No filter at all.
    Unconfined,
    /// A profile file: OCI `linux.seccomp` JSON, or a containers-common /
    /// moby profile (with `archMap`), turned into the OCI form for this
    /// host and the CT's capabilities as podman and docker do.
    File(PathBuf),
}

impl SeccompSetting {
    /// `default`, `unconfined` or an absolute path.
    pub fn parse(value: &str) -> std::result::Result<SeccompSetting, String> {
        match value {
            "default" => Ok(SeccompSetting::Default),
            "unconfined" => Ok(SeccompSetting::Unconfined),
            p if p.starts_with('/') => Ok(SeccompSetting::File(PathBuf::from(p))),
            other => Err(format!(
                "seccomp = {other:?}: use default, unconfined or the absolute path of a profile"
            )),
        }
    }

    pub fn of(cfg: &CtConfig) -> std::result::Result<SeccompSetting, String> {
        cfg.seccomp
            .as_deref()
            .map_or(Ok(SeccompSetting::Default), SeccompSetting::parse)
    }

    /// The CT's `linux.seccomp`, None when unconfined. A profile file is
    /// read and compiled here, so that a bad one is reported naming the
    /// file, before anything is set up. `caps` is the CT's bounding set
    /// (a containers-common profile has rules that depend on it).
    pub fn profile(&self, caps: &[Capability]) -> Result<Option<serde_json::Value>> {
        let path = match self {
            SeccompSetting::Default => return Ok(Some(default_seccomp())),
            SeccompSetting::Unconfined => return Ok(None),
            SeccompSetting::File(path) => path,
        };
        let bad = |e: cove_seccomp::Error| Error::BadInput(format!("{}: {e}", path.display()));
        let text = std::fs::read(path).map_err(|e| {
            Error::BadInput(format!(
                "cannot read seccomp profile {}: {e}",
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::BadInput(format!("{}: not JSON: {e}", path.display())))?;
        let spec = if value.get("archMap").is_some() {
            // As the spec writes them: "CAP_SYS_ADMIN".
            let names: Vec<String> = caps
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            cove_seccomp::from_containers_json(&text, &names).map_err(bad)?
        } else {
            cove_seccomp::from_value(&value).map_err(bad)?
        };
        cove_seccomp::compile(&spec).map_err(bad)?;
        let value = serde_json::to_value(&spec)
            .map_err(|e| Error::Tool(format!("serialise {}: {e}", path.display())))?;
        Ok(Some(value))
    }
}

/// Checks a `cove create/set --seccomp` value before it is saved and
/// returns what to save: a profile file must read and compile (a relative
/// path is made absolute, since the CT starts from another directory).
pub fn check_seccomp_setting(value: &str) -> Result<String> {
    let value = match value {
        "default" | "unconfined" => value.to_string(),
        path if !path.starts_with('/') => std::fs::canonicalize(path)
            .map_err(|e| Error::BadInput(format!("cannot read seccomp profile {path}: {e}")))?
            .display()
            .to_string(),
        path => path.to_string(),
    };
    let setting = SeccompSetting::parse(&value).map_err(Error::BadInput)?;
    let caps = ct_capabilities(&available_capabilities()?);
    setting.profile(&caps)?;
    Ok(value)
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
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", if input.cgroup_view.writable { "rw" } else { "ro" }]}
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
    let setting = SeccompSetting::of(input.cfg).map_err(Error::BadInput)?;
    // cove's default profile names x86 ABIs only; elsewhere a CT runs with
    // its capabilities alone unless it names a profile of its own.
    if cfg!(target_arch = "x86_64") || matches!(setting, SeccompSetting::File(_)) {
        if let Some(profile) = setting.profile(&caps)? {
            spec["linux"]["seccomp"] = profile;
        }
    }
    if let Some(sock) = input.notify_socket {
        // /run a tmpfs of the CT's own before systemd looks (it would mount
        // one over the socket otherwise), as systemd-nspawn does.
        let mounts = spec["mounts"].as_array_mut().expect("mounts");
        mounts.push(json!({
            "destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755", "size=20%"]
        }));
        mounts.push(json!({
            "destination": crate::systemd::CT_NOTIFY_SOCKET, "type": "bind", "source": sock,
            "options": ["bind", "nosuid", "noexec", "nodev"]
        }));
        spec["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!(format!(
                "NOTIFY_SOCKET={}",
                crate::systemd::CT_NOTIFY_SOCKET
            )));
    }
    if let Some(dir) = &input.cgroup_view.named_systemd {
        // systemd keeps its own tree of the CT's processes there.
        spec["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/sys/fs/cgroup/systemd", "type": "bind", "source": dir,
            "options": ["rbind", "rw", "nosuid", "noexec", "nodev"]
        }));
    }
    let mut spec: Spec = serde_json::from_value(spec)
        .map_err(|e| Error::Tool(format!("building the CT's spec: {e}")))?;
    // The payload gets the CT's limits too, so that the CT sees them in
    // its own cgroup; the outer cgroup's copy is the one it cannot change.
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
            seccomp: None,
            onboot: None,
            bootorder: None,
            resources: Resources {
                memory: Some(Bytes(256 << 20)),
                cpus: Some(1.5),
                pids: Some(64),
                ..Default::default()
            },
            net: Default::default(),
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
            cgroups_path: "/cove/101/payload",
            cgroup_view: &CgroupView {
                writable: false,
                named_systemd: None,
            },
            available_caps: &avail,
            notify_socket: None,
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "ct101");
        assert_eq!(v["process"]["args"], json!(["/sbin/init"]));
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["linux"]["cgroupsPath"], "/cove/101/payload");
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
        let cg = &v["mounts"].as_array().unwrap()[6];
        assert_eq!(cg["options"].as_array().unwrap().last().unwrap(), "ro");
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
    fn cgroup_view_makes_the_cgroup_mount_writable_or_binds_name_systemd() {
        let (ctid, cfg, init, avail) = input_parts();
        let mounts = |view: &CgroupView| {
            let spec = system_spec(&SpecInput {
                ctid: &ctid,
                cfg: &cfg,
                init: &init,
                rootfs: Path::new("/r"),
                cgroups_path: "/cove/101/payload",
                cgroup_view: view,
                available_caps: &avail,
                notify_socket: None,
            })
            .unwrap();
            serde_json::to_value(&spec).unwrap()["mounts"].clone()
        };
        let v2 = mounts(&CgroupView {
            writable: true,
            named_systemd: None,
        });
        assert_eq!(v2.as_array().unwrap().len(), 7);
        assert_eq!(v2[6]["options"].as_array().unwrap().last().unwrap(), "rw");
        let hybrid = mounts(&CgroupView {
            writable: false,
            named_systemd: Some("/sys/fs/cgroup/systemd/cove/101/payload".into()),
        });
        assert_eq!(
            hybrid[6]["options"].as_array().unwrap().last().unwrap(),
            "ro"
        );
        assert_eq!(hybrid[7]["destination"], "/sys/fs/cgroup/systemd");
        assert_eq!(
            hybrid[7]["source"],
            "/sys/fs/cgroup/systemd/cove/101/payload"
        );
        assert!(hybrid[7]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("rw")));
    }

    #[test]
    fn no_limits_means_only_the_device_rule() {
        let res = resources(&Resources::default()).unwrap();
        assert!(res.memory().is_none() && res.cpu().is_none() && res.pids().is_none());
        assert_eq!(res.devices().as_ref().map(Vec::len), Some(1));
    }

    fn spec_for(cfg: &CtConfig) -> Result<serde_json::Value> {
        let (ctid, _, init, avail) = input_parts();
        let spec = system_spec(&SpecInput {
            ctid: &ctid,
            cfg,
            init: &init,
            rootfs: Path::new("/r"),
            cgroups_path: "/cove/101/payload",
            cgroup_view: &CgroupView {
                writable: false,
                named_systemd: None,
            },
            available_caps: &avail,
            notify_socket: None,
        })?;
        Ok(serde_json::to_value(&spec).unwrap())
    }

    /// A file in a directory of its own under the temp dir (in the VM lane
    /// the source tree is read-only); the directory goes when this drops.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn scratch_file(name: &str, text: &str) -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cove-spec-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Scratch(path)
    }

    #[test]
    fn default_profile_denies_what_reaches_the_host_and_compiles() {
        let profile = default_seccomp();
        let names: Vec<&str> = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["names"].as_array().unwrap())
            .map(|n| n.as_str().unwrap())
            .collect();
        for call in [
            "open_by_handle_at",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "swapon",
            "swapoff",
            "bpf",
            "keyctl",
            "umount2",
        ] {
            assert!(
                names.contains(&call),
                "{call} is not in the default profile"
            );
        }
        assert!(
            !names.contains(&"reboot"),
            "reboot is the pid namespace's business"
        );
        let spec = cove_seccomp::from_value(&profile).unwrap();
        cove_seccomp::compile(&spec).unwrap();
    }

    #[test]
    fn seccomp_setting_parses_its_three_forms() {
        assert_eq!(
            SeccompSetting::parse("default"),
            Ok(SeccompSetting::Default)
        );
        assert_eq!(
            SeccompSetting::parse("unconfined"),
            Ok(SeccompSetting::Unconfined)
        );
        assert_eq!(
            SeccompSetting::parse("/etc/p.json"),
            Ok(SeccompSetting::File(PathBuf::from("/etc/p.json")))
        );
        assert!(SeccompSetting::parse("strict").is_err());
        assert!(SeccompSetting::parse("p.json").is_err());
    }

    #[test]
    fn unconfined_ct_has_no_filter_and_default_has_cove_s() {
        let (_, mut cfg, _, _) = input_parts();
        let v = spec_for(&cfg).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        }
        cfg.seccomp = Some("unconfined".into());
        let v = spec_for(&cfg).unwrap();
        assert!(v["linux"].get("seccomp").is_none(), "{}", v["linux"]);
    }

    #[test]
    fn profile_files_in_oci_and_containers_form_are_used() {
        let (_, mut cfg, _, _) = input_parts();
        let oci = scratch_file(
            "oci.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        cfg.seccomp = Some(oci.path());
        let v = spec_for(&cfg).unwrap();
        assert_eq!(
            v["linux"]["seccomp"]["syscalls"][0]["names"],
            json!(["mkdir"])
        );
        // podman's format: rules for capabilities the CT lacks drop out.
        let containers = scratch_file(
            "containers.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                "syscalls": [
                  {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_BOOT"]}}
                ]}"#,
        );
        cfg.seccomp = Some(containers.path());
        if cfg!(target_arch = "x86_64") {
            let v = spec_for(&cfg).unwrap();
            let rules = v["linux"]["seccomp"]["syscalls"].as_array().unwrap();
            assert_eq!(rules.len(), 1, "{rules:?}");
            assert_eq!(rules[0]["names"], json!(["read"]));
        }
    }

    #[test]
    fn bad_profile_files_are_refused_naming_the_file() {
        let (_, mut cfg, _, _) = input_parts();
        let bad = scratch_file("bad.json", r#"{"defaultAction": "SCMP_ACT_FOO"}"#);
        cfg.seccomp = Some(bad.path());
        let e = spec_for(&cfg).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("SCMP_ACT_FOO"), "{e}");
        cfg.seccomp = Some("/nonexistent/profile.json".into());
        let e = spec_for(&cfg).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/profile.json"), "{e}");
        let e = check_seccomp_setting("/nonexistent/profile.json").unwrap_err();
        assert!(matches!(e, Error::BadInput(_)), "{e}");
    }

    #[test]
    fn swap_adds_to_memory_and_cpuunits_become_shares() {
        let res = resources(&Resources {
            memory: Some(Bytes(256 << 20)),
            swap: Some(Bytes(128 << 20)),
            cpuunits: Some(2000),
            ..Default::default()
        })
        .unwrap();
        let m = res.memory().as_ref().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(256 << 20), Some(384 << 20)));
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!((cpu.shares(), cpu.quota()), (Some(2048), None));
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1), 2);
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
