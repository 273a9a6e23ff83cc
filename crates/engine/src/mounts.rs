//! One spec mount entry, made inside the container's root. Targets are
//! looked up with openat2(RESOLVE_IN_ROOT) and mounted through their fd, so
//! a symlink or `..` planted in the rootfs cannot send a mount to the host.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Mount;

use crate::error::{Error, Result};
use crate::sys::{fd_path, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

/// What one word of `mounts[].options` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOption {
    /// A mount(2) flag set (true) or cleared (false).
    Flag(bool, MsFlags),
    /// A propagation change applied after the mount.
    Propagation(MsFlags),
    /// A recursive attribute applied with mount_setattr(AT_RECURSIVE).
    Recursive(bool, u64),
    /// `idmap` / `ridmap`: map the mount with the mount's own uid/gid mappings.
    Idmap { recursive: bool },
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// Parses one option; None means it is file-system data (`mode=755`, `size=…`).
pub fn parse_option(opt: &str) -> Option<MountOption> {
    use MountOption::*;
    Some(match opt {
        "ro" => Flag(true, MsFlags::MS_RDONLY),
        "rw" => Flag(false, MsFlags::MS_RDONLY),
        "nosuid" => Flag(true, MsFlags::MS_NOSUID),
        "suid" => Flag(false, MsFlags::MS_NOSUID),
        "nodev" => Flag(true, MsFlags::MS_NODEV),
        "dev" => Flag(false, MsFlags::MS_NODEV),
        "noexec" => Flag(true, MsFlags::MS_NOEXEC),
        "exec" => Flag(false, MsFlags::MS_NOEXEC),
        "sync" => Flag(true, MsFlags::MS_SYNCHRONOUS),
        "async" => Flag(false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Flag(true, MsFlags::MS_DIRSYNC),
        "remount" => Flag(true, MsFlags::MS_REMOUNT),
        "mand" => Flag(true, MsFlags::MS_MANDLOCK),
        "nomand" => Flag(false, MsFlags::MS_MANDLOCK),
        "atime" => Flag(false, MsFlags::MS_NOATIME),
        "noatime" => Flag(true, MsFlags::MS_NOATIME),
        "diratime" => Flag(false, MsFlags::MS_NODIRATIME),
        "nodiratime" => Flag(true, MsFlags::MS_NODIRATIME),
        "relatime" => Flag(true, MsFlags::MS_RELATIME),
        "norelatime" => Flag(false, MsFlags::MS_RELATIME),
        "strictatime" => Flag(true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => Flag(false, MsFlags::MS_STRICTATIME),
        "lazytime" => Flag(true, MsFlags::MS_LAZYTIME),
        "nolazytime" => Flag(false, MsFlags::MS_LAZYTIME),
        "silent" => Flag(true, MsFlags::MS_SILENT),
        "loud" => Flag(false, MsFlags::MS_SILENT),
        "bind" => Flag(true, MsFlags::MS_BIND),
        "rbind" => Flag(true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "private" => Propagation(MsFlags::MS_PRIVATE),
        "rprivate" => Propagation(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
        "shared" => Propagation(MsFlags::MS_SHARED),
        "rshared" => Propagation(MsFlags::MS_SHARED | MsFlags::MS_REC),
        "slave" => Propagation(MsFlags::MS_SLAVE),
        "rslave" => Propagation(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        "unbindable" => Propagation(MsFlags::MS_UNBINDABLE),
        "runbindable" => Propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
        "rro" => Recursive(true, MOUNT_ATTR_RDONLY),
        "rrw" => Recursive(false, MOUNT_ATTR_RDONLY),
        "rnosuid" => Recursive(true, MOUNT_ATTR_NOSUID),
        "rsuid" => Recursive(false, MOUNT_ATTR_NOSUID),
        "rnodev" => Recursive(true, MOUNT_ATTR_NODEV),
        "rdev" => Recursive(false, MOUNT_ATTR_NODEV),
        "rnoexec" => Recursive(true, MOUNT_ATTR_NOEXEC),
        "rexec" => Recursive(false, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => Recursive(true, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => Recursive(false, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => Recursive(true, MOUNT_ATTR_RELATIME),
        "rnorelatime" => Recursive(false, MOUNT_ATTR_RELATIME),
        "rnoatime" => Recursive(true, MOUNT_ATTR_NOATIME),
        "ratime" => Recursive(false, MOUNT_ATTR_NOATIME),
        "rstrictatime" => Recursive(true, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => Recursive(false, MOUNT_ATTR_STRICTATIME),
        "idmap" => Idmap { recursive: false },
        "ridmap" => Idmap { recursive: true },
        _ => return None,
    })
}

/// A mount entry's options split by what applies them.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub attr_set: u64,
    pub attr_clr: u64,
    pub idmap: Option<bool>,
    pub data: Vec<String>,
}

pub fn parse_options(opts: &[String]) -> ParsedOptions {
    let mut p = ParsedOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        attr_set: 0,
        attr_clr: 0,
        idmap: None,
        data: Vec::new(),
    };
    for o in opts {
        match parse_option(o) {
            Some(MountOption::Flag(true, f)) => p.flags |= f,
            Some(MountOption::Flag(false, f)) => p.flags &= !f,
            Some(MountOption::Propagation(f)) => p.propagation.push(f),
            Some(MountOption::Recursive(true, a)) => {
                if a == MOUNT_ATTR_RELATIME
                    || a == MOUNT_ATTR_NOATIME
                    || a == MOUNT_ATTR_STRICTATIME
                {
                    p.attr_clr |= MOUNT_ATTR__ATIME;
                }
                p.attr_set |= a;
            }
            Some(MountOption::Recursive(false, a)) => p.attr_clr |= a,
            Some(MountOption::Idmap { recursive }) => p.idmap = Some(recursive),
            None if o == "tmpcopyup" => {}
            None => p.data.push(o.clone()),
        }
    }
    p
}

/// The destination as a path relative to the container root (`/a/../b` ->
/// `b`); lexical only, the kernel still resolves it inside the root.
pub fn relative_dest(dest: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn open_in_root(root: BorrowedFd, rel: &Path, flags: i32) -> std::result::Result<OwnedFd, Errno> {
    let p = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root,
        p,
        flags | libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `rel` inside the root, creating missing directories (and the last
/// component as a file when `dir` is false) without ever leaving the root.
pub fn ensure_in_root(root: BorrowedFd, rel: &Path, dir: bool) -> Result<OwnedFd> {
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = prefix.clone();
        prefix.push(c);
        match open_in_root(root, &prefix, 0) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::sys_at(
                    format!("open {} in rootfs", prefix.display()),
                    e,
                ))
            }
        }
        let pfd = open_in_root(root, &parent, libc::O_DIRECTORY)
            .map_err(|e| Error::sys_at(format!("open {} in rootfs", parent.display()), e))?;
        let last = i + 1 == comps.len();
        let name = Path::new(c.as_os_str());
        let res = if last && !dir {
            nix::sys::stat::mknodat(
                Some(pfd.as_raw_fd()),
                name,
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o644),
                0,
            )
        } else {
            nix::sys::stat::mkdirat(Some(pfd.as_raw_fd()), name, Mode::from_bits_truncate(0o755))
        };
        match res {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error::sys_at(
                    format!("create {} in rootfs", prefix.display()),
                    e,
                ))
            }
        }
    }
    open_in_root(root, rel, 0).map_err(|e| {
        let hint = if e == Errno::ENOENT {
            " (a dangling symlink in the rootfs?)"
        } else {
            ""
        };
        Error::sys_at(format!("open mount target {}{hint}", rel.display()), e)
    })
}

fn mount_at(
    src: Option<&str>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), Errno> {
    mount(src, fd_path(target).as_str(), fstype, flags, data)
}

/// Flags that a bind remount must keep, because the kernel refuses to clear
/// them on a mount the container does not own (e.g. in a user namespace).
pub fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(st) = nix::sys::statvfs::fstatvfs(fd) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        ] {
            if f.contains(a) {
                out |= b;
            }
        }
    }
    out
}

/// Mounts one entry of `mounts[]` under the root fd (before pivot_root).
pub fn mount_entry(root: BorrowedFd, m: &Mount, ctx: &crate::rootfs::MountContext) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let rel = relative_dest(m.destination());
    let dest_name = m.destination().display().to_string();
    if typ == "cgroup" || typ == "cgroup2" {
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cgroup".into());
        return crate::rootfs::mount_cgroup(root, &rel, &source, &opts, ctx);
    }
    if typ == "proc" || typ == "sysfs" {
        // A rootfs that turns /proc or /sys into a symlink would move the
        // mount somewhere the container controls (CVE-2019-19921's class).
        match openat2(
            root,
            &rel,
            libc::O_PATH,
            RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS,
        ) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(Errno::ELOOP) => {
                return Err(Error::InvalidConfig(format!(
                    "{typ} mount destination {dest_name} is a symlink in the rootfs: refused"
                )))
            }
            Err(e) => return Err(Error::sys_at(format!("open {dest_name} in rootfs"), e)),
        }
    }
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    let is_dir = if is_bind {
        let src = source
            .as_deref()
            .ok_or_else(|| Error::InvalidConfig(format!("bind mount {dest_name} has no source")))?;
        std::fs::metadata(src)
            .map_err(|e| {
                Error::InvalidConfig(format!("bind mount source {src} of {dest_name}: {e}"))
            })?
            .is_dir()
    } else {
        true
    };
    let target = ensure_in_root(root, &rel, is_dir)?;
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let what = |e| {
        Error::sys_at(
            format!("mount {} on {dest_name}", source.as_deref().unwrap_or(typ)),
            e,
        )
    };
    if is_bind {
        let src = source.as_deref().unwrap_or_default();
        if let Some(recursive) = opts.idmap {
            crate::idmap::mount_idmapped(src, &target, m, recursive)?;
        } else {
            mount_at(
                Some(src),
                &target,
                None,
                MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
                None,
            )
            .map_err(what)?;
        }
        let remount_flags =
            opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !remount_flags.is_empty() {
            let top = open_in_root(root, &rel, 0).map_err(what)?;
            let flags = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | remount_flags
                | (locked_flags(&top) & !MsFlags::MS_RDONLY);
            mount_at(None, &top, None, flags, None).map_err(what)?;
        }
    } else {
        let src = source.as_deref().unwrap_or(typ);
        let flags = opts.flags & !MsFlags::MS_REMOUNT;
        match mount_at(Some(src), &target, Some(typ), flags, data) {
            Ok(()) => {}
            // sysfs cannot be mounted from a user namespace that does not own
            // the network namespace: fall back to the host's /sys, as runc does.
            Err(Errno::EPERM) if typ == "sysfs" => {
                mount_at(
                    Some("/sys"),
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(what)?;
                let top = open_in_root(root, &rel, 0).map_err(what)?;
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&top);
                mount_at(None, &top, None, flags, None).map_err(what)?;
            }
            Err(e) => return Err(what(e)),
        }
    }
    if !opts.propagation.is_empty() || opts.attr_set != 0 || opts.attr_clr != 0 {
        let top = open_in_root(root, &rel, 0).map_err(what)?;
        for p in &opts.propagation {
            mount_at(None, &top, None, *p, None).map_err(what)?;
        }
        if opts.attr_set != 0 || opts.attr_clr != 0 {
            crate::idmap::setattr(top.as_fd(), opts.attr_set, opts.attr_clr, 0, true)
                .map_err(|e| Error::sys_at(format!("mount_setattr {dest_name}"), e))?;
        }
    }
    Ok(())
}

/// Bind-mounts `src_fd`'s object onto `rel` inside the root.
pub fn bind_fd_in_root(root: BorrowedFd, src: &OwnedFd, rel: &Path, dir: bool) -> Result<()> {
    let target = ensure_in_root(root, rel, dir)?;
    mount_at(
        Some(fd_path(src).as_str()),
        &target,
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| Error::sys_at(format!("bind mount onto /{}", rel.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_by_kind() {
        let o = parse_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rslave".into(),
            "rro".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.attr_set, MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn later_option_wins() {
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        let o = parse_options(&["rbind".into()]);
        assert!(o.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    }

    #[test]
    fn destination_is_lexically_confined() {
        assert_eq!(
            relative_dest(Path::new("/a/../../b/./c")),
            PathBuf::from("b/c")
        );
        assert_eq!(relative_dest(Path::new("../../etc")), PathBuf::from("etc"));
    }
}
