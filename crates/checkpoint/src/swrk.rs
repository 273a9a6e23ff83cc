//! One CRIU service worker: `criu swrk <fd>` with a SOCK_SEQPACKET socket
//! pair, one protobuf message per packet. We send a request, answer each
//! notification CRIU sends on the way (an fd may come with one, e.g. the
//! pty master of a restored terminal), and read the final response.

use std::io::BufRead;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{
    recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

use crate::error::{Error, Result};
use crate::rpc::{self, ReqType, Resp};

/// Called for each notification: the script name (post-dump,
/// setup-namespaces, post-restore, orphan-pts-master, status-ready...), the
/// pid it concerns and the fd that came with it.
pub type OnNotify<'a> = dyn FnMut(&str, i32, Option<OwnedFd>) -> Result<()> + 'a;

/// CRIU's responses are small; runc reads them into 40 KiB too.
const RESP_BUF: usize = 10 * 4096;

/// Where CRIU's stdio goes: nowhere (dump), or ours (restore: the restored
/// tasks' stdio pipes are handed over through CRIU's fds 0-2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stdio3 {
    Null,
    Ours,
}

pub struct Worker {
    child: Option<Child>,
    sock: OwnedFd,
}

impl Worker {
    /// Starts `criu swrk`. `pass` are the fds named in the request (image
    /// dir, work dir, namespaces): they stay close-on-exec in this process,
    /// so nothing else it runs meanwhile (restore-time hooks) inherits
    /// them, and only CRIU gets them, at their numbers.
    pub fn spawn(criu: &str, stdio: Stdio3, pass: &[RawFd]) -> Result<Worker> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::Sys("socketpair", e))?;
        let mut keep: Vec<RawFd> = pass.to_vec();
        keep.push(theirs.as_raw_fd());
        let io = || match stdio {
            Stdio3::Null => Stdio::null(),
            Stdio3::Ours => Stdio::inherit(),
        };
        let mut cmd = Command::new(criu);
        cmd.arg("swrk")
            .arg(theirs.as_raw_fd().to_string())
            .stdin(io())
            .stdout(io())
            .stderr(io());
        // SAFETY: between fork and exec only fcntl(2), which is
        // async-signal-safe, on fd numbers copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Unavailable(format!("{criu} is not installed (apt-get install criu)"))
            } else {
                Error::Protocol(format!("cannot start {criu} swrk: {e}"))
            }
        })?;
        // Our copy of CRIU's end goes now, so a CRIU that dies closes the
        // socket and we never wait for an answer that cannot come.
        drop(theirs);
        Ok(Worker {
            child: Some(child),
            sock: ours,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        send(self.sock.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::Sys("send to criu", e))?;
        Ok(())
    }

    fn recv(&self) -> Result<(Resp, Option<OwnedFd>)> {
        let mut buf = vec![0u8; RESP_BUF];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sys("recvmsg from criu", e)),
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs().map_err(|e| Error::Sys("recvmsg from criu", e))? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: the kernel just gave us this fd.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
            }
        };
        if n == 0 {
            return Err(Error::Protocol(
                "criu exited without an answer (see its log)".into(),
            ));
        }
        if n == RESP_BUF {
            return Err(Error::Protocol("response larger than 40 KiB".into()));
        }
        let resp =
            Resp::decode(&buf[..n]).map_err(|_| Error::Protocol("malformed response".into()))?;
        Ok((resp, fd))
    }

    /// Sends `req` and answers notifications with `on_notify(script, pid,
    /// fd)` until the final response, which is returned if it says success.
    pub fn call(
        &mut self,
        kind: ReqType,
        req: &[u8],
        log: Option<&Path>,
        on_notify: &mut OnNotify,
    ) -> Result<Resp> {
        self.send(req)?;
        loop {
            let (resp, fd) = match self.recv() {
                Ok(r) => r,
                Err(Error::Protocol(m)) => {
                    return Err(Error::Criu {
                        what: kind.name(),
                        detail: with_log(m, log),
                    })
                }
                Err(e) => return Err(e),
            };
            if resp.kind == Some(ReqType::Notify) {
                if let Some((script, pid)) = &resp.notify {
                    on_notify(script, *pid, fd)?;
                }
                self.send(&rpc::notify_ack())?;
                continue;
            }
            if !resp.success {
                let mut m = match (&resp.cr_errmsg, resp.cr_errno) {
                    (Some(msg), _) if !msg.is_empty() => msg.clone(),
                    (_, Some(e)) if e != 0 => {
                        format!("{}", std::io::Error::from_raw_os_error(e))
                    }
                    _ => "unsuccessful".to_string(),
                };
                if let Some(e) = resp.cr_errno.filter(|e| *e != 0) {
                    m = format!("{m} (errno {e})");
                }
                return Err(Error::Criu {
                    what: kind.name(),
                    detail: with_log(m, log),
                });
            }
            return Ok(resp);
        }
    }

    /// Closes our end and reaps CRIU; its exit status matters unless
    /// `ignore_status` (after a pre-dump CRIU waits for more and is cut off).
    pub fn finish(mut self, ignore_status: bool) -> Result<()> {
        let _ = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = child
            .wait()
            .map_err(|e| Error::Protocol(format!("wait for criu: {e}")))?;
        if !status.success() && !ignore_status {
            return Err(Error::Protocol(format!("criu exited with {status}")));
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ =
                nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
            let _ = child.wait();
        }
    }
}

/// `detail`, then the first error CRIU wrote into its log and where the
/// whole log is.
fn with_log(detail: String, log: Option<&Path>) -> String {
    let Some(log) = log else { return detail };
    match first_error(log) {
        Some(line) => format!("{detail}: {line} (log: {})", log.display()),
        None => format!("{detail} (log: {})", log.display()),
    }
}

/// The first `Error (file:line): message` line of a CRIU log, as
/// "file:line: message" without the timestamp.
pub fn first_error(log: &Path) -> Option<String> {
    let f = std::fs::File::open(log).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .find_map(|l| {
            // CRIU sets TCP_CORK/TCP_NODELAY on its page-server socket and
            // logs an error when that socket is not TCP (a socketpair
            // handed over with --ps-socket): never the cause of anything.
            if l.contains("Unable to restore TCP_") {
                return None;
            }
            let at = l.find("Error (")?;
            let rest = &l[at + "Error (".len()..];
            let (place, msg) = rest.split_once("): ")?;
            Some(format!("{place}: {}", msg.trim()))
        })
}
