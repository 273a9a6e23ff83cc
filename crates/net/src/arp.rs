//! Gratuitous ARP: an interface says "these IPv4 addresses are at my MAC"
//! to its whole link, so that bridges learn the port the MAC is behind now
//! and neighbours refresh their caches. What a CT restored on another
//! host sends, as OpenVZ's vzmigrate did with `arpsend`: its addresses
//! moved with it, and the switches between it and its peers must learn
//! where to.
//!
//! One request (sender = target = the address, as `arping -U`) and one
//! reply (as `arping -A`) per address, broadcast on a raw packet socket
//! in the caller's network namespace.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Error, Result};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

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

/// An Ethernet frame carrying a gratuitous ARP for `ip` from `mac`:
/// a request (op 1) or a reply (op 2), padded to the minimum frame size.
fn frame(mac: [u8; 6], ip: Ipv4Addr, op: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    // A request asks about nobody's MAC; a reply names the broadcast.
    f.extend_from_slice(if op == 1 { &[0u8; 6] } else { &BROADCAST });
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    f
}

/// Announces `addrs` as being at interface `ifname`'s MAC address, in the
/// caller's network namespace. The interface must be up.
pub fn announce(ifname: &str, addrs: &[Ipv4Addr]) -> Result<()> {
    if addrs.is_empty() {
        return Ok(());
    }
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
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
    // SAFETY: sockaddr_ll is plain data; zeroes, then the fields set.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    for ip in addrs {
        for op in [1, 2] {
            let f = frame(mac, *ip, op);
            // SAFETY: the buffer and the address outlive the call; the
            // lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                return Err(Error::sys(
                    format!("send a gratuitous ARP for {ip} on {ifname}"),
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_gratuitous_arp() {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip = Ipv4Addr::new(198, 18, 9, 10);
        let req = frame(mac, ip, 1);
        assert_eq!(req.len(), 60);
        assert_eq!(&req[0..6], &BROADCAST);
        assert_eq!(&req[6..12], &mac);
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        assert_eq!(&req[20..22], &[0, 1]);
        // Sender and target address are both the announced one.
        assert_eq!(&req[22..28], &mac);
        assert_eq!(&req[28..32], &ip.octets());
        assert_eq!(&req[32..38], &[0; 6]);
        assert_eq!(&req[38..42], &ip.octets());
        let rep = frame(mac, ip, 2);
        assert_eq!(&rep[20..22], &[0, 2]);
        assert_eq!(&rep[32..38], &BROADCAST);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(ifreq_of(""), Err(Error::NoSuchLink(_))));
        assert!(matches!(
            ifreq_of("a-name-far-too-long"),
            Err(Error::NoSuchLink(_))
        ));
    }
}
