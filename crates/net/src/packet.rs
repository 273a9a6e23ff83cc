//! Whole Ethernet frames sent on one interface through a raw packet
//! socket in the caller's network namespace: what the announcements of a
//! moved CT's addresses (`arp`, `ndp`) are sent with.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Error, Result};

/// How long a sender waits for its interface to become operational.
pub(crate) const OPER_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

fn ifreq_of(name: &str) -> Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(Error::NoSuchLink(name.to_string()));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// A packet socket for frames of EtherType `proto` out of one interface.
pub(crate) struct Sender {
    sock: OwnedFd,
    to: libc::sockaddr_ll,
    /// The interface's MAC address: the source of what is sent.
    pub(crate) mac: [u8; 6],
    ifname: String,
}

impl Sender {
    /// A sender on interface `ifname` (which must exist) for EtherType
    /// `proto`.
    pub(crate) fn open(ifname: &str, proto: u16) -> Result<Sender> {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto.to_be()),
            )
        };
        if fd < 0 {
            return Err(Error::sys(
                "socket(AF_PACKET)",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let (index, mac) = index_and_mac(&sock, ifname)?;
        // Sent before the link watch made it operational, a frame would
        // go to the noop queueing discipline, which drops it unseen.
        let mut nl = crate::Netlink::open()?;
        if !crate::link::wait_oper_up(&mut nl, ifname, OPER_UP_LIMIT)? {
            return Err(Error::sys(
                format!("{ifname} is not operationally up"),
                std::io::Error::from_raw_os_error(libc::ENETDOWN),
            ));
        }
        // SAFETY: sockaddr_ll is plain data; zeroes, then the fields set.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = proto.to_be();
        to.sll_ifindex = index;
        to.sll_halen = 6;
        Ok(Sender {
            sock,
            to,
            mac,
            ifname: ifname.to_string(),
        })
    }

    /// Sends one whole frame (Ethernet header included); `what` names it
    /// in an error.
    pub(crate) fn send(&self, frame: &[u8], what: &str) -> Result<()> {
        // SAFETY: the buffer and the address outlive the call; the lengths
        // are theirs.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&self.to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(Error::sys(
                format!("send {what} on {}", self.ifname),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// The index and MAC address of interface `name`.
fn index_and_mac(sock: &OwnedFd, name: &str) -> Result<(i32, [u8; 6])> {
    let mut req = ifreq_of(name)?;
    // SAFETY: SIOCGIFINDEX fills the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENODEV) {
            Error::NoSuchLink(name.to_string())
        } else {
            Error::sys(format!("SIOCGIFINDEX {name}"), e)
        });
    }
    // SAFETY: the kernel just wrote the index member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut req = ifreq_of(name)?;
    // SAFETY: as above, SIOCGIFHWADDR.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(Error::sys(
            format!("SIOCGIFHWADDR {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just wrote the hardware address member.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok((index, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(ifreq_of(""), Err(Error::NoSuchLink(_))));
        assert!(matches!(
            ifreq_of("a-name-far-too-long"),
            Err(Error::NoSuchLink(_))
        ));
    }
}
