//! Neighbour proxy entries (`ip neigh add proxy ADDR dev DEV`): the host
//! answers ARP (IPv4) or neighbour solicitations (IPv6, with proxy_ndp) for
//! ADDR on DEV, as OpenVZ's venet does for a CT's addresses on the uplink.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{addr::family, link, Netlink, Result};

fn message(idx: u32, ip: &IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(ip);
    msg.header.ifindex = idx;
    msg.header.flags = NeighbourFlags::Proxy;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(*a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(*a),
        }));
    msg
}

pub fn add_proxy(nl: &mut Netlink, ip: &IpAddr, dev: &str) -> Result<()> {
    let idx = link::index(nl, dev)?;
    nl.change(
        RouteNetlinkMessage::NewNeighbour(message(idx, ip)),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("add proxy entry {ip} on {dev}"),
    )
}

pub fn delete_proxy(nl: &mut Netlink, ip: &IpAddr, dev: &str) -> Result<()> {
    let idx = link::index(nl, dev)?;
    nl.change(
        RouteNetlinkMessage::DelNeighbour(message(idx, ip)),
        0,
        || format!("delete proxy entry {ip} on {dev}"),
    )
}

/// The proxy entries of the namespace: (address, interface index).
pub fn proxies(nl: &mut Netlink) -> Result<Vec<(IpAddr, u32)>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let mut msg = NeighbourMessage::default();
        // A dump with NTF_PROXY in the request lists the proxy table.
        msg.header.flags = NeighbourFlags::Proxy;
        msg.header.family = if v6 {
            netlink_packet_route::AddressFamily::Inet6
        } else {
            netlink_packet_route::AddressFamily::Inet
        };
        for m in nl.dump(RouteNetlinkMessage::GetNeighbour(msg), || {
            "list proxy entries".into()
        })? {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if !n.header.flags.contains(NeighbourFlags::Proxy) {
                continue;
            }
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        out.push((IpAddr::V4(*ip), n.header.ifindex))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                        out.push((IpAddr::V6(*ip), n.header.ifindex))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}
