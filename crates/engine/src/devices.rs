//! /dev inside the container: the default device nodes, linux.devices,
//! the /dev/fd and std* links, /dev/ptmx, and the device cgroup rules.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use crate::error::{Error, Result};
use crate::mounts::{ensure_in_root, relative_dest};

/// (path, type, major, minor): what every container gets, as runc gives it.
const DEFAULT_DEVICES: [(&str, char, i64, i64); 6] = [
    ("/dev/null", 'c', 1, 3),
    ("/dev/zero", 'c', 1, 5),
    ("/dev/full", 'c', 1, 7),
    ("/dev/tty", 'c', 5, 0),
    ("/dev/urandom", 'c', 1, 9),
    ("/dev/random", 'c', 1, 8),
];

struct Node {
    path: PathBuf,
    kind: char,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn nodes(spec_devices: &[LinuxDevice]) -> Vec<Node> {
    let mut out: Vec<Node> = DEFAULT_DEVICES
        .iter()
        .filter(|d| !spec_devices.iter().any(|s| s.path() == Path::new(d.0)))
        .map(|&(p, kind, major, minor)| Node {
            path: p.into(),
            kind,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in spec_devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            _ => 'c',
        };
        out.push(Node {
            path: d.path().clone(),
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    out
}

/// Creates the device nodes under the root fd. In a user namespace mknod is
/// not allowed, so the host's node is bind-mounted instead (as runc does).
pub fn create_nodes(root: BorrowedFd, spec_devices: &[LinuxDevice], in_userns: bool) -> Result<()> {
    for n in nodes(spec_devices) {
        let rel = relative_dest(&n.path);
        if in_userns {
            // O_PATH: opening /dev/tty for real fails without a controlling terminal.
            let host = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(&n.path)
                .map_err(|e| Error::io("open device", &n.path, e))?;
            let target = ensure_in_root(root, &rel, false)?;
            nix::mount::mount(
                Some(crate::sys::fd_path(&host).as_str()),
                crate::sys::fd_path(&target).as_str(),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::sys_at(format!("bind mount device {}", n.path.display()), e))?;
            continue;
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let pfd = ensure_in_root(root, parent, true)?;
        let name = rel
            .file_name()
            .ok_or_else(|| Error::InvalidConfig(format!("bad device path {}", n.path.display())))?;
        let kind = match n.kind {
            'b' => SFlag::S_IFBLK,
            'p' => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let old = nix::sys::stat::umask(Mode::empty());
        let r = nix::sys::stat::mknodat(
            Some(pfd.as_raw_fd()),
            name,
            kind,
            Mode::from_bits_truncate(n.mode),
            makedev(n.major as u64, n.minor as u64),
        );
        nix::sys::stat::umask(old);
        match r {
            Ok(()) => {}
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(Error::sys_at(format!("mknod {}", n.path.display()), e)),
        }
        nix::unistd::fchownat(
            Some(pfd.as_raw_fd()),
            name,
            Some(nix::unistd::Uid::from_raw(n.uid)),
            Some(nix::unistd::Gid::from_raw(n.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::sys_at(format!("chown {}", n.path.display()), e))?;
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx and (with /proc/kcore) /dev/core links.
pub fn create_links(root: BorrowedFd) -> Result<()> {
    let mut links = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ]
    .to_vec();
    // runc adds /dev/core where the kernel has /proc/kcore.
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev = ensure_in_root(root, Path::new("dev"), true)?;
    for (target, name) in links {
        if name == "ptmx" {
            // A node left in the rootfs would shadow the devpts instance.
            let _ = nix::unistd::unlinkat(
                Some(dev.as_raw_fd()),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        match nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys_at(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access.to_string());
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().unwrap_or_default()
}

/// The device cgroup rules: the spec's rules, then the devices every
/// container may use (runc's list), then linux.devices.
pub fn cgroup_rules(
    spec_rules: &[LinuxDeviceCgroup],
    spec_devices: &[LinuxDevice],
) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut out = spec_rules.to_vec();
    out.push(rule(true, Some(C), None, None, "m"));
    out.push(rule(true, Some(B), None, None, "m"));
    for (_, _, major, minor) in DEFAULT_DEVICES {
        out.push(rule(true, Some(C), Some(major), Some(minor), "rwm"));
    }
    out.push(rule(true, Some(C), Some(136), None, "rwm")); // /dev/pts/*
    out.push(rule(true, Some(C), Some(5), Some(2), "rwm")); // /dev/ptmx
    out.push(rule(true, Some(C), Some(10), Some(200), "rwm")); // /dev/net/tun
                                                               // No c 5:1 (/dev/console), as runc: a terminal's console is a pts.
    for d in spec_devices {
        let t = match d.typ() {
            LinuxDeviceType::B => B,
            _ => C,
        };
        out.push(rule(true, Some(t), Some(d.major()), Some(d.minor()), "rwm"));
    }
    out
}
