//! The container's root filesystem, in the order of the runtime-spec:
//! propagation, the rootfs bind, mounts, /dev, sysctls, readonly and masked
//! paths, pivot_root, a read-only root. Every path inside the rootfs is
//! reached through the root fd (see mounts.rs), never by string.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, major, minor, SFlag};
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::mounts::{self, ensure_in_root, locked_flags, relative_dest, ParsedOptions};
use crate::sys::{fd_path, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

/// What mounting needs to know beyond the spec.
pub struct MountContext {
    /// (controller, host directory) of the container's cgroups.
    pub cgroup_paths: Vec<(String, PathBuf)>,
    pub in_userns: bool,
}

pub fn propagation_flags(p: Option<&str>) -> Result<MsFlags> {
    Ok(match p.unwrap_or("") {
        "" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::InvalidConfig(format!(
                "unknown rootfsPropagation {other:?}"
            )))
        }
    })
}

/// Cuts our mount namespace off from the host's propagation and makes the
/// rootfs a mount of its own; returns an O_PATH fd on it.
pub fn enter(rootfs: &Path, propagation: Option<&str>) -> Result<OwnedFd> {
    let flags = propagation_flags(propagation)?;
    // Mounts we make must never propagate to the host, whatever is asked for
    // the container's root later: start from slave.
    let first = if flags.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        flags | MsFlags::MS_REC
    };
    mount(None::<&str>, "/", None::<&str>, first, None::<&str>)
        .map_err(|e| Error::Sys("make / private to the container", e))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys_at(format!("bind mount rootfs {}", rootfs.display()), e))?;
    let fd = openat2(
        std::fs::File::open("/")
            .map_err(|e| Error::io("open", "/", e))?
            .as_fd(),
        rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| Error::sys_at(format!("open rootfs {}", rootfs.display()), e))?;
    Ok(fd)
}

pub fn mount_all(root: BorrowedFd, spec: &Spec, ctx: &MountContext) -> Result<()> {
    let mut dev_bound = false;
    for m in spec.mounts().iter().flatten() {
        mounts::mount_entry(root, m, ctx)?;
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if relative_dest(m.destination()) == Path::new("dev") && is_bind {
            dev_bound = true;
        }
    }
    if !dev_bound {
        let linux = spec.linux().as_ref();
        let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
        crate::devices::create_nodes(root, &devs, ctx.in_userns)?;
        crate::devices::create_links(root)?;
    }
    Ok(())
}

/// The cgroup mount: cgroup2 in a private cgroup namespace on a unified
/// host; otherwise a tmpfs with the container's own cgroup directories bound
/// in, one per hierarchy, the way runc shows them on v1 and hybrid hosts.
pub fn mount_cgroup(
    root: BorrowedFd,
    rel: &Path,
    source: &str,
    opts: &ParsedOptions,
    ctx: &MountContext,
) -> Result<()> {
    let target = ensure_in_root(root, rel, true)?;
    let what = |e| Error::sys_at(format!("mount cgroup on /{}", rel.display()), e);
    let unified = cove_cgroups::host_mode() == cove_cgroups::HostMode::Unified;
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if unified {
        // As runc: a cgroup2 mount, named by the spec's source; with a
        // cgroup namespace it shows the container's subtree as its root,
        // without one the whole hierarchy (read-only by the spec's options).
        return mount(
            Some(source),
            fd_path(&target).as_str(),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .map_err(what);
    }
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(what)?;
    // Bind the hierarchies in the host's mount order, as runc shows them.
    let order = host_cgroup_mount_order();
    let mut paths: Vec<&(String, PathBuf)> = ctx.cgroup_paths.iter().collect();
    paths.sort_by_key(|(_, dir)| {
        hierarchy_dir(dir)
            .and_then(|h| order.iter().position(|o| *o == h))
            .unwrap_or(usize::MAX)
    });
    for (controller, dir) in paths {
        // The unified leaf of a hybrid host is not shown, as runc 1.1 does.
        let Some(hier) = hierarchy_dir(dir) else {
            continue;
        };
        if controller.is_empty() || hier == "unified" {
            continue;
        }
        let sub = rel.join(&hier);
        let t = ensure_in_root(root, &sub, true)?;
        mount(
            Some(dir.as_path()),
            fd_path(&t).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(what)?;
        let top = ensure_in_root(root, &sub, true)?;
        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&top);
        mount(
            None::<&str>,
            fd_path(&top).as_str(),
            None::<&str>,
            f,
            None::<&str>,
        )
        .map_err(what)?;
        // Co-mounted controllers ("cpu,cpuacct") get a link per name.
        if hier.contains(',') {
            let parent = ensure_in_root(root, rel, true)?;
            for name in hier.split(',') {
                let _ = nix::unistd::symlinkat(hier.as_str(), Some(parent.as_raw_fd()), name);
            }
        }
    }
    // runc leaves the tmpfs root 0555 and read-write (it does not remount
    // it read-only even with "ro"): root without CAP_DAC_OVERRIDE cannot add
    // entries, and what the container sees matches runc.
    let top = ensure_in_root(root, rel, true)?;
    nix::sys::stat::fchmodat(
        None,
        fd_path(&top).as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o555),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| Error::sys_at(format!("chmod /{}", rel.display()), e))?;
    Ok(())
}

/// Names of the cgroup hierarchies under /sys/fs/cgroup in mount order, as
/// the cgroups crate read them for the runtime (the init is its copy).
fn host_cgroup_mount_order() -> Vec<String> {
    cove_cgroups::mount_order()
        .iter()
        .filter_map(|mp| hierarchy_dir(mp))
        .collect()
}

/// "/sys/fs/cgroup/cpu,cpuacct/a/b" -> "cpu,cpuacct".
fn hierarchy_dir(dir: &Path) -> Option<String> {
    let rest = dir.strip_prefix("/sys/fs/cgroup").ok()?;
    Some(
        rest.components()
            .next()?
            .as_os_str()
            .to_string_lossy()
            .into_owned(),
    )
}

/// linux.sysctl, written through the container's /proc.
pub fn write_sysctls(root: BorrowedFd, spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (k, v) in sysctl {
        let rel = PathBuf::from("proc/sys").join(k.replace('.', "/"));
        let fd = openat2(
            root,
            &rel,
            libc::O_WRONLY | libc::O_TRUNC,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| Error::sys_at(format!("open sysctl {k}"), e))?;
        nix::unistd::write(&fd, v.as_bytes())
            .map_err(|e| Error::sys_at(format!("write sysctl {k}={v}"), e))?;
    }
    Ok(())
}

fn open_existing(root: BorrowedFd, path: &str) -> Result<Option<OwnedFd>> {
    match openat2(
        root,
        &relative_dest(Path::new(path)),
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys_at(format!("open {path} in rootfs"), e)),
    }
}

pub fn readonly_paths(root: BorrowedFd, paths: &[String]) -> Result<()> {
    for p in paths {
        let Some(fd) = open_existing(root, p)? else {
            continue;
        };
        let what = |e| Error::sys_at(format!("make {p} read-only"), e);
        mount(
            Some(fd_path(&fd).as_str()),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(what)?;
        let Some(top) = open_existing(root, p)? else {
            continue;
        };
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&top);
        mount(
            None::<&str>,
            fd_path(&top).as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(what)?;
    }
    Ok(())
}

/// Masks paths: an empty read-only tmpfs over directories, the container's
/// /dev/null over files. The /dev/null used is checked to really be the
/// null device, so a rootfs that plants a symlink or a file there cannot
/// turn "masking" into exposing something writable (CVE-2025-31133).
pub fn masked_paths(root: BorrowedFd, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = openat2(
        root,
        Path::new("dev/null"),
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| Error::sys_at("open /dev/null in the container", e))?;
    let st = fstat(null.as_raw_fd()).map_err(|e| Error::Sys("fstat /dev/null", e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || major(st.st_rdev) != 1
        || minor(st.st_rdev) != 3
    {
        return Err(Error::Other("the container's /dev/null is not the null device (1:3); refusing to mask paths with it".into()));
    }
    for p in paths {
        let Some(fd) = open_existing(root, p)? else {
            continue;
        };
        let st = fstat(fd.as_raw_fd()).map_err(|e| Error::sys_at(format!("fstat {p}"), e))?;
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let r = if is_dir {
            mount(
                Some("tmpfs"),
                fd_path(&fd).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some(fd_path(&null).as_str()),
                fd_path(&fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.map_err(|e| Error::sys_at(format!("mask {p}"), e))?;
    }
    Ok(())
}

/// pivot_root into the rootfs and detach the old root; with `no_pivot`,
/// move the rootfs over / and chroot (for ramdisk roots where pivot_root
/// is impossible).
pub fn pivot(root: OwnedFd, no_pivot: bool) -> Result<()> {
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::Sys("chdir to rootfs", e))?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| Error::Sys("move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| Error::Sys("chroot", e))?;
    } else {
        crate::sys::pivot_root(".", ".").map_err(|e| Error::Sys("pivot_root", e))?;
        // The old root is now stacked under "."; make sure unmounting it
        // cannot propagate anywhere, then drop it.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::Sys("make old root slave", e))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::Sys("detach old root", e))?;
    }
    nix::unistd::chdir("/").map_err(|e| Error::Sys("chdir /", e))?;
    Ok(())
}

/// After pivot: a read-only root and the requested root propagation.
pub fn finalize(spec: &Spec) -> Result<()> {
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    if readonly {
        let fd = std::fs::File::open("/").map_err(|e| Error::io("open", "/", e))?;
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&fd.into());
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| Error::Sys("remount root read-only", e))?;
    }
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        let flags = propagation_flags(Some(p))?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| Error::Sys("set rootfs propagation", e))?;
    }
    Ok(())
}
