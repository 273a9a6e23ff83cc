//! Work in another network namespace: a forked child enters it with setns
//! and runs the closure; the caller stays where it is. A child rather than
//! a setns back and forth, so that nothing the closure opens (a netlink
//! socket, a /proc/sys file) can outlive it in the wrong namespace, and a
//! failure half-way cannot leave the caller in the CT's namespace.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::{Error, Result};

/// Opens the network namespace of process `pid` (/proc/PID/ns/net).
pub fn open_of_pid(pid: i32) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| Error::sys(format!("open {path}"), e))
}

/// The identity of the caller's network namespace: (device, inode) of
/// /proc/self/ns/net, what `ip netns identify` compares.
pub fn current_id() -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| Error::sys("stat /proc/self/ns/net", e))?;
    Ok((m.dev(), m.ino()))
}

/// Runs `f` in the network namespace `ns` and returns its result (errors
/// come back as their message). The caller must be single-threaded, as
/// any forking program should be.
pub fn run_in<F>(ns: BorrowedFd, f: F) -> Result<()>
where
    F: FnOnce() -> Result<()>,
{
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe2", e.into()))?;
    // SAFETY: the callers are single-threaded; the child only runs `f`
    // (netlink requests and file writes) and exits without unwinding.
    match unsafe { fork() }.map_err(|e| Error::sys("fork", e.into()))? {
        ForkResult::Child => {
            drop(read_end);
            let result = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys("setns into the CT's network namespace", e.into()))
                .and_then(|()| f());
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&write_end, e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the child at once, without running the
            // parent's atexit handlers or flushing its buffers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut msg = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            if !msg.is_empty() {
                return Err(Error::InNamespace(msg));
            }
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => Err(Error::InNamespace(format!(
                    "the child working in the CT's network namespace ended badly: {other:?}"
                ))),
            }
        }
    }
}
