//! Routes in the main table.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{addr::family, link, Cidr, Netlink, Result};

/// One route: to `dest` (None: the default route of `family_of`'s family),
/// out of `dev`, through `via` when given (else on-link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dest: Option<Cidr>,
    pub dev: String,
    pub via: Option<IpAddr>,
    /// The family of a default route (taken from `dest` otherwise).
    pub v6: bool,
}

impl Route {
    pub fn to(dest: Cidr, dev: &str) -> Route {
        Route {
            v6: dest.addr.is_ipv6(),
            dest: Some(dest),
            dev: dev.to_string(),
            via: None,
        }
    }

    pub fn default_via(gateway: IpAddr, dev: &str) -> Route {
        Route {
            dest: None,
            dev: dev.to_string(),
            via: Some(gateway),
            v6: gateway.is_ipv6(),
        }
    }

    pub fn default_on_link(dev: &str, v6: bool) -> Route {
        Route {
            dest: None,
            dev: dev.to_string(),
            via: None,
            v6,
        }
    }

    fn message(&self, idx: u32) -> RouteMessage {
        let probe: IpAddr = if self.v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(&probe);
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        // Without a gateway the destination is on the link.
        msg.header.scope = if self.via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some(d) = &self.dest {
            msg.header.destination_prefix_length = d.prefix;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(d.addr)));
        }
        if let Some(gw) = self.via {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(idx));
        msg
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dest {
            Some(d) => write!(f, "{d}")?,
            None => write!(f, "default")?,
        }
        if let Some(gw) = self.via {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {}", self.dev)
    }
}

pub fn add(nl: &mut Netlink, route: &Route) -> Result<()> {
    let idx = link::index(nl, &route.dev)?;
    nl.change(
        RouteNetlinkMessage::NewRoute(route.message(idx)),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("add route {route}"),
    )
}

pub fn delete(nl: &mut Netlink, route: &Route) -> Result<()> {
    let idx = link::index(nl, &route.dev)?;
    let mut msg = route.message(idx);
    // Any scope matches on delete.
    msg.header.scope = RouteScope::NoWhere;
    nl.change(RouteNetlinkMessage::DelRoute(msg), 0, || {
        format!("delete route {route}")
    })
}

/// One route of the main table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// None for a default route.
    pub dest: Option<Cidr>,
    pub via: Option<IpAddr>,
    /// The index of the interface it goes out of.
    pub oif: Option<u32>,
}

/// The main table's routes of both families.
pub fn list(nl: &mut Netlink) -> Result<Vec<Entry>> {
    let answers = nl.dump(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        || "list routes".into(),
    )?;
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        if r.header.table != RouteHeader::RT_TABLE_MAIN {
            continue;
        }
        let mut dest = None;
        let mut gw = None;
        let mut oif = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    dest = ip(d).map(|addr| Cidr {
                        addr,
                        prefix: r.header.destination_prefix_length,
                    })
                }
                RouteAttribute::Gateway(g) => gw = ip(g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        out.push(Entry { dest, via: gw, oif });
    }
    Ok(out)
}
