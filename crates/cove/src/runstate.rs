//! What cove knows about a CT at run time, from the files the monitor and
//! the engine keep: whether it runs, its init and monitor, how it last
//! ended. Nothing here asks the monitor: a CT whose monitor died is found
//! and managed from the engine's state alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use cove_engine::container;
use cove_engine::state::{self as engine_state, Status};

use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::overlay;
use crate::paths::CtPaths;
use crate::signals;

/// `<run>/ct/<CTID>/monitor.json`, written once the CT runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorRecord {
    pub pid: i32,
    /// Start time of `pid`, so that a recycled pid is never taken for it.
    pub start: u64,
    pub init_pid: i32,
    pub foreground: bool,
    /// The CT's cgroup as its monitor made it. Under a unit it is inside
    /// the unit's (see [`crate::systemd::nest_in_unit`]), which a `cove
    /// stop` run from elsewhere cannot work out: its teardown reads it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

impl MonitorRecord {
    pub fn of_self(init_pid: i32, foreground: bool, cgroup: &str) -> MonitorRecord {
        let pid = std::process::id() as i32;
        let start = engine_state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
        MonitorRecord {
            pid,
            start,
            init_pid,
            foreground,
            cgroup: Some(cgroup.to_string()),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Tool(e.to_string()))?;
        Ok(engine_state::write_runtime(path, &bytes)?)
    }

    pub fn read(path: &Path) -> Option<MonitorRecord> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// True while the recorded monitor process still exists (not a zombie).
    pub fn alive(&self) -> bool {
        matches!(engine_state::proc_stat(self.pid), Some((st, start)) if start == self.start && st != 'Z' && st != 'X')
    }
}

/// `<run>/ct/<CTID>/last-exit.json`: how the CT's init last ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    /// As a shell reports it: the exit code, or 128 + the signal number.
    pub status: i32,
    /// "poweroff", "reboot", "exited with N" or "killed by SIGNAME".
    pub how: String,
    pub at: String,
}

impl ExitRecord {
    /// Reads a wait status. The kernel reports the init of a pid namespace
    /// that called reboot(2) as killed by SIGINT (power off, halt) or
    /// SIGHUP (restart): that is how a CT asks to be stopped or restarted.
    pub fn from_wait(status: nix::sys::wait::WaitStatus) -> ExitRecord {
        use nix::sys::wait::WaitStatus;
        let (code, how) = match status {
            WaitStatus::Exited(_, c) => (c, format!("exited with {c}")),
            WaitStatus::Signaled(_, sig, _) => {
                let n = sig as i32;
                let how = match sig {
                    nix::sys::signal::Signal::SIGINT => "poweroff".to_string(),
                    nix::sys::signal::Signal::SIGHUP => "reboot".to_string(),
                    _ => format!("killed by {}", signals::name(n)),
                };
                (128 + n, how)
            }
            other => (255, format!("ended as {other:?}")),
        };
        ExitRecord {
            status: code,
            how,
            at: engine_state::now_rfc3339(),
        }
    }

    /// The exit code for whoever waits on the CT (`start --foreground`):
    /// 0 for a CT that shut itself down as asked.
    pub fn exit_code(&self) -> i32 {
        match self.how.as_str() {
            "poweroff" | "reboot" => 0,
            _ => self.status,
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Tool(e.to_string()))?;
        Ok(engine_state::write_runtime(path, &bytes)?)
    }

    pub fn read(path: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// A CT's run-time status.
#[derive(Debug, Clone, Serialize)]
pub struct CtStatus {
    pub ctid: String,
    /// Its config exists.
    pub exist: bool,
    /// Its root overlay is mounted.
    pub mounted: bool,
    /// "running", "stopped", "paused" or "starting".
    pub status: &'static str,
    pub init_pid: Option<i32>,
    pub monitor_pid: Option<i32>,
    pub last_exit: Option<ExitRecord>,
}

impl CtStatus {
    pub fn running(&self) -> bool {
        matches!(self.status, "running" | "paused" | "starting")
    }

    /// vzctl's words: `CT 101 exist mounted running`.
    pub fn vz_line(&self) -> String {
        format!(
            "CT {} {} {} {}",
            self.ctid,
            if self.exist { "exist" } else { "deleted" },
            if self.mounted { "mounted" } else { "unmounted" },
            match self.status {
                "stopped" => "down",
                s => s,
            }
        )
    }
}

/// The engine's status of the CT's container; Stopped when it has none.
pub fn engine_status(paths: &CtPaths, ctid: &Ctid) -> (Status, Option<i32>) {
    match container::load(&paths.oci_root, ctid.as_str()) {
        Ok(c) => {
            let pid = (c.status != Status::Stopped).then_some(c.saved.pid);
            (c.status, pid)
        }
        Err(_) => (Status::Stopped, None),
    }
}

pub fn status(paths: &CtPaths, ctid: &Ctid) -> CtStatus {
    let (st, init_pid) = engine_status(paths, ctid);
    let monitor_pid = MonitorRecord::read(&paths.monitor)
        .filter(MonitorRecord::alive)
        .map(|m| m.pid);
    CtStatus {
        ctid: ctid.to_string(),
        exist: paths.config.exists(),
        mounted: overlay::is_mounted(&paths.rootfs),
        status: match st {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Created | Status::Creating => "starting",
            Status::Stopped => "stopped",
        },
        init_pid,
        monitor_pid,
        last_exit: ExitRecord::read(&paths.last_exit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    #[test]
    fn reboot_and_poweroff_are_read_from_the_init_signal() {
        let p = Pid::from_raw(1);
        let off = ExitRecord::from_wait(WaitStatus::Signaled(p, Signal::SIGINT, false));
        assert_eq!((off.how.as_str(), off.exit_code()), ("poweroff", 0));
        let re = ExitRecord::from_wait(WaitStatus::Signaled(p, Signal::SIGHUP, false));
        assert_eq!(re.how, "reboot");
        let killed = ExitRecord::from_wait(WaitStatus::Signaled(p, Signal::SIGKILL, false));
        assert_eq!(
            (killed.how.as_str(), killed.exit_code()),
            ("killed by SIGKILL", 137)
        );
        let exited = ExitRecord::from_wait(WaitStatus::Exited(p, 3));
        assert_eq!(
            (exited.how.as_str(), exited.exit_code()),
            ("exited with 3", 3)
        );
    }

    #[test]
    fn vz_words() {
        let s = CtStatus {
            ctid: "101".into(),
            exist: true,
            mounted: false,
            status: "stopped",
            init_pid: None,
            monitor_pid: None,
            last_exit: None,
        };
        assert_eq!(s.vz_line(), "CT 101 exist unmounted down");
    }
}
