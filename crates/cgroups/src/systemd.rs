//! The systemd cgroup driver (`--systemd-cgroup`), with runc's rules:
//!
//! - cgroupsPath "slice:prefix:name"; an empty slice is `system.slice`;
//!   the unit is the scope "prefix-name.scope" in that slice, and its
//!   cgroup is the slice's path (each `-` in a slice name is one level:
//!   `a-b.slice` is `/a.slice/a-b.slice`) plus the unit name, under every
//!   hierarchy.
//! - The scope is made over D-Bus (`StartTransientUnit`) with the
//!   container init's pid, `Delegate=yes`, accounting on, no default
//!   dependencies and the resource properties systemd knows (MemoryMax,
//!   CPUWeight, CPUQuotaPerSecUSec, TasksMax, AllowedCPUs... on v2;
//!   MemoryLimit, CPUShares, BlockIOWeight... on v1 and hybrid hosts).
//!   Then every limit is also written to the cgroup files directly, as
//!   runc does: that covers what has no property (swappiness, the device
//!   rules, hugetlb, `unified` keys systemd does not know) and the v1
//!   hierarchies systemd does not manage (cpuset, devices, freezer...).
//! - `update` sets the same properties with `SetUnitProperties`, then
//!   writes the files; `delete` stops the unit (`StopUnit`) and removes
//!   the directories systemd did not.
//! - pause/resume, stats, ps and kill read and write the cgroup files
//!   directly, as runc does.
//!
//! - Device rules also become `DevicePolicy`/`DeviceAllow` properties
//!   (`systemd_devices.rs`), so that systemd reapplies the same rules when
//!   it realises the scope again (a daemon-reload), and an update that
//!   changes them freezes the container while systemd applies them.
//!
//! Where cove differs from runc: the resource properties go in with
//! `StartTransientUnit` itself rather than in a `SetUnitProperties` right
//! after it (one round trip, same end state); a name ending in ".slice"
//! (runc then makes a slice unit) and `restore` are refused.
//!
//! No D-Bus connection exists before the container init is cloned: zbus
//! runs threads, and clone3 must see one. `manager` only checks that
//! systemd runs and that the system bus socket answers.

use std::cell::{Cell, OnceCell, RefCell};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::device_rules::DeviceSet;
use crate::error::{Error, Result};
use crate::path::SystemdPath;
use crate::runc_stats::RuncStats;
use crate::stats::Stats;
use crate::systemd_devices::device_properties;
use crate::v2_resources::{shares_to_weight, swap_max};
use crate::{CgroupManager, HostMode};

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
/// How long systemd gets to start or stop a scope (runc waits 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// The kernel's default CFS period, which runc assumes when none is given.
const DEFAULT_PERIOD: u64 = 100_000;

/// "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" -> "/".
pub fn expand_slice(slice: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidPath {
        path: slice.to_string(),
        reason: format!("invalid slice name: {why}"),
    };
    let Some(stem) = slice.strip_suffix(".slice").filter(|s| !s.is_empty()) else {
        return Err(bad("a slice name ends in \".slice\", as system.slice"));
    };
    if slice.contains('/') {
        return Err(bad("it may not contain '/'"));
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(bad(
                "an empty part between '-' (as in a--b.slice or -a.slice)",
            ));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

impl SystemdPath {
    /// The slice the scope goes in: the given one or `system.slice`.
    pub fn slice_or_default(&self) -> &str {
        if self.slice.is_empty() {
            "system.slice"
        } else {
            &self.slice
        }
    }

    /// "prefix-name.scope", as runc names it.
    pub fn unit_name(&self) -> Result<String> {
        if self.name.ends_with(".slice") {
            return Err(Error::Unsupported {
                what: format!("the unit name {:?}", self.name),
                reason: "cove-oci runs containers in scopes; a name ending in \".slice\" asks for a slice unit"
                    .into(),
            });
        }
        if self.name.is_empty() || self.name.contains('/') {
            return Err(Error::InvalidPath {
                path: format!("{}:{}:{}", self.slice, self.prefix, self.name),
                reason: "the name part must be a non-empty unit name without '/'".into(),
            });
        }
        Ok(format!("{}-{}.scope", self.prefix, self.name))
    }

    /// The scope's cgroup below every hierarchy's root:
    /// "/system.slice/runc-ID.scope".
    pub fn cgroup_path(&self) -> Result<String> {
        let slice = expand_slice(self.slice_or_default())?;
        let unit = self.unit_name()?;
        Ok(if slice == "/" {
            format!("/{unit}")
        } else {
            format!("{slice}/{unit}")
        })
    }
}

/// runc's RangeToBits: "0-2,7" -> the bitmask systemd's AllowedCPUs takes,
/// lowest CPU in bit 0 of the first byte.
pub fn range_to_bits(list: &str) -> Result<Vec<u8>> {
    let bad =
        || Error::InvalidResources(format!("{list:?} is not a CPU or node list such as 0-2,7"));
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.trim().split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi >= 1 << 16 {
            return Err(bad());
        }
        for bit in lo..=hi {
            if bytes.len() <= bit / 8 {
                bytes.resize(bit / 8 + 1, 0);
            }
            bytes[bit / 8] |= 1 << (bit % 8);
        }
    }
    if bytes.is_empty() {
        return Err(bad());
    }
    Ok(bytes)
}

type Props = Vec<(&'static str, Value<'static>)>;

fn as_u64(v: i64) -> u64 {
    // -1 ("no limit") is systemd's infinity, u64::MAX, as in runc.
    v as u64
}

fn add_cpu_quota(props: &mut Props, quota: i64, period: u64, version: u32) {
    if period != 0 && version >= 242 {
        props.push(("CPUQuotaPeriodUSec", Value::from(period)));
    }
    if quota != 0 || period != 0 {
        let mut per_sec = u64::MAX;
        if quota > 0 {
            let period = if period == 0 { DEFAULT_PERIOD } else { period };
            per_sec = quota as u64 * 1_000_000 / period;
            // systemd keeps a whole percent: round up to 10 ms a second, so
            // the cgroup's own quota still fits below it.
            if per_sec % 10_000 != 0 {
                per_sec = (per_sec / 10_000 + 1) * 10_000;
            }
        }
        props.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
    }
}

fn add_cpuset(props: &mut Props, cpus: &str, mems: &str, version: u32) -> Result<()> {
    if version < 244 {
        return Ok(());
    }
    if !cpus.is_empty() {
        props.push(("AllowedCPUs", Value::from(range_to_bits(cpus)?)));
    }
    if !mems.is_empty() {
        props.push(("AllowedMemoryNodes", Value::from(range_to_bits(mems)?)));
    }
    Ok(())
}

/// The unit properties for `res`, as runc generates them for the host's
/// kind (v2 names on a unified host, v1 names on hybrid and v1 hosts).
pub(crate) fn resource_properties(
    res: &LinuxResources,
    mode: HostMode,
    version: u32,
) -> Result<Props> {
    let mut props = Props::new();
    let memory = res.memory().as_ref();
    let limit = memory.and_then(|m| m.limit()).unwrap_or(0);
    let cpu = res.cpu().as_ref();
    let shares = cpu.and_then(|c| c.shares()).unwrap_or(0);
    let quota = cpu.and_then(|c| c.quota()).unwrap_or(0);
    let period = cpu.and_then(|c| c.period()).unwrap_or(0);
    let cpus = cpu.and_then(|c| c.cpus().clone()).unwrap_or_default();
    let mems = cpu.and_then(|c| c.mems().clone()).unwrap_or_default();
    let pids = res.pids().as_ref().map(|p| p.limit()).unwrap_or(0);
    if mode == HostMode::Unified {
        if limit != 0 {
            props.push(("MemoryMax", Value::from(as_u64(limit))));
        }
        if let Some(r) = memory.and_then(|m| m.reservation()).filter(|r| *r != 0) {
            props.push(("MemoryLow", Value::from(as_u64(r))));
        }
        let swap = memory.and_then(|m| m.swap()).unwrap_or(0);
        if let Some(s) = swap_max(swap, limit)?.filter(|s| *s != 0) {
            props.push(("MemorySwapMax", Value::from(as_u64(s))));
        }
        if shares != 0 {
            props.push(("CPUWeight", Value::from(shares_to_weight(shares))));
        }
    } else {
        if limit != 0 {
            props.push(("MemoryLimit", Value::from(as_u64(limit))));
        }
        if shares != 0 {
            props.push(("CPUShares", Value::from(shares)));
        }
    }
    add_cpu_quota(&mut props, quota, period, version);
    if mode != HostMode::Unified {
        if let Some(w) = res
            .block_io()
            .as_ref()
            .and_then(|b| b.weight())
            .filter(|w| *w != 0)
        {
            props.push(("BlockIOWeight", Value::from(u64::from(w))));
        }
    }
    if pids > 0 || pids == -1 {
        props.push(("TasksMax", Value::from(as_u64(pids))));
    }
    add_cpuset(&mut props, &cpus, &mems, version)?;
    if let Some(rules) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        let set = DeviceSet::from_spec(rules)?;
        props.extend(device_properties(&set, version, || {
            std::fs::read_to_string("/proc/devices").unwrap_or_default()
        }));
    }
    if mode == HostMode::Unified {
        if let Some(unified) = res.unified() {
            let mut keys: Vec<_> = unified.iter().collect();
            keys.sort();
            for (k, v) in keys {
                unified_property(&mut props, k, v.trim(), version)?;
            }
        }
    }
    Ok(props)
}

/// The `unified` keys systemd has a property for; others are only written
/// to the files.
fn unified_property(props: &mut Props, key: &str, v: &str, version: u32) -> Result<()> {
    let bad = || Error::InvalidResources(format!("unified {key:?}: invalid value {v:?}"));
    let num_or_max = || -> Result<u64> {
        if v == "max" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad())
        }
    };
    match key {
        "cpu.max" => {
            let mut f = v.split_whitespace();
            let quota = match f.next() {
                Some("max") => 0,
                Some(q) => q.parse().map_err(|_| bad())?,
                None => return Err(bad()),
            };
            let period = match f.next() {
                Some(p) => p.parse().map_err(|_| bad())?,
                None => DEFAULT_PERIOD,
            };
            add_cpu_quota(props, quota, period, version);
        }
        "cpu.weight" => props.push((
            "CPUWeight",
            Value::from(v.parse::<u64>().map_err(|_| bad())?),
        )),
        "cpuset.cpus" if version >= 244 => {
            props.push(("AllowedCPUs", Value::from(range_to_bits(v)?)))
        }
        "cpuset.mems" if version >= 244 => {
            props.push(("AllowedMemoryNodes", Value::from(range_to_bits(v)?)))
        }
        "memory.high" => props.push(("MemoryHigh", Value::from(num_or_max()?))),
        "memory.low" => props.push(("MemoryLow", Value::from(num_or_max()?))),
        "memory.min" => props.push(("MemoryMin", Value::from(num_or_max()?))),
        "memory.max" => props.push(("MemoryMax", Value::from(num_or_max()?))),
        "memory.swap.max" => props.push(("MemorySwapMax", Value::from(num_or_max()?))),
        "pids.max" => props.push(("TasksMax", Value::from(num_or_max()?))),
        _ => {}
    }
    Ok(())
}

/// Is systemd the init, as sd_booted(3) tells?
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The system bus socket, from DBUS_SYSTEM_BUS_ADDRESS ("unix:path=...")
/// or the standard place.
fn system_bus_socket() -> PathBuf {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.split(';').find_map(|one| {
                one.strip_prefix("unix:path=")
                    .map(|p| p.split(',').next().unwrap_or(p).to_string())
            })
        })
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/dbus/system_bus_socket"))
}

/// What `manager` checks before anything is made: systemd runs and the
/// system bus answers. A plain connect, no D-Bus connection (no threads).
pub(crate) fn check_reachable() -> Result<()> {
    if !systemd_running() {
        return Err(Error::Systemd(
            "no systemd is running on this host (no /run/systemd/system); run without --systemd-cgroup".into(),
        ));
    }
    let socket = system_bus_socket();
    std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        Error::Systemd(format!(
            "cannot reach the system D-Bus at {}: {e}; start dbus or run without --systemd-cgroup",
            socket.display()
        ))
    })?;
    Ok(())
}

fn dbus_err(what: &str, e: zbus::Error) -> Error {
    Error::Systemd(format!("{what}: {e}"))
}

fn is_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str() == name)
}

/// A connection to systemd on the system bus.
struct Bus {
    conn: Connection,
}

impl Bus {
    fn connect() -> Result<Self> {
        check_reachable()?;
        let conn =
            Connection::system().map_err(|e| dbus_err("cannot connect to the system D-Bus", e))?;
        Ok(Self { conn })
    }

    fn manager<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::message::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DEST), MANAGER_PATH, Some(MANAGER), method, body)
    }

    fn get(&self, path: &str, iface: &str, prop: &str) -> zbus::Result<OwnedValue> {
        self.conn
            .call_method(Some(DEST), path, Some(PROPERTIES), "Get", &(iface, prop))?
            .body()
            .deserialize::<OwnedValue>()
    }

    /// systemd's version number ("252.38-1" -> 252); 0 when unknown.
    fn version(&self) -> u32 {
        self.get(MANAGER_PATH, MANAGER, "Version")
            .ok()
            .and_then(|v| String::try_from(v).ok())
            .map(|s| {
                s.trim_start_matches(['"', 'v'])
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the job is gone from systemd's queue.
    fn wait_job(&self, job: &OwnedObjectPath, unit: &str) -> Result<()> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut pause = Duration::from_micros(500);
        loop {
            match self.get(job.as_str(), "org.freedesktop.systemd1.Job", "State") {
                Err(_) => return Ok(()),
                Ok(_) if Instant::now() >= deadline => {
                    return Err(Error::Systemd(format!(
                        "systemd did not finish the job for {unit} in {}s",
                        JOB_TIMEOUT.as_secs()
                    )))
                }
                Ok(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    fn active_state(&self, unit: &str) -> Option<String> {
        let path: OwnedObjectPath = self
            .manager("GetUnit", &(unit,))
            .ok()?
            .body()
            .deserialize()
            .ok()?;
        let v = self
            .get(
                path.as_str(),
                "org.freedesktop.systemd1.Unit",
                "ActiveState",
            )
            .ok()?;
        String::try_from(v).ok()
    }

    fn reset_failed(&self, unit: &str) {
        let _ = self.manager("ResetFailedUnit", &(unit,));
    }

    fn start_scope(&self, unit: &str, props: Props) -> Result<()> {
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        let mut retried = false;
        let job: OwnedObjectPath = loop {
            match self.manager("StartTransientUnit", &(unit, "replace", &props, &aux)) {
                Ok(reply) => {
                    break reply
                        .body()
                        .deserialize()
                        .map_err(|e| dbus_err("StartTransientUnit reply", e))?
                }
                // A failed unit of the same name left over: reset it, once.
                Err(e) if !retried && is_error(&e, "org.freedesktop.systemd1.UnitExists") => {
                    self.reset_failed(unit);
                    retried = true;
                }
                Err(e) => return Err(dbus_err(&format!("cannot start the scope {unit}"), e)),
            }
        };
        self.wait_job(&job, unit)?;
        match self.active_state(unit).as_deref() {
            Some("active") => Ok(()),
            state => {
                self.reset_failed(unit);
                Err(Error::Systemd(format!(
                    "systemd did not start the scope {unit} (state {})",
                    state.unwrap_or("gone")
                )))
            }
        }
    }

    fn stop(&self, unit: &str) -> Result<()> {
        match self.manager("StopUnit", &(unit, "replace")) {
            Ok(reply) => {
                let job: OwnedObjectPath = reply
                    .body()
                    .deserialize()
                    .map_err(|e| dbus_err("StopUnit reply", e))?;
                self.wait_job(&job, unit)?;
            }
            Err(e) if is_error(&e, "org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(dbus_err(&format!("cannot stop {unit}"), e)),
        }
        self.reset_failed(unit);
        Ok(())
    }

    fn set_properties(&self, unit: &str, props: &Props) -> Result<()> {
        self.manager("SetUnitProperties", &(unit, true, props))
            .map(drop)
            .map_err(|e| dbus_err(&format!("cannot set the properties of {unit}"), e))
    }
}

/// A container in a systemd scope: the unit over D-Bus, the files through
/// the cgroupfs manager of the scope's directories.
pub(crate) struct SystemdManager {
    unit: String,
    /// The name part of cgroupsPath, for the unit's Description.
    name: String,
    slice: String,
    mode: HostMode,
    files: Box<dyn CgroupManager>,
    bus: OnceCell<Bus>,
    /// The scope exists (started here, or a saved container's).
    started: Cell<bool>,
    stopped: Cell<bool>,
    /// Limits given before the scope exists: applied once it does.
    pending: RefCell<Option<LinuxResources>>,
}

impl SystemdManager {
    /// For `create`: the scope is made by the first `add_task`.
    pub(crate) fn new(
        unit: String,
        name: String,
        slice: String,
        mode: HostMode,
        files: Box<dyn CgroupManager>,
    ) -> Self {
        Self {
            unit,
            name,
            slice,
            mode,
            files,
            bus: OnceCell::new(),
            started: Cell::new(false),
            stopped: Cell::new(false),
            pending: RefCell::new(None),
        }
    }

    /// For a saved container: the unit is the leaf directory's name.
    pub(crate) fn attached(
        paths: &[(String, PathBuf)],
        mode: HostMode,
        files: Box<dyn CgroupManager>,
    ) -> Self {
        let unit = paths
            .iter()
            .find_map(|(_, dir)| dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let m = Self::new(unit, String::new(), String::new(), mode, files);
        m.started.set(true);
        m
    }

    fn bus(&self) -> Result<&Bus> {
        if let Some(b) = self.bus.get() {
            return Ok(b);
        }
        let b = Bus::connect()?;
        Ok(self.bus.get_or_init(|| b))
    }

    fn start(&self, pid: i32) -> Result<()> {
        let res = self.pending.borrow_mut().take().unwrap_or_default();
        let bus = self.bus()?;
        let version = bus.version();
        let mut props: Props = vec![
            (
                "Description",
                Value::from(format!("libcontainer container {}", self.name)),
            ),
            ("Slice", Value::from(self.slice.clone())),
            ("PIDs", Value::from(vec![pid as u32])),
            ("Delegate", Value::from(true)),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            (
                if self.mode == HostMode::Unified {
                    "IOAccounting"
                } else {
                    "BlockIOAccounting"
                },
                Value::from(true),
            ),
            ("TasksAccounting", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
        ];
        props.extend(resource_properties(&res, self.mode, version)?);
        bus.start_scope(&self.unit, props)?;
        self.started.set(true);
        // The directories systemd does not make (v1 hierarchies it does not
        // manage), the pid in each of them, then every limit in the files.
        self.files.create()?;
        self.files.add_task(pid)?;
        self.files.apply(&res)
    }
}

impl CgroupManager for SystemdManager {
    fn create(&self) -> Result<()> {
        // The scope needs a pid: it is made by the first add_task.
        Ok(())
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        if !self.started.get() {
            *self.pending.borrow_mut() = Some(res.clone());
            return Ok(());
        }
        let bus = self.bus()?;
        let props = resource_properties(res, self.mode, bus.version())?;
        if !props.is_empty() {
            // systemd applies device properties by denying everything and
            // then allowing the list: a running container would see
            // spurious EPERMs in between, so it is frozen meanwhile (as
            // runc does), unless it already is.
            let freeze = props.iter().any(|(k, _)| *k == "DevicePolicy")
                && !self.files.is_frozen().unwrap_or(true);
            if freeze {
                self.files.freeze()?;
            }
            let set = bus.set_properties(&self.unit, &props);
            if freeze {
                self.files.thaw()?;
            }
            set?;
        }
        self.files.apply(res)
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        if !self.started.get() {
            return self.start(pid);
        }
        self.files.add_task(pid)
    }

    fn dir_fd(&self) -> Option<OwnedFd> {
        None
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.files.pids()
    }

    fn freeze(&self) -> Result<()> {
        self.files.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.files.thaw()
    }

    fn is_frozen(&self) -> Result<bool> {
        self.files.is_frozen()
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        self.files.kill_all(signal)
    }

    fn destroy(&self) -> Result<()> {
        if self.started.get() && !self.stopped.get() {
            match self.bus().and_then(|b| b.stop(&self.unit)) {
                Ok(()) => self.stopped.set(true),
                Err(e) => tracing::warn!("{e}; removing the cgroup directly"),
            }
        }
        self.files.destroy()
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        self.files.paths()
    }

    fn stats(&self) -> Result<Stats> {
        self.files.stats()
    }

    fn runc_stats(&self) -> Result<RuncStats> {
        self.files.runc_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::resources;

    #[test]
    fn slices_expand_as_runc_does() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("test-a-b.slice").unwrap(),
            "/test.slice/test-a.slice/test-a-b.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in [
            "system",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_and_cgroup_path_follow_runc() {
        let p = crate::parse_systemd_path(Some("cove-test.slice:cove:ct1"), "x").unwrap();
        assert_eq!(p.unit_name().unwrap(), "cove-ct1.scope");
        assert_eq!(
            p.cgroup_path().unwrap(),
            "/cove.slice/cove-test.slice/cove-ct1.scope"
        );
        let d = crate::parse_systemd_path(None, "ct2").unwrap();
        assert_eq!(d.cgroup_path().unwrap(), "/system.slice/runc-ct2.scope");
        let bad = crate::parse_systemd_path(Some("nope:cove:ct"), "x").unwrap();
        assert!(bad.cgroup_path().is_err());
    }

    #[test]
    fn cpu_lists_become_bitmasks() {
        assert_eq!(range_to_bits("0").unwrap(), [1]);
        assert_eq!(range_to_bits("0-2,7").unwrap(), [0x87]);
        assert_eq!(range_to_bits("9").unwrap(), [0, 2]);
        assert!(range_to_bits("2-1").is_err());
        assert!(range_to_bits("x").is_err());
    }

    #[test]
    fn v2_properties_as_runc_sets_them() {
        let res = resources(
            r#"{"memory": {"limit": 67108864},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 20}}"#,
        );
        let props = resource_properties(&res, HostMode::Unified, 252).unwrap();
        let get = |n: &str| props.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::from(67108864u64)));
        assert_eq!(get("CPUWeight"), Some(Value::from(shares_to_weight(1024))));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::from(500_000u64)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::from(100_000u64)));
        assert_eq!(get("TasksMax"), Some(Value::from(20u64)));
        assert_eq!(get("AllowedCPUs"), Some(Value::from(vec![1u8])));
        let v1 = resource_properties(&res, HostMode::Hybrid, 252).unwrap();
        assert!(v1.iter().any(|(k, _)| *k == "MemoryLimit"));
        assert!(v1
            .iter()
            .any(|(k, v)| *k == "CPUShares" && *v == Value::from(1024u64)));
    }

    #[test]
    fn fractional_quota_rounds_up_to_a_percent() {
        let res = resources(r#"{"cpu": {"quota": 12345, "period": 100000}}"#);
        let props = resource_properties(&res, HostMode::Unified, 252).unwrap();
        assert!(props
            .iter()
            .any(|(k, v)| *k == "CPUQuotaPerSecUSec" && *v == Value::from(130_000u64)));
    }
}
