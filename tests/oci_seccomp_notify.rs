//! SCMP_ACT_NOTIFY end to end: a seccomp agent in the test listens on
//! `linux.seccomp.listenerPath`, receives the notify fd (SCM_RIGHTS) with
//! the container process state JSON, and answers the container's mkdir
//! calls on its behalf: a chosen errno, a success that never happened, or
//! "carry on" (SECCOMP_USER_NOTIF_FLAG_CONTINUE). The probe inside prints
//! what it got. Run under runc 1.1.5 first, then under the runtime under
//! test: the probe's lines and the agent's answers must be the same, and
//! the state message must have runc's shape.

mod support;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const METADATA: &str = "cove-test-agent metadata";
/// mkdir of this path gets errno 42 (ENOMSG) from the agent.
const DENIED: &str = "/dev/shm/agent-denied";
/// mkdir of this path "succeeds" without the directory being made.
const FAKED: &str = "/dev/shm/agent-faked";
/// mkdir of anything else is carried out by the kernel.
const CONTINUED: &str = "/dev/shm/agent-continued";
const AGENT_ERRNO: i32 = libc::ENOMSG;

/// How long the agent serves at most: a hung container must not hang the
/// test.
const AGENT_DEADLINE: Duration = Duration::from_secs(20);

/// What the agent saw and did.
#[derive(Debug, Default)]
struct AgentLog {
    /// One container process state per connection, as received.
    states: Vec<Value>,
    /// One line per notification: `mkdir PATH -> ANSWER`.
    answers: Vec<String>,
    /// Anything that went wrong on the agent's side.
    errors: Vec<String>,
}

/// A seccomp agent serving in its own thread until told to finish.
struct Agent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<AgentLog>>,
    path: PathBuf,
}

impl Agent {
    fn start(path: &Path) -> Agent {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("bind agent socket {}: {e}", path.display()));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("agent socket: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, &flag));
        Agent {
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        }
    }

    /// Stops serving once every notify fd has hung up (all the processes
    /// under the filter are gone) and returns the log.
    fn finish(mut self) -> AgentLog {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(log)) => log,
            Some(Err(_)) => panic!("the seccomp agent thread panicked"),
            None => AgentLog::default(),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: UnixListener, stop: &AtomicBool) -> AgentLog {
    let mut log = AgentLog::default();
    let mut notify_fds: Vec<OwnedFd> = Vec::new();
    let deadline = Instant::now() + AGENT_DEADLINE;
    let mut stop_seen: Option<Instant> = None;
    loop {
        let mut pfds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
            .chain(notify_fds.iter().map(AsRawFd::as_raw_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll on pollfds we own, with their count.
        let ready = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            log.errors
                .push(format!("poll: {}", std::io::Error::last_os_error()));
            break;
        }
        if pfds[0].revents & libc::POLLIN != 0 {
            match receive_state(&listener) {
                Ok((state, fd)) => {
                    log.states.push(state);
                    notify_fds.push(fd);
                }
                Err(e) => log.errors.push(e),
            }
        }
        let mut hung_up = Vec::new();
        for (i, pfd) in pfds.iter().enumerate().skip(1) {
            if pfd.revents & libc::POLLIN != 0 {
                if let Some(answer) = answer_one(pfd.fd, &mut log.errors) {
                    log.answers.push(answer);
                }
            } else if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                // Every task using the filter has exited.
                hung_up.push(i - 1);
            }
        }
        for i in hung_up.into_iter().rev() {
            notify_fds.remove(i);
        }
        if stop.load(Ordering::SeqCst) {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if notify_fds.is_empty() || since.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        if Instant::now() > deadline {
            log.errors.push("agent deadline passed".into());
            break;
        }
    }
    log
}

/// Accepts one connection: the runtime sends the state JSON with the
/// notify fd attached to its first byte, then closes.
fn receive_state(listener: &UnixListener) -> Result<(Value, OwnedFd), String> {
    let (conn, _) = listener
        .accept()
        .map_err(|e| format!("accept on the agent socket: {e}"))?;
    conn.set_nonblocking(false)
        .and_then(|()| conn.set_read_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("agent connection: {e}"))?;
    let (mut data, fd) = recv_with_fd(&conn, 64 * 1024)?;
    let fd = fd.ok_or("the state message came without an fd")?;
    // A stream socket may deliver the JSON in pieces; the runtime need not
    // close the connection after it (runc keeps it open a while), so read
    // until the JSON is whole rather than until EOF.
    let state = loop {
        match serde_json::from_slice::<Value>(&data) {
            Ok(state) => break state,
            Err(e) if e.is_eof() => {
                let mut more = [0u8; 4096];
                let n = std::io::Read::read(&mut &conn, &mut more)
                    .map_err(|e| format!("read the rest of the state: {e}"))?;
                if n == 0 {
                    return Err(format!(
                        "the state message ends early: {}",
                        String::from_utf8_lossy(&data)
                    ));
                }
                data.extend_from_slice(&more[..n]);
            }
            Err(e) => {
                return Err(format!(
                    "the state message is not JSON ({e}): {}",
                    String::from_utf8_lossy(&data)
                ))
            }
        }
    };
    Ok((state, fd))
}

/// Receives one notification and answers it. None when the target went
/// away before the answer (the kernel then has nothing to answer).
fn answer_one(fd: RawFd, errors: &mut Vec<String>) -> Option<String> {
    // SAFETY: the kernel wants a zeroed struct seccomp_notif (EINVAL
    // otherwise); all-zero is a valid value of this plain C struct.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV fills `req`, which we own.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } < 0 {
        let err = std::io::Error::last_os_error();
        // ENOENT: the target died between poll and receive.
        if err.raw_os_error() != Some(libc::ENOENT) {
            errors.push(format!("SECCOMP_IOCTL_NOTIF_RECV: {err}"));
        }
        return None;
    }
    let call = if req.data.nr == libc::SYS_mkdir as i32 {
        "mkdir".to_string()
    } else {
        format!("syscall {}", req.data.nr)
    };
    let path = read_string(req.pid, req.data.args[0]).unwrap_or_else(|e| format!("<{e}>"));
    // The pid may have been reused while we read its memory: the id is
    // still valid only if the target still waits for this answer.
    // SAFETY: SECCOMP_IOCTL_NOTIF_ID_VALID reads the u64 we pass.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) } < 0 {
        return None;
    }
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: 0,
        flags: 0,
    };
    let answer = match path.as_str() {
        DENIED => {
            resp.error = -AGENT_ERRNO;
            format!("errno {AGENT_ERRNO}")
        }
        FAKED => "fake success".to_string(),
        _ => {
            resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
            "continue".to_string()
        }
    };
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads the response we own.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) } < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOENT) {
            errors.push(format!("SECCOMP_IOCTL_NOTIF_SEND: {err}"));
        }
        return None;
    }
    Some(format!("{call} {path} -> {answer}"))
}

/// A NUL-terminated string at `addr` in process `pid` (host pid: the
/// kernel translates notif.pid into the agent's pid namespace).
fn read_string(pid: u32, addr: u64) -> Result<String, String> {
    let mem = File::open(format!("/proc/{pid}/mem")).map_err(|e| format!("open mem: {e}"))?;
    let mut buf = [0u8; 256];
    let n = mem
        .read_at(&mut buf, addr)
        .map_err(|e| format!("read mem: {e}"))?;
    let end = buf[..n].iter().position(|b| *b == 0).unwrap_or(n);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// mkdir goes to the agent; everything else is allowed.
fn notify_profile(listener: &Path) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "listenerPath": listener.display().to_string(),
        "listenerMetadata": METADATA,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    })
}

/// The probes and what the agent makes of them.
const PROBES: &[&str] = &[
    "mkdir:/dev/shm/agent-denied",
    "mkdir:/dev/shm/agent-faked",
    "exists:/dev/shm/agent-faked",
    "mkdir:/dev/shm/agent-continued",
    "exists:/dev/shm/agent-continued",
    "chmod:0755",
];

const EXPECTED_PROBE_OUTPUT: &str = "\
mkdir:/dev/shm/agent-denied: errno ENOMSG
mkdir:/dev/shm/agent-faked: ok
exists:/dev/shm/agent-faked: errno ENOENT
mkdir:/dev/shm/agent-continued: ok
exists:/dev/shm/agent-continued: ok
chmod:0755: ok
";

fn expected_answers() -> Vec<String> {
    vec![
        format!("mkdir {DENIED} -> errno {AGENT_ERRNO}"),
        format!("mkdir {FAKED} -> fake success"),
        format!("mkdir {CONTINUED} -> continue"),
    ]
}

/// The state message with what changes from run to run (pids) and from
/// runtime to runtime (the spec version each implements) replaced, for
/// comparing runc's with ours.
fn normalised(state: &Value) -> Value {
    let mut s = state.clone();
    for ptr in ["/ociVersion", "/state/ociVersion"] {
        if let Some(v) = s.pointer_mut(ptr) {
            *v = json!("<version>");
        }
    }
    for ptr in ["/pid", "/state/pid"] {
        if let Some(v) = s.pointer_mut(ptr) {
            *v = json!("<pid>");
        }
    }
    s
}

/// Checks one container process state message against runc's format.
#[track_caller]
fn assert_state_message(state: &Value, ct: &Ct, status: &str) {
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state:#}");
    assert_eq!(state["metadata"], json!(METADATA), "{state:#}");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state:#}");
    assert!(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{state:#}"
    );
    let inner = &state["state"];
    assert_eq!(inner["id"], json!(ct.id), "{state:#}");
    assert_eq!(inner["status"], json!(status), "{state:#}");
    assert_eq!(
        inner["bundle"],
        json!(ct.bundle.display().to_string()),
        "{state:#}"
    );
}

/// A bundle running `args` with the seccomp probe mounted and a profile
/// whose listener is the agent's socket, for runc, and its twin for the
/// runtime under test: (the temp directory that holds the socket, the
/// socket, runc's, the twin). Or a SKIP line and None without runc or the
/// probe.
fn twins_with_agent(test: &str, args: &[&str]) -> Option<(TempDir, PathBuf, Ct, Ct)> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let probe = needs_seccomp_probe(test)?;
    let tmp = TempDir::new(test);
    let socket = tmp.join("agent.sock");
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.args(args).mount_seccomp_probe(&probe);
    reference.config["linux"]["seccomp"] = notify_profile(&socket);
    reference.save_config();
    let under_test = reference.twin(&env.bin);
    Some((tmp, socket, reference, under_test))
}

/// One foreground run with a fresh agent; returns the run and the log.
fn run_with_agent(ct: &Ct, socket: &Path) -> (Out, AgentLog) {
    let agent = Agent::start(socket);
    let out = ct.run();
    (out, agent.finish())
}

#[test]
fn agent_answers_mkdir_on_the_containers_behalf_as_runc() {
    let test = "agent_answers_mkdir_on_the_containers_behalf_as_runc";
    let args = [&[PROBE_IN_CT], PROBES].concat();
    let Some((_tmp, socket, reference, under_test)) = twins_with_agent(test, &args) else {
        return;
    };

    let (runc_out, runc_log) = run_with_agent(&reference, &socket);
    assert_eq!(
        runc_out.stdout, EXPECTED_PROBE_OUTPUT,
        "probe: runc with the agent:\n{runc_out}\n{runc_log:#?}"
    );
    let (out, log) = run_with_agent(&under_test, &socket);
    assert_same_as_runc(
        test,
        &observed(&runc_out),
        &observed(&out),
        &format!("{out}\nagent: {log:#?}"),
    );
    assert!(log.errors.is_empty(), "agent errors: {log:#?}");
    assert_eq!(log.answers, expected_answers(), "{log:#?}");
    assert_eq!(log.answers, runc_log.answers);
    assert_eq!(
        log.states.len(),
        1,
        "one connection per container: {log:#?}"
    );
    assert_state_message(&log.states[0], &under_test, "creating");
    assert_eq!(
        normalised(&log.states[0]),
        normalised(&runc_log.states[0]),
        "the state message differs from runc's"
    );

    // Again on the same state root: the filter now comes from cove-oci's
    // filter cache, without the parsed profile that names the listener
    // (which a hit parses only for a notifying filter).
    let (again, log) = run_with_agent(&under_test, &socket);
    assert_same_as_runc(
        test,
        &observed(&runc_out),
        &observed(&again),
        &format!("second run: {again}\nagent: {log:#?}"),
    );
    assert!(log.errors.is_empty(), "second run, agent errors: {log:#?}");
    assert_eq!(log.answers, expected_answers(), "second run: {log:#?}");
    assert_eq!(log.states.len(), 1, "second run: {log:#?}");
}

#[test]
fn exec_process_fd_goes_to_the_agent_too_as_runc() {
    // Every process that loads the filter hands over its own notify fd:
    // the init at create, and each `exec`, with the state of a running
    // container.
    let test = "exec_process_fd_goes_to_the_agent_too_as_runc";
    let Some((_tmp, socket, reference, under_test)) = twins_with_agent(test, &["sleep", "60"])
    else {
        return;
    };

    let scenario = |ct: &Ct| -> (String, AgentLog) {
        let agent = Agent::start(&socket);
        ct.run_detached().assert_ok();
        let exec = ct.exec(&[], &[PROBE_IN_CT, "mkdir:/dev/shm/agent-denied"]);
        ct.kill("KILL");
        ct.wait_status("stopped", Duration::from_secs(10));
        ct.delete_force();
        (observed(&exec), agent.finish())
    };
    let (runc_seen, runc_log) = scenario(&reference);
    assert_eq!(
        runc_seen, "mkdir:/dev/shm/agent-denied: errno ENOMSG\nexit code: 0\n",
        "probe: runc exec with the agent: {runc_log:#?}"
    );
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("runc agent: {runc_log:#?}");
    }
    let (seen, log) = scenario(&under_test);
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("agent under test: {log:#?}");
    }
    assert_same_as_runc(test, &runc_seen, &seen, &format!("agent: {log:#?}"));
    assert!(log.errors.is_empty(), "agent errors: {log:#?}");
    assert_eq!(log.answers, runc_log.answers);
    assert_eq!(log.states.len(), 2, "init and exec connect: {log:#?}");
    assert_state_message(&log.states[0], &under_test, "creating");
    // The exec'd process holds the filter ("pid"); the state is the
    // container's: running, with its init's pid (runc's message).
    assert_state_message(&log.states[1], &under_test, "running");
    assert_eq!(
        log.states[1]["state"]["pid"], log.states[0]["pid"],
        "state.pid of an exec is the init's: {log:#?}"
    );
    assert_ne!(log.states[1]["pid"], log.states[0]["pid"], "{log:#?}");
    for (ours, runcs) in log.states.iter().zip(&runc_log.states) {
        assert_eq!(
            normalised(ours),
            normalised(runcs),
            "a state message differs from runc's"
        );
    }
}
