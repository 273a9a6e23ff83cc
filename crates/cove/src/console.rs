//! Terminals: the console socket on which a container's init (or an
//! `enter` shell) hands over its pty master, and the console log the
//! monitor keeps of everything the CT writes to its console.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{Error, Result};

/// sun_path holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

pub struct ConsoleListener {
    listener: UnixListener,
    pub path: PathBuf,
}

impl ConsoleListener {
    pub fn bind(path: &Path) -> Result<ConsoleListener> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::BadInput(format!(
                "console socket {} is {len} bytes long, over the {MAX_SOCKET_PATH} a unix socket path may have: use a shorter run directory",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).map_err(|e| Error::io("bind console socket", path, e))?;
        Ok(ConsoleListener {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The pty master the process sent while it was being created. The
    /// engine returns only after the process sent it, so it is already
    /// queued: never wait for it.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set non-blocking", &self.path, e))?;
        let (conn, _) = self.listener.accept().map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => {
                Error::Tool("the container's process did not connect to its console socket".into())
            }
            _ => Error::io("accept on console socket", &self.path, e),
        })?;
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::sys("receive the console's pty master", e))?;
        let cmsgs = msg
            .cmsgs()
            .map_err(|e| Error::sys("receive the console's pty master", e))?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS gave us this new descriptor; we own it now.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(Error::Tool(
            "the console socket message carried no pty master".into(),
        ))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Opens the pty's slave through its master (TIOCGPTPEER, no path lookup).
/// The monitor keeps one open so the master never reports a hang-up while
/// the CT's init has no console open, and output is never lost to it.
pub fn open_peer(master: &OwnedFd) -> Result<OwnedFd> {
    // SAFETY: ioctl on a pty master; returns a new descriptor or -1.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::sys("TIOCGPTPEER", nix::errno::Errno::last()));
    }
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The console log, rotated once to `console.log.1` when it passes
/// `MAX_LOG` bytes so a chatty CT cannot fill the run directory.
pub struct ConsoleLog {
    path: PathBuf,
    file: Option<File>,
    written: u64,
}

pub const MAX_LOG: u64 = 1 << 20;

impl ConsoleLog {
    pub fn open(path: &Path) -> Result<ConsoleLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            file: Some(file),
            written,
        })
    }

    /// Appends; a failing log never stops the CT, it only stops logging.
    pub fn write(&mut self, data: &[u8]) {
        if self.written + data.len() as u64 > MAX_LOG {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&self.path, &old);
            self.file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&self.path)
                .ok();
            self.written = 0;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(data).is_err() {
                self.file = None;
            }
            self.written += data.len() as u64;
        }
    }
}
