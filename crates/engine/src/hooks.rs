//! Runs OCI hooks: the state JSON on stdin, the spec's args and env, and a
//! timeout after which the hook is killed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

pub fn run(hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(h, state_json)?;
    }
    Ok(())
}

/// poststart and poststop: a failing hook is logged and the rest still run
/// (runtime-spec: "log a warning ... the remaining hooks and lifecycle continue").
pub fn run_warn(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = run_one(h, state_json) {
            tracing::warn!("{kind} hook failed: {e}");
        }
    }
}

/// A memfd: needs no file system (O_TMPFILE is refused on overlay/9p).
fn tempfile_unnamed() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: a valid C string; the returned fd is new and ours.
    let fd = unsafe { libc::memfd_create(c"cove-hook-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn run_one(h: &Hook, state_json: &[u8]) -> Result<()> {
    let err = |msg: String| Error::Hook {
        path: h.path().clone(),
        msg,
    };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    // As runc (Go's exec.Cmd): a hook without `env` inherits the runtime's
    // environment; a hook with one (even empty) gets exactly that.
    if let Some(env) = h.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    // stderr goes to an unnamed file, not a pipe: a chatty hook cannot fill
    // a pipe nobody reads and hang the runtime.
    let errfile = tempfile_unnamed().map_err(|e| err(format!("temp file for stderr: {e}")))?;
    let errfile_read = errfile.try_clone().map_err(|e| err(e.to_string()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(errfile));
    let mut child = cmd.spawn().map_err(|e| err(format!("cannot run: {e}")))?;
    // The state goes in as the hook reads it, inside the timed wait below:
    // a hook that never reads a state larger than the pipe must still time
    // out. A hook may exit without reading its stdin: EPIPE is no error.
    let mut stdin = child.stdin.take();
    if let Some(pipe) = &stdin {
        let fd = std::os::fd::AsRawFd::as_raw_fd(pipe);
        // SAFETY: fcntl on our own pipe fd.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let mut pending = state_json;
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    // Wait on a pidfd: woken the moment the hook exits (a sleep-and-poll
    // loop added a millisecond on average to every hook).
    let pidfd =
        crate::sys::pidfd_open(child.id() as i32).map_err(|e| err(format!("pidfd_open: {e}")))?;
    loop {
        while let Some(pipe) = stdin.as_mut() {
            if pending.is_empty() {
                stdin = None;
                break;
            }
            match pipe.write(pending) {
                Ok(n) => pending = &pending[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => stdin = None,
            }
        }
        let wait_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        let mut pfds = [
            libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stdin.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd),
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        // SAFETY: valid pollfds that outlive the call (a negative fd is
        // ignored by poll).
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), 2, wait_ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err(format!("poll: {e}")));
        }
        if pfds[0].revents != 0 {
            drop(stdin.take());
            let status = child.wait().map_err(|e| err(e.to_string()))?;
            if status.success() {
                return Ok(());
            }
            let mut text = String::new();
            let mut f = errfile_read;
            let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0));
            let _ =
                std::io::Read::read_to_string(&mut std::io::Read::take(&mut f, 4096), &mut text);
            return Err(err(format!("{status}, stderr: {}", text.trim())));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "timed out after {} s",
                h.timeout().unwrap_or(0)
            )));
        }
    }
}
