//! CTs as configuration: create, set, list, status. (Running them is
//! `lifecycle`; destroying them too, since it may have to stop them.)

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;

use crate::config::{self, Bytes, CtConfig, Resources};
use crate::ctid::{self, Ctid};
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::net;
use crate::paths::{CtPaths, Paths};
use crate::runstate::{self, CtStatus};
use crate::spec;
use crate::template;

/// A resource value on the command line: a value, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit<T> {
    Set(T),
    Unlimited,
}

impl<T> Limit<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Limit::Set(v) => Some(v),
            Limit::Unlimited => None,
        }
    }
}

/// What `create` and `set` may change.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<Limit<Bytes>>,
    pub cpus: Option<Limit<f64>>,
    pub pids: Option<Limit<u32>>,
    /// `default`, `unconfined` or a profile path (checked by compiling it).
    pub seccomp: Option<String>,
    /// The network flags.
    pub net: net::NetArgs,
    pub onboot: Option<bool>,
    pub bootorder: Option<u32>,
    pub swap: Option<Limit<Bytes>>,
    pub cpuunits: Option<u32>,
    pub ioweight: Option<u16>,
}

impl Changes {
    fn apply(&self, cfg: &mut CtConfig) {
        if let Some(n) = &self.name {
            cfg.name = Some(n.clone());
        }
        if let Some(h) = &self.hostname {
            cfg.hostname = h.clone();
        }
        if let Some(m) = self.memory {
            cfg.resources.memory = m.into_option();
        }
        if let Some(c) = self.cpus {
            cfg.resources.cpus = c.into_option();
        }
        if let Some(p) = self.pids {
            cfg.resources.pids = p.into_option();
        }
        if let Some(s) = &self.seccomp {
            // The default needs no entry: an absent one means it.
            cfg.seccomp = (s != "default").then(|| s.clone());
        }
        if let Some(on) = self.onboot {
            cfg.onboot = Some(on);
        }
        if let Some(order) = self.bootorder {
            cfg.bootorder = Some(order);
        }
        if let Some(sw) = self.swap {
            cfg.resources.swap = sw.into_option();
        }
        if let Some(u) = self.cpuunits {
            cfg.resources.cpuunits = Some(u);
        }
        if let Some(w) = self.ioweight {
            cfg.resources.ioweight = Some(w);
        }
    }

    /// Whether the CT's systemd units must be brought in line.
    fn touches_boot(&self) -> bool {
        self.onboot.is_some() || self.bootorder.is_some()
    }

    fn touches_resources(&self) -> bool {
        self.memory.is_some()
            || self.cpus.is_some()
            || self.pids.is_some()
            || self.swap.is_some()
            || self.cpuunits.is_some()
            || self.ioweight.is_some()
    }

    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.hostname.is_none()
            && self.seccomp.is_none()
            && self.onboot.is_none()
            && self.bootorder.is_none()
            && self.net.is_empty()
            && !self.touches_resources()
    }
}

/// The changes with a `--seccomp` profile checked (it must compile) and
/// its path made absolute: a bad profile is refused before anything is
/// saved.
fn checked_seccomp(changes: &Changes) -> Result<Changes> {
    let mut checked = changes.clone();
    if let Some(s) = &changes.seccomp {
        checked.seccomp = Some(spec::check_seccomp_setting(s)?);
    }
    Ok(checked)
}

/// The lock over every CT's name: taken (waiting, it is held only while
/// a config is checked and saved) by whoever claims a name.
fn names_lock(paths: &Paths) -> Result<crate::lock::Lock> {
    crate::lock::Lock::acquire(&paths.locks().join(".names.lock"))
}

/// A name must not be another CT's name or CTID.
fn check_name_free(paths: &Paths, name: &str, this: &Ctid) -> Result<()> {
    for id in config::list_ctids(paths)? {
        if &id == this {
            continue;
        }
        if id.as_str() == name {
            return Err(Error::BadInput(format!(
                "name {name} is the CTID of another CT"
            )));
        }
        if let Ok(cfg) = CtConfig::load(&paths.ct(&id).config, &id) {
            if cfg.name.as_deref() == Some(name) {
                return Err(Error::BadInput(format!(
                    "name {name} is already used by CT {id}"
                )));
            }
        }
    }
    Ok(())
}

/// Removes a half-made CT directory unless committed.
struct CreateGuard<'a> {
    dir: &'a Path,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(self.dir);
        }
    }
}

/// `cove create CTID --template NAME ...`: a config and an empty private
/// area. Nothing of the template is copied, so this takes the same time
/// whatever the template's size.
pub fn create(paths: &Paths, arg: &str, template_name: &str, changes: &Changes) -> Result<Ctid> {
    let ctid = Ctid::parse(arg)?;
    let template = template::open(paths, template_name)?;
    if let Some(n) = &changes.name {
        ctid::validate_name(n)?;
    }
    if let Some(h) = &changes.hostname {
        ctid::validate_hostname(h)?;
    }
    let mut cfg = CtConfig {
        ctid: ctid.to_string(),
        template: template.name.clone(),
        name: None,
        hostname: ctid::default_hostname(&ctid, changes.name.as_deref()),
        init: None,
        stop_signal: None,
        seccomp: None,
        onboot: None,
        bootorder: None,
        resources: Resources::default(),
        net: Default::default(),
    };
    let changes = &checked_seccomp(changes)?;
    changes.apply(&mut cfg);
    cfg.net = changes.net.applied_to(&cfg.net).map_err(Error::BadInput)?;
    cfg.validate(&ctid).map_err(Error::BadInput)?;
    let ct = paths.ct(&ctid);
    let _lock = lifecycle::lock_ct(&ct, &ctid)?;
    // Held until the config is saved: two creates (or a create and a set)
    // claiming one name see each other's config.
    let _names = names_lock(paths)?;
    if !ctid.is_numeric() {
        check_name_free(paths, ctid.as_str(), &ctid).map_err(|_| {
            Error::BadInput(format!("CTID {ctid} is already the name of another CT"))
        })?;
    }
    if let Some(n) = &cfg.name {
        check_name_free(paths, n, &ctid)?;
    }
    net::check_addresses_free(paths, &ctid, &cfg.net)?;
    let mut private = std::fs::DirBuilder::new();
    private.recursive(true).mode(0o700);
    let cts = paths.cts();
    private
        .create(&cts)
        .map_err(|e| Error::io("create", &cts, e))?;
    // mkdir is the claim: of two creates of one CTID, one gets EEXIST.
    match std::fs::DirBuilder::new().mode(0o700).create(&ct.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::CtExists(ctid.to_string()))
        }
        Err(e) => return Err(Error::io("create", &ct.dir, e)),
    }
    let mut guard = CreateGuard {
        dir: &ct.dir,
        armed: true,
    };
    // private/ is 0700 so host users cannot reach the CT's files (and its
    // set-uid programs); upper/ is the CT's "/", whose mode the CT sees.
    private
        .create(&ct.private)
        .map_err(|e| Error::io("create", &ct.private, e))?;
    let mut public = std::fs::DirBuilder::new();
    public.mode(0o755);
    for dir in [&ct.upper, &ct.work] {
        public
            .create(dir)
            .map_err(|e| Error::io("create", dir, e))?;
        // Whatever our umask: the CT's users must be able to enter "/".
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", dir, e))?;
    }
    if changes.onboot == Some(true) {
        crate::systemd::check_installed()?;
    }
    cfg.save(&ct.config)?;
    guard.armed = false;
    if changes.touches_boot() {
        crate::systemd::sync_onboot(paths)?;
    }
    Ok(ctid)
}

/// `cove set CTID ...`: saved in the config; limits are applied to a
/// running CT at once. Returns notes for the user.
pub fn set(paths: &Paths, arg: &str, changes: &Changes) -> Result<Vec<String>> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let _lock = lifecycle::lock_ct(&ct, &ctid)?;
    let _names = match &changes.name {
        Some(_) => Some(names_lock(paths)?),
        None => None,
    };
    let mut cfg = CtConfig::load(&ct.config, &ctid)?;
    if let Some(n) = &changes.name {
        ctid::validate_name(n)?;
        check_name_free(paths, n, &ctid)?;
    }
    if let Some(h) = &changes.hostname {
        ctid::validate_hostname(h)?;
    }
    let changes = &checked_seccomp(changes)?;
    let old = cfg.clone();
    changes.apply(&mut cfg);
    cfg.net = changes.net.applied_to(&cfg.net).map_err(Error::BadInput)?;
    cfg.validate(&ctid).map_err(Error::BadInput)?;
    net::check_addresses_free(paths, &ctid, &cfg.net)?;
    if changes.onboot == Some(true) {
        crate::systemd::check_installed()?;
    }
    let mut notes = Vec::new();
    let status = runstate::status(&ct, &ctid);
    if status.running() && changes.touches_resources() {
        notes.extend(apply_live(&ct, &ctid, &cfg.resources, changes)?);
    }
    cfg.save(&ct.config)?;
    if status.running() && (old.net != cfg.net || old.hostname != cfg.hostname) {
        // After the save: should the live change fail half-way, the
        // config already says what the next start makes.
        net::apply_to_running(&ct, &ctid, &old, &cfg)?;
    }
    if changes.touches_boot() {
        crate::systemd::sync_onboot(paths)?;
    }
    if status.running() && changes.seccomp.is_some() {
        notes.push(format!(
            "CT {ctid}: the new seccomp profile takes effect at the next start"
        ));
    }
    if status.running() && changes.hostname.is_some() {
        notes.push(format!(
            "CT {ctid}: the new hostname takes effect at the next start"
        ));
    }
    Ok(notes)
}

/// Writes the changed limits into the running CT's cgroup. `unlimited` is
/// -1, which the cgroup writer turns into the kernel's "no limit".
/// Returns a note for what this kernel cannot apply.
fn apply_live(
    ct: &CtPaths,
    ctid: &Ctid,
    now: &Resources,
    changes: &Changes,
) -> Result<Option<String>> {
    let mut wanted = Resources::default();
    if matches!(changes.memory, Some(Limit::Set(_))) || matches!(changes.swap, Some(Limit::Set(_)))
    {
        // memory.swap is memory and swap together, and v1 wants them
        // written in an order that depends on both: both go.
        wanted.memory = now.memory;
        wanted.swap = now.swap;
    }
    if let Some(Limit::Set(c)) = changes.cpus {
        wanted.cpus = Some(c);
    }
    if let Some(u) = changes.cpuunits {
        wanted.cpuunits = Some(u);
    }
    if let Some(Limit::Set(p)) = changes.pids {
        wanted.pids = Some(p);
    }
    let mut res = spec::resources(&wanted)?;
    // Device rules are the engine's business at create; rewriting them on
    // a running CT would take its devices away.
    res.set_devices(None);
    use oci_spec::runtime::{LinuxCpu, LinuxPids};
    if changes.memory == Some(Limit::Unlimited) || changes.swap == Some(Limit::Unlimited) {
        let mut m = (*res.memory()).unwrap_or_default();
        if changes.memory == Some(Limit::Unlimited) {
            m.set_limit(Some(-1));
        }
        m.set_swap(Some(-1));
        res.set_memory(Some(m));
    }
    if changes.cpus == Some(Limit::Unlimited) {
        let mut cpu = res.cpu().clone().unwrap_or_else(LinuxCpu::default);
        cpu.set_quota(Some(-1));
        res.set_cpu(Some(cpu));
    }
    if changes.pids == Some(Limit::Unlimited) {
        let mut p = LinuxPids::default();
        p.set_limit(-1);
        res.set_pids(Some(p));
    }
    // The outer cgroup's limits bind the CT; the payload's copy is what
    // the CT sees of them (see crate::cgroup).
    let outer = crate::cgroup::outer(ct, ctid)?;
    outer.apply(&res)?;
    let c = cove_engine::container::load(&ct.oci_root, ctid.as_str())?;
    cove_cgroups::manager_from_paths(&c.saved.cgroup_paths).apply(&res)?;
    match changes.ioweight {
        Some(w) => crate::cgroup::apply_ioweight(outer.as_ref(), ctid, w),
        None => Ok(None),
    }
}

/// One row of `cove list`; every field is a `-o`/`-s` field. Limits a CT
/// was not given are null.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listed {
    pub ctid: String,
    pub name: Option<String>,
    pub status: String,
    pub template: Option<String>,
    pub hostname: Option<String>,
    /// The CT's first address (IPv4 first), if it has one.
    pub ip: Option<String>,
    pub init_pid: Option<i32>,
    /// The systemd unit that manages the CT (enabled to start at boot, or
    /// running it now), e.g. `cove@101.service`.
    pub unit: Option<String>,
    pub onboot: Option<bool>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Bytes on top of memory.
    pub swap: Option<u64>,
    pub cpus: Option<f64>,
    pub cpuunits: Option<u32>,
    pub ioweight: Option<u16>,
    pub pids: Option<u32>,
}

/// `cove list`: every CT when `all`, else those running or mounted (as
/// vzlist does). A CT whose config is broken is still listed, with a
/// warning: one bad file must not hide the others.
pub fn list(paths: &Paths, all: bool) -> Result<(Vec<Listed>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for id in config::list_ctids(paths)? {
        let ct = paths.ct(&id);
        let st = runstate::status(&ct, &id);
        let status = match (st.status, st.mounted) {
            ("stopped", true) => "mounted".to_string(),
            (s, _) => s.to_string(),
        };
        if !all && status == "stopped" {
            continue;
        }
        let cfg = match CtConfig::load(&ct.config, &id) {
            Ok(c) => Some(c),
            Err(e) => {
                warnings.push(e.one_line());
                None
            }
        };
        let res = cfg
            .as_ref()
            .map(|c| c.resources.clone())
            .unwrap_or_default();
        rows.push(Listed {
            ctid: id.to_string(),
            name: cfg.as_ref().and_then(|c| c.name.clone()),
            status,
            template: cfg.as_ref().map(|c| c.template.clone()),
            hostname: cfg.as_ref().map(|c| c.hostname.clone()),
            ip: cfg
                .as_ref()
                .and_then(|c| c.net.first_ip())
                .map(|a| a.to_string()),
            init_pid: st.init_pid,
            unit: crate::systemd::managing_unit(&ct, &id),
            onboot: cfg.as_ref().and_then(|c| c.onboot),
            memory: res.memory.map(|b| b.0),
            swap: res.swap.map(|b| b.0),
            cpus: res.cpus,
            cpuunits: res.cpuunits,
            ioweight: res.ioweight,
            pids: res.pids,
        });
    }
    Ok((rows, warnings))
}

/// What `cove status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub run: CtStatus,
    pub name: Option<String>,
    pub template: String,
    pub hostname: String,
}

/// `cove status CTID`.
pub fn status(paths: &Paths, arg: &str) -> Result<Status> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    Ok(Status {
        run: runstate::status(&ct, &ctid),
        name: cfg.name,
        template: cfg.template,
        hostname: cfg.hostname,
    })
}
