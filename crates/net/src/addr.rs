//! Addresses on an interface.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{link, Cidr, Netlink, Result};

fn message(idx: u32, cidr: &Cidr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&cidr.addr);
    msg.header.prefix_len = cidr.prefix;
    msg.header.index = idx;
    msg.attributes.push(AddressAttribute::Local(cidr.addr));
    msg.attributes.push(AddressAttribute::Address(cidr.addr));
    msg
}

pub(crate) fn family(a: &IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Adds `cidr` to `dev`. IPv6 addresses skip duplicate address detection:
/// the addresses are cove's to give, and DAD would leave them tentative
/// (unusable) for a second or more after every start.
pub fn add(nl: &mut Netlink, dev: &str, cidr: &Cidr) -> Result<()> {
    let idx = link::index(nl, dev)?;
    let mut msg = message(idx, cidr);
    if cidr.addr.is_ipv6() {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    nl.change(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("add address {cidr} to {dev}"),
    )
}

/// Removes `cidr` from `dev`.
pub fn delete(nl: &mut Netlink, dev: &str, cidr: &Cidr) -> Result<()> {
    let idx = link::index(nl, dev)?;
    nl.change(
        RouteNetlinkMessage::DelAddress(message(idx, cidr)),
        0,
        || format!("remove address {cidr} from {dev}"),
    )
}

/// The addresses on `dev` (all interfaces when None), with the index of
/// the interface each is on.
pub fn list(nl: &mut Netlink, dev: Option<&str>) -> Result<Vec<(u32, Cidr)>> {
    let only = match dev {
        Some(d) => Some(link::index(nl, d)?),
        None => None,
    };
    let answers = nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        || "list addresses".into(),
    )?;
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if only.is_some_and(|i| i != a.header.index) {
            continue;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the
        // peer's on point-to-point links).
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(addr) = addr {
            out.push((
                a.header.index,
                Cidr {
                    addr,
                    prefix: a.header.prefix_len,
                },
            ));
        }
    }
    Ok(out)
}
