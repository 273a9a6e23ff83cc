//! Signalling every process of a cgroup when the kernel cannot do it for
//! us (no cgroup.kill: v1, kernels before 5.14, or a signal other than
//! SIGKILL).

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::CgroupManager;

/// Freezes the cgroup so nothing can fork between listing and signalling,
/// signals each pid, and thaws again, unless the cgroup was already frozen
/// (a paused container stays paused; a SIGKILL still lands on thaw, and a
/// frozen v2 task dies at once).
pub(crate) fn signal_all(cgroup: &dyn CgroupManager, signal: i32) -> Result<()> {
    let signal_value = to_signal(signal)?;
    let was_frozen = cgroup.is_frozen().unwrap_or(false);
    let froze = if was_frozen {
        false
    } else {
        match cgroup.freeze() {
            Ok(()) => true,
            Err(e) => {
                // Signal anyway: a racing fork may escape, but most will not.
                tracing::debug!(error = %e, "could not freeze before signalling");
                false
            }
        }
    };
    let result = signal_pids(&cgroup.pids()?, signal_value);
    if froze {
        cgroup.thaw()?;
    }
    result
}

/// Signals each of `pids` as listed, without freezing first.
pub(crate) fn signal_listed(pids: &[i32], signal: i32) -> Result<()> {
    signal_pids(pids, to_signal(signal)?)
}

fn to_signal(signal: i32) -> Result<Signal> {
    Signal::try_from(signal).map_err(|e| Error::Signal {
        pid: 0,
        signal,
        source: std::io::Error::from(e),
    })
}

fn signal_pids(pids: &[i32], signal: Signal) -> Result<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), signal) {
            // Exited since the listing: nothing left to signal.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => {
                return Err(Error::Signal {
                    pid,
                    signal: signal as i32,
                    source: std::io::Error::from(errno),
                })
            }
        }
    }
    Ok(())
}
