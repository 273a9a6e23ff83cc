//! Network interfaces: veth pairs, bridges, and what is set on a link.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{Error, Netlink, Result};

/// What `links` reports of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The bridge (or other master) it is a port of.
    pub master: Option<u32>,
    pub alias: Option<String>,
    pub kind: Option<String>,
    pub up: bool,
    /// Operationally up (RFC 2863 "up", or "unknown" for a driver that
    /// does not tell), as the kernel's link watch last set it.
    pub oper_up: bool,
}

fn link_of(m: &LinkMessage) -> Option<Link> {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        master: None,
        alias: None,
        kind: None,
        up: m.header.flags.contains(LinkFlags::Up),
        oper_up: false,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(i) => link.master = Some(*i),
            LinkAttribute::IfAlias(s) => link.alias = Some(s.clone()),
            LinkAttribute::OperState(st) => link.oper_up = matches!(st, State::Up | State::Unknown),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// Every interface of the namespace.
pub fn links(nl: &mut Netlink) -> Result<Vec<Link>> {
    let answers = nl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), || {
        "list network interfaces".into()
    })?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => link_of(l),
            _ => None,
        })
        .collect())
}

/// The interface called `name`, None when there is none.
pub fn find(nl: &mut Netlink, name: &str) -> Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match nl.get(RouteNetlinkMessage::GetLink(msg), || {
        format!("look up interface {name}")
    }) {
        Ok(answers) => Ok(answers.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => link_of(l),
            _ => None,
        })),
        Err(e) if e.is_gone() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until interface `name` is operationally up, at most `limit`;
/// whether it is. A link set up has its carrier at once (a veth whose
/// peer is up), but the kernel's link watch makes it operational a few
/// milliseconds later, asynchronously: until then its queueing discipline
/// drops what is sent and, as a bridge port, it forwards nothing, and a
/// frame sent out of it or to it is lost without a word.
pub fn wait_oper_up(nl: &mut Netlink, name: &str, limit: std::time::Duration) -> Result<bool> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let l = find(nl, name)?.ok_or_else(|| Error::NoSuchLink(name.to_string()))?;
        if l.oper_up {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The index of interface `name`, or [`Error::NoSuchLink`].
pub fn index(nl: &mut Netlink, name: &str) -> Result<u32> {
    find(nl, name)?
        .map(|l| l.index)
        .ok_or_else(|| Error::NoSuchLink(name.to_string()))
}

fn get_link(nl: &mut Netlink, msg: LinkMessage, what: &str) -> Result<Option<LinkMessage>> {
    match nl.get(RouteNetlinkMessage::GetLink(msg), || what.to_string()) {
        Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })),
        Err(e) if e.is_gone() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The MAC address of the other end of veth `name`, wherever it is: the
/// kernel names the peer by its index and the id its namespace has here
/// (IFLA_LINK, IFLA_LINK_NETNSID), and answers a request for that index
/// aimed at that namespace (IFLA_TARGET_NETNSID) without our entering it.
/// None when `name` or its peer is gone.
pub fn veth_peer_address(nl: &mut Netlink, name: &str) -> Result<Option<Vec<u8>>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let Some(host) = get_link(nl, msg, &format!("look up interface {name}"))? else {
        return Ok(None);
    };
    let (mut peer, mut nsid) = (None, None);
    for a in &host.attributes {
        match a {
            LinkAttribute::Link(i) => peer = Some(*i),
            LinkAttribute::LinkNetNsId(n) => nsid = Some(*n),
            _ => {}
        }
    }
    let Some(peer) = peer else {
        return Ok(None);
    };
    let mut msg = LinkMessage::default();
    msg.header.index = peer;
    if let Some(n) = nsid {
        msg.attributes.push(LinkAttribute::IfNetnsId(n));
    }
    let answer = get_link(nl, msg, &format!("look up the peer of {name}"))?;
    Ok(answer.and_then(|l| {
        l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac),
            _ => None,
        })
    }))
}

/// A veth pair: `name` here, `peer_name` in the network namespace `peer_ns`
/// (an fd of /proc/PID/ns/net), or here too when None. Creating the peer
/// straight in the CT's namespace under its final name means no moment where
/// a half-configured `eth0` sits in the host's namespace, and no rename.
pub fn add_veth(
    nl: &mut Netlink,
    name: &str,
    peer_name: &str,
    peer_ns: Option<BorrowedFd>,
) -> Result<()> {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(peer_name.to_string()));
    if let Some(fd) = peer_ns {
        peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    nl.change(
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("create veth pair {name} / {peer_name}"),
    )
}

/// A bridge called `name`, down.
pub fn add_bridge(nl: &mut Netlink, name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    nl.change(
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("create bridge {name}"),
    )
}

fn set(
    nl: &mut Netlink,
    name: &str,
    what: &str,
    build: impl FnOnce(&mut LinkMessage),
) -> Result<()> {
    let idx = index(nl, name)?;
    let mut msg = LinkMessage::default();
    msg.header.index = idx;
    build(&mut msg);
    nl.change(RouteNetlinkMessage::SetLink(msg), 0, || {
        format!("{what} ({name})")
    })
}

/// Makes `name` a port of `bridge`.
pub fn set_master(nl: &mut Netlink, name: &str, bridge: &str) -> Result<()> {
    let master = index(nl, bridge)?;
    set(nl, name, &format!("add to bridge {bridge}"), |m| {
        m.attributes.push(LinkAttribute::Controller(master))
    })
}

/// Brings `name` up or down.
pub fn set_up(nl: &mut Netlink, name: &str, up: bool) -> Result<()> {
    set(nl, name, if up { "set up" } else { "set down" }, |m| {
        if up {
            m.header.flags = LinkFlags::Up;
        }
        m.header.change_mask = LinkFlags::Up;
    })
}

/// Renames `name` (the kernel wants it down).
pub fn rename(nl: &mut Netlink, name: &str, new_name: &str) -> Result<()> {
    set(nl, name, &format!("rename to {new_name}"), |m| {
        m.attributes
            .push(LinkAttribute::IfName(new_name.to_string()))
    })
}

/// The interface's alias (`ip link set NAME alias TEXT`): cove marks what
/// it made with it.
pub fn set_alias(nl: &mut Netlink, name: &str, alias: &str) -> Result<()> {
    set(nl, name, "set alias", |m| {
        m.attributes.push(LinkAttribute::IfAlias(alias.to_string()))
    })
}

/// Where [`move_to_netns`] sends a link.
#[derive(Debug, Clone, Copy)]
pub enum NetnsRef<'a> {
    /// The network namespace of this process.
    Pid(u32),
    /// An open /proc/PID/ns/net (or /run/netns/NAME).
    Fd(BorrowedFd<'a>),
}

/// Moves `name` into another network namespace.
pub fn move_to_netns(nl: &mut Netlink, name: &str, to: NetnsRef) -> Result<()> {
    set(nl, name, "move to another network namespace", |m| {
        m.attributes.push(match to {
            NetnsRef::Pid(p) => LinkAttribute::NetNsPid(p),
            NetnsRef::Fd(fd) => LinkAttribute::NetNsFd(fd.as_raw_fd()),
        })
    })
}

/// Deletes `name` (for a veth, both ends); [`Error::NoSuchLink`] when it
/// is not there.
pub fn delete(nl: &mut Netlink, name: &str) -> Result<()> {
    let idx = index(nl, name)?;
    let mut msg = LinkMessage::default();
    msg.header.index = idx;
    nl.change(RouteNetlinkMessage::DelLink(msg), 0, || {
        format!("delete interface {name}")
    })
}

/// The interfaces that are ports of the bridge with index `bridge`.
pub fn ports(nl: &mut Netlink, bridge: u32) -> Result<Vec<Link>> {
    Ok(links(nl)?
        .into_iter()
        .filter(|l| l.master == Some(bridge))
        .collect())
}
