//! The container's first process, from clone3 to execve. Runs in the child
//! only; reports the first error to the runtime over the sync channel and
//! exits. Nothing here may panic or return into the runtime's code.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::{Error, Result};
use crate::namespaces::Plan;
use crate::rootfs::{self, MountContext};
use crate::sync::{Channel, Msg};
use crate::{capabilities, console, hooks, process, sys};

pub struct InitContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub sync: &'a Channel,
    pub exec_fifo: &'a OwnedFd,
    pub console_socket: Option<&'a OwnedFd>,
    pub mounts: MountContext,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    /// The container state as hooks receive it, with pid and status to fill.
    pub hook_state: &'a dyn Fn(i32, &str) -> Vec<u8>,
    /// The state directory's lock fd, closed first thing in the child.
    pub lock_fd: std::os::fd::RawFd,
    pub seccomp: Option<&'a cove_seccomp::Filter>,
    pub no_new_keyring: bool,
    pub id: &'a str,
    /// Make the cgroup namespace after joining the cgroups (hosts where
    /// clone3 cannot place us in the cgroup).
    pub unshare_cgroupns: bool,
    /// The runtime placed us in our cgroups before `Go` (the systemd
    /// driver makes the scope with our pid first): the cgroup namespace is
    /// then made right after `Go`, before /sys/fs/cgroup is mounted, so a
    /// cgroup2 mount shows the container's own cgroup as its root.
    pub cgroup_joined_before_go: bool,
}

/// A session keyring of the container's own, so it never sees the caller's
/// keys (runc's default; --no-new-keyring keeps the caller's).
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| Error::InvalidConfig("NUL in id".into()))?;
    // SAFETY: keyctl with a valid C string.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = nix::errno::Errno::last();
        // Kernels without keys, or a user namespace that may not create
        // one: the container runs with the inherited keyring, as runc does.
        if e != nix::errno::Errno::ENOSYS
            && e != nix::errno::Errno::EACCES
            && e != nix::errno::Errno::EPERM
        {
            return Err(Error::Sys("keyctl(JOIN_SESSION_KEYRING)", e));
        }
    }
    Ok(())
}

/// After Ready, as runc: with no_new_privs the filter is loaded only now,
/// so the profile need not allow our setup syscalls; a notify fd follows
/// Ready on the channel. Then the channel is shut down, which tells the
/// runtime that setup is over.
pub fn finish_setup_channel(
    p: &Process,
    seccomp: Option<&cove_seccomp::Filter>,
    sync: &Channel,
) -> Result<()> {
    if p.no_new_privileges().unwrap_or(false) {
        load_seccomp(seccomp, sync)?;
    }
    // close(2), not shutdown(2): a strict profile allows close (runc needs it
    // too) but maybe not shutdown, and the runtime waits for this EOF.
    // SAFETY: the channel is never used or dropped again in this process,
    // which ends in execve or _exit.
    unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(&sync.0)) };
    Ok(())
}

/// Loads the filter; a notify fd goes to the runtime, which hands it to the
/// spec's listener.
fn load_seccomp(filter: Option<&cove_seccomp::Filter>, sync: &Channel) -> Result<()> {
    let Some(f) = filter else { return Ok(()) };
    if let Some(fd) = f
        .load()
        .map_err(|e| Error::Other(format!("seccomp: {e}")))?
    {
        sync.send_fd(&Msg::SeccompFd, &fd)?;
    }
    Ok(())
}

pub fn child_main(ctx: &InitContext) -> ! {
    // SAFETY: the fd is the parent's lock; we own our copy and never use it.
    unsafe { libc::close(ctx.lock_fd) };
    match run(ctx) {
        Ok(never) => match never {},
        Err(e) => report_failure(ctx.sync, e, "container init", 1),
    }
}

/// How a child that failed ends: the error goes to the runtime; once the
/// runtime has returned (after Ready) it goes to stderr; if the runtime gave
/// up first, it reports its own error and the child stays quiet.
pub fn report_failure(sync: &Channel, err: Error, who: &str, code: i32) -> ! {
    if !matches!(err, Error::PeerGone) && sync.send(&Msg::Failed(err.to_string())).is_err() {
        eprintln!("cove-oci: {who}: {err}");
    }
    sys::exit_now(code)
}

fn run(ctx: &InitContext) -> Result<Infallible> {
    // Until execve, /proc/self/exe is the runtime binary on the host; we
    // are non-dumpable since the runtime made itself so before clone3
    // (CVE-2019-5736), so nobody in the container may open it.
    ctx.plan.enter_in_child()?;
    ctx.sync.expect(Msg::Go)?;
    if ctx.unshare_cgroupns && ctx.cgroup_joined_before_go {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::Sys("unshare cgroup namespace", e))?;
    }
    if !ctx.no_new_keyring {
        join_session_keyring(ctx.id)?;
    }
    let spec = ctx.spec;
    let in_userns = ctx.plan.is_private(LinuxNamespaceType::User);
    if in_userns {
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| Error::Sys("setgid 0 in user namespace", e))?;
        nix::unistd::setresuid(root, root, root)
            .map_err(|e| Error::Sys("setuid 0 in user namespace", e))?;
    }
    if ctx.plan.is_private(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(|e| Error::Sys("sethostname", e))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            // SAFETY: valid pointer and length.
            if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                return Err(Error::Sys("setdomainname", nix::errno::Errno::last()));
            }
        }
    }
    let linux = spec.linux().as_ref();
    let proc_ = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process is missing".into()))?;
    let fifo = if ctx.plan.is_private(LinuxNamespaceType::Mount) {
        let root = rootfs::enter(
            ctx.rootfs,
            linux.and_then(|l| l.rootfs_propagation().as_deref()),
        )?;
        rootfs::mount_all(root.as_fd(), spec, &ctx.mounts)?;
        crate::mounts::ensure_in_root(
            root.as_fd(),
            &crate::mounts::relative_dest(proc_.cwd()),
            true,
        )?;
        ctx.sync.send(&Msg::MountsReady)?;
        ctx.sync.expect(Msg::HooksDone)?;
        if ctx.unshare_cgroupns && !ctx.cgroup_joined_before_go {
            // Only now are we in our cgroups (v1/hybrid: the runtime moved
            // us): a cgroup namespace made now has them as its root.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::Sys("unshare cgroup namespace", e))?;
        }
        hooks::run(
            spec.hooks()
                .as_ref()
                .and_then(|h| h.create_container().as_ref()),
            &(ctx.hook_state)(1, "creating"),
        )?;
        rootfs::write_sysctls(root.as_fd(), spec)?;
        rootfs::readonly_paths(
            root.as_fd(),
            linux
                .and_then(|l| l.readonly_paths().as_deref())
                .unwrap_or(&[]),
        )?;
        rootfs::masked_paths(
            root.as_fd(),
            linux
                .and_then(|l| l.masked_paths().as_deref())
                .unwrap_or(&[]),
        )?;
        // Reopened read-write here, through the host's /proc (before pivot,
        // so the container's /proc has no say) and while we are still root
        // (a non-dumpable process of another uid cannot use /proc/self/fd).
        // Holding both ends, our read blocks until `start` writes.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(sys::fd_path(ctx.exec_fifo))
            .map_err(|e| Error::io("open exec fifo", sys::fd_path(ctx.exec_fifo), e))?;
        rootfs::pivot(root, ctx.no_pivot)?;
        rootfs::finalize(spec)?;
        fifo
    } else {
        return Err(Error::InvalidConfig(
            "a container needs a mount namespace: add {\"type\":\"mount\"} to linux.namespaces"
                .into(),
        ));
    };
    let exe = become_process(proc_, spec, ctx.console_socket, true, ctx.seccomp, ctx.sync)?;
    ctx.sync.send(&Msg::Ready)?;
    finish_setup_channel(proc_, ctx.seccomp, ctx.sync)?;
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fifo), &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err(Error::Other("exec fifo: empty read".into())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys("read exec fifo", e)),
        }
    }
    // `fifo` stays open (close-on-exec): `start` waits for it to close.
    hooks::run(
        spec.hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref()),
        &(ctx.hook_state)(1, "created"),
    )?;
    Err(final_exec(proc_, &exe, ctx.preserve_fds))
}

use std::os::unix::fs::OpenOptionsExt;

/// Everything between "inside the container's namespaces and root" and
/// execve, shared by init and exec: terminal, limits, identity,
/// capabilities, cwd. Returns the resolved executable.
pub fn become_process(
    p: &Process,
    spec: &Spec,
    console_socket: Option<&OwnedFd>,
    mount_console: bool,
    seccomp: Option<&cove_seccomp::Filter>,
    sync: &Channel,
) -> Result<std::path::PathBuf> {
    nix::unistd::setsid().map_err(|e| Error::Sys("setsid", e))?;
    if p.terminal().unwrap_or(false) {
        let sock = console_socket.ok_or_else(|| {
            Error::InvalidConfig("process.terminal is set but no --console-socket was given".into())
        })?;
        let size = p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = console::open_pty(size)?;
        if mount_console {
            let root = std::fs::File::open("/").map_err(|e| Error::io("open", "/", e))?;
            crate::mounts::bind_fd_in_root(
                root.as_fd(),
                &pty.slave,
                Path::new("dev/console"),
                false,
            )?;
        }
        console::send_master(sock, &pty.master)?;
        drop(pty.master);
        console::become_tty(&pty.slave)?;
    }
    process::set_rlimits(p)?;
    process::set_oom_score_adj(p)?;
    process::set_io_priority(p)?;
    process::set_scheduler(p)?;
    process::set_personality(spec.linux().as_ref().and_then(|l| l.personality().as_ref()))?;
    let env = process::environment(p);
    // In the process's cwd, as runc looks it up: a relative args[0] (or
    // PATH entry) means a path from there.
    process::enter_cwd(p.cwd())?;
    let exe = process::find_executable(
        p.args().as_ref().and_then(|a| a.first()).map_or("", |s| s),
        &env,
    )?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    // The kernel takes a filter from a process with no_new_privs or with
    // CAP_SYS_ADMIN: without no_new_privs, load it while we still hold
    // every capability; with it, as late as possible (as runc does).
    if !nnp {
        load_seccomp(seccomp, sync)?;
    }
    capabilities::drop_bounding(p.capabilities().as_ref())?;
    // We are root in our own namespaces (or the host): setgroups is allowed.
    process::set_identity(p, true)?;
    capabilities::apply(p.capabilities().as_ref())?;
    process::set_umask(p);
    if nnp {
        process::set_no_new_privs()?;
    }
    Ok(exe)
}

/// Undoes what the runtime did to its own signal state: the mask it uses
/// to forward signals, and Rust's SIG_IGN for SIGPIPE (an ignored signal
/// survives execve). Other ignored signals are the caller's and stay, as
/// runc leaves them.
fn reset_signals() {
    // SIGPIPE (Rust) and 33 (glibc's setxid signal, which Go-based runtimes
    // also hand over as default); glibc's signal() refuses 33, so the raw
    // rt_sigaction with the kernel's struct layout is used.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in [libc::SIGPIPE, 33] {
        // SAFETY: a valid kernel sigaction for SIG_DFL, no old action asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8,
            )
        };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// Closes everything that is not stdio or preserved, then execve.
pub fn final_exec(p: &Process, exe: &Path, preserve_fds: u32) -> Error {
    if let Err(e) = sys::cloexec_from(3 + preserve_fds) {
        return Error::Sys("close_range", e);
    }
    reset_signals();
    let args = p.args().clone().unwrap_or_default();
    let env = process::environment(p);
    process::exec(exe, &args, &env)
}
