//! Unsolicited neighbour advertisements (RFC 4861, 4.4 and 7.2.6): IPv6's
//! gratuitous ARP. An interface tells all nodes of its link "this address
//! is at my MAC, replace what you cached" (the Override flag), so that
//! neighbours update their entries and the bridges on the way learn the
//! port the MAC is behind now. What a CT restored on another host sends
//! for its IPv6 addresses, beside `arp` for its IPv4 ones.
//!
//! One advertisement per address: to ff02::1 (all nodes) from the address
//! itself, hop limit 255 (receivers drop any other: it proves the frame
//! never crossed a router), the target link-layer address option naming
//! the MAC. Linux updates an entry it has with it; it makes no new entry
//! from an unsolicited one (unless `accept_untracked_na`), as RFC 4861
//! says.

use std::net::Ipv6Addr;

use crate::packet::Sender;
use crate::Result;

const ETH_P_IPV6: u16 = 0x86dd;
/// ff02::1: all nodes on the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Its Ethernet multicast address: 33:33 and the low 32 bits (RFC 2464).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const IPPROTO_ICMPV6: u8 = 58;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// Flags: Router 0x80, Solicited 0x40 (never in an unsolicited one),
/// Override 0x20.
const OVERRIDE: u8 = 0x20;
/// Option type 2, in units of 8 bytes: 1.
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const HOP_LIMIT: u8 = 255;

/// The Internet checksum of an ICMPv6 message `msg` (its checksum field
/// zero) from `src` to `dst`: over the IPv6 pseudo-header (both addresses,
/// the upper-layer length, three zero bytes and the next header) and the
/// message.
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying an unsolicited neighbour advertisement of
/// `target` at `mac`.
fn frame(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[NEIGHBOUR_ADVERTISEMENT, 0, 0, 0]);
    icmp.extend_from_slice(&[OVERRIDE, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 1]);
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(&target, &ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&ALL_NODES_MAC);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    // Version 6, traffic class and flow label 0.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(IPPROTO_ICMPV6);
    f.push(HOP_LIMIT);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Advertises `addrs` as being at interface `ifname`'s MAC address, in the
/// caller's network namespace. The interface must be up.
pub fn advertise(ifname: &str, addrs: &[Ipv6Addr]) -> Result<()> {
    if addrs.is_empty() {
        return Ok(());
    }
    let out = Sender::open(ifname, ETH_P_IPV6)?;
    for ip in addrs {
        out.send(
            &frame(out.mac, *ip),
            &format!("a neighbour advertisement for {ip}"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_an_unsolicited_override_advertisement() {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip: Ipv6Addr = "2001:db8:9::10".parse().unwrap();
        let f = frame(mac, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        // Ethernet: all-nodes multicast, from the MAC, IPv6.
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        // IPv6: version 6, payload 32, ICMPv6, hop limit 255, from the
        // address to ff02::1.
        assert_eq!(&f[14..18], &[0x60, 0, 0, 0]);
        assert_eq!(&f[18..20], &[0, 32]);
        assert_eq!(f[20], 58);
        assert_eq!(f[21], 255);
        assert_eq!(&f[22..38], &ip.octets());
        assert_eq!(
            &f[38..54],
            &[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        // ICMPv6: type 136, code 0, checksum, Override only, the target,
        // then option 2 (length 1 = 8 bytes) with the MAC.
        let icmp = &f[54..];
        assert_eq!(&icmp[0..2], &[136, 0]);
        // Computed apart from this module (Python, over the pseudo-header
        // and the message as RFC 4443 2.3 says).
        assert_eq!(&icmp[2..4], &[0xf8, 0xf4]);
        assert_eq!(&icmp[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&icmp[8..24], &ip.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &mac);
    }

    #[test]
    fn checksum_verifies_to_zero() {
        // The receiver's check: the sum over pseudo-header and message,
        // checksum included, folds to all ones (its complement is zero).
        for ip in [
            "2001:db8::1",
            "fd00:c6::10",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ff01",
        ] {
            let ip: Ipv6Addr = ip.parse().unwrap();
            let f = frame([0x02, 0xab, 0xcd, 0xef, 0x01, 0x23], ip);
            assert_eq!(icmpv6_checksum(&ip, &ALL_NODES, &f[54..]), 0, "{ip}");
        }
    }
}
