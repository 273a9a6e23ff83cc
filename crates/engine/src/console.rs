//! The container's terminal: a pty from the container's own devpts, the
//! master sent to the caller's --console-socket with SCM_RIGHTS (as runc
//! does, so containerd and podman receive it unchanged), the slave made the
//! process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{Error, Result};

nix::ioctl_write_ptr_bad!(tiocsptlck, libc::TIOCSPTLCK, libc::c_int);
nix::ioctl_read_bad!(tiocgptn, libc::TIOCGPTN, libc::c_uint);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s =
        UnixStream::connect(path).map_err(|e| Error::io("connect to console socket", path, e))?;
    Ok(s.into())
}

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub number: u32,
}

/// Opens a new pty pair from /dev/ptmx of the current mount namespace.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")
        .map_err(|e| Error::io("open", "/dev/ptmx", e))?
        .into();
    // The container owns /dev: make sure this is a pty multiplexer (5:2),
    // not whatever file or device was planted under that name.
    let st =
        nix::sys::stat::fstat(master.as_raw_fd()).map_err(|e| Error::Sys("fstat /dev/ptmx", e))?;
    let is_chr = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
        & nix::sys::stat::SFlag::S_IFMT
        == nix::sys::stat::SFlag::S_IFCHR;
    if !is_chr || nix::sys::stat::major(st.st_rdev) != 5 || nix::sys::stat::minor(st.st_rdev) != 2 {
        return Err(Error::Other(
            "/dev/ptmx in the container is not the pty multiplexer (5:2)".into(),
        ));
    }
    let unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    // SAFETY: ioctls on a pty master with correctly typed arguments.
    unsafe {
        tiocsptlck(master.as_raw_fd(), &unlock).map_err(|e| Error::Sys("TIOCSPTLCK", e))?;
        tiocgptn(master.as_raw_fd(), &mut number).map_err(|e| Error::Sys("TIOCGPTN", e))?;
    }
    // TIOCGPTPEER opens the slave through the master, with no path lookup a
    // container could redirect.
    // SAFETY: ioctl returning a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::Sys("TIOCGPTPEER", nix::errno::Errno::last()));
    }
    // SAFETY: the kernel returned a new fd.
    let slave = unsafe { OwnedFd::from_raw_fd(slave as RawFd) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid winsize pointer.
        unsafe { tiocswinsz(slave.as_raw_fd(), &ws) }.map_err(|e| Error::Sys("TIOCSWINSZ", e))?;
    }
    Ok(Pty {
        master,
        slave,
        number,
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// Sends the master over the console socket, with "/dev/ptmx" as the data,
/// the shape runc's shims read.
pub fn send_master(sock: &OwnedFd, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::Sys("send console master", e))?;
    Ok(())
}

/// The other end of [`send_master`] (cove-oci's own console socket, cove's
/// monitor): the pty master one message on `conn` carries, or None when it
/// carries no descriptor.
pub fn receive_master(conn: &UnixStream) -> nix::Result<Option<OwnedFd>> {
    let mut buf = [0u8; 256];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us this new descriptor; we own it now.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
}

/// Makes the slave our controlling terminal and our stdio.
pub fn become_tty(slave: &OwnedFd) -> Result<()> {
    // SAFETY: TIOCSCTTY on a tty fd; we are a session leader.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::Sys("TIOCSCTTY", nix::errno::Errno::last()));
    }
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(|e| Error::Sys("dup2 console", e))?;
    }
    Ok(())
}
