//! Which namespaces a container gets, which it joins by path, and how.
//!
//! New namespaces come from the clone3 flags, so the init is born inside
//! them (pid 1 of its pid namespace without a second fork). Namespaces
//! joined by path are entered by the runtime itself around clone3 when that
//! is harmless for it (net, ipc, uts, cgroup, and pid/time for children), and
//! restored right after; user and mount namespaces are joined by the child.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use std::collections::HashMap;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, LinuxTimeOffset, Spec};

use crate::error::{Error, Result};

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of the namespace under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace plan of one container.
pub struct Plan {
    /// Namespaces created by clone3.
    pub new: CloneFlags,
    /// Namespaces joined by path, opened before anything is created.
    pub joined: Vec<Joined>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut new = CloneFlags::empty();
        let mut joined = Vec::new();
        for ns in spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            match ns.path() {
                None => new |= clone_flag(ns.typ()),
                Some(p) => {
                    let f = File::open(p).map_err(|e| Error::io("open namespace", p, e))?;
                    joined.push(Joined {
                        typ: ns.typ(),
                        path: p.clone(),
                        fd: f.into(),
                    });
                }
            }
        }
        let plan = Plan { new, joined };
        if plan.has_new(LinuxNamespaceType::User) && plan.joins(LinuxNamespaceType::Mount) {
            return Err(Error::InvalidConfig(
                "joining a mount namespace by path together with a new user namespace is not supported".into(),
            ));
        }
        if plan.joins(LinuxNamespaceType::User) && plan.has_new(LinuxNamespaceType::Pid) {
            return Err(Error::InvalidConfig(
                "joining a user namespace by path together with a new pid namespace is not supported yet".into(),
            ));
        }
        Ok(plan)
    }

    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(clone_flag(t))
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.joined.iter().any(|j| j.typ == t)
    }

    pub fn is_private(&self, t: LinuxNamespaceType) -> bool {
        self.has_new(t) || self.joins(t)
    }

    /// Flags for clone3. With a user namespace joined by path, the other new
    /// namespaces are unshared by the child after it joined, so they belong
    /// to that user namespace.
    pub fn clone_flags(&self) -> CloneFlags {
        if self.joins(LinuxNamespaceType::User) {
            CloneFlags::empty()
        } else {
            // A new time namespace is made by the runtime for its children
            // (see enter_for_clone), so its offsets can be set first.
            self.new & !clone_flag(LinuxNamespaceType::Time)
        }
    }

    fn parent_joins(t: LinuxNamespaceType) -> bool {
        !matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Mount)
    }

    /// Runtime side, before clone3: enter the joined namespaces the child
    /// inherits. The returned guard puts the runtime back where it was.
    pub fn enter_for_clone(
        &self,
        time_offsets: Option<&HashMap<String, LinuxTimeOffset>>,
    ) -> Result<Restore> {
        let mut back = Restore::default();
        if self.has_new(LinuxNamespaceType::Time) && !self.joins(LinuxNamespaceType::User) {
            // Offsets can only be written before a process is in the new
            // time namespace: unshare makes it for our children only, we
            // write them, and clone3 puts the init in it.
            back.remember(LinuxNamespaceType::Time)?;
            unshare(clone_flag(LinuxNamespaceType::Time))
                .map_err(|e| Error::Sys("unshare time namespace", e))?;
            write_time_offsets(time_offsets)?;
        }
        for j in self.joined.iter().filter(|j| Self::parent_joins(j.typ)) {
            back.enter(j.typ, j.fd.as_fd(), &j.path.display().to_string())?;
        }
        Ok(back)
    }

    /// Child side, right after clone3: join user and mount namespaces by
    /// path, then unshare what must belong to a joined user namespace.
    pub fn enter_in_child(&self) -> Result<()> {
        for t in [LinuxNamespaceType::User, LinuxNamespaceType::Mount] {
            if let Some(j) = self.joined.iter().find(|j| j.typ == t) {
                setns(j.fd.as_fd(), clone_flag(t))
                    .map_err(|e| Error::sys_at(format!("setns {}", j.path.display()), e))?;
            }
        }
        // The cgroup namespace waits until the init is in its cgroups (see
        // InitContext::unshare_cgroupns).
        let rest = self.new & !CloneFlags::CLONE_NEWCGROUP;
        if self.joins(LinuxNamespaceType::User) && !rest.is_empty() {
            unshare(rest).map_err(|e| Error::Sys("unshare", e))?;
        }
        Ok(())
    }
}

/// The runtime's own namespaces, entered again on drop (in reverse), so an
/// error half-way through joining leaves the runtime where it started.
#[derive(Default)]
pub struct Restore {
    saved: Vec<(CloneFlags, OwnedFd)>,
    /// Our working directory when we joined a mount namespace (setns moves
    /// cwd and root to that namespace's root).
    cwd: Option<OwnedFd>,
}

impl Restore {
    /// Saves our current namespace of type `t` (for pid and time: the one
    /// our children get).
    fn remember(&mut self, t: LinuxNamespaceType) -> Result<()> {
        let own = match t {
            LinuxNamespaceType::Pid => "pid_for_children",
            LinuxNamespaceType::Time => "time_for_children",
            t => proc_name(t),
        };
        let p = format!("/proc/self/ns/{own}");
        let f = File::open(&p).map_err(|e| Error::io("open namespace", &p, e))?;
        if t == LinuxNamespaceType::Mount && self.cwd.is_none() {
            let cwd = nix::fcntl::open(
                ".",
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::Sys("open the working directory", e))?;
            // SAFETY: open returned a new fd that nothing else owns.
            self.cwd = Some(unsafe { OwnedFd::from_raw_fd(cwd) });
        }
        self.saved.push((clone_flag(t), OwnedFd::from(f)));
        Ok(())
    }

    /// Enters the namespace `fd` (named `what` in errors) after saving ours.
    pub fn enter(&mut self, t: LinuxNamespaceType, fd: BorrowedFd, what: &str) -> Result<()> {
        self.remember(t)?;
        setns(fd, clone_flag(t)).map_err(|e| Error::sys_at(format!("setns {what}"), e))
    }

    /// The child side of clone3: stay where we are, restore nothing.
    pub fn keep(mut self) {
        self.saved.clear();
        self.cwd = None;
    }
}

/// linux.timeOffsets into /proc/self/timens_offsets ("monotonic"/"boottime").
fn write_time_offsets(offsets: Option<&HashMap<String, LinuxTimeOffset>>) -> Result<()> {
    let mut text = String::new();
    for (clock, off) in offsets.into_iter().flatten() {
        let name = match clock.as_str() {
            "monotonic" => "monotonic",
            "boottime" => "boottime",
            other => {
                return Err(Error::InvalidConfig(format!(
                    "timeOffsets: unknown clock {other:?} (monotonic or boottime)"
                )))
            }
        };
        text.push_str(&format!(
            "{name} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text)
            .map_err(|e| Error::io("write", "/proc/self/timens_offsets", e))?;
    }
    Ok(())
}

impl Drop for Restore {
    /// A runtime that cannot get back to its own namespaces must not go on
    /// (it would run hooks or write state inside the container's): it
    /// ends at once with the reason.
    fn drop(&mut self) {
        for (flag, fd) in self.saved.drain(..).rev() {
            if let Err(e) = setns(fd.as_fd(), flag) {
                eprintln!("cannot return to the runtime's own namespace ({flag:?}): {e}");
                // SAFETY: _exit ends the process without running anything
                // more in the wrong namespace.
                unsafe { libc::_exit(1) };
            }
        }
        if let Some(cwd) = self.cwd.take() {
            if let Err(e) = nix::unistd::fchdir(cwd.as_raw_fd()) {
                eprintln!("cannot return to the runtime's working directory: {e}");
                // SAFETY: as above.
                unsafe { libc::_exit(1) };
            }
        }
    }
}

/// Writes the id maps of a new user namespace from outside it (the child
/// cannot map ids it does not own). Root needs no setgroups=deny.
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, crate::idmap::map_lines(maps)).map_err(|e| Error::io("write", p, e))?;
    }
    Ok(())
}

/// The host id that container id `id` maps to (identity without a map).
pub fn host_id(maps: Option<&Vec<LinuxIdMapping>>, id: u32) -> u32 {
    for m in maps.into_iter().flatten() {
        if id >= m.container_id() && id - m.container_id() < m.size() {
            return m.host_id() + (id - m.container_id());
        }
    }
    id
}
