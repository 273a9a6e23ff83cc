//! `cove exec` and `cove enter`: a process inside a running CT, with the
//! CT's namespaces, cgroup, capabilities and seccomp filter (the engine's
//! exec joins what the init has), waited for in the foreground.

use std::os::fd::AsFd;

use oci_spec::runtime::Process;

use cove_engine::container;
use cove_engine::exec::{self as engine_exec, ExecOptions};
use cove_engine::foreground;
use cove_engine::state::Status;

use crate::config;
use crate::console::ConsoleListener;
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::paths::{CtPaths, Paths};
use crate::spec::ENV_PATH;
use crate::template;

/// The CT's init process as saved by the engine, turned into a plain
/// process: same identity, capabilities and limits, new args, no terminal.
fn base_process(ct: &CtPaths, ctid: &Ctid) -> Result<Process> {
    let not_running = || Error::NotRunning(ctid.to_string());
    let c = container::load(&ct.oci_root, ctid.as_str()).map_err(|_| not_running())?;
    if c.status != Status::Running {
        return Err(not_running());
    }
    let spec = container::saved_spec(&c.dir)?;
    // `c` holds the engine's lock on the container, which exec takes again.
    drop(c);
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_terminal(Some(false));
    p.set_console_size(None);
    p.set_cwd("/".into());
    let mut env = vec![
        ENV_PATH.to_string(),
        "HOME=/root".to_string(),
        "container=cove".to_string(),
    ];
    if let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    p.set_env(Some(env));
    Ok(p)
}

/// Runs `process` in the CT and returns its exit status (128 + N for
/// signal N), relaying a terminal when it has one.
fn run(ct: &CtPaths, ctid: &Ctid, process: Process) -> Result<i32> {
    let tty = process.terminal().unwrap_or(false);
    let listener = if tty {
        Some(ConsoleListener::bind(
            &ct.run.join(format!("enter-{}.sock", std::process::id())),
        )?)
    } else {
        None
    };
    let opts = ExecOptions {
        process,
        console_socket: listener.as_ref().map(|l| l.path.clone()),
        pid_file: None,
        preserve_fds: 0,
    };
    let child = engine_exec::exec(&ct.oci_root, ctid.as_str(), &opts).map_err(|e| match e {
        cove_engine::Error::NotRunning
        | cove_engine::Error::NotExist(_)
        | cove_engine::Error::WrongState { .. } => Error::NotRunning(ctid.to_string()),
        e => e.into(),
    })?;
    let waited = (|| {
        let master = listener
            .as_ref()
            .map(ConsoleListener::receive_master)
            .transpose()?;
        drop(listener);
        // Blocked only now: the engine's child would inherit a blocked mask.
        let mut sfd = foreground::block_signals()?;
        Ok(match &master {
            Some(m) => foreground::wait_with_tty(child.pidfd.as_fd(), &mut sfd, m)?,
            None => foreground::wait_forwarding(child.pidfd.as_fd(), &mut sfd)?,
        })
    })();
    if waited.is_err() {
        // Nobody would relay its terminal or its signals, nor report how
        // it ended: it does not run on in the CT behind a failed exec.
        let _ = cove_engine::sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
        let mut fds = [nix::poll::PollFd::new(
            child.pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16));
    }
    waited
}

/// `cove exec CTID CMD [ARG...]`.
pub fn exec(paths: &Paths, arg: &str, command: &[String]) -> Result<i32> {
    if command.is_empty() {
        return Err(Error::BadInput(
            "exec: no command given: cove exec CTID COMMAND [ARG...]".into(),
        ));
    }
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let mut p = base_process(&ct, &ctid)?;
    p.set_args(Some(command.to_vec()));
    run(&ct, &ctid, p)
}

/// `cove enter CTID`: a login shell in the CT, on a new pty when our stdin
/// is a terminal.
pub fn enter(paths: &Paths, arg: &str) -> Result<i32> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let mut p = base_process(&ct, &ctid)?;
    // Looked up through the CT's own symlinks; only existence is asked.
    let exists = |path: &str, dir: bool| {
        template::resolve_in_root(&ct.rootfs, path)
            .map(|inside| ct.rootfs.join(inside.trim_start_matches('/')))
            .is_some_and(|host| if dir { host.is_dir() } else { host.is_file() })
    };
    let shell = if exists("/bin/bash", false) {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    p.set_args(Some(vec![shell.to_string(), "-l".to_string()]));
    p.set_cwd(if exists("/root", true) { "/root" } else { "/" }.into());
    p.set_terminal(Some(nix::unistd::isatty(0).unwrap_or(false)));
    run(&ct, &ctid, p)
}
