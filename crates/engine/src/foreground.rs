//! `run` and `exec` without -d: the runtime stays as the process's parent,
//! forwards the signals it receives, and exits with the process's status.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::Sys("sigprocmask", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::Sys("signalfd", e))
}

/// Forwards signals to the process until it exits; returns its status
/// (exit code, or 128 + signal number).
pub fn wait_forwarding(pidfd: BorrowedFd, sfd: &mut SignalFd) -> Result<i32> {
    loop {
        let mut fds = [
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys("poll", e)),
            Ok(_) => {}
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
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

/// Like [`wait_forwarding`], and relays a terminal: our stdin to the pty
/// master, the master to our stdout, our window size to the pty (also on
/// SIGWINCH). Our stdin is put in raw mode while it runs, if it is a tty.
pub fn wait_with_tty(pidfd: BorrowedFd, sfd: &mut SignalFd, master: &OwnedFd) -> Result<i32> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
    }
    copy_winsize(master);
    let result = relay(pidfd, sfd, master);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
    }
    result
}

fn copy_winsize(master: &OwnedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize pointer.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn write_all(fd: BorrowedFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) if n > 0 => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => return,
        }
    }
}

fn relay(pidfd: BorrowedFd, sfd: &mut SignalFd, master: &OwnedFd) -> Result<i32> {
    // SAFETY: fds 0 and 1 are open for the life of the process.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    loop {
        // A master whose slave side is all closed polls as ready forever
        // (EIO): once seen, stop watching it and just wait for the exit.
        if !master_open {
            return wait_forwarding(pidfd, sfd);
        }
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys("poll", e)),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (exited, signal, out, input) = (ready(0), ready(1), ready(2), ready(3));
        if signal {
            if let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGWINCH => copy_winsize(master),
                    libc::SIGCHLD | libc::SIGURG => {}
                    sig => {
                        let _ = sys::pidfd_send_signal(pidfd, sig);
                    }
                }
            }
        }
        if out {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => write_all(stdout, &buf[..n]),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                _ if exited => return sys::pidfd_wait(pidfd).map_err(|e| Error::Sys("waitid", e)),
                _ => master_open = false,
            }
            continue;
        }
        if input {
            match nix::unistd::read(0, &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
        if exited {
            return sys::pidfd_wait(pidfd).map_err(|e| Error::Sys("waitid", e));
        }
    }
}
