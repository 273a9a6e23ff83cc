//! One rtnetlink socket in the network namespace of the process that opens
//! it, and the request/answer exchange over it.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Result};

/// Big enough for any one datagram of a dump (the kernel sends at most a
/// page-sized skb per datagram, 32 KiB with large pages).
const RECV_BUFFER: usize = 64 * 1024;

pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket bound to the caller's network namespace, from now on: a
    /// later setns of the process does not move it.
    pub fn open() -> Result<Netlink> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| Error::sys("socket(NETLINK_ROUTE)", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::sys("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::sys("connect netlink socket", e))?;
        // Extended acks give no message text through this crate; the
        // errno is what we report.
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    fn send(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| Error::sys(format!("{}: send", what()), e))?;
        Ok(self.seq)
    }

    /// Sends `msg` and collects what the kernel answers up to its ack (or
    /// the end of a dump). A refusal is an [`Error::Kernel`] naming `what`.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, flags, what)?;
        let mut answers = Vec::new();
        loop {
            let n = loop {
                match self.socket.recv(&mut &mut self.buf[..], 0) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::sys(format!("{}: receive", what()), e)),
                }
            };
            let mut offset = 0;
            while offset < n {
                let msg: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[offset..n])
                        .map_err(|e| Error::Decode(format!("{}: {e}", what())))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(Error::Kernel {
                                what: what(),
                                source: e.to_io(),
                            }),
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A change (new, set, delete) the kernel acknowledges.
    pub fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> Result<()> {
        self.exchange(msg, NLM_F_ACK | flags, &what).map(drop)
    }

    /// A single get: the kernel's answer.
    pub fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        what: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK, &what)
    }

    /// A dump: every object of a kind.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, &what)
    }
}
