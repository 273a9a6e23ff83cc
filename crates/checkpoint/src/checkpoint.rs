//! `checkpoint`: dump (or pre-dump) a running container's process tree
//! into an image directory with the options runc sends for the same flags.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use cove_engine::container;
use cove_engine::state::Status;
use oci_spec::runtime::LinuxNamespaceType;

use crate::error::{Error, Result};
use crate::layout;
use crate::rpc::{self, CgMode, Opts, ReqType};
use crate::stats::{self, DumpStats};
use crate::swrk::{Stdio3, Worker};

/// The file runc keeps the init's stdio names in (`pipe:[123]`, `/dev/null`),
/// so a restore can hand new pipes to the restored tasks.
pub const DESCRIPTORS_FILE: &str = "descriptors.json";

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub criu: String,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    /// Relative to `image_path`, as runc requires.
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub tcp_skip_in_flight: bool,
    pub link_remap: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: String,
    /// CLONE_NEW* bits of namespaces CRIU makes empty instead of restoring.
    pub empty_ns: u32,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub page_server: Option<(String, i32)>,
    /// Pages go over this socket, already connected to a page server
    /// (`criu page-server --ps-socket` at its other end), instead of to an
    /// address: the caller chooses the transport (an ssh session, say).
    pub page_server_fd: Option<RawFd>,
    /// Gets a 0 byte once the lazy-pages server is ready.
    pub status_fd: Option<i32>,
    /// Filesystems CRIU may dump though it does not know them (hugetlbfs).
    pub enable_fs: Vec<String>,
    /// Directories (or files), absolute in the container's root, where
    /// CRIU looks for the path of an inotify watch it cannot reopen by
    /// its file handle (an overlayfs root cannot decode handles), before
    /// its own fixed list (/etc, /var/log, ...). Missing ones are skipped.
    pub irmap_scan_paths: Vec<String>,
    /// Record the container's cgroup subtree (every directory below its
    /// cgroup) in the images, for [`crate::RestoreOptions::cgroup_tree`].
    pub cgroup_tree: bool,
}

/// The directories below the container's cgroup at dump time, relative.
pub const CGROUP_TREE_FILE: &str = "cgroup-tree.json";

pub struct Checkpointed {
    pub images: PathBuf,
    /// CRIU's statistics of this dump (frozen time etc.), if it wrote them.
    pub stats: Option<DumpStats>,
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("mkdir", path, e))
}

/// A directory this command made, removed on drop unless kept.
struct NewDir(Option<PathBuf>);

impl NewDir {
    fn make(path: &Path) -> Result<NewDir> {
        if path.exists() {
            return Ok(NewDir(None));
        }
        mkdir(path)?;
        Ok(NewDir(Some(path.to_path_buf())))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// A directory fd for CRIU (close-on-exec here; [`Worker::spawn`] hands it
/// to CRIU alone).
fn open_dir(path: &Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    Ok(f.into())
}

/// runc's rules: relative, and an existing directory under the image path.
fn check_parent(image_path: &Path, parent: &Path) -> Result<()> {
    if parent.is_absolute() {
        return Err(Error::Invalid("--parent-path must be relative".into()));
    }
    let real = image_path.join(parent);
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Invalid(format!(
            "invalid --parent-path: {} is not a directory",
            real.display()
        ))),
        Err(e) => Err(Error::Invalid(format!(
            "invalid --parent-path: {}: {e}",
            real.display()
        ))),
    }
}

pub fn checkpoint(root: &Path, id: &str, o: &CheckpointOptions) -> Result<Checkpointed> {
    let mode = CgMode::parse(&o.manage_cgroups_mode).ok_or_else(|| {
        Error::Invalid(format!(
            "invalid --manage-cgroups-mode {:?} (soft, full, strict or ignore)",
            o.manage_cgroups_mode
        ))
    })?;
    let c = container::load(root, id)?;
    if matches!(c.status, Status::Created | Status::Stopped) {
        return Err(Error::Invalid(format!(
            "container {id} cannot be checkpointed in {} state",
            c.status
        )));
    }
    // The image directory exists before the parent is looked up (a parent
    // named from it, "../pre", goes through it), as with runc; a refusal
    // before CRIU runs removes it again if we made it.
    let made = NewDir::make(&o.image_path)?;
    if let Some(p) = &o.parent_path {
        check_parent(&o.image_path, p)?;
    }
    if let Some(fd) = o.status_fd {
        // SAFETY: F_GETFL only reads the flags of the fd number given.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if fl < 0 || fl & (libc::O_WRONLY | libc::O_RDWR) == 0 {
            return Err(Error::Invalid(format!(
                "invalid --status-fd {fd}: not an open, writable fd"
            )));
        }
    }
    let spec = container::saved_spec(&c.dir)?;
    crate::check_available(&o.criu).map_err(|e| match e {
        Error::Unavailable(m) => Error::Unavailable(format!(
            "{m}; nothing was checkpointed and container {id} is still running"
        )),
        e => e,
    })?;

    let images = open_dir(&o.image_path)?;
    // From here CRIU's log is in it: kept, whatever happens.
    made.keep();
    let mut log_dir = o.image_path.clone();
    let work = match &o.work_path {
        Some(w) => {
            mkdir(w)?;
            log_dir = w.clone();
            Some(open_dir(w)?)
        }
        None => None,
    };
    let pid = c.saved.pid;
    let mut opts = Opts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(pid),
        log_level: Some(4),
        log_file: Some("dump.log".into()),
        root: Some(c.saved.rootfs.to_string_lossy().into_owned()),
        manage_cgroups: true,
        manage_cgroups_mode: Some(mode),
        notify_scripts: true,
        shell_job: o.shell_job,
        leave_running: o.leave_running,
        tcp_established: o.tcp_established,
        tcp_skip_in_flight: o.tcp_skip_in_flight,
        link_remap: o.link_remap,
        ext_unix_sk: o.ext_unix_sk,
        file_locks: o.file_locks,
        empty_ns: o.empty_ns,
        orphan_pts_master: true,
        auto_dedup: o.auto_dedup,
        lazy_pages: o.lazy_pages,
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        config_file: layout::config_file(&spec),
        freeze_cgroup: layout::freeze_cgroup(&c.saved.cgroup_paths),
        page_server: o.page_server.clone(),
        page_server_fd: o.page_server_fd,
        enable_fs: o.enable_fs.clone(),
        irmap_scan_paths: existing_in(pid, &o.irmap_scan_paths),
        ..Default::default()
    };
    if let Some(p) = &o.parent_path {
        opts.parent_img = Some(p.to_string_lossy().into_owned());
        opts.track_mem = true;
    }
    // Network and pid namespaces joined by path stay outside the images:
    // CRIU records them by inode under runc's keys.
    for (kind, path) in layout::joined_namespaces(&spec) {
        if !matches!(kind, LinuxNamespaceType::Network | LinuxNamespaceType::Pid) {
            continue;
        }
        let st =
            nix::sys::stat::stat(&path).map_err(|e| Error::Sys("stat of a joined namespace", e))?;
        opts.external.push(format!(
            "{}[{}]:{}",
            layout::ns_name(kind),
            st.st_ino,
            layout::ns_key(kind)
        ));
    }
    if !o.pre_dump {
        external_mounts(&mut opts, &spec, &c.saved.cgroup_paths, pid);
        write_descriptors(&o.image_path, pid)?;
        if o.cgroup_tree {
            write_cgroup_tree(&o.image_path, &c.saved.cgroup_paths)?;
        }
    }
    let kind = if o.pre_dump {
        ReqType::PreDump
    } else {
        ReqType::Dump
    };
    let mut status_fd = o.status_fd;
    let mut on_notify = |script: &str, _pid: i32, _fd: Option<OwnedFd>| -> Result<()> {
        if script == "status-ready" {
            if let Some(fd) = status_fd.take() {
                // SAFETY: the caller handed us this fd to write to and close.
                unsafe {
                    let _ = libc::write(fd, [0u8].as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
        Ok(())
    };
    let log = log_dir.join("dump.log");
    let mut pass = vec![images.as_raw_fd()];
    pass.extend(work.as_ref().map(|w| w.as_raw_fd()));
    pass.extend(o.page_server_fd);
    let mut w = Worker::spawn(&o.criu, Stdio3::Null, &pass)?;
    w.call(
        kind,
        &rpc::request(kind, Some(&opts)),
        Some(&log),
        &mut on_notify,
    )?;
    // After a pre-dump CRIU waits for the next request; we end it instead.
    w.finish(o.pre_dump)?;
    drop(images);
    drop(work);
    let stats = stats::dump_stats(&o.image_path).ok();
    if !o.leave_running && !o.pre_dump {
        // CRIU killed the tasks; the container's resources go as with
        // `delete` (the lock is released first: delete takes it again).
        drop(c);
        container::delete(root, id, true)?;
    }
    Ok(Checkpointed {
        images: o.image_path.clone(),
        stats,
    })
}

/// The paths of `paths` (absolute in the container) that exist in the
/// container of `pid`: CRIU logs an `Error` line for each one it cannot
/// stat, which would hide the line naming a real failure.
fn existing_in(pid: i32, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter(|p| {
            p.starts_with('/') && std::fs::symlink_metadata(format!("/proc/{pid}/root{p}")).is_ok()
        })
        .cloned()
        .collect()
}

/// Bind mounts, cgroup v1 bind mounts, masked files and device nodes are
/// external to the dump (CRIU records where they are, not what they hold),
/// with the same keys runc uses.
fn external_mounts(
    opts: &mut Opts,
    spec: &oci_spec::runtime::Spec,
    cg: &[(String, PathBuf)],
    pid: i32,
) {
    for (dest, _) in layout::bind_mounts(spec)
        .into_iter()
        .chain(layout::cgroup_binds(spec, cg))
    {
        opts.ext_mnt.push((dest.clone(), dest));
    }
    for path in layout::masked_paths(spec) {
        // Masked directories are tmpfs mounts CRIU dumps; masked files are
        // /dev/null bound over them.
        let inside = format!("/proc/{pid}/root{path}");
        match std::fs::metadata(&inside) {
            Ok(m) if !m.is_dir() => opts.ext_mnt.push((path, "/dev/null".into())),
            _ => {}
        }
    }
    for dev in layout::device_paths(spec) {
        opts.ext_mnt.push((dev.clone(), dev));
    }
}

/// What the init's stdin, stdout and stderr are, as runc records them.
fn write_descriptors(image_path: &Path, pid: i32) -> Result<()> {
    let names: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    let path = image_path.join(DESCRIPTORS_FILE);
    let json = serde_json::to_vec(&names).map_err(|e| Error::Protocol(e.to_string()))?;
    cove_engine::state::write_atomic(&path, &json)?;
    Ok(())
}

/// Every directory below the container's cgroup(s), relative, parents
/// first. CRIU 3.17 makes again only the cgroups that hold a process; a
/// systemd inside watches its empty slices too, so a restore makes them
/// first (without controllers: CRIU runs in the container's cgroup, and
/// cgroup v2 refuses a process beside children with controllers).
fn write_cgroup_tree(image_path: &Path, cg: &[(String, PathBuf)]) -> Result<()> {
    fn walk(base: &Path, rel: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let r = rel.join(e.file_name());
                out.push(r.to_string_lossy().into_owned());
                walk(base, &r, out);
            }
        }
    }
    let mut dirs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, base) in cg {
        if seen.insert(base.clone()) {
            walk(base, Path::new(""), &mut dirs);
        }
    }
    dirs.sort();
    dirs.dedup();
    let json = serde_json::to_vec(&dirs).map_err(|e| Error::Protocol(e.to_string()))?;
    cove_engine::state::write_atomic(&image_path.join(CGROUP_TREE_FILE), &json)?;
    Ok(())
}
