//! Terminals: the console socket on which a container's init (or an
//! `enter` shell) hands over its pty master, the console log the monitor
//! keeps of everything the CT writes to its console, and `cove console`
//! (the monitor's side, [`Attach`], and the user's, [`attach`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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
        cove_engine::console::receive_master(&conn)
            .map_err(|e| Error::sys("receive the console's pty master", e))?
            .ok_or_else(|| Error::Tool("the console socket message carried no pty master".into()))
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

/// `cove console` clients of a running CT: the monitor listens on the CT's
/// console socket once the init has handed over its pty, copies what the CT
/// writes on its console to every client and what a client types to the
/// console.
pub struct Attach {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<UnixStream>,
}

impl Attach {
    pub fn bind(path: &Path) -> Result<Attach> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).map_err(|e| Error::io("bind console socket", path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set non-blocking", path, e))?;
        Ok(Attach {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
        })
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    pub fn client_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.clients.iter().map(|c| c.as_fd()).collect()
    }

    /// Takes every client waiting to connect.
    pub fn accept(&mut self) {
        while let Ok((conn, _)) = self.listener.accept() {
            if conn.set_nonblocking(true).is_ok() {
                self.clients.push(conn);
            }
        }
    }

    /// Copies console output to every client; one that cannot keep up
    /// (its socket buffer is full) or has gone is dropped.
    pub fn broadcast(&mut self, data: &[u8]) {
        self.clients.retain_mut(|c| c.write_all(data).is_ok());
    }

    /// What client `i` typed (empty when nothing); the client is dropped
    /// at its end of file or on an error. Returns whether it is still there.
    pub fn read_client(&mut self, i: usize, buf: &mut [u8]) -> (usize, bool) {
        let Some(c) = self.clients.get_mut(i) else {
            return (0, false);
        };
        match c.read(buf) {
            Ok(0) => {
                self.clients.remove(i);
                (0, false)
            }
            Ok(n) => (n, true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (0, true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => (0, true),
            Err(_) => {
                self.clients.remove(i);
                (0, false)
            }
        }
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A key that detaches `cove console` (Ctrl-], as telnet and virsh have it).
pub const DETACH_KEY: u8 = 0x1d;
/// Esc then `.` also detaches, as vzctl's console has it.
const ESC: u8 = 0x1b;

/// Finds the detach keys in what the user types, also when Esc and `.`
/// come in two reads. Esc itself is passed on at once (programs in the CT
/// need a lone Esc, and escape sequences start with one); only the `.`
/// that follows it is kept back.
#[derive(Debug, Default)]
struct DetachKeys {
    after_esc: bool,
}

impl DetachKeys {
    /// How many bytes of `typed` go to the CT, and whether to detach after
    /// them.
    fn scan(&mut self, typed: &[u8]) -> (usize, bool) {
        for (i, b) in typed.iter().enumerate() {
            if *b == DETACH_KEY || (self.after_esc && *b == b'.') {
                self.after_esc = false;
                return (i, true);
            }
            self.after_esc = *b == ESC;
        }
        (typed.len(), false)
    }
}

/// `cove console`: relays this terminal to the CT's console through its
/// monitor until the user presses Ctrl-] or Esc then `.` (or stdin ends),
/// or the CT stops.
/// Returns whether the CT stopped meanwhile.
pub fn attach(sock: &Path, ctid: &str) -> Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

    let mut conn = UnixStream::connect(sock).map_err(|e| {
        Error::Tool(format!(
            "CT {ctid}: cannot reach its console ({}: {e}); its monitor is not running (restart the CT to get a console back)",
            sock.display()
        ))
    })?;
    // SAFETY: fds 0 and 1 stay open for the life of the process.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let saved = nix::unistd::isatty(0)
        .unwrap_or(false)
        .then(|| tcgetattr(stdin).ok())
        .flatten();
    eprint!("Connected to the console of CT {ctid}; press Ctrl-] or Esc then . to detach.\r\n");
    if let Some(t) = &saved {
        let mut raw = t.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin, SetArg::TCSANOW, &raw);
    }
    let mut buf = [0u8; 8192];
    let mut keys = DetachKeys::default();
    let mut stdin_open = true;
    let stopped = loop {
        let mut fds = vec![PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            break false;
        }
        let from_ct = fds[0].revents().is_some_and(|r| !r.is_empty());
        let typed = fds
            .get(1)
            .is_some_and(|f| f.revents().is_some_and(|r| !r.is_empty()));
        drop(fds);
        if from_ct {
            match conn.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    let mut data = &buf[..n];
                    while !data.is_empty() {
                        match nix::unistd::write(stdout, data) {
                            Ok(w) if w > 0 => data = &data[w..],
                            Err(nix::errno::Errno::EINTR) => {}
                            _ => break,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        }
        if typed {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let (pass, detach) = keys.scan(&buf[..n]);
                    let _ = conn.write_all(&buf[..pass]);
                    if detach {
                        break false;
                    }
                }
            }
            if !stdin_open {
                // Input ended (a pipe): what the CT answers is not waited for.
                break false;
            }
        }
    };
    if let Some(t) = &saved {
        let _ = tcsetattr(stdin, SetArg::TCSANOW, t);
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_bracket_detaches_and_is_not_passed_on() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.scan(b"ls\r"), (3, false));
        assert_eq!(keys.scan(b"ab\x1dcd"), (2, true));
    }

    #[test]
    fn esc_then_dot_detaches_also_across_reads() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.scan(b"x\x1b."), (2, true));
        let mut keys = DetachKeys::default();
        assert_eq!(keys.scan(b"x\x1b"), (2, false));
        assert_eq!(keys.scan(b".rest"), (0, true));
    }

    #[test]
    fn esc_sequences_and_lone_dots_pass_through() {
        let mut keys = DetachKeys::default();
        // An arrow key, a dot after other text, Esc then something else.
        assert_eq!(keys.scan(b"\x1b[A"), (3, false));
        assert_eq!(keys.scan(b"a.b"), (3, false));
        assert_eq!(keys.scan(b"\x1bx."), (3, false));
    }
}
