//! start, stop, restart and the teardown they share with the monitor.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use cove_engine::container;
use cove_engine::state::Status;

use crate::config::{self, CtConfig};
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::monitor::{self, Launch};
use crate::overlay;
use crate::paths::{CtPaths, Paths};
use crate::runstate::{self, MonitorRecord};
use crate::systemd;
use crate::template;

/// How long a killed CT (SIGKILL to its whole cgroup) may take to go.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long `cove stop` waits for the monitor to record the end.
const MONITOR_GRACE: Duration = Duration::from_secs(10);

/// The CT's lock, or the "locked" error at once.
pub fn lock_ct(ct: &CtPaths, ctid: &Ctid) -> Result<Lock> {
    Lock::try_acquire(&ct.lock)?.ok_or_else(|| Error::Locked(ctid.to_string()))
}

/// Removes what a CT's run left: the engine's container (and with it the
/// payload cgroup), the CT's cgroup, its network (veth, routes, proxy
/// entries, published ports), the root mount, the bundle, the socket and
/// the monitor record.
/// Idempotent; the console log and the last exit record stay until
/// `destroy`. Nothing here removes recursively under the bundle: if the
/// rootfs could not be unmounted, the CT's files must not be reached
/// through it.
pub fn teardown(ct: &CtPaths, ctid: &Ctid) -> Result<()> {
    let mut first: Option<Error> = None;
    if let Err(e) = container::delete(&ct.oci_root, ctid.as_str(), true) {
        first.get_or_insert(e.into());
    }
    if let Err(e) = crate::net::teardown(ct, ctid) {
        first.get_or_insert(e);
    }
    // The engine removed the payload; the CT's limits go with its cgroup.
    if let Err(e) = crate::cgroup::remove(ct, ctid) {
        first.get_or_insert(e);
    }
    // Its monitor may have made it elsewhere (inside its unit's cgroup).
    if let Some(made) = MonitorRecord::read(&ct.monitor)
        .and_then(|m| m.cgroup)
        .filter(|c| *c != ct.cgroups_path)
    {
        let elsewhere = CtPaths {
            cgroups_path: made,
            ..ct.clone()
        };
        if let Err(e) = crate::cgroup::remove(&elsewhere, ctid) {
            first.get_or_insert(e);
        }
    }
    match overlay::unmount_rootfs(&ct.rootfs) {
        Ok(()) => {
            remove_if_there(std::fs::remove_dir(&ct.rootfs), &ct.rootfs, &mut first);
            let config = ct.bundle.join("config.json");
            remove_if_there(std::fs::remove_file(&config), &config, &mut first);
            remove_if_there(std::fs::remove_dir(&ct.bundle), &ct.bundle, &mut first);
        }
        Err(e) => {
            first.get_or_insert(e);
        }
    }
    remove_if_there(
        std::fs::remove_file(&ct.console_sock),
        &ct.console_sock,
        &mut first,
    );
    // A killed monitor's notify socket (a systemd CT under a unit).
    remove_if_there(
        std::fs::remove_file(&ct.notify_sock),
        &ct.notify_sock,
        &mut first,
    );
    remove_if_there(std::fs::remove_file(&ct.monitor), &ct.monitor, &mut first);
    first.map_or(Ok(()), Err)
}

fn remove_if_there(r: std::io::Result<()>, path: &std::path::Path, first: &mut Option<Error>) {
    if let Err(e) = r {
        if e.kind() != std::io::ErrorKind::NotFound {
            first.get_or_insert(Error::io("remove", path, e));
        }
    }
}

/// `cove start CTID [--foreground]`. Returns the exit code: 0 once the CT
/// runs, or (in the foreground) how it ended.
pub fn start(paths: &Paths, arg: &str, foreground: bool) -> Result<i32> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    let template = template::open(paths, &cfg.template)?;
    crate::migrate::check_not_migrating(&ct, &ctid)?;
    if !foreground {
        if let Some(unit) = systemd::unit_to_start(&ctid) {
            return start_unit(&ct, &ctid, &unit).map(|_| 0);
        }
    }
    let lock = lock_ct(&ct, &ctid)?;
    start_locked(paths, &ctid, &cfg, &template, lock, foreground)
}

/// A unit-managed CT starts through systemd, so that its unit's state stays
/// true; the unit runs `cove start --foreground`.
fn start_unit(ct: &CtPaths, ctid: &Ctid, unit: &str) -> Result<()> {
    if runstate::status(ct, ctid).running() {
        return Err(Error::AlreadyRunning(ctid.to_string()));
    }
    systemd::systemctl(&["start", unit])
}

fn start_locked(
    paths: &Paths,
    ctid: &Ctid,
    cfg: &CtConfig,
    template: &template::Template,
    lock: Lock,
    foreground: bool,
) -> Result<i32> {
    let ct = paths.ct(ctid);
    if runstate::status(&ct, ctid).running() {
        return Err(Error::AlreadyRunning(ctid.to_string()));
    }
    // What a CT that ended without its monitor left behind.
    teardown(&ct, ctid)?;
    // Under a unit with Delegate=yes, the CT's cgroup goes inside the unit's.
    let nested = if foreground {
        systemd::nest_in_unit(paths, ctid)?
    } else {
        None
    };
    let paths = nested.as_ref().unwrap_or(paths);
    let launch = Launch {
        paths,
        ctid,
        cfg,
        template,
        restore_from: None,
    };
    if foreground {
        monitor::run_foreground(&launch, lock)
    } else {
        monitor::spawn(&launch, lock)?;
        Ok(0)
    }
}

/// How `stop` ends a CT.
#[derive(Debug, Clone, Copy)]
pub struct StopHow {
    pub timeout: Duration,
    /// Kill at once, without asking the init first.
    pub fast: bool,
}

/// `cove stop CTID`.
pub fn stop(paths: &Paths, arg: &str, how: StopHow) -> Result<()> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    if let Some(unit) = systemd::unit_to_stop(&ct, &ctid) {
        return systemd::systemctl(&["stop", &unit]);
    }
    let lock = lock_ct(&ct, &ctid)?;
    let monitor = match stop_locked(paths, &ct, &ctid, how) {
        // The unit's ExecStop after the CT ended on its own: nothing to do,
        // and no failure to add to the unit's own result.
        Err(Error::NotRunning(_)) if systemd::inside_own_unit(&ctid) => return Ok(()),
        r => r?,
    };
    drop(lock);
    wait_for_monitor(monitor);
    Ok(())
}

/// Stops the CT while the caller holds its lock. Returns the monitor, if
/// one lives: it ends once it can take the lock, and the caller waits for
/// it after releasing the lock.
pub fn stop_locked(
    paths: &Paths,
    ct: &CtPaths,
    ctid: &Ctid,
    how: StopHow,
) -> Result<Option<MonitorRecord>> {
    let monitor = MonitorRecord::read(&ct.monitor).filter(MonitorRecord::alive);
    let loaded = match container::load(&ct.oci_root, ctid.as_str()) {
        Ok(c) if c.status != Status::Stopped => c,
        _ => {
            teardown(ct, ctid)?;
            return Err(Error::NotRunning(ctid.to_string()));
        }
    };
    let pidfd = match container::open_init(&loaded.saved) {
        Ok(fd) => fd,
        Err(_) => {
            drop(loaded);
            teardown(ct, ctid)?;
            return Err(Error::NotRunning(ctid.to_string()));
        }
    };
    let paused = loaded.status == Status::Paused;
    let cgroup_paths = loaded.saved.cgroup_paths.clone();
    // The engine's lock is held as long as `loaded` lives; kill takes it.
    drop(loaded);
    let mut gone = false;
    if !how.fast {
        if paused {
            // A frozen init cannot act on its stop signal.
            let _ = cove_cgroups::manager_from_paths(&cgroup_paths).thaw();
        }
        let signal = stop_signal(paths, ct, ctid);
        cove_engine::sys::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|e| {
            Error::sys(
                format!(
                    "send {} to the init of CT {ctid}",
                    crate::signals::name(signal)
                ),
                e,
            )
        })?;
        gone = wait_readable(&pidfd, how.timeout);
    }
    if !gone {
        container::kill(&ct.oci_root, ctid.as_str(), libc::SIGKILL, true)?;
        if !wait_readable(&pidfd, KILL_GRACE) {
            return Err(Error::StopFailed {
                ctid: ctid.to_string(),
                msg: format!(
                    "its init is still there {} s after SIGKILL",
                    KILL_GRACE.as_secs()
                ),
            });
        }
    }
    teardown(ct, ctid)?;
    Ok(monitor)
}

/// The signal the CT's init takes as "shut down".
fn stop_signal(paths: &Paths, ct: &CtPaths, ctid: &Ctid) -> i32 {
    let cfg = CtConfig::load(&ct.config, ctid);
    let manifest = cfg
        .as_ref()
        .ok()
        .and_then(|c| template::open(paths, &c.template).ok())
        .map(|t| t.manifest)
        .unwrap_or_default();
    match cfg {
        Ok(cfg) => template::init_of(&cfg, &manifest, &ct.rootfs).stop_signal,
        Err(_) => template::stop_signal_for(
            &template::resolve_in_root(&ct.rootfs, "/sbin/init").unwrap_or_default(),
        ),
    }
}

/// Waits until the process behind `pidfd` has ended; false on timeout.
fn wait_readable(pidfd: &impl AsFd, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(u16::MAX as u128) as u16;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) if left.is_zero() => return false,
            Ok(_) => {}
        }
    }
}

/// Waits (briefly) for a monitor to finish its last duties.
pub(crate) fn wait_for_monitor(monitor: Option<MonitorRecord>) {
    let Some(m) = monitor else { return };
    let Ok(fd) = cove_engine::sys::pidfd_open(m.pid) else {
        return;
    };
    // The pid may have been reused between reading the record and opening.
    if m.alive() {
        wait_readable(&fd, MONITOR_GRACE);
    }
}

/// `cove restart CTID`: stop if running, then start.
pub fn restart(paths: &Paths, arg: &str, how: StopHow) -> Result<()> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    let template = template::open(paths, &cfg.template)?;
    if let Some(unit) = systemd::unit_to_stop(&ct, &ctid) {
        return systemd::systemctl(&["restart", &unit]);
    }
    let lock = lock_ct(&ct, &ctid)?;
    let lock = match stop_locked(paths, &ct, &ctid, how) {
        Ok(monitor) => {
            drop(lock);
            wait_for_monitor(monitor);
            lock_ct(&ct, &ctid)?
        }
        Err(Error::NotRunning(_)) => lock,
        Err(e) => return Err(e),
    };
    if let Some(unit) = systemd::unit_to_start(&ctid) {
        drop(lock);
        return start_unit(&ct, &ctid, &unit);
    }
    start_locked(paths, &ctid, &cfg, &template, lock, false).map(|_| ())
}

/// `cove destroy CTID [--force]`: everything of the CT goes.
pub fn destroy(paths: &Paths, arg: &str, force: bool) -> Result<()> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    if force {
        // Stopped by its unit, which stays inactive rather than failed.
        if let Some(unit) = systemd::unit_to_stop(&ct, &ctid) {
            systemd::systemctl(&["stop", &unit])?;
        }
    }
    let mut lock = lock_ct(&ct, &ctid)?;
    if runstate::status(&ct, &ctid).running() {
        if !force {
            return Err(Error::Running {
                ctid: ctid.to_string(),
                hint: "stop it first, or destroy --force",
            });
        }
        let monitor = stop_locked(
            paths,
            &ct,
            &ctid,
            StopHow {
                timeout: Duration::ZERO,
                fast: true,
            },
        )?;
        drop(lock);
        wait_for_monitor(monitor);
        lock = lock_ct(&ct, &ctid)?;
    }
    teardown(&ct, &ctid)?;
    if overlay::is_mounted(&ct.rootfs) {
        return Err(Error::Tool(format!(
            "{} is still mounted",
            ct.rootfs.display()
        )));
    }
    for dir in [&ct.run, &ct.dir] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
    }
    lock.remove();
    systemd::forget(&ctid)?;
    Ok(())
}

/// `cove mount CTID`: the CT's root (template and private area overlaid,
/// as at start) mounted on the host for inspection without running it.
/// Returns where; a CT already mounted is left as it is.
pub fn mount(paths: &Paths, arg: &str) -> Result<std::path::PathBuf> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    let _lock = lock_ct(&ct, &ctid)?;
    if runstate::status(&ct, &ctid).running() {
        return Err(Error::Running {
            ctid: ctid.to_string(),
            hint: "its root is mounted while it runs",
        });
    }
    if !overlay::is_mounted(&ct.rootfs) {
        let template = template::open(paths, &cfg.template)?;
        crate::paths::private_dir(&ct.run)?;
        if let Err(e) = overlay::mount_rootfs(&template.rootfs, &ct.upper, &ct.work, &ct.rootfs) {
            let _ = teardown(&ct, &ctid);
            return Err(e);
        }
    }
    Ok(ct.rootfs)
}

/// `cove umount CTID`: undoes `cove mount`. Returns whether it was mounted.
pub fn umount(paths: &Paths, arg: &str) -> Result<bool> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let _lock = lock_ct(&ct, &ctid)?;
    if runstate::status(&ct, &ctid).running() {
        return Err(Error::Running {
            ctid: ctid.to_string(),
            hint: "stop it, which unmounts it",
        });
    }
    let was = overlay::is_mounted(&ct.rootfs);
    teardown(&ct, &ctid)?;
    Ok(was)
}
