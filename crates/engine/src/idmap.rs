//! ID-mapped bind mounts (mount_setattr with MOUNT_ATTR_IDMAP) and the
//! mount_setattr wrapper the recursive mount options use.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxIdMapping, Mount};

use crate::error::{Error, Result};
use crate::sys::{self, Forked};

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const AT_RECURSIVE: u32 = 0x8000;
const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const MOUNT_ATTR_IDMAP: u64 = 0x100000;

pub fn setattr(
    fd: BorrowedFd,
    set: u64,
    clr: u64,
    userns: u64,
    recursive: bool,
) -> std::result::Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: userns,
    };
    let flags = libc::AT_EMPTY_PATH as u32 | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: valid fd, empty C string, mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn open_tree(path: &str, recursive: bool) -> std::result::Result<OwnedFd, Errno> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: valid C string; returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: new fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn move_mount(from: BorrowedFd, to: BorrowedFd) -> std::result::Result<(), Errno> {
    // SAFETY: two valid fds with empty paths.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub fn map_lines(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace holding the given uid_map/gid_map lines, kept alive only as an fd: a
/// child is cloned into a new user namespace, its maps written, its
/// namespace opened, and the child killed.
pub fn userns_with_maps(uid_map: String, gid_map: String) -> Result<OwnedFd> {
    match sys::clone3(libc::CLONE_NEWUSER as u64, None)
        .map_err(|e| Error::Sys("clone3 (idmap user namespace)", e))?
    {
        Forked::Child => loop {
            // SAFETY: pause has no arguments; the parent kills us.
            unsafe { libc::pause() };
        },
        Forked::Parent { pid, pidfd } => {
            // The pid clone3 returned is in our pid namespace, but /proc may
            // still be the host's (we are before pivot_root): ask the
            // pidfd which pid that /proc knows the child by.
            let pid = pid_in_proc(&pidfd).unwrap_or(pid);
            let res = (|| {
                let w = |file: &str, data: String| {
                    let p = format!("/proc/{pid}/{file}");
                    std::fs::write(&p, data).map_err(|e| Error::io("write", p, e))
                };
                w("uid_map", uid_map)?;
                w("gid_map", gid_map)?;
                let p = format!("/proc/{pid}/ns/user");
                std::fs::File::open(&p)
                    .map(OwnedFd::from)
                    .map_err(|e| Error::io("open", p, e))
            })();
            let _ = sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), libc::SIGKILL);
            let _ = sys::pidfd_wait(std::os::fd::AsFd::as_fd(&pidfd));
            res
        }
    }
}

/// The "Pid:" line of /proc/self/fdinfo/<pidfd>: the pid as the pid
/// namespace of the mounted /proc sees it.
fn pid_in_proc(pidfd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p > 0)
}

/// Bind-mounts `src` onto `target` with the mount's uid/gid mappings applied.
pub fn mount_idmapped(src: &str, target: &OwnedFd, m: &Mount, recursive: bool) -> Result<()> {
    let (Some(uid), Some(gid)) = (m.uid_mappings(), m.gid_mappings()) else {
        return Err(Error::InvalidConfig(format!(
            "mount {}: idmap needs uidMappings and gidMappings",
            m.destination().display()
        )));
    };
    // A mount mapping says "hostID on disk shows as containerID"; the kernel
    // reads an idmapped mount's user namespace the other way round (on-disk
    // id as the namespace's id), so the namespace gets the columns swapped.
    let swapped = |maps: &[LinuxIdMapping]| -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.host_id(), m.container_id(), m.size()))
            .collect()
    };
    let ns = userns_with_maps(swapped(uid), swapped(gid))?;
    let what = |op: &str, e| {
        Error::sys_at(
            format!("{op} for idmapped mount {}", m.destination().display()),
            e,
        )
    };
    let tree = open_tree(src, recursive).map_err(|e| what("open_tree", e))?;
    setattr(
        std::os::fd::AsFd::as_fd(&tree),
        MOUNT_ATTR_IDMAP,
        0,
        ns.as_raw_fd() as u64,
        recursive,
    )
    .map_err(|e| what("mount_setattr", e))?;
    move_mount(
        std::os::fd::AsFd::as_fd(&tree),
        std::os::fd::AsFd::as_fd(target),
    )
    .map_err(|e| what("move_mount", e))
}
