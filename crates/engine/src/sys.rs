//! Thin wrappers over the syscalls that libc/nix do not wrap (clone3, pidfd,
//! openat2, close_range). Each one is the only `unsafe` for its syscall.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x200000000;

pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: OwnedFd },
}

/// clone3 as a fork: the child continues on a copy of our stack. Always asks
/// for a pidfd so the parent never signals a recycled pid. The caller must be
/// single-threaded (it is: the runtime starts no threads).
pub fn clone3(ns_flags: u64, cgroup_fd: Option<RawFd>) -> Result<Forked, Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: args is a valid clone_args of the size we pass; without a stack
    // the child resumes here like fork(2), and the process has one thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        // SAFETY: CLONE_PIDFD stored a new fd we now own.
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: a valid pidfd, a null siginfo (kernel fills it as kill(2)).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Waits for the process behind a pidfd; returns the wait status as a shell
/// reports it (exit code, or 128 + signal).
pub fn pidfd_wait(pidfd: BorrowedFd) -> Result<i32, Errno> {
    loop {
        // SAFETY: zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a valid fd and out-parameter.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if ret < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        return Ok(if code == libc::CLD_EXITED {
            status
        } else {
            128 + status
        });
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2): the only way we look up a path inside an untrusted rootfs,
/// so `..` and symlinks cannot lead out of it.
pub fn openat2(dirfd: BorrowedFd, path: &Path, flags: i32, resolve: u64) -> Result<OwnedFd, Errno> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: valid C string and open_how of the size passed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a new fd.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let e = Errno::last();
        if e != Errno::EAGAIN && e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Marks every fd from `first` up as close-on-exec, so nothing of the
/// runtime's leaks into the container whatever a library opened.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub fn pivot_root(new_root: &str, put_old: &str) -> Result<(), Errno> {
    let a = CString::new(new_root).map_err(|_| Errno::EINVAL)?;
    let b = CString::new(put_old).map_err(|_| Errno::EINVAL)?;
    // SAFETY: two valid C strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The path through which a syscall that only takes paths (mount, chdir)
/// reaches the object behind `fd` without a second lookup.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `_exit` for the child side of a fork: no destructors, no atexit, no
/// flushing of buffers we share with the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

pub fn set_dumpable(on: bool) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The GNU build-id of the running executable: a hash the linker computes
/// over everything it wrote, so another build has another id. Read from
/// the executable's loaded note segments, without a syscall; None when the
/// linker wrote no build-id.
pub fn build_id() -> Option<Vec<u8>> {
    /// Called by dl_iterate_phdr for each loaded object, the executable
    /// first; `data` is the `Option<Vec<u8>>` to fill.
    unsafe extern "C" fn executable(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid dl_phdr_info whose
        // program headers and PT_NOTE segments are mapped for as long as
        // the object is loaded (the executable: always); `data` is the
        // Option our caller passed, borrowed by nothing else.
        unsafe {
            let info = &*info;
            let out = &mut *(data as *mut Option<Vec<u8>>);
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for ph in phdrs.iter().filter(|p| p.p_type == libc::PT_NOTE) {
                let notes = std::slice::from_raw_parts(
                    (info.dlpi_addr + ph.p_vaddr) as *const u8,
                    ph.p_memsz as usize,
                );
                if let Some(id) = gnu_build_id(notes) {
                    *out = Some(id.to_vec());
                    break;
                }
            }
        }
        1 // the executable was the first object: stop
    }
    let mut out: Option<Vec<u8>> = None;
    // SAFETY: the callback only reads what dl_iterate_phdr hands it and
    // writes `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(executable), &mut out as *mut _ as *mut libc::c_void) };
    out.filter(|id| !id.is_empty())
}

/// The descriptor of the NT_GNU_BUILD_ID note among `notes` (ELF notes:
/// namesz, descsz, type, then name and descriptor, each padded to 4 bytes).
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], at: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    while notes.len() >= 12 {
        let (namesz, descsz, typ) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let desc_at = 12usize.checked_add(namesz.checked_next_multiple_of(4)?)?;
        let desc_end = desc_at.checked_add(descsz)?;
        let name = notes.get(12..12usize.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_end)?;
        if typ == NT_GNU_BUILD_ID as usize && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_end.checked_next_multiple_of(4)?..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], typ: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        n.extend_from_slice(&typ.to_ne_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn build_id_note_is_found_among_others() {
        let mut notes = note(b"GNU\0", 1, &[0, 0, 0, 0, 3, 0, 0, 0]); // ABI tag
        notes.extend(note(b"GNU\0", 3, &[0xab; 20]));
        assert_eq!(gnu_build_id(&notes), Some(&[0xab; 20][..]));
        assert_eq!(gnu_build_id(&notes[..notes.len() - 4]), None);
        assert_eq!(gnu_build_id(&note(b"Go\0\0", 3, b"x")), None);
    }

    #[test]
    fn this_executable_has_a_stable_build_id() {
        let id = build_id().expect("the test binary is linked with a build-id");
        assert!(id.len() >= 8, "{id:?}");
        assert_eq!(build_id(), Some(id));
    }
}
