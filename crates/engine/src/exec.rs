//! A new process in a running container: it joins the init's namespaces
//! and cgroup, then becomes the spec'd process just as the init did.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::container::{self, Created};
use crate::error::{Error, Result};
use crate::init;
use crate::namespaces::{clone_flag, proc_name, Restore};
use crate::seccomp::Seccomp;
use crate::state::Status;
use crate::sync::{self, Msg};
use crate::sys::{self, Forked};

pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Joined by the child after clone3: the cgroup namespace first, once
/// clone3 has put the child into the container's cgroup (CLONE_INTO_CGROUP
/// refuses, ENOENT, a caller whose own cgroup lies outside its cgroup
/// namespace's root, which the runtime's always does once it joined the
/// container's; on systemd's `nsdelegate` mount too), then the user
/// namespace (a process in a user namespace cannot join another's mount
/// namespace).
const CHILD_JOINS: [LinuxNamespaceType; 2] = [LinuxNamespaceType::Cgroup, LinuxNamespaceType::User];
/// Joined by the runtime just for its clone3, then left again. The mount
/// namespace is among them: the new process is in the container's pid
/// namespace from its first instant, where root inside the container (with
/// CAP_SYS_PTRACE, as in a system container) could attach to it; it must
/// never be seen there with the host's root, cwd and files (runc's nsexec
/// joins every namespace before it forks into the pid namespace, for the
/// same reason).
const PARENT_JOINS: [LinuxNamespaceType; 6] = [
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

fn differs_from_ours(pid: i32, name: &str) -> bool {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"));
    let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
    use std::os::unix::fs::MetadataExt;
    match (theirs, ours) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

pub fn exec(root: &std::path::Path, id: &str, opts: &ExecOptions) -> Result<Created> {
    let c = container::load(root, id)?;
    if !matches!(c.status, Status::Running | Status::Created) {
        return Err(Error::WrongState {
            id: id.into(),
            status: c.status.to_string(),
            what: "cannot exec in it",
        });
    }
    let config = container::saved_config(&c.dir)?;
    let seccomp = Seccomp::prepare(root, &config)?;
    let mut spec = config.spec;
    spec.set_process(Some(opts.process.clone()));
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidConfig(
            "exec: no command given (args are empty)".into(),
        ));
    }
    if opts.process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(Error::InvalidConfig(
            "cannot allocate tty if cove-oci will detach without setting console socket".into(),
        ));
    }
    let pid = c.saved.pid;
    let init_pidfd = container::open_init(&c.saved)?;
    // The init's namespaces of `types` that are not ours, in that order.
    let open_ns = |types: &[LinuxNamespaceType]| -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
        let mut fds = Vec::new();
        for &t in types {
            let name = proc_name(t);
            if differs_from_ours(pid, name) {
                let p = format!("/proc/{pid}/ns/{name}");
                let f = std::fs::File::open(&p).map_err(|e| Error::io("open", p, e))?;
                fds.push((t, f.into()));
            }
        }
        Ok(fds)
    };
    let child_ns = open_ns(&CHILD_JOINS)?;
    let parent_ns = open_ns(&PARENT_JOINS)?;
    // The namespace fds must belong to our init, not to a process that took its pid.
    if !crate::state::init_alive(&c.saved) {
        return Err(Error::NotRunning);
    }
    drop(init_pidfd);
    let filter = seccomp.as_ref().map(|s| &s.filter);
    let listener = seccomp.as_ref().and_then(|s| s.profile.as_ref());
    let in_userns = child_ns.iter().any(|(t, _)| *t == LinuxNamespaceType::User);
    let cg = cove_cgroups::manager_from_paths(&c.saved.cgroup_paths);
    let console_socket = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    let (parent_end, child_end) = sync::pair()?;
    let mut cgroup_fd = cg.dir_fd();
    let spawn =
        |cgroup_fd: Option<&OwnedFd>| -> Result<std::result::Result<Forked, nix::errno::Errno>> {
            let mut back = Restore::default();
            for (t, fd) in &parent_ns {
                back.enter(*t, fd.as_fd(), proc_name(*t))?;
            }
            // Non-dumpable before clone3: see container::create.
            sys::set_dumpable(false).map_err(|e| Error::Sys("prctl(PR_SET_DUMPABLE)", e))?;
            let r = sys::clone3(0, cgroup_fd.map(|f| f.as_raw_fd()));
            match r {
                Ok(Forked::Child) => back.keep(),
                _ => drop(back),
            }
            Ok(r)
        };
    let mut forked = spawn(cgroup_fd.as_ref())?;
    if matches!(forked, Err(nix::errno::Errno::EBUSY)) && cgroup_fd.is_some() {
        // cgroup v2 allows no process in a cgroup that hands controllers
        // to its children: a container whose init manages its own subtree
        // (systemd in a system container) has moved out of the container's
        // cgroup and enabled controllers there. Join the init where it is
        // now, as runc does.
        cgroup_fd = init_cgroup_dir(pid);
        if cgroup_fd.is_some() {
            forked = spawn(cgroup_fd.as_ref())?;
        }
    }
    let forked = forked.map_err(|e| Error::Sys("clone3", e))?;
    match forked {
        Forked::Child => {
            // The container's cgroup directory was for clone3 only: from a
            // directory fd of the host's cgroup tree, `..` leads anywhere.
            drop(cgroup_fd);
            drop(parent_end);
            // SAFETY: our copy of the state lock's fd; closing it keeps the
            // lock from living as long as this process.
            unsafe { libc::close(c.dir.lock_fd()) };
            let r = (|| -> Result<std::convert::Infallible> {
                for (t, fd) in &child_ns {
                    nix::sched::setns(fd.as_fd(), clone_flag(*t))
                        .map_err(|e| Error::sys_at(format!("setns {}", proc_name(*t)), e))?;
                }
                child_end.expect(Msg::Go)?;
                if in_userns {
                    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                        .map_err(|e| Error::Sys("setuid 0", e))?;
                }
                let p = spec
                    .process()
                    .as_ref()
                    .ok_or_else(|| Error::InvalidConfig("process missing".into()))?;
                let exe = init::become_process(
                    p,
                    &spec,
                    console_socket.as_ref(),
                    false,
                    filter,
                    &child_end,
                )?;
                child_end.send(&Msg::Ready)?;
                init::finish_setup_channel(p, filter, &child_end)?;
                Err(init::final_exec(p, &exe, opts.preserve_fds))
            })();
            match r {
                Ok(never) => match never {},
                Err(e) => init::report_failure(&child_end, e, "exec", 255),
            }
        }
        Forked::Parent { pid, pidfd } => {
            drop(child_end);
            drop(console_socket);
            let kill = |e: Error| {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                let _ = sys::pidfd_wait(pidfd.as_fd());
                e
            };
            if cgroup_fd.is_none() {
                cg.add_task(pid).map_err(|e| kill(e.into()))?;
            }
            parent_end.send(&Msg::Go).map_err(kill)?;
            let notify_state = container::NotifyState {
                state_pid: c.saved.pid,
                status: "running",
                process_pid: pid,
            };
            match container::recv_handling_seccomp(&parent_end, listener, &c.saved, &notify_state)
                .map_err(kill)?
            {
                Msg::Ready => {}
                Msg::Failed(s) => return Err(kill(Error::Init(s))),
                m => return Err(kill(Error::Init(format!("unexpected message {m:?}")))),
            }
            container::drain_after_ready(&parent_end, listener, &c.saved, &notify_state)
                .map_err(kill)?;
            if let Some(pf) = &opts.pid_file {
                container::write_pid_file(pf, pid).map_err(kill)?;
            }
            if let Some(s) = &seccomp {
                s.remember();
            }
            Ok(Created { pid, pidfd })
        }
    }
}

/// The v2 cgroup directory `pid` is in now, opened for CLONE_INTO_CGROUP:
/// its path in /proc/PID/cgroup under this process's cgroup2 mount.
fn init_cgroup_dir(pid: i32) -> Option<OwnedFd> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "36 25 0:30 / /sys/fs/cgroup rw,... - cgroup2 cgroup2 rw"
    let mount_point = info.lines().find_map(|l| {
        let (fields, fs) = l.split_once(" - ")?;
        let f: Vec<&str> = fields.split(' ').collect();
        (fs.starts_with("cgroup2 ") && f.get(3) == Some(&"/")).then(|| f.get(4).copied())?
    })?;
    let dir = std::path::Path::new(mount_point).join(rel.trim_start_matches('/'));
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .ok()
        .map(OwnedFd::from)
}
