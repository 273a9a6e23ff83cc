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

use crate::packet::Sender;
use crate::Result;

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

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
    let out = Sender::open(ifname, ETH_P_ARP)?;
    for ip in addrs {
        for op in [1, 2] {
            out.send(
                &frame(out.mac, *ip, op),
                &format!("a gratuitous ARP for {ip}"),
            )?;
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
}
