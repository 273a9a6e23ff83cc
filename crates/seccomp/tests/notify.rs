//! SCMP_ACT_NOTIFY end to end, the way a runtime wires it: the filtered
//! process loads the filter and reports the notify fd's number through a
//! pipe (write is the one syscall a profile may not notify), the runtime
//! takes a copy with pidfd_getfd and sends it with the container process
//! state to the agent at listenerPath, and the agent answers the syscall.

// Syscall numbers and `int 0x80` are x86_64's, as is the compiler so far.
#![cfg(target_arch = "x86_64")]

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use cove_seccomp::{compile, container_process_state, from_value, send_listener};
use oci_spec::runtime::{ContainerState, StateBuilder};
use serde_json::json;

const ANSWER: i64 = 4242;

#[test]
fn agent_receives_the_fd_and_answers_a_syscall() {
    let dir = scratch_dir();
    let socket = dir.join("agent.sock");
    let filter = compile(
        &from_value(&json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "listenerMetadata": "answer-getppid",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap(),
    )
    .unwrap();
    assert!(filter.uses_notify());

    let listener = UnixListener::bind(&socket).unwrap();
    let agent = std::thread::spawn(move || agent(listener));

    let mut pipe = [0; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: the child only makes syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: syscalls only, as above.
        let code = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            match filter.load() {
                Ok(Some(fd)) => {
                    let raw: RawFd = fd.as_raw_fd();
                    std::mem::forget(fd);
                    libc::write(pipe[1], &raw as *const RawFd as *const libc::c_void, 4);
                    if libc::syscall(libc::SYS_getppid) == ANSWER {
                        0
                    } else {
                        1
                    }
                }
                _ => 2,
            }
        };
        // SAFETY: leaves the child.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: we own pipe[1]'s copy in the parent; the child keeps its own.
    unsafe { libc::close(pipe[1]) };
    // SAFETY: pipe[0] is ours.
    let mut reader = unsafe { std::fs::File::from_raw_fd(pipe[0]) };
    let mut raw = [0u8; 4];
    reader.read_exact(&mut raw).unwrap();
    let child_fd = RawFd::from_ne_bytes(raw);

    let notify_fd = pidfd_getfd(pid, child_fd).unwrap();
    let state = StateBuilder::default()
        .version("1.0.2")
        .id("ct1")
        .status(ContainerState::Running)
        .pid(pid)
        .bundle("/bundle")
        .build()
        .unwrap();
    let message = container_process_state(pid, Some("answer-getppid"), &state).unwrap();
    send_listener(&socket, std::os::fd::AsFd::as_fd(&notify_fd), &message).unwrap();

    let received = agent.join().unwrap();
    assert_eq!(received["ociVersion"], "1.0.2");
    assert_eq!(received["fds"], json!(["seccompFd"]));
    assert_eq!(received["pid"], pid);
    assert_eq!(received["metadata"], "answer-getppid");
    assert_eq!(received["state"]["id"], "ct1");
    assert_eq!(received["state"]["status"], "running");

    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_listener_names_the_socket_it_could_not_reach() {
    let dir = scratch_dir();
    let missing = dir.join("nobody.sock");
    let fd = std::fs::File::open("/dev/null").unwrap();
    let err = send_listener(&missing, std::os::fd::AsFd::as_fd(&fd), b"{}").unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "seccomp: cannot connect to the seccomp agent at {}: ",
            missing.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent: one connection, one message with one fd, one notification.
fn agent(listener: UnixListener) -> serde_json::Value {
    let (stream, _) = listener.accept().unwrap();
    let (message, fd) = recv_with_fd(stream.as_raw_fd()).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&message).unwrap();

    // SAFETY: both are plain data; the kernel wants the request zeroed.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV fills `req`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            &mut req,
        )
    };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", io::Error::last_os_error());
    assert_eq!(req.data.nr as i64, libc::SYS_getppid);
    // SAFETY: plain data.
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    resp.val = ANSWER;
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads `resp`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &mut resp,
        )
    };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", io::Error::last_os_error());
    state
}

fn recv_with_fd(socket: RawFd) -> io::Result<(Vec<u8>, OwnedFd)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    // SAFETY: walking the control buffer the kernel filled.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no SCM_RIGHTS"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
        Ok((buf, OwnedFd::from_raw_fd(fd)))
    }
}

fn pidfd_getfd(pid: libc::pid_t, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open and pidfd_getfd take integers and return new fds.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(copy as RawFd))
    }
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cove-seccomp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
