//! Loading a compiled filter: one seccomp(2) call, no allocation, so it is
//! fine between fork and exec.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::profile::FLAG_NEW_LISTENER;
use crate::{Error, Filter};

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

impl Filter {
    /// Loads the filter into the calling thread (and, with
    /// SECCOMP_FILTER_FLAG_TSYNC, all threads of the process).
    ///
    /// The kernel accepts a filter only from a process that has
    /// no_new_privs set or CAP_SYS_ADMIN in its user namespace
    /// ([`Error::NeedsNoNewPrivs`] otherwise). This does not set
    /// no_new_privs: that is `process.noNewPrivileges`' business (see
    /// [`set_no_new_privs`]). runc, when
    /// noNewPrivileges is false, loads the filter before dropping
    /// capabilities, while CAP_SYS_ADMIN is still there, and right before
    /// exec otherwise.
    ///
    /// Returns the notify fd (close-on-exec) when the profile uses
    /// SCMP_ACT_NOTIFY.
    pub fn load(&self) -> Result<Option<OwnedFd>, Error> {
        let prog = libc::sock_fprog {
            // compile() never makes more than BPF_MAXINSNS (4096).
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `self.program`, which outlives the call;
        // the kernel copies the program and does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EACCES) {
                return Err(Error::NeedsNoNewPrivs);
            }
            return Err(Error::Load {
                flags: self.flags,
                source: err,
            });
        }
        if self.flags & FLAG_NEW_LISTENER == 0 {
            return Ok(None);
        }
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER, seccomp(2) returns
        // a new fd that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) }))
    }
}

/// Sets no_new_privs on the calling thread, which lets an unprivileged
/// process load a filter (and is inherited across fork and exec).
pub fn set_no_new_privs() -> Result<(), Error> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(Error::NoNewPrivs(io::Error::last_os_error()));
    }
    Ok(())
}
