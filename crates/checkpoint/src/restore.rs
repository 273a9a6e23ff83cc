//! `restore`: a new container from an image directory. The engine makes
//! the state directory, cgroup and saved spec as for `create`; CRIU,
//! running inside that cgroup, brings the processes back as our children
//! (rst_sibling); the restored init becomes the container's init.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use cove_engine::container::CreateOptions;
use cove_engine::restore::{self as engine_restore, Restoring};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::LinuxNamespaceType;

use crate::checkpoint::{CGROUP_TREE_FILE, DESCRIPTORS_FILE};
use crate::error::{Error, Result};
use crate::layout;
use crate::rpc::{self, CgMode, Opts, ReqType};
use crate::swrk::{Stdio3, Worker};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub criu: String,
    /// id, bundle, state root, console socket, pid file, cgroup driver.
    pub create: CreateOptions,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: String,
    pub empty_ns: u32,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    /// More of CRIU's `--external` keys, e.g. `veth[eth0]:vc101`: the
    /// restored veth's other end named and made in our network namespace.
    pub external: Vec<String>,
    /// Make the cgroup subtree the dump recorded (`cgroup_tree` at
    /// checkpoint) below the new container's cgroup before CRIU runs.
    pub cgroup_tree: bool,
}

pub struct Restored {
    /// The restored init, a child of the calling process.
    pub pid: i32,
}

/// The rootfs bound onto `<state dir>/criu-root` while CRIU restores: CRIU
/// wants a mount point whose parent is not overmounted. Undone on drop.
struct RootBind(PathBuf);

impl RootBind {
    fn new(rootfs: &Path, at: PathBuf) -> Result<RootBind> {
        std::fs::create_dir(&at).map_err(|e| Error::io("mkdir", &at, e))?;
        if let Err(e) = mount(
            Some(rootfs),
            &at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&at);
            return Err(Error::Sys("bind mount of the rootfs for criu", e));
        }
        Ok(RootBind(at))
    }
}

impl Drop for RootBind {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The stdio names runc's checkpoint recorded (`descriptors.json`).
fn read_descriptors(images: &Path) -> Result<Vec<String>> {
    let p = images.join(DESCRIPTORS_FILE);
    let b = std::fs::read(&p).map_err(|e| {
        Error::Invalid(format!(
            "{}: {e} (is {} a checkpoint image directory?)",
            p.display(),
            images.display()
        ))
    })?;
    serde_json::from_slice(&b).map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
}

pub fn restore(o: &RestoreOptions) -> Result<Restored> {
    let mode = CgMode::parse(&o.manage_cgroups_mode).ok_or_else(|| {
        Error::Invalid(format!(
            "invalid --manage-cgroups-mode {:?} (soft, full, strict or ignore)",
            o.manage_cgroups_mode
        ))
    })?;
    let descriptors = read_descriptors(&o.image_path)?;
    crate::check_available(&o.criu).map_err(|e| match e {
        Error::Unavailable(m) => Error::Unavailable(format!("{m}; nothing was restored")),
        e => e,
    })?;
    // Every fd for CRIU is close-on-exec here (hooks run while CRIU does:
    // they must not get them); Worker::spawn hands them to CRIU alone.
    let images: OwnedFd = std::fs::File::open(&o.image_path)
        .map_err(|e| Error::io("open", &o.image_path, e))?
        .into();
    let mut log_dir = o.image_path.clone();
    let work = match &o.work_path {
        Some(w) => {
            std::fs::create_dir_all(w).map_err(|e| Error::io("mkdir", w, e))?;
            log_dir = w.clone();
            let f = std::fs::File::open(w).map_err(|e| Error::io("open", w, e))?;
            Some(OwnedFd::from(f))
        }
        None => None,
    };

    let r = engine_restore::begin(&o.create)?;
    let spec = r.spec().clone();
    let root = RootBind::new(r.rootfs(), r.state_dir().join("criu-root"))?;
    prepare_mountpoints(&r)?;
    if o.cgroup_tree {
        make_cgroup_tree(&o.image_path, r.cgroup_paths())?;
    }
    let mut opts = Opts {
        images_dir_fd: images.as_raw_fd(),
        evasive_devices: true,
        log_level: Some(4),
        log_file: Some("restore.log".into()),
        rst_sibling: true,
        root: Some(root.0.to_string_lossy().into_owned()),
        manage_cgroups: true,
        manage_cgroups_mode: Some(mode),
        notify_scripts: true,
        shell_job: o.shell_job,
        ext_unix_sk: o.ext_unix_sk,
        tcp_established: o.tcp_established,
        file_locks: o.file_locks,
        empty_ns: o.empty_ns,
        orphan_pts_master: true,
        auto_dedup: o.auto_dedup,
        lazy_pages: o.lazy_pages,
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        config_file: layout::config_file(&spec),
        external: o.external.clone(),
        ..Default::default()
    };
    // Namespaces joined by path: net and pid are handed to CRIU under the
    // keys the dump recorded them with; the others CRIU joins itself.
    let mut ns_fds: Vec<OwnedFd> = Vec::new();
    for (kind, path) in layout::joined_namespaces(&spec) {
        match kind {
            LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                let f = std::fs::File::open(&path).map_err(|e| {
                    Error::Invalid(format!("namespace {} to restore into: {e}", path.display()))
                })?;
                let fd = OwnedFd::from(f);
                opts.inherit_fd.push((layout::ns_key(kind), fd.as_raw_fd()));
                ns_fds.push(fd);
            }
            LinuxNamespaceType::Cgroup => {
                return Err(Error::Invalid(
                    "CRIU cannot restore into a cgroup namespace joined by path".into(),
                ))
            }
            _ => opts.join_ns.push((
                layout::ns_name(kind).into(),
                path.to_string_lossy().into_owned(),
            )),
        }
    }
    for (dest, src) in layout::bind_mounts(&spec)
        .into_iter()
        .chain(layout::cgroup_binds(&spec, r.cgroup_paths()))
    {
        opts.ext_mnt.push((dest, src));
    }
    if !layout::masked_paths(&spec).is_empty() {
        opts.ext_mnt.push(("/dev/null".into(), "/dev/null".into()));
    }
    for dev in layout::device_paths(&spec) {
        opts.ext_mnt.push((dev.clone(), dev));
    }
    // The init's stdio pipes are gone with the old runtime: CRIU gives the
    // restored tasks ours instead (CRIU's fds 0-2 are our stdio).
    for (i, name) in descriptors.iter().enumerate() {
        if name.contains("pipe:") {
            opts.inherit_fd.push((name.clone(), i as i32));
        }
    }

    let mut pass = vec![images.as_raw_fd()];
    pass.extend(work.as_ref().map(|w| w.as_raw_fd()));
    pass.extend(ns_fds.iter().map(|f| f.as_raw_fd()));
    let mut w = Worker::spawn(&o.criu, Stdio3::Ours, &pass)?;
    r.add_task(w.pid())?;
    opts.cg_root = cgroup_roots(w.pid())?;
    let mut restored = 0;
    let hooks = spec.hooks().clone();
    let console = o.create.console_socket.clone();
    let mut on_notify = |script: &str, pid: i32, fd: Option<OwnedFd>| -> Result<()> {
        match script {
            "setup-namespaces" => {
                let st = r.hook_state(pid);
                let h = hooks.as_ref();
                cove_engine::hooks::run(h.and_then(|h| h.prestart().as_ref()), &st)?;
                cove_engine::hooks::run(h.and_then(|h| h.create_runtime().as_ref()), &st)?;
            }
            "orphan-pts-master" => {
                let (Some(master), Some(sock)) = (fd, console.as_deref()) else {
                    return Err(Error::Protocol(
                        "a restored terminal needs --console-socket".into(),
                    ));
                };
                let sock = cove_engine::console::connect(sock)?;
                cove_engine::console::send_master(&sock, &master)?;
            }
            "post-restore" => restored = pid,
            _ => {}
        }
        Ok(())
    };
    let log = log_dir.join("restore.log");
    let resp = w.call(
        ReqType::Restore,
        &rpc::request(ReqType::Restore, Some(&opts)),
        Some(&log),
        &mut on_notify,
    )?;
    w.finish(false)?;
    drop(root);
    drop(ns_fds);
    let pid = resp.restored_pid.unwrap_or(restored);
    if pid <= 0 {
        return Err(Error::Protocol("restore answered without a pid".into()));
    }
    r.commit(pid)?;
    Ok(Restored { pid })
}

/// Mount points that bind mounts need and the rootfs lacks (a bundle may be
/// fresh): made inside the rootfs as `create` makes them. Those on a tmpfs
/// are left to CRIU, which restores the tmpfs with its content. A mount
/// point inside another bind mount belongs to that mount's source, where
/// CRIU looks for it once the outer one is mounted (runc issue 2748): it
/// is made there, below the source and never outside it.
fn prepare_mountpoints(r: &Restoring) -> Result<()> {
    let spec = r.spec();
    let tmpfs = layout::tmpfs_mounts(spec);
    let under =
        |dest: &str, top: &str| dest.starts_with(&format!("{}/", top.trim_end_matches('/')));
    let rootfd: OwnedFd = std::fs::File::open(r.rootfs())
        .map_err(|e| Error::io("open", r.rootfs(), e))?
        .into();
    let binds = layout::bind_mounts(spec);
    for (dest, src) in &binds {
        if tmpfs.iter().any(|t| under(dest, t)) {
            continue;
        }
        let dir = std::fs::metadata(src).map(|m| m.is_dir()).unwrap_or(true);
        // The innermost other bind mount this one sits in, if any.
        let outer = binds
            .iter()
            .filter(|(d, s)| under(dest, d) && std::fs::metadata(s).is_ok_and(|m| m.is_dir()))
            .max_by_key(|(d, _)| d.len());
        let (base, rel) = match outer {
            Some((d, s)) => {
                let f = std::fs::File::open(s).map_err(|e| Error::io("open", s, e))?;
                (
                    OwnedFd::from(f),
                    dest[d.trim_end_matches('/').len()..].to_string(),
                )
            }
            None => (
                rootfd
                    .try_clone()
                    .map_err(|e| Error::io("dup", r.rootfs(), e))?,
                dest.clone(),
            ),
        };
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            continue;
        }
        cove_engine::mounts::ensure_in_root(base.as_fd(), rel, dir)?;
    }
    Ok(())
}

/// (controller, path) of each cgroup CRIU runs in, from /proc/PID/cgroup:
/// CRIU restores the tasks' cgroups below these.
fn cgroup_roots(pid: i32) -> Result<Vec<(String, String)>> {
    let p = format!("/proc/{pid}/cgroup");
    let s = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    Ok(s.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect())
}

/// The directories the dump recorded below the container's cgroup, made
/// again (parents first) below the new one; none when the dump has none.
/// They go with the container's cgroup when it is deleted.
fn make_cgroup_tree(images: &Path, cg: &[(String, PathBuf)]) -> Result<()> {
    let p = images.join(CGROUP_TREE_FILE);
    let dirs: Vec<String> = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", &p, e)),
    };
    for rel in &dirs {
        let rel = Path::new(rel);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::Invalid(format!(
                "{}: bad entry {}",
                p.display(),
                rel.display()
            )));
        }
        for (_, base) in cg {
            let d = base.join(rel);
            match std::fs::create_dir(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::io("mkdir", &d, e))
                }
                _ => {}
            }
        }
    }
    Ok(())
}
