//! The attributes of a container process that init and exec share:
//! rlimits, scheduling, identity, capabilities, umask, cwd, environment,
//! and the final execve.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain, PosixRlimitType, Process};

use crate::error::{Error, Result};
use crate::sys::{openat2, RESOLVE_NO_MAGICLINKS};

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    use PosixRlimitType::*;
    Some(match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let res = rlimit_resource(r.typ()).ok_or_else(|| {
            Error::InvalidConfig(format!("rlimit {:?} is not supported", r.typ()))
        })?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: a valid resource number and rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(Error::sys_at(
                format!("setrlimit {:?}", r.typ()),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(p: &Process) -> Result<()> {
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Error::io("write", "/proc/self/oom_score_adj", e))?;
    }
    Ok(())
}

pub fn set_io_priority(p: &Process) -> Result<()> {
    if let Some(io) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass::*;
        let class: i64 = match io.class() {
            IoprioClassRt => 1,
            IoprioClassBe => 2,
            IoprioClassIdle => 3,
        };
        const IOPRIO_WHO_PROCESS: i64 = 1;
        // SAFETY: integer-only syscall.
        let r = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                (class << 13) | io.priority(),
            )
        };
        if r < 0 {
            return Err(Error::Sys("ioprio_set", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

pub fn set_scheduler(p: &Process) -> Result<()> {
    let Some(s) = p.scheduler() else {
        return Ok(());
    };
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    use oci_spec::runtime::LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: a sched_attr of the declared size for the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r < 0 {
        return Err(Error::Sys("sched_setattr", nix::errno::Errno::last()));
    }
    Ok(())
}

pub fn personality_value(p: &LinuxPersonality) -> Result<libc::c_ulong> {
    // runtime-spec 1.3 defines no personality flags yet.
    if let Some(f) = p.flags().iter().flatten().next() {
        return Err(Error::InvalidConfig(format!(
            "personality flag {f:?} is not supported"
        )));
    }
    Ok(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    })
}

pub fn set_personality(p: Option<&LinuxPersonality>) -> Result<()> {
    if let Some(p) = p {
        let v = personality_value(p)?;
        // SAFETY: integer-only call.
        if unsafe { libc::personality(v) } < 0 {
            return Err(Error::Sys("personality", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// setgroups/setgid/setuid keeping the permitted capabilities, so the spec's
/// sets can be applied afterwards for a non-root user.
pub fn set_identity(p: &Process, allow_setgroups: bool) -> Result<()> {
    let u = p.user();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if allow_setgroups {
        let gids: Vec<Gid> = u
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).map_err(|e| Error::Sys("setgroups", e))?;
    }
    let (gid, uid) = (Gid::from_raw(u.gid()), Uid::from_raw(u.uid()));
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys_at(format!("setgid {gid}"), e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys_at(format!("setuid {uid}"), e))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::Sys(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

pub fn set_umask(p: &Process) {
    let m = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
}

/// chdir to the process cwd, looked up without magic links so a leaked fd
/// path (/proc/self/fd/N) cannot put the process outside its root.
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    let root = std::fs::File::open("/").map_err(|e| Error::io("open", "/", e))?;
    let fd = openat2(
        root.as_fd(),
        cwd,
        libc::O_PATH | libc::O_DIRECTORY,
        RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| Error::sys_at(format!("chdir to cwd {}", cwd.display()), e))?;
    nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map_err(|e| Error::sys_at(format!("chdir {}", cwd.display()), e))?;
    // A cwd outside our root shows up as "(unreachable)" in getcwd.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::InvalidConfig(format!(
            "cwd {} is outside the container",
            cwd.display()
        ))),
    }
}

/// The environment for execve: later entries win over earlier ones with
/// the same name (exec -e over the spec, as runc), and HOME comes from the
/// container's /etc/passwd when the spec does not set it, as runc does.
pub fn environment(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    for kv in p.env().iter().flatten() {
        let name = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            home_of(p.user().uid()).unwrap_or_else(|| "/".into())
        ));
    }
    env
}

/// Reads the container's /etc/passwd defensively: a FIFO, a device or a
/// symlink planted there must not hang or feed the runtime.
fn home_of(uid: u32) -> Option<String> {
    use std::io::Read;
    let root = std::fs::File::open("/").ok()?;
    let fd = openat2(
        root.as_fd(),
        Path::new("etc/passwd"),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW,
        RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut passwd = String::new();
    file.take(1 << 20).read_to_string(&mut passwd).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

/// Finds args[0] as execvp would, with the container's PATH. The errors
/// read as runc's (Go's `exec.LookPath`), because its clients sort them by
/// their words: podman and docker answer "no such file or directory" and
/// "executable file not found" with exit code 127 and "permission denied"
/// with 126.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match std::fs::metadata(&p) {
            Err(e) => Err(Error::InvalidConfig(format!(
                "exec: {arg0:?}: stat {arg0}: {}",
                errno_text(&e)
            ))),
            Ok(_) if is_exec(&p) => Ok(p),
            // A directory or a file without an execute bit.
            Ok(_) => Err(Error::InvalidConfig(format!(
                "exec: {arg0:?}: permission denied"
            ))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(arg0))
        .find(|p| is_exec(p))
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "exec: {arg0:?}: executable file not found in $PATH"
            ))
        })
}

/// An errno's text as Go prints it: the C library's, first letter lower
/// ("no such file or directory").
fn errno_text(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::InvalidConfig(format!("NUL byte in {s:?}")))
        })
        .collect()
}

/// execve; returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Error {
    let run = || -> Result<std::convert::Infallible> {
        let p = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::InvalidConfig("NUL in path".into()))?;
        nix::unistd::execve(&p, &cstrings(args)?, &cstrings(env)?)
            .map_err(|e| Error::sys_at(format!("exec {}", path.display()), e))
    };
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(arg0: &str) -> String {
        find_executable(arg0, &["PATH=/nonexistent-dir".to_string()])
            .expect_err(arg0)
            .to_string()
    }

    #[test]
    fn find_executable_words_its_errors_as_runc_does() {
        assert!(
            message("/nonexistent/x").ends_with(
                "exec: \"/nonexistent/x\": stat /nonexistent/x: no such file or directory"
            ),
            "{}",
            message("/nonexistent/x")
        );
        assert!(
            message("/etc/passwd/x")
                .ends_with("exec: \"/etc/passwd/x\": stat /etc/passwd/x: not a directory"),
            "{}",
            message("/etc/passwd/x")
        );
        for not_executable in ["/etc/passwd", "/"] {
            let m = message(not_executable);
            assert!(
                m.ends_with(&format!("exec: \"{not_executable}\": permission denied")),
                "{m}"
            );
        }
        let m = message("sh");
        assert!(
            m.ends_with("exec: \"sh\": executable file not found in $PATH"),
            "{m}"
        );
        assert_eq!(
            find_executable("/bin/sh", &[]).ok(),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
