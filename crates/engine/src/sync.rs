//! The channel between the runtime and the container's first process while
//! it is set up: a SOCK_SEQPACKET pair carrying one small message per packet.
//! A closed peer reads as an error, so a child that dies mid-setup is noticed.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// parent -> child: id maps written, cgroup joined; go on.
    Go,
    /// child -> parent: mounts are done; run prestart/createRuntime hooks.
    MountsReady,
    /// parent -> child: hooks ran.
    HooksDone,
    /// child -> parent: set up; the child now waits on the exec fifo.
    Ready,
    /// child -> parent: setup failed with this message.
    Failed(String),
    /// child -> parent: the seccomp notify fd rides along (SCM_RIGHTS).
    SeccompFd,
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go => vec![1],
            Msg::MountsReady => vec![2],
            Msg::HooksDone => vec![3],
            Msg::Ready => vec![4],
            Msg::Failed(s) => {
                let mut v = vec![5];
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::SeccompFd => vec![6],
        }
    }
    fn decode(b: &[u8]) -> Option<Msg> {
        Some(match b.first()? {
            1 => Msg::Go,
            2 => Msg::MountsReady,
            3 => Msg::HooksDone,
            4 => Msg::Ready,
            5 => Msg::Failed(String::from_utf8_lossy(&b[1..]).into_owned()),
            6 => Msg::SeccompFd,
            _ => return None,
        })
    }
}

pub struct Channel(pub OwnedFd);

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Sys("socketpair", e))?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        send(self.0.as_raw_fd(), &msg.encode(), MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::Sys("sync send", e))?;
        Ok(())
    }

    pub fn recv(&self) -> Result<Msg> {
        self.recv_with_fd().map(|(m, _)| m)
    }

    /// Sends `msg` with `fd` attached.
    pub fn send_fd(&self, msg: &Msg, fd: &OwnedFd) -> Result<()> {
        let fds = [fd.as_raw_fd()];
        let data = msg.encode();
        let iov = [std::io::IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| Error::Sys("sync sendmsg", e))?;
        Ok(())
    }

    /// Receives one message and the fd that came with it, if any.
    pub fn recv_with_fd(&self) -> Result<(Msg, Option<OwnedFd>)> {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let (n, fd) = match r {
                Ok(m) => {
                    let mut fd = None;
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                // SAFETY: SCM_RIGHTS gave us new fds we now own.
                                fd = v.first().map(|f| unsafe {
                                    <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*f)
                                });
                            }
                        }
                    }
                    (m.bytes, fd)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sys("sync recv", e)),
            };
            if n == 0 {
                return Err(Error::PeerGone);
            }
            let msg = Msg::decode(&buf[..n])
                .ok_or_else(|| Error::Init("bad message from container process".into()))?;
            return Ok((msg, fd));
        }
    }

    /// Waits for `want`; a Failed message becomes the error it carries.
    pub fn expect(&self, want: Msg) -> Result<()> {
        match self.recv()? {
            m if m == want => Ok(()),
            Msg::Failed(s) => Err(Error::Init(s)),
            m => Err(Error::Init(format!(
                "expected {want:?} from container process, got {m:?}"
            ))),
        }
    }
}
