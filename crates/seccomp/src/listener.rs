//! Handing the notify fd to the seccomp agent at `listenerPath`, the way
//! runc does: connect a unix stream socket, send the "container process
//! state" JSON in one sendmsg(2) with the fd attached as SCM_RIGHTS.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use oci_spec::runtime::{ContainerProcessStateBuilder, State, SECCOMP_FD_NAME};

use crate::Error;

/// The message runc sends: `{"ociVersion", "fds": ["seccompFd"], "pid",
/// "metadata", "state"}`, where `pid` is the process that holds the filter
/// as the runtime sees it, `metadata` is `linux.seccomp.listenerMetadata`
/// (left out when empty, as runc does) and `state` the container's state.
pub fn container_process_state(
    pid: i32,
    metadata: Option<&str>,
    state: &State,
) -> Result<Vec<u8>, Error> {
    let mut builder = ContainerProcessStateBuilder::default()
        .version(state.version().clone())
        .fds(vec![SECCOMP_FD_NAME.to_string()])
        .pid(pid)
        .state(state.clone());
    if let Some(metadata) = metadata.filter(|m| !m.is_empty()) {
        builder = builder.metadata(metadata.to_string());
    }
    let cps = builder
        .build()
        .map_err(|_| Error::Internal("building the container process state"))?;
    serde_json::to_vec(&cps).map_err(Error::State)
}

/// Sends `notify_fd` and `state_json` (see [`container_process_state`]) to
/// the seccomp agent listening on `listener_path`.
pub fn send_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd,
    state_json: &[u8],
) -> Result<(), Error> {
    let stream = UnixStream::connect(listener_path).map_err(|source| Error::ListenerConnect {
        path: listener_path.to_path_buf(),
        source,
    })?;
    let send_err = |source| Error::ListenerSend {
        path: listener_path.to_path_buf(),
        source,
    };
    let sent = send_with_fd(&stream, state_json, notify_fd).map_err(send_err)?;
    // A stream socket may take less than all of it; the fd went with the
    // first byte, the rest follows plainly.
    let mut rest = &state_json[sent..];
    while !rest.is_empty() {
        let n = io::Write::write(&mut &stream, rest).map_err(send_err)?;
        if n == 0 {
            return Err(send_err(io::ErrorKind::WriteZero.into()));
        }
        rest = &rest[n..];
    }
    Ok(())
}

fn send_with_fd(stream: &UnixStream, data: &[u8], fd: BorrowedFd) -> io::Result<usize> {
    const FD_SIZE: u32 = std::mem::size_of::<libc::c_int>() as u32;
    // Room for one cmsghdr carrying one int, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_SIZE) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));

    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `control`, large enough for one
    // CMSG_SPACE(int), so CMSG_FIRSTHDR is non-null and CMSG_DATA has room
    // for the int written below.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(FD_SIZE) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, fd.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` and what it points to live across the call.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
