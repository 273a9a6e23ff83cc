//! `run` and `exec` without -d: the runtime stays as the process's parent,
//! forwards the signals it receives, and exits with the process's status.

use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Error, Result};
use crate::sys;

/// Blocks every signal so that they queue on a signalfd; call before the
/// process is released so none is lost.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::all();
    set.remove(Signal::SIGSEGV);
    set.remove(Signal::SIGBUS);
    set.remove(Signal::SIGILL);
    set.remove(Signal::SIGFPE);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(|e| Error::Sys("sigprocmask", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::Sys("signalfd", e))
}

/// Forwards signals to the process until it exits; returns its status
/// (exit code, or 128 + signal number).
pub fn wait_forwarding(pidfd: BorrowedFd, sfd: &mut SignalFd) -> Result<i32> {
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN), PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys("poll", e)),
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig != libc::SIGCHLD && sig != libc::SIGWINCH && sig != libc::SIGURG {
                    let _ = sys::pidfd_send_signal(pidfd, sig);
                }
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return sys::pidfd_wait(pidfd).map_err(|e| Error::Sys("waitid", e));
        }
    }
}
