//! The container lifecycle as the runtime-spec lists it: create, start,
//! state, kill, delete. Each operation holds the container's lock.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cove_cgroups::{CgroupManager, CgroupSpec};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Spec};

use crate::error::{Error, Result};
use crate::init::{self, InitContext};
use crate::namespaces::{self, Plan};
use crate::rootfs::MountContext;
use crate::seccomp::Seccomp;
use crate::state::{self, Saved, StateDir, Status};
use crate::sync::{self, Msg};
use crate::sys::{self, Forked};
use crate::{hooks, spec as specmod};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// runc's NOTIFY_SOCKET handling: the state directory's `notify`
    /// directory is bound read-only at [`NOTIFY_DIR_IN_CONTAINER`] and the
    /// process gets `NOTIFY_SOCKET` naming [`NOTIFY_SOCKET_NAME`] in it.
    /// Whoever starts the container binds the socket there
    /// ([`notify_socket_path`]) and relays what comes.
    pub notify_socket: bool,
}

/// Where the notify directory appears in the container (runc's path).
pub const NOTIFY_DIR_IN_CONTAINER: &str = "/run/notify";
/// The socket's name in that directory.
pub const NOTIFY_SOCKET_NAME: &str = "notify.sock";

/// The host path of a container's notify socket (see
/// [`CreateOptions::notify_socket`]).
pub fn notify_socket_path(root: &Path, id: &str) -> PathBuf {
    root.join(id).join("notify").join(NOTIFY_SOCKET_NAME)
}

/// Adds the notify directory's bind mount and `NOTIFY_SOCKET` to `spec`.
fn add_notify_socket(spec: &mut Spec, host_dir: &Path) -> Result<()> {
    use oci_spec::runtime::MountBuilder;
    let mount = MountBuilder::default()
        .destination(NOTIFY_DIR_IN_CONTAINER)
        .typ("bind")
        .source(host_dir)
        .options(
            ["bind", "nosuid", "noexec", "nodev", "ro"]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .map_err(|e| Error::Other(format!("notify socket mount: {e}")))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!(
            "NOTIFY_SOCKET={NOTIFY_DIR_IN_CONTAINER}/{NOTIFY_SOCKET_NAME}"
        ));
        process.set_env(Some(env));
    }
    Ok(())
}

/// A container just created by this process: its init is our child.
pub struct Created {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Undoes a half-made container on drop: kills the child, removes the
/// cgroup and the state directory.
pub(crate) struct Cleanup {
    pub(crate) child: Option<OwnedFd>,
    pub(crate) cgroup: Option<Box<dyn CgroupManager>>,
    pub(crate) state_dir: Option<PathBuf>,
}

impl Cleanup {
    pub(crate) fn commit(mut self) {
        self.child = None;
        self.cgroup = None;
        self.state_dir = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pidfd) = self.child.take() {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::pidfd_wait(pidfd.as_fd());
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(libc::SIGKILL);
            if let Err(e) = destroy_cgroup(cg.as_ref()) {
                tracing::warn!("cleanup: {e}");
            }
        }
        if let Some(dir) = self.state_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn cgroup_spec(spec: &Spec, id: &str, systemd: bool) -> CgroupSpec {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty());
    CgroupSpec {
        path,
        id: id.to_string(),
        systemd,
    }
}

/// The resources to apply: the spec's, with the device rules every
/// container needs added.
pub(crate) fn resources_of(spec: &Spec) -> oci_spec::runtime::LinuxResources {
    let linux = spec.linux().as_ref();
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    let rules = crate::devices::cgroup_rules(res.devices().as_deref().unwrap_or(&[]), &devs);
    res.set_devices(Some(rules));
    res
}

/// The state hooks receive on stdin: the runtime-spec `State` (no rootfs,
/// created or owner; pid left out once stopped), as runc sends it.
pub fn hook_state(saved: &Saved, pid: i32, status: &str) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": saved.oci_version,
        "id": saved.id,
        "status": status,
        "bundle": saved.bundle,
    });
    if pid > 0 {
        v["pid"] = pid.into();
    }
    if let Some(a) = saved.annotations.as_ref().filter(|a| !a.is_empty()) {
        v["annotations"] = serde_json::json!(a);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Receives the next setup message; a seccomp notify fd that arrives on the
/// way is handed to the spec's listener with the container's state.
/// Who the container-process state sent with a notify fd describes: the
/// container (its init's pid and status) and the process holding the filter.
pub struct NotifyState {
    pub state_pid: i32,
    pub status: &'static str,
    pub process_pid: i32,
}

/// After Ready the child may still send a notify fd or a failure; its
/// closing the channel ends setup.
pub fn drain_after_ready(
    ch: &sync::Channel,
    seccomp: Option<&LinuxSeccomp>,
    saved: &Saved,
    who: &NotifyState,
) -> Result<()> {
    match recv_handling_seccomp(ch, seccomp, saved, who) {
        Err(Error::PeerGone) => Ok(()),
        Ok(Msg::Failed(s)) => Err(Error::Init(s)),
        Ok(m) => Err(Error::Init(format!("unexpected message {m:?}"))),
        Err(e) => Err(e),
    }
}

/// `seccomp` is linux.seccomp, which names the listener.
pub fn recv_handling_seccomp(
    ch: &sync::Channel,
    seccomp: Option<&LinuxSeccomp>,
    saved: &Saved,
    who: &NotifyState,
) -> Result<Msg> {
    loop {
        let (msg, fd) = ch.recv_with_fd()?;
        if msg != Msg::SeccompFd {
            return Ok(msg);
        }
        let fd =
            fd.ok_or_else(|| Error::Init("seccomp notify message came without its fd".into()))?;
        let path = seccomp
            .and_then(|s| s.listener_path().clone())
            .ok_or_else(|| {
                Error::InvalidConfig(
                    "seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
                )
            })?;
        let state: oci_spec::runtime::State =
            serde_json::from_slice(&hook_state(saved, who.state_pid, who.status))
                .map_err(|e| Error::Other(format!("container state: {e}")))?;
        let meta = seccomp.and_then(|s| s.listener_metadata().clone());
        let msg = cove_seccomp::container_process_state(who.process_pid, meta.as_deref(), &state)
            .map_err(|e| Error::Other(format!("seccomp: {e}")))?;
        cove_seccomp::send_listener(&path, fd.as_fd(), &msg)
            .map_err(|e| Error::Other(format!("seccomp: {e}")))?;
    }
}

pub fn create(opts: &CreateOptions) -> Result<Created> {
    specmod::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::InvalidConfig(format!("bundle {}: {e}", opts.bundle.display())))?;
    let config = specmod::load_config(&bundle)?;
    // From the filter cache, or compiled: a bad profile is refused before
    // anything exists.
    let seccomp = Seccomp::prepare(&opts.root, &config)?;
    let notify_dir = opts.root.join(&opts.id).join("notify");
    let profile = match (opts.notify_socket, &seccomp) {
        (true, Some(s)) if s.profile.is_none() => config.seccomp()?,
        _ => None,
    };
    let specmod::Config {
        mut spec,
        bytes: mut spec_bytes,
        ..
    } = config;
    if opts.notify_socket {
        // The spec is serialised again: with its profile.
        if let (Some(linux), Some(s)) = (spec.linux_mut(), &seccomp) {
            linux.set_seccomp(profile.or_else(|| s.profile.clone()));
        }
        add_notify_socket(&mut spec, &notify_dir)?;
        // What is saved is what the container runs with.
        spec_bytes = serde_json::to_vec(&spec).map_err(|e| Error::Other(e.to_string()))?;
    }
    let spec = spec;
    let rootfs = specmod::validate(&spec, &bundle)?;
    let plan = Plan::from_spec(&spec)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process is missing".into()))?;
    if process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(Error::InvalidConfig(
            "cannot allocate tty if cove-oci will detach without setting console socket".into(),
        ));
    }
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut cleanup = Cleanup {
        child: None,
        cgroup: None,
        state_dir: Some(dir.path.clone()),
    };
    std::env::set_current_dir(&bundle).map_err(|e| Error::io("chdir", &bundle, e))?;

    let cg = cove_cgroups::manager(&cgroup_spec(&spec, &opts.id, opts.systemd_cgroup))?;
    // A cgroup in use is someone else's (another container's, a slice's):
    // joining it would put our init among strangers, and the clean-up of a
    // failed create (or a later delete) would kill them. Refused as runc
    // refuses it (only an empty cgroup may be reused); before the clean-up
    // guard holds it, so a refusal touches nothing. A path that does not
    // exist yet (the usual case) is seen with a stat or two instead of a
    // failed open per hierarchy.
    if cove_cgroups::may_exist(&cg.paths()) {
        if let Ok(pids) = cg.pids() {
            if !pids.is_empty() {
                return Err(Error::Other(format!(
                    "container's cgroup is not empty: {} process(es) found",
                    pids.len()
                )));
            }
        }
        if cg.is_frozen().unwrap_or(false) {
            return Err(Error::Other(
                "container's cgroup unexpectedly frozen".into(),
            ));
        }
    }
    // Before the first directory: a create killed from here on leaves a
    // cgroup that `delete` must find without a state.json.
    dir.save_creating(&state::Creating {
        cgroup_paths: cg.paths(),
        systemd_cgroup: opts.systemd_cgroup,
    })?;
    cg.create()?;
    let cg = cleanup.cgroup.insert(cg);
    cg.apply(&resources_of(&spec))?;

    if opts.notify_socket {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&notify_dir)
            .map_err(|e| Error::io("create", &notify_dir, e))?;
    }
    let fifo_path = dir.fifo();
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys_at(format!("mkfifo {}", fifo_path.display()), e))?;
    let uid_maps = spec
        .linux()
        .as_ref()
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid_maps = spec
        .linux()
        .as_ref()
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    if plan.has_new(LinuxNamespaceType::User) {
        // The init opens the fifo as container root: let that user have it.
        let uid = namespaces::host_id(Some(&uid_maps), 0);
        let gid = namespaces::host_id(Some(&gid_maps), 0);
        let _ = nix::unistd::chown(&fifo_path, Some(uid.into()), Some(gid.into()));
    }
    let exec_fifo: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(&fifo_path)
        .map_err(|e| Error::io("open", &fifo_path, e))?
        .into();
    let console_socket = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;

    let mut saved = Saved {
        oci_version: specmod::SPEC_VERSION.into(),
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: spec.annotations().clone(),
        cgroup_paths: cg.paths(),
        systemd_cgroup: opts.systemd_cgroup,
        stopped: false,
    };
    // Later commands read the spec from here, never from the bundle again
    // (the bytes create parsed: an edit of the bundle's file after create
    // changes nothing).
    state::write_runtime(&dir.path.join(state::CONFIG_FILE), &spec_bytes)?;

    let (parent_end, child_end) = sync::pair()?;
    let cgroup_fd = cg.dir_fd();
    let saved_for_hooks = saved.clone();
    let hook_state_fn = move |pid: i32, status: &str| hook_state(&saved_for_hooks, pid, status);
    // Non-dumpable before clone3 (dumpability is copied at fork), so the
    // child is never visible in a container's /proc as an openable
    // /proc/<pid>/exe of this binary, not even for the first instructions.
    sys::set_dumpable(false).map_err(|e| Error::Sys("prctl(PR_SET_DUMPABLE)", e))?;
    let back = plan.enter_for_clone(
        spec.linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref()),
    )?;
    // Without CLONE_INTO_CGROUP the init joins its cgroups after clone3; a
    // cgroup namespace made by clone3 would be rooted in our own cgroup.
    let unshare_cgroupns = plan.has_new(LinuxNamespaceType::Cgroup)
        && (cgroup_fd.is_none() || plan.joins(LinuxNamespaceType::User));
    let mut flags = plan.clone_flags();
    if unshare_cgroupns {
        flags.remove(CloneFlags::CLONE_NEWCGROUP);
    }
    let forked = sys::clone3(
        flags.bits() as u64,
        cgroup_fd.as_ref().map(|f| f.as_raw_fd()),
    );
    // Only the runtime goes back to its namespaces; the child stays.
    match forked {
        Ok(Forked::Child) => back.keep(),
        _ => drop(back),
    }
    let forked = forked.map_err(|e| Error::Sys("clone3", e))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            // For clone3 only: see exec.rs.
            drop(cgroup_fd);
            drop(parent_end);
            let ctx = InitContext {
                spec: &spec,
                rootfs: &rootfs,
                plan: &plan,
                sync: &child_end,
                exec_fifo: &exec_fifo,
                console_socket: console_socket.as_ref(),
                mounts: MountContext {
                    cgroup_paths: saved.cgroup_paths.clone(),
                    in_userns: plan.is_private(LinuxNamespaceType::User),
                },
                no_pivot: opts.no_pivot,
                preserve_fds: opts.preserve_fds,
                hook_state: &hook_state_fn,
                lock_fd: dir.lock_fd(),
                seccomp: seccomp.as_ref().map(|s| &s.filter),
                no_new_keyring: opts.no_new_keyring,
                id: &opts.id,
                unshare_cgroupns,
                cgroup_joined_before_go: opts.systemd_cgroup,
            };
            init::child_main(&ctx)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_end);
    drop(console_socket);
    cleanup.child = Some(
        pidfd
            .try_clone()
            .map_err(|e| Error::io("dup", "pidfd", e))?,
    );
    if plan.has_new(LinuxNamespaceType::User) && !plan.joins(LinuxNamespaceType::User) {
        namespaces::write_id_maps(pid, &uid_maps, &gid_maps)?;
    }
    // With --systemd-cgroup, add_task makes the scope (and the directories
    // systemd does not): the child bind-mounts them, so before Go.
    if opts.systemd_cgroup {
        cg.add_task(pid)?;
    }
    parent_end.send(&Msg::Go)?;
    // On v1/hybrid the first cgroup.procs write waits for an RCU grace
    // period (5-9 ms measured): do it while the child mounts its rootfs.
    // The child runs no container code before HooksDone, which comes after.
    if cgroup_fd.is_none() && !opts.systemd_cgroup {
        cg.add_task(pid)?;
    }
    drop(cgroup_fd);
    let who = NotifyState {
        state_pid: pid,
        status: "creating",
        process_pid: pid,
    };
    let listener = seccomp.as_ref().and_then(|s| s.profile.as_ref());
    loop {
        match recv_handling_seccomp(&parent_end, listener, &saved, &who)? {
            Msg::MountsReady => {
                let st = hook_state(&saved, pid, "creating");
                let hooks = spec.hooks().as_ref();
                hooks::run(hooks.and_then(|h| h.prestart().as_ref()), &st)?;
                hooks::run(hooks.and_then(|h| h.create_runtime().as_ref()), &st)?;
                parent_end.send(&Msg::HooksDone)?;
            }
            Msg::Ready => break,
            Msg::Failed(s) => return Err(Error::Init(s)),
            m => return Err(Error::Init(format!("unexpected message {m:?}"))),
        }
    }
    drain_after_ready(&parent_end, listener, &saved, &who)?;
    saved.pid = pid;
    saved.pid_start = state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
    dir.save(&saved)?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    cleanup.commit();
    if let Some(s) = &seccomp {
        s.remember();
    }
    Ok(Created { pid, pidfd })
}

use std::os::unix::fs::OpenOptionsExt;

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    state::write_runtime(&abs, pid.to_string().as_bytes())
}

/// The status of a saved container, as runc computes it.
pub fn status_of(saved: &Saved, dir: &Path) -> Status {
    if !state::init_alive(saved) {
        return Status::Stopped;
    }
    // Frozen first, as runc has it: a created container can be paused too,
    // and must then not look startable (its init could not take the start).
    // Read from the saved paths directly: `list` asks this of every
    // container, and a manager would read /proc/self/cgroup each time.
    if cove_cgroups::frozen_at(&saved.cgroup_paths) {
        return Status::Paused;
    }
    if dir.join(state::EXEC_FIFO).exists() {
        return Status::Created;
    }
    Status::Running
}

pub struct Loaded {
    pub dir: StateDir,
    pub saved: Saved,
    pub status: Status,
}

pub fn load(root: &Path, id: &str) -> Result<Loaded> {
    specmod::validate_id(id).map_err(|_| Error::NotExist(id.into()))?;
    let dir = StateDir::open(root, id)?;
    let saved = dir.load()?;
    let status = status_of(&saved, &dir.path);
    Ok(Loaded { dir, saved, status })
}

pub fn saved_spec(dir: &StateDir) -> Result<Spec> {
    let p = dir.path.join(state::CONFIG_FILE);
    let b = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice(&b).map_err(|e| Error::Other(format!("{}: {e}", p.display())))
}

/// The saved config.json with linux.seccomp left as JSON (see
/// [`specmod::Config`]): exec takes its filter from the cache.
pub fn saved_config(dir: &StateDir) -> Result<specmod::Config> {
    let p = dir.path.join(state::CONFIG_FILE);
    let b = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    specmod::parse_config(b, p)
}

/// Only the hooks of the saved spec: what start and delete need of it. The
/// rest is skipped over unbuilt, which matters for a spec that carries a
/// large seccomp profile (podman's has some 400 names, each a String).
pub fn saved_hooks(dir: &StateDir) -> Result<Option<oci_spec::runtime::Hooks>> {
    #[derive(serde::Deserialize)]
    struct HooksOnly {
        #[serde(default)]
        hooks: Option<oci_spec::runtime::Hooks>,
    }
    let p = dir.path.join(state::CONFIG_FILE);
    let b = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice::<HooksOnly>(&b)
        .map(|h| h.hooks)
        .map_err(|e| Error::Other(format!("{}: {e}", p.display())))
}

/// Applies new limits to a running container and records them in its
/// saved spec. `make` computes the new resources from the saved spec (read
/// once here). Device rules are left alone unless they change (as runc
/// 1.1, whose `update` never touches devices); changed ones go in with the
/// defaults added: on v1 by difference, on v2 as a new device program that
/// replaces the old. A `--systemd-cgroup` container's unit properties are
/// set too.
pub fn update(
    root: &Path,
    id: &str,
    make: impl FnOnce(&Spec) -> std::result::Result<oci_spec::runtime::LinuxResources, String>,
) -> Result<()> {
    let c = load(root, id)?;
    if c.status == Status::Stopped {
        return Err(Error::NotRunning);
    }
    let mut spec = saved_spec(&c.dir)?;
    let res = make(&spec).map_err(Error::InvalidConfig)?;
    let mut full = res.clone();
    let linux = spec.linux().as_ref();
    let saved_rules = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone());
    if res.devices() == &saved_rules {
        full.set_devices(None);
    } else {
        let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
        let rules = crate::devices::cgroup_rules(res.devices().as_deref().unwrap_or(&[]), &devs);
        full.set_devices(Some(rules));
    }
    cove_cgroups::manager_from_state(&c.saved.cgroup_paths, c.saved.systemd_cgroup).apply(&full)?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(res));
    }
    save_spec(&c.dir, &spec)
}

/// Replaces the saved spec (after `update`).
pub fn save_spec(dir: &StateDir, spec: &Spec) -> Result<()> {
    let b = serde_json::to_vec(spec).map_err(|e| Error::Other(e.to_string()))?;
    state::write_runtime(&dir.path.join(state::CONFIG_FILE), &b)
}

/// Releases the init parked on the exec fifo, then runs poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = load(root, id)?;
    match c.status {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
                what: "cannot start a container that has stopped",
            })
        }
        Status::Paused => {
            return Err(Error::WrongState {
                id: id.into(),
                status: "paused".into(),
                what: "cannot start a container in the paused state",
            })
        }
        s => {
            return Err(Error::WrongState {
                id: id.into(),
                status: s.to_string(),
                what: "cannot start an already running container",
            })
        }
    }
    let fifo_path = c.dir.fifo();
    release_init(&fifo_path, id)?;
    let _ = std::fs::remove_file(&fifo_path);
    let hooks = saved_hooks(&c.dir)?;
    let st = hook_state(&c.saved, c.saved.pid, "running");
    hooks::run_warn(
        "poststart",
        hooks.as_ref().and_then(|h| h.poststart().as_ref()),
        &st,
    );
    Ok(())
}

/// Writes the byte the parked init waits for, then waits until the init
/// has closed the fifo, which happens at its execve (close-on-exec), so
/// startContainer hooks are done before poststart runs (as with runc).
fn release_init(fifo_path: &Path, id: &str) -> Result<()> {
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fifo_path)
            .map_err(|e| Error::io("open", fifo_path, e))
    };
    // Our reader first, so the writer we open after it counts as a new
    // writer: the kernel then reports POLLHUP once all writers are gone.
    let reader = open(false)?;
    let writer = open(true)?;
    nix::unistd::write(&writer, b"0").map_err(|e| Error::Sys("write exec fifo", e))?;
    drop(writer);
    loop {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys("poll exec fifo", e)),
            Ok(_)
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)) =>
            {
                break
            }
            Ok(_) => {}
        }
    }
    // The byte still there means the init died without reading it.
    let mut b = [0u8; 1];
    if matches!(nix::unistd::read(reader.as_raw_fd(), &mut b), Ok(1)) {
        return Err(Error::Other(format!(
            "container {id}: its init exited before start"
        )));
    }
    Ok(())
}

/// A pidfd for the container's init, checked against the saved start time
/// after opening, so a recycled pid is never signalled.
pub fn open_init(saved: &Saved) -> Result<OwnedFd> {
    let fd = sys::pidfd_open(saved.pid).map_err(|_| Error::NotRunning)?;
    if !state::init_alive(saved) {
        return Err(Error::NotRunning);
    }
    Ok(fd)
}

pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let c = load(root, id)?;
    if all {
        let cg = cove_cgroups::manager_from_paths(&c.saved.cgroup_paths);
        if c.status == Status::Paused && signal == libc::SIGKILL {
            cg.kill_all(signal)?;
            return cg.thaw().map_err(Error::from);
        }
        return cg.kill_all(signal).map_err(Error::from);
    }
    if c.status == Status::Stopped {
        return Err(Error::NotRunning);
    }
    let pidfd = open_init(&c.saved)?;
    sys::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|e| Error::Sys("kill", e))
}

fn destroy_cgroup(cg: &dyn CgroupManager) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cg.destroy() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => {
                let _ = cg.kill_all(libc::SIGKILL);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Kills what is left, removes the cgroup, runs poststop hooks, removes the state.
fn destroy(c: Loaded) -> Result<()> {
    let cg = cove_cgroups::manager_from_state(&c.saved.cgroup_paths, c.saved.systemd_cgroup);
    if c.status != Status::Stopped {
        if let Ok(pidfd) = open_init(&c.saved) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.thaw();
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(5000u16));
        }
    }
    let _ = cg.kill_all(libc::SIGKILL);
    destroy_cgroup(cg.as_ref())?;
    if let Ok(hooks) = saved_hooks(&c.dir) {
        let st = hook_state(&c.saved, 0, "stopped");
        hooks::run_warn(
            "poststop",
            hooks.as_ref().and_then(|h| h.poststop().as_ref()),
            &st,
        );
    }
    c.dir.remove()
}

/// What a create killed before it saved state.json left: the cgroup it
/// recorded (and whatever runs in it: an init waiting on the exec fifo
/// never exits by itself), then the directory. The directory stays when
/// the cgroup cannot be removed, so a later delete tries again.
fn remove_half_made(root: &Path, id: &str) -> Result<()> {
    let Some(dir) = StateDir::open_stale(root, id) else {
        return Ok(());
    };
    if let Some(creating) = dir.creating() {
        let cg = cove_cgroups::manager_from_state(&creating.cgroup_paths, creating.systemd_cgroup);
        let _ = cg.kill_all(libc::SIGKILL);
        let _ = cg.thaw();
        destroy_cgroup(cg.as_ref())?;
    }
    dir.remove()
}

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match load(root, id) {
        Ok(c) => c,
        Err(Error::NotExist(n)) => {
            if specmod::validate_id(id).is_ok() {
                remove_half_made(root, id)?;
            }
            return if force {
                Ok(())
            } else {
                Err(Error::NotExist(n))
            };
        }
        Err(e) => return Err(e),
    };
    match c.status {
        Status::Stopped | Status::Created => destroy(c),
        _ if force => destroy(c),
        s => Err(Error::WrongState {
            id: id.into(),
            status: s.to_string(),
            what: "cannot delete a container that is not stopped (use --force)",
        }),
    }
}

pub struct Listed {
    pub saved: Saved,
    pub status: Status,
}

/// Every container under `root`; unreadable ones are skipped.
pub fn list(root: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        let dir = root.join(&id);
        if let Ok(saved) = state::read_saved(&dir) {
            let status = status_of(&saved, &dir);
            out.push(Listed { saved, status });
        }
    }
    Ok(out)
}

pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = load(root, id)?;
    Ok(cove_cgroups::manager_from_paths(&c.saved.cgroup_paths).pids()?)
}

pub fn annotations_of(saved: &Saved) -> HashMap<String, String> {
    saved.annotations.clone().unwrap_or_default()
}
