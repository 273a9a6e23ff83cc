//! CTs as systemd units, without libsystemd or D-Bus.
//!
//! - `cove systemd install` writes `cove@.service`, `cove.slice` and
//!   `cove.target` (shipped in `crates/cove/systemd/`) into
//!   `/etc/systemd/system` (`--dir`, `COVE_SYSTEMD_DIR`) and reloads systemd.
//! - The monitor run by `cove@CTID.service` (`cove start --foreground`)
//!   speaks the notify protocol itself: a few `KEY=VALUE` lines in one
//!   datagram to `$NOTIFY_SOCKET` (READY=1 once the CT's init runs, STATUS=,
//!   STOPPING=1, MAINPID=). A CT whose init is systemd gets a notify socket
//!   of the monitor's at /run/host/notify (as under systemd-nspawn): the
//!   monitor says READY=1 only once the CT's systemd said it, and passes
//!   the CT's STATUS= lines on.
//! - Under a unit with `Delegate=yes` the monitor moves itself into the
//!   unit's `supervisor` sub-cgroup and makes the CT's cgroup beside it, so
//!   the unit's cgroup holds no process of its own (cgroup v2 allows
//!   controllers below a cgroup only then) and `systemctl status` shows the
//!   CT under the unit:
//!
//!   ```text
//!   /cove.slice/cove@101.service/supervisor   the monitor
//!   /cove.slice/cove@101.service/101          the CT (COVE_CGROUP_PARENT wins)
//!   /cove.slice/cove@101.service/.control     ExecStop's `cove stop` (systemd's)
//!   ```
//! - `cove set --onboot yes|no` enables or disables the CT's instance the
//!   way `systemctl enable` does (a link in `cove.target.wants/`), and
//!   `--bootorder` becomes `After=` drop-ins: a CT starts after every
//!   onboot CT with a higher boot order (vzctl's rule: higher first, unset
//!   last).
//! - A CT is *unit-managed* when its instance is enabled or its running
//!   monitor is a unit's: `cove start`, `stop` and `restart` of such a CT
//!   go through systemctl, so the unit's state stays true. Commands systemd
//!   itself runs for the unit (its ExecStop) act directly.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{self, CtConfig};
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::paths::{CtPaths, Paths};
use crate::runstate::MonitorRecord;

/// Where units are installed unless `--dir` or `COVE_SYSTEMD_DIR` says.
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const SERVICE_TEMPLATE: &str = "cove@.service";
pub const SLICE: &str = "cove.slice";
pub const TARGET: &str = "cove.target";
/// The files `cove systemd install` writes, as shipped in the repository.
pub const UNITS: [(&str, &str); 3] = [
    (SERVICE_TEMPLATE, include_str!("../systemd/cove@.service")),
    (SLICE, include_str!("../systemd/cove.slice")),
    (TARGET, include_str!("../systemd/cove.target")),
];
/// The drop-in that orders a CT's unit after the CTs that boot before it.
const BOOTORDER_DROPIN: &str = "50-cove-bootorder.conf";
/// The monitor's sub-cgroup in its unit's cgroup.
pub const SUPERVISOR: &str = "supervisor";

/// `cove@CTID.service`, the instance escaped as systemd escapes it (`-`
/// is `\x2d`; the units take the CTID back with `%I`).
pub fn unit_name(ctid: &Ctid) -> String {
    let mut out = String::from("cove@");
    for (i, b) in ctid.as_str().bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b':' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str(".service");
    out
}

/// Whether systemd is this machine's init (what sd_booted(3) checks).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit directory: `COVE_SYSTEMD_DIR`, else /etc/systemd/system.
pub fn unit_dir() -> PathBuf {
    std::env::var_os("COVE_SYSTEMD_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(UNIT_DIR))
}

// ---------------------------------------------------------------- notify

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service
/// manager, if `$NOTIFY_SOCKET` names one; false if there is none or the
/// send failed. A path, or `@name` for an abstract socket.
pub fn notify(state: &str) -> bool {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(&target),
        _ => return false,
    };
    match addr {
        Ok(addr) => sock.send_to_addr(state.as_bytes(), &addr).is_ok(),
        Err(_) => false,
    }
}

/// READY=1 with the monitor as the unit's main process.
pub fn notify_ready(ctid: &Ctid, init_pid: i32) {
    notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=CT {ctid} running, init pid {init_pid}",
        std::process::id()
    ));
}

pub fn notify_status(status: &str) {
    notify(&format!("STATUS={status}"));
}

pub fn notify_stopping(status: &str) {
    notify(&format!("STOPPING=1\nSTATUS={status}"));
}

/// Where a CT whose init is systemd finds the monitor's notify socket, as
/// in a systemd-nspawn container (`NOTIFY_SOCKET` in its init's
/// environment names it).
pub const CT_NOTIFY_SOCKET: &str = "/run/host/notify";

/// Whether the CT's init (`init`, looked up inside `rootfs`) is systemd.
pub fn init_is_systemd(rootfs: &Path, init: &str) -> bool {
    let target = crate::template::resolve_in_root(rootfs, init).unwrap_or_else(|| init.into());
    target
        .rsplit('/')
        .next()
        .is_some_and(|f| f.contains("systemd"))
}

/// Whether this process has a service manager to notify.
pub fn has_notify_socket() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// The monitor's end of the CT's notify socket, for a CT whose init is
/// systemd run by a unit: the CT's systemd says READY=1 once it has booted
/// (its default target reached) and the monitor then says READY=1 to its
/// own manager, as systemd-nspawn does with `--notify-ready=yes`. STATUS=
/// lines are passed on with the CT's name in front; the rest (STOPPING=1
/// for a reboot inside, ...) stays with the monitor, which reports the
/// CT's stop itself.
pub struct CtNotify {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    ready: bool,
}

impl CtNotify {
    /// Binds the socket at `path` (on the host; bound into the CT at
    /// [`CT_NOTIFY_SOCKET`]).
    pub fn bind(path: &Path) -> Result<CtNotify> {
        let _ = std::fs::remove_file(path);
        // Through /proc/self/fd: a run directory's path may be longer than
        // sun_path's 108 bytes.
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d, n),
            _ => return Err(Error::Tool(format!("{}: not a file path", path.display()))),
        };
        let dirfd = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
        let short = Path::new("/proc/self/fd")
            .join(std::os::fd::AsRawFd::as_raw_fd(&dirfd).to_string())
            .join(name);
        let sock = std::os::unix::net::UnixDatagram::bind(&short)
            .map_err(|e| Error::io("bind", path, e))?;
        drop(dirfd);
        sock.set_nonblocking(true)
            .map_err(|e| Error::io("set non-blocking", path, e))?;
        Ok(CtNotify {
            sock,
            path: path.to_path_buf(),
            ready: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.sock.as_fd()
    }

    /// Reads what the CT sent and relays it; true once the CT said
    /// READY=1 (now or before).
    pub fn relay(&mut self, ctid: &Ctid, init_pid: i32) -> bool {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let status = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("STATUS="))
                .filter(|s| !s.is_empty());
            if !self.ready && text.lines().any(|l| l == "READY=1") {
                self.ready = true;
                notify(&format!(
                    "READY=1\nMAINPID={}\nSTATUS=CT {ctid} running, init pid {init_pid}, its systemd ready{}",
                    std::process::id(),
                    status.map(|s| format!(": {s}")).unwrap_or_default()
                ));
            } else if let Some(s) = status {
                notify_status(&format!("CT {ctid}: {s}"));
            }
        }
        self.ready
    }
}

impl Drop for CtNotify {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------- cgroups

/// The cgroup v2 path of process `pid` (`self` for this one), from
/// `/proc/PID/cgroup`'s `0::` line.
fn cgroup_of(pid: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether cgroup path `cg` is, or is inside, the CT's own unit.
fn in_unit(cg: &str, ctid: &Ctid) -> bool {
    let unit = unit_name(ctid);
    cg.split('/').any(|c| c == unit)
}

/// True when this process runs inside the CT's own unit: systemd started
/// it for the unit (ExecStart, ExecStop), so it must act, not call
/// systemctl back.
pub fn inside_own_unit(ctid: &Ctid) -> bool {
    cgroup_of("self").is_some_and(|cg| in_unit(&cg, ctid))
}

/// The cgroup v2 mount point, if this host has one.
fn cgroup2_mount() -> Option<&'static Path> {
    match cove_cgroups::host_mode() {
        cove_cgroups::HostMode::Unified => Some(Path::new("/sys/fs/cgroup")),
        cove_cgroups::HostMode::Hybrid => Some(Path::new("/sys/fs/cgroup/unified")),
        cove_cgroups::HostMode::Legacy => None,
    }
}

/// Whether systemd delegated cgroup `dir` (it marks such cgroups with a
/// `trusted.delegate` or, since 253, `user.delegate` attribute).
fn marked_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| getxattr(dir, name).is_some_and(|v| v == b"1"))
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // kernel writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// For `cove start --foreground` run by a service manager: when this
/// process is the main process of a delegated unit (`cove@CTID.service`,
/// or any service or scope systemd marked delegated), moves it into the
/// unit's `supervisor` sub-cgroup and returns paths whose cgroup parent is
/// the unit's cgroup. None (nothing changes) outside systemd, without
/// delegation, or when `COVE_CGROUP_PARENT` chooses the parent.
pub fn nest_in_unit(paths: &Paths, ctid: &Ctid) -> Result<Option<Paths>> {
    if std::env::var_os("COVE_CGROUP_PARENT").is_some_and(|v| !v.is_empty())
        || std::env::var_os("NOTIFY_SOCKET").is_none()
            && std::env::var_os("INVOCATION_ID").is_none()
    {
        return Ok(None);
    }
    let (Some(mount), Some(own)) = (cgroup2_mount(), cgroup_of("self")) else {
        return Ok(None);
    };
    let (unit, moved) = match own.strip_suffix(&format!("/{SUPERVISOR}")) {
        // Already moved (a reboot of the CT within one monitor).
        Some(unit) => (unit.to_string(), true),
        None => (own.clone(), false),
    };
    let leaf = unit.rsplit('/').next().unwrap_or_default();
    let unit_dir = mount.join(unit.trim_start_matches('/'));
    let ours = leaf == unit_name(ctid);
    if !(leaf.ends_with(".service") || leaf.ends_with(".scope"))
        || !(ours || marked_delegated(&unit_dir))
    {
        return Ok(None);
    }
    if !moved {
        let supervisor = unit_dir.join(SUPERVISOR);
        match std::fs::create_dir(&supervisor) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", &supervisor, e)),
        }
        let procs = supervisor.join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())
            .map_err(|e| Error::io("write", &procs, e))?;
    }
    let mut nested = paths.clone();
    nested.cgroup_parent = unit.trim_end_matches('/').to_string();
    Ok(Some(nested))
}

// ---------------------------------------------------------------- units

/// Runs `systemctl ARGS...`; its own message on failure.
pub fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Tool(format!("systemctl {}: {e}", args.join(" "))))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(Error::Tool(format!(
        "systemctl {} failed: {}",
        args.join(" "),
        err.lines().next().unwrap_or("(no message)").trim()
    )))
}

/// Writes the units into `dir` with `exe` in their Exec lines and
/// `Environment=` lines for a data or run directory that is not the
/// default; enables cove.target; reloads systemd if it runs and `dir` is
/// the one it reads. Returns the files written.
pub fn install(paths: &Paths, dir: &Path, exe: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut written = Vec::new();
    for (name, text) in UNITS {
        let path = dir.join(name);
        let body = if name == SERVICE_TEMPLATE {
            service_text(text, exe, paths)
        } else {
            text.to_string()
        };
        cove_engine::state::write_atomic(&path, body.as_bytes())?;
        written.push(path);
    }
    link(
        &dir.join("multi-user.target.wants").join(TARGET),
        &dir.join(TARGET),
    )?;
    reload_if_live(dir)?;
    Ok(written)
}

/// The shipped service with `exe` for `cove` in its Exec lines.
fn service_text(shipped: &str, exe: &Path, paths: &Paths) -> String {
    let exe = exe.display().to_string();
    let mut out = String::new();
    for line in shipped.lines() {
        if let Some((key, rest)) = line.split_once('=') {
            if key.starts_with("Exec") {
                if let Some(args) = rest.strip_prefix("cove ") {
                    out.push_str(&format!("{key}={exe} {args}\n"));
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
        if line == "[Service]" {
            for (var, dir, default) in [
                ("COVE_DATA", &paths.data, crate::paths::DEFAULT_DATA),
                ("COVE_RUN", &paths.run, crate::paths::DEFAULT_RUN),
            ] {
                if dir != Path::new(default) {
                    out.push_str(&format!("Environment={var}={}\n", dir.display()));
                }
            }
        }
    }
    out
}

/// Replaces whatever is at `at` with a symlink to `to`.
fn link(at: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
    }
    match std::fs::remove_file(at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", at, e)),
    }
    symlink(to, at).map_err(|e| Error::io("symlink", at, e))
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// `systemctl daemon-reload` when systemd runs and reads `dir`.
fn reload_if_live(dir: &Path) -> Result<()> {
    if booted() && dir == Path::new(UNIT_DIR) {
        systemctl(&["daemon-reload"])?;
    }
    Ok(())
}

/// The link `systemctl enable cove@CTID` makes.
fn wants_link(dir: &Path, ctid: &Ctid) -> PathBuf {
    dir.join(format!("{TARGET}.wants")).join(unit_name(ctid))
}

/// Whether the CT's instance is enabled (starts at boot).
pub fn enabled(ctid: &Ctid) -> bool {
    wants_link(&unit_dir(), ctid).symlink_metadata().is_ok()
}

/// Whether the CT's running monitor is its unit's main process.
pub fn run_by_unit(ct: &CtPaths, ctid: &Ctid) -> bool {
    MonitorRecord::read(&ct.monitor)
        .filter(MonitorRecord::alive)
        .and_then(|m| cgroup_of(&m.pid.to_string()))
        .is_some_and(|cg| in_unit(&cg, ctid))
}

/// The unit that manages the CT, if one does: its instance is enabled, or
/// its running monitor is the unit's.
pub fn managing_unit(ct: &CtPaths, ctid: &Ctid) -> Option<String> {
    (enabled(ctid) || run_by_unit(ct, ctid)).then(|| unit_name(ctid))
}

/// The unit `cove start` hands the CT to: its instance is enabled,
/// systemd runs, and this process is not the unit's own.
pub fn unit_to_start(ctid: &Ctid) -> Option<String> {
    (booted() && enabled(ctid) && !inside_own_unit(ctid)).then(|| unit_name(ctid))
}

/// The unit `cove stop` and `restart` hand the CT to: the one running it,
/// unless this process is that unit's own (its ExecStop).
pub fn unit_to_stop(ct: &CtPaths, ctid: &Ctid) -> Option<String> {
    (booted() && run_by_unit(ct, ctid) && !inside_own_unit(ctid)).then(|| unit_name(ctid))
}

/// Checks that `--onboot yes` can work here: the units are installed.
pub fn check_installed() -> Result<()> {
    let dir = unit_dir();
    if !dir.join(SERVICE_TEMPLATE).exists() {
        return Err(Error::BadInput(format!(
            "--onboot: {} is not installed in {} (run `cove systemd install` first)",
            SERVICE_TEMPLATE,
            dir.display()
        )));
    }
    Ok(())
}

/// Makes the units match every CT's `onboot` and `bootorder`: enabled
/// instances for onboot CTs, disabled for the others, and each onboot
/// CT's drop-in ordering it after the onboot CTs of higher boot order.
/// Called after `cove set` changed either, and after `destroy`.
pub fn sync_onboot(paths: &Paths) -> Result<()> {
    let dir = unit_dir();
    let mut boot: Vec<(Ctid, Option<u32>)> = Vec::new();
    let mut all = Vec::new();
    for id in config::list_ctids(paths)? {
        if let Ok(cfg) = CtConfig::load(&paths.ct(&id).config, &id) {
            if cfg.onboot == Some(true) {
                boot.push((id.clone(), cfg.bootorder));
            }
        }
        all.push(id);
    }
    for id in &all {
        let on = boot.iter().find(|(b, _)| b == id);
        let wants = wants_link(&dir, id);
        let dropin_dir = dir.join(format!("{}.d", unit_name(id)));
        let dropin = dropin_dir.join(BOOTORDER_DROPIN);
        match on {
            Some((_, order)) => {
                link(&wants, &dir.join(SERVICE_TEMPLATE))?;
                let before: Vec<String> = boot
                    .iter()
                    .filter(|(other, o)| other != id && starts_before(*o, *order))
                    .map(|(other, _)| unit_name(other))
                    .collect();
                if before.is_empty() {
                    remove_if_there(&dropin)?;
                } else {
                    std::fs::create_dir_all(&dropin_dir)
                        .map_err(|e| Error::io("create", &dropin_dir, e))?;
                    let text = format!(
                        "# Written by cove: CT {id} (bootorder {}) starts after the onboot CTs of higher bootorder.\n[Unit]\nAfter={}\n",
                        order.map_or("unset".to_string(), |o| o.to_string()),
                        before.join(" ")
                    );
                    cove_engine::state::write_atomic(&dropin, text.as_bytes())?;
                }
            }
            None => {
                remove_if_there(&wants)?;
                remove_if_there(&dropin)?;
            }
        }
        // An empty drop-in directory is noise in `systemctl cat`.
        let _ = std::fs::remove_dir(&dropin_dir);
    }
    reload_if_live(&dir)
}

/// The CT's unit bits go with the CT (`cove destroy`).
pub fn forget(ctid: &Ctid) -> Result<()> {
    let dir = unit_dir();
    remove_if_there(&wants_link(&dir, ctid))?;
    let dropin_dir = dir.join(format!("{}.d", unit_name(ctid)));
    remove_if_there(&dropin_dir.join(BOOTORDER_DROPIN))?;
    let _ = std::fs::remove_dir(&dropin_dir);
    Ok(())
}

/// vzctl's order: a higher bootorder starts first, an unset one last.
fn starts_before(other: Option<u32>, this: Option<u32>) -> bool {
    match (other, this) {
        (Some(o), Some(t)) => o > t,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_escaped_as_systemd_does() {
        let name = |s: &str| unit_name(&Ctid::parse(s).unwrap());
        assert_eq!(name("101"), "cove@101.service");
        assert_eq!(name("web.app_1"), "cove@web.app_1.service");
        assert_eq!(name("web-1"), "cove@web\\x2d1.service");
    }

    #[test]
    fn higher_bootorder_starts_first_and_unset_last() {
        assert!(starts_before(Some(20), Some(10)));
        assert!(!starts_before(Some(10), Some(20)));
        assert!(!starts_before(Some(10), Some(10)));
        assert!(starts_before(Some(1), None));
        assert!(!starts_before(None, Some(1)));
        assert!(!starts_before(None, None));
    }

    #[test]
    fn shipped_service_is_what_the_issue_asks_for() {
        let text = UNITS[0].1;
        for line in [
            "Type=notify",
            "ExecStart=cove start --foreground %I",
            "KillMode=mixed",
            "Delegate=yes",
            "Slice=cove.slice",
            "WantedBy=cove.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing");
        }
        // The stop timeout covers cove stop's own: graceful, kill, monitor.
        let stop: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(
            stop >= crate::monitor::STOP_TIMEOUT.as_secs() + 20,
            "{stop}"
        );
        assert!(text.contains("ExecStop=cove stop --timeout 60 %I"));
    }

    #[test]
    fn install_puts_the_binary_and_directories_in() {
        let paths = Paths::resolve(
            Some(Path::new("/d")),
            Some(Path::new(crate::paths::DEFAULT_RUN)),
        )
        .unwrap();
        let text = service_text(UNITS[0].1, Path::new("/opt/bin/cove"), &paths);
        assert!(
            text.contains("\nExecStart=/opt/bin/cove start --foreground %I\n"),
            "{text}"
        );
        assert!(
            text.contains("\nExecStop=/opt/bin/cove stop --timeout 60 %I\n"),
            "{text}"
        );
        assert!(text.contains("\nEnvironment=COVE_DATA=/d\n"), "{text}");
        assert!(!text.contains("COVE_RUN"), "{text}");
    }
}
