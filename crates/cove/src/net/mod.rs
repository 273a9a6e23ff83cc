//! A CT's network: a veth pair whose CT end is `eth0` in the CT's network
//! namespace, bridged or routed, with the CT's addresses, routes, DNS
//! files and published ports. The kernel work is cove-net's; this module
//! decides what a CT gets, records it, and undoes it.
//!
//! The host side is made in the network namespace `cove` runs in (so the
//! whole of cove can run inside a namespace that plays "host"); the CT side
//! by a short-lived child that enters the CT's namespace. The monitor sets
//! the network up after the engine created the CT's init (so its namespace
//! exists) and before that init runs the CT's own init program.
//!
//! **bridged** (default): host end `vc<CTID>` a port of the bridge
//! (`cove0` unless `bridge` says otherwise; created when missing, marked
//! with the alias "made by cove", given the CT's gateway address so the
//! host is that gateway, and removed when its last port goes). CT end with
//! the CT's addresses as given, default routes through `gateway`.
//!
//! **routed** (OpenVZ venet-style): the CT has single addresses (/32,
//! /128) on `eth0` and default routes onto the link (IPv4; the host end
//! answers ARP for everything with proxy_arp) or through fe80::1 (IPv6, an
//! address of the host end). The host routes each address to the host end,
//! forwards, and with `uplink` answers ARP/NDP for the CT's addresses there
//! (proxy entries; proxy_ndp for IPv6), so that the CT is reachable from
//! the uplink's network.
//!
//! Everything made on the host side is first written to
//! `<run>/ct/<CTID>/net.json`, so teardown (stop, destroy, the monitor at
//! the CT's end, or the next start after a crash) removes exactly that,
//! in the namespace it was made in. Changes to links, bridge addresses and
//! nftables of all CTs of a run directory go under one lock.

pub mod config;
pub mod files;

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use cove_net::nft::{self, Dnat};
use cove_net::route::Route;
use cove_net::sysctl::{self, Knob};
use cove_net::{addr, link, neigh, netns, route, Cidr, Netlink};

pub use config::{NetArgs, NetConfig, Netif};

use crate::config::{self as ct_config, CtConfig};
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::paths::{CtPaths, Paths};

/// The CT's end of its veth pair.
pub const CT_IFNAME: &str = "eth0";
/// The alias of a bridge cove made (and may remove once unused).
pub const BRIDGE_ALIAS: &str = "made by cove";
/// A routed CT's IPv6 gateway: an address of the host end of its veth.
const ROUTED_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

impl From<cove_net::Error> for Error {
    fn from(e: cove_net::Error) -> Error {
        Error::Tool(e.to_string())
    }
}

/// The host end of the CT's veth: `vc<CTID>`, or `vc` and a hash of the
/// CTID when that is longer than an interface name may be.
pub fn host_ifname(ctid: &Ctid) -> String {
    let name = format!("vc{ctid}");
    if name.len() <= 15 {
        return name;
    }
    // FNV-1a: stable across versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ctid.as_str().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("vc{:013x}", h & ((1 << 52) - 1))
}

/// What was made on the host side for a CT, in the order it was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetRecord {
    /// (device, inode) of the network namespace it was all made in.
    pub netns: (u64, u64),
    pub host_veth: Option<String>,
    pub bridge: Option<String>,
    /// Host routes to the CT's addresses (routed).
    pub routes: Vec<(Cidr, String)>,
    /// Proxy ARP/NDP entries on the uplink (routed).
    pub proxies: Vec<(IpAddr, String)>,
    /// DNAT rules tagged with the CTID are in cove's nftables table.
    pub published: bool,
    /// The host end whose source guard table was made.
    #[serde(default)]
    pub guard: Option<String>,
    /// The host end muted for a migration ([`mute`]).
    #[serde(default)]
    pub muted: Option<String>,
}

fn record_path(ct: &CtPaths) -> PathBuf {
    ct.run.join("net.json")
}

impl NetRecord {
    pub fn read(ct: &CtPaths) -> Option<NetRecord> {
        serde_json::from_slice(&std::fs::read(record_path(ct)).ok()?).ok()
    }

    fn write(&self, ct: &CtPaths) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Tool(e.to_string()))?;
        Ok(cove_engine::state::write_runtime(&record_path(ct), &bytes)?)
    }
}

/// The lock every change of shared host networking (bridges, their
/// addresses, cove's nftables table) is made under. `.net` cannot be a
/// CTID, so it never collides with a CT's lock.
fn net_lock(ct: &CtPaths) -> Result<Lock> {
    Lock::acquire(&ct.lock.with_file_name(".net.lock"))
}

fn ignore_gone(r: cove_net::Result<()>) -> cove_net::Result<()> {
    match r {
        Err(e) if e.is_gone() => Ok(()),
        other => other,
    }
}

/// Sets up the network of the CT whose init is `init_pid` (created, not yet
/// started). Nothing to do for a CT without an interface. On failure what
/// was made stays recorded for [`teardown`], which the caller runs.
pub fn setup(
    ct: &CtPaths,
    ctid: &Ctid,
    net: &NetConfig,
    init_pid: i32,
    init_pidfd: BorrowedFd,
) -> Result<()> {
    if !net.enabled() {
        return Ok(());
    }
    let _lock = net_lock(ct)?;
    let ns = init_netns(ctid, init_pid, init_pidfd)?;
    let mut nl = Netlink::open()?;
    if let Some(up) = net
        .uplink
        .as_deref()
        .filter(|_| net.netif() == Netif::Routed)
    {
        if link::find(&mut nl, up)?.is_none() {
            return Err(Error::BadInput(format!(
                "uplink {up} does not exist in this network namespace (cove set --uplink DEV|none)"
            )));
        }
    }
    let mut rec = NetRecord {
        netns: netns::current_id()?,
        ..Default::default()
    };
    let host = host_ifname(ctid);
    rec.host_veth = Some(host.clone());
    rec.write(ct)?;
    if let Err(e) = link::add_veth(&mut nl, &host, CT_IFNAME, Some(ns.as_fd())) {
        if e.is_exists() {
            // Not ours to delete: the record must not claim it.
            rec.host_veth = None;
            rec.write(ct)?;
            return Err(Error::Tool(format!(
                "cannot create the CT's veth: an interface {host} already exists in this network namespace"
            )));
        }
        return Err(e.into());
    }
    host_side(&mut nl, ct, ctid, &mut rec, &host, net)?;
    let ct_net = net.clone();
    netns::run_in(ns.as_fd(), move || ct_side(&ct_net))?;
    Ok(())
}

/// The network of a CT CRIU has just restored: its namespace came back
/// with eth0, addresses and routes, and CRIU made the veth's host end
/// under its old name here (`veth[eth0]:vc<CTID>`); that end is put on
/// the bridge (or given its routes) and the published ports come back.
/// The CT's established connections go on once its host end is up.
///
/// The CT may have been dumped on another host (`cove migrate --online`):
/// its addresses are then announced (gratuitous ARP for IPv4, unsolicited
/// neighbour advertisements for IPv6; from its eth0 when bridged, on the
/// uplink when routed), so that the bridges and
/// switches between it and its peers learn where its MAC is now. Returns
/// a note when that announcement failed (the CT runs; peers find it once
/// their caches expire).
pub fn setup_restored(
    ct: &CtPaths,
    ctid: &Ctid,
    net: &NetConfig,
    init_pid: i32,
    init_pidfd: BorrowedFd,
) -> Result<Option<String>> {
    if !net.enabled() {
        return Ok(None);
    }
    let _lock = net_lock(ct)?;
    let mut nl = Netlink::open()?;
    let host = host_ifname(ctid);
    let mut rec = NetRecord {
        netns: netns::current_id()?,
        host_veth: Some(host.clone()),
        ..Default::default()
    };
    rec.write(ct)?;
    if link::find(&mut nl, &host)?.is_none() {
        return Err(Error::Tool(format!(
            "the restored CT's veth end {host} is not in this network namespace"
        )));
    }
    host_side(&mut nl, ct, ctid, &mut rec, &host, net)?;
    Ok(announce(ctid, net, init_pid, init_pidfd)
        .err()
        .map(|e| format!("CT {ctid}: its addresses not announced: {e}")))
}

/// Gratuitous ARP for the CT's IPv4 addresses and unsolicited neighbour
/// advertisements for its global IPv6 ones where its peers will see them:
/// from eth0 inside the CT (bridged), or from the uplink here for the
/// proxy ARP/NDP entries (routed). A bridged CT's host end has just been
/// set up: the bridge forwards nothing from a port until the kernel's
/// link watch has made it operational (milliseconds later), so that is
/// waited for first.
fn announce(ctid: &Ctid, net: &NetConfig, init_pid: i32, init_pidfd: BorrowedFd) -> Result<()> {
    let mut v4: Vec<std::net::Ipv4Addr> = Vec::new();
    let mut v6: Vec<Ipv6Addr> = Vec::new();
    for c in &net.ip {
        match c.addr {
            IpAddr::V4(a) => v4.push(a),
            IpAddr::V6(a) if is_global6(&a) => v6.push(a),
            IpAddr::V6(_) => {}
        }
    }
    if v4.is_empty() && v6.is_empty() {
        return Ok(());
    }
    let send = move |dev: &str| -> cove_net::Result<()> {
        cove_net::arp::announce(dev, &v4)?;
        cove_net::ndp::advertise(dev, &v6)
    };
    match net.netif() {
        Netif::Bridged => {
            let host = host_ifname(ctid);
            let mut nl = Netlink::open()?;
            if !link::wait_oper_up(&mut nl, &host, ANNOUNCE_WAIT)? {
                return Err(Error::Tool(format!(
                    "{host} did not come up within {} s",
                    ANNOUNCE_WAIT.as_secs()
                )));
            }
            let ns = init_netns(ctid, init_pid, init_pidfd)?;
            netns::run_in(ns.as_fd(), move || send(CT_IFNAME))?;
        }
        Netif::Routed => {
            if let Some(up) = &net.uplink {
                send(up)?;
            }
        }
    }
    Ok(())
}

/// How long the announcement waits for the host end to be operational.
const ANNOUNCE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An IPv6 address others reach the CT at: not link-local (fe80::/10, the
/// link's own), multicast, loopback or unspecified.
fn is_global6(a: &Ipv6Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (a.segments()[0] & 0xffc0) == 0xfe80)
}

/// The host end `host` of the CT's veth (which exists) on the bridge, or
/// routed to the CT's addresses; up; the CT's published ports.
fn host_side(
    nl: &mut Netlink,
    ct: &CtPaths,
    ctid: &Ctid,
    rec: &mut NetRecord,
    host: &str,
    net: &NetConfig,
) -> Result<()> {
    match net.netif() {
        Netif::Bridged => {
            let bridge = net.bridge().to_string();
            rec.bridge = Some(bridge.clone());
            rec.write(ct)?;
            ensure_bridge(nl, &bridge, net)?;
            link::set_master(nl, host, &bridge)?;
        }
        Netif::Routed => {
            sysctl::enable(Knob::ProxyArp(host))?;
            let v6 = net.ip.iter().any(|c| c.addr.is_ipv6());
            if net.ip.iter().any(|c| c.addr.is_ipv4()) {
                sysctl::enable(Knob::Forward4)?;
            }
            if v6 {
                sysctl::enable(Knob::Forward6)?;
                addr::add(
                    nl,
                    host,
                    &Cidr {
                        addr: ROUTED_GATEWAY6.into(),
                        prefix: 64,
                    },
                )?;
            }
            if let Some(up) = &net.uplink {
                if v6 {
                    sysctl::enable(Knob::ProxyNdp(up))?;
                }
            }
        }
    }
    // Guarded before it is up: the CT never sends a frame unchecked.
    set_guard(nl, ct, rec, host, net)?;
    link::set_up(nl, host, true)?;
    if net.netif() == Netif::Routed {
        for c in &net.ip {
            add_routed(nl, ct, rec, host, net, &Cidr::host(c.addr))?;
        }
    }
    publish(ct, ctid, rec, net)
}

/// The source guard of host end `host` made (or made again) for `net`'s
/// addresses and the CT end's MAC, or removed when the CT is not guarded;
/// recorded first.
fn set_guard(
    nl: &mut Netlink,
    ct: &CtPaths,
    rec: &mut NetRecord,
    host: &str,
    net: &NetConfig,
) -> Result<()> {
    if !net.guarded() {
        if let Some(dev) = rec.guard.take() {
            nft::unguard(&dev)?;
            rec.write(ct)?;
        }
        return Ok(());
    }
    rec.guard = Some(host.to_string());
    rec.write(ct)?;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for c in &net.ip {
        match c.addr {
            IpAddr::V4(a) => v4.push(a),
            IpAddr::V6(a) => v6.push(a),
        }
    }
    nft::guard(&nft::Guard {
        dev: host.to_string(),
        // The CT end's address now (the kernel's choice at creation; what
        // CRIU gives back at restore) is the one it keeps.
        mac: link::veth_peer_address(nl, host)?,
        v4,
        v6,
    })?;
    Ok(())
}

/// A routed address's host route and, with an uplink, its proxy entry;
/// each recorded before it is made.
fn add_routed(
    nl: &mut Netlink,
    ct: &CtPaths,
    rec: &mut NetRecord,
    host: &str,
    net: &NetConfig,
    c: &Cidr,
) -> Result<()> {
    rec.routes.push((*c, host.to_string()));
    rec.write(ct)?;
    route::add(nl, &Route::to(*c, host))?;
    if let Some(up) = &net.uplink {
        rec.proxies.push((c.addr, up.clone()));
        rec.write(ct)?;
        neigh::add_proxy(nl, &c.addr, up).map_err(|e| match e {
            cove_net::Error::NoSuchLink(_) => Error::BadInput(format!(
                "uplink {up} does not exist in this network namespace (cove set --uplink)"
            )),
            e => e.into(),
        })?;
    }
    Ok(())
}

fn remove_routed(nl: &mut Netlink, ct: &CtPaths, rec: &mut NetRecord, a: &IpAddr) -> Result<()> {
    for (ip, dev) in rec.proxies.iter().filter(|(ip, _)| ip == a) {
        ignore_gone(neigh::delete_proxy(nl, ip, dev))?;
    }
    rec.proxies.retain(|(ip, _)| ip != a);
    for (c, dev) in rec.routes.iter().filter(|(c, _)| c.addr == *a) {
        ignore_gone(route::delete(nl, &Route::to(*c, dev)))?;
    }
    rec.routes.retain(|(c, _)| c.addr != *a);
    rec.write(ct)
}

/// The bridge exists and is up; a bridge cove made gets the CT's gateways
/// as its own addresses (so the host is the gateway), with the prefix of
/// the CT's address they belong to.
fn ensure_bridge(nl: &mut Netlink, name: &str, net: &NetConfig) -> Result<()> {
    let found = link::find(nl, name)?;
    let ours = match &found {
        None => {
            link::add_bridge(nl, name)?;
            link::set_alias(nl, name, BRIDGE_ALIAS)?;
            true
        }
        Some(l) => l.alias.as_deref() == Some(BRIDGE_ALIAS),
    };
    if !ours {
        if found.is_some_and(|l| l.kind.as_deref() != Some("bridge")) {
            return Err(Error::BadInput(format!(
                "{name} is not a bridge (cove set --bridge)"
            )));
        }
        return Ok(());
    }
    let have = addr::list(nl, Some(name))?;
    for gw in &net.gateway {
        if have.iter().any(|(_, c)| c.addr == *gw) {
            continue;
        }
        let prefix = net
            .ip
            .iter()
            .find(|c| c.contains(gw))
            .map_or(Cidr::max_prefix(gw), |c| c.prefix);
        match addr::add(nl, name, &Cidr { addr: *gw, prefix }) {
            Err(e) if e.is_exists() => {}
            other => other?,
        }
    }
    link::set_up(nl, name, true)?;
    Ok(())
}

/// In the CT's namespace: loopback and eth0 up, addresses, default routes.
fn ct_side(net: &NetConfig) -> cove_net::Result<()> {
    let mut nl = Netlink::open()?;
    link::set_up(&mut nl, "lo", true)?;
    link::set_up(&mut nl, CT_IFNAME, true)?;
    for c in &net.ip {
        ct_add_address(&mut nl, net, c)?;
    }
    match net.netif() {
        Netif::Bridged => {
            for gw in &net.gateway {
                route::add(&mut nl, &Route::default_via(*gw, CT_IFNAME))?;
            }
        }
        Netif::Routed => {
            if net.ip.iter().any(|c| c.addr.is_ipv4()) {
                route::add(&mut nl, &Route::default_on_link(CT_IFNAME, false))?;
            }
            if net.ip.iter().any(|c| c.addr.is_ipv6()) {
                route::add(
                    &mut nl,
                    &Route::default_via(ROUTED_GATEWAY6.into(), CT_IFNAME),
                )?;
            }
        }
    }
    Ok(())
}

fn ct_add_address(nl: &mut Netlink, net: &NetConfig, c: &Cidr) -> cove_net::Result<()> {
    let c = match net.netif() {
        Netif::Routed => Cidr::host(c.addr),
        Netif::Bridged => *c,
    };
    addr::add(nl, CT_IFNAME, &c)
}

/// The CT's DNAT rules, recorded first; forwarding on so that traffic
/// from other hosts is forwarded to the CT, not only the host's own.
fn publish(ct: &CtPaths, ctid: &Ctid, rec: &mut NetRecord, net: &NetConfig) -> Result<()> {
    if net.publish.is_empty() {
        return Ok(());
    }
    let Some(to) = net.ip.iter().find(|c| c.addr.is_ipv4()).map(|c| c.addr) else {
        return Ok(());
    };
    rec.published = true;
    rec.write(ct)?;
    sysctl::enable(Knob::Forward4)?;
    let rules: Vec<Dnat> = net
        .publish
        .iter()
        .map(|p| Dnat {
            proto: p.proto,
            host_port: p.host_port,
            to,
            to_port: p.ct_port,
        })
        .collect();
    nft::add(ctid.as_str(), &rules)?;
    Ok(())
}

/// Removes what [`NetRecord`] says was made for the CT; idempotent, and
/// a no-op for a CT without network. Refuses to act from another network
/// namespace than the one it was made in, where the names would mean
/// other interfaces.
pub fn teardown(ct: &CtPaths, ctid: &Ctid) -> Result<()> {
    let Some(mut rec) = NetRecord::read(ct) else {
        return Ok(());
    };
    let here = netns::current_id()?;
    if rec.netns != here {
        return Err(Error::BadInput(format!(
            "CT {ctid}'s network was set up in another network namespace (net:[{}]); run cove in that one to clean it up",
            rec.netns.1
        )));
    }
    let _lock = net_lock(ct)?;
    let mut nl = Netlink::open()?;
    for (ip, dev) in std::mem::take(&mut rec.proxies) {
        ignore_gone(neigh::delete_proxy(&mut nl, &ip, &dev))?;
    }
    for (c, dev) in std::mem::take(&mut rec.routes) {
        ignore_gone(route::delete(&mut nl, &Route::to(c, &dev)))?;
    }
    if let Some(v) = rec.host_veth.take() {
        // The CT's end goes with it, and the routes through it.
        ignore_gone(link::delete(&mut nl, &v))?;
    }
    if let Some(b) = rec.bridge.take() {
        remove_bridge_if_unused(&mut nl, &b)?;
    }
    if let Some(dev) = rec.guard.take() {
        // Deleting the device does not take its ingress table with it.
        nft::unguard(&dev)?;
    }
    if let Some(dev) = rec.muted.take() {
        nft::unmute(&dev)?;
    }
    if rec.published {
        nft::remove(ctid.as_str())?;
    }
    match std::fs::remove_file(record_path(ct)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove", record_path(ct), e))
        }
        _ => Ok(()),
    }
}

/// Mutes the CT's veth (`on`: every frame the CT sends is dropped at the
/// host end, by an nftables table of its own) or lets it speak again.
/// Migration keeps the frozen source copy of a CT this way while DEST
/// takes over: its kernel must not acknowledge what a peer sends
/// meanwhile (DEST's copy would never have it), nor reset the moved
/// connections when its processes end. The link stays up: its carrier,
/// addresses and routes are what the dump records and DEST restores (a
/// route dumped while the link was down carries the kernel's read-only
/// "linkdown" flag, which `ip route restore` then fails on).
pub fn mute(ct: &CtPaths, ctid: &Ctid, on: bool) -> Result<()> {
    let _lock = net_lock(ct)?;
    let Some(mut rec) = NetRecord::read(ct) else {
        return Ok(());
    };
    let Some(host) = rec.host_veth.clone() else {
        return Ok(());
    };
    if rec.netns != netns::current_id()? {
        return Err(Error::BadInput(format!(
            "CT {ctid}'s network was set up in another network namespace (net:[{}]); run cove in that one",
            rec.netns.1
        )));
    }
    if on {
        // Recorded first: a teardown after a crash still removes it.
        rec.muted = Some(host.clone());
        rec.write(ct)?;
        nft::mute(&host)?;
    } else {
        nft::unmute(&host)?;
        rec.muted = None;
        rec.write(ct)?;
    }
    Ok(())
}

/// A bridge cove made goes with its last port (and its addresses and
/// routes with it); anyone else's stays.
fn remove_bridge_if_unused(nl: &mut Netlink, name: &str) -> Result<()> {
    let Some(b) = link::find(nl, name)? else {
        return Ok(());
    };
    if b.alias.as_deref() != Some(BRIDGE_ALIAS) || !link::ports(nl, b.index)?.is_empty() {
        return Ok(());
    }
    ignore_gone(link::delete(nl, name))?;
    Ok(())
}

/// Applies a changed `[net]` to the running CT whose init is `init_pid`
/// and mounted root is `rootfs`: addresses one by one (the others and
/// their connections stay); the interface made again when its kind,
/// bridge, uplink or gateways changed; published ports and the DNS files
/// rewritten.
pub fn apply_live(
    ct: &CtPaths,
    ctid: &Ctid,
    old: &NetConfig,
    new: &NetConfig,
    hostname: &str,
    init_pid: i32,
    init_pidfd: BorrowedFd,
) -> Result<()> {
    files::write(&ct.rootfs, hostname, new)?;
    let families = |n: &NetConfig| {
        (
            n.ip.iter().any(|c| c.addr.is_ipv4()),
            n.ip.iter().any(|c| c.addr.is_ipv6()),
        )
    };
    let remake = old.enabled() != new.enabled()
        || old.netif() != new.netif()
        || old.bridge() != new.bridge()
        || old.uplink != new.uplink
        || old.gateway != new.gateway
        || families(old) != families(new);
    if remake {
        teardown(ct, ctid)?;
        return setup(ct, ctid, new, init_pid, init_pidfd);
    }
    if !new.enabled() {
        return Ok(());
    }
    let mut rec = NetRecord::read(ct).unwrap_or_else(|| NetRecord {
        netns: netns::current_id().unwrap_or_default(),
        host_veth: Some(host_ifname(ctid)),
        ..Default::default()
    });
    let _lock = net_lock(ct)?;
    let ns = init_netns(ctid, init_pid, init_pidfd)?;
    let mut nl = Netlink::open()?;
    let host = host_ifname(ctid);
    let gone: Vec<Cidr> = old
        .ip
        .iter()
        .filter(|c| !new.ip.contains(c))
        .copied()
        .collect();
    let added: Vec<Cidr> = new
        .ip
        .iter()
        .filter(|c| !old.ip.contains(c))
        .copied()
        .collect();
    if !gone.is_empty() {
        let n = new.clone();
        let list = gone.clone();
        netns::run_in(ns.as_fd(), move || {
            let mut nl = Netlink::open()?;
            for c in &list {
                let c = match n.netif() {
                    Netif::Routed => Cidr::host(c.addr),
                    Netif::Bridged => *c,
                };
                ignore_gone(addr::delete(&mut nl, CT_IFNAME, &c))?;
            }
            Ok(())
        })?;
        if new.netif() == Netif::Routed {
            for c in &gone {
                remove_routed(&mut nl, ct, &mut rec, &c.addr)?;
            }
        }
    }
    if !added.is_empty() {
        if new.netif() == Netif::Routed {
            for c in &added {
                add_routed(&mut nl, ct, &mut rec, &host, new, &Cidr::host(c.addr))?;
            }
        }
        let n = new.clone();
        let list = added.clone();
        netns::run_in(ns.as_fd(), move || {
            let mut nl = Netlink::open()?;
            for c in &list {
                ct_add_address(&mut nl, &n, c)?;
            }
            Ok(())
        })?;
    }
    if old.ip != new.ip || old.guarded() != new.guarded() {
        set_guard(&mut nl, ct, &mut rec, &host, new)?;
    }
    if old.publish != new.publish || new.first_ip() != old.first_ip() {
        if rec.published {
            nft::remove(ctid.as_str())?;
            rec.published = false;
            rec.write(ct)?;
        }
        publish(ct, ctid, &mut rec, new)?;
    }
    Ok(())
}

/// Refuses an address another CT already has.
pub fn check_addresses_free(paths: &Paths, ctid: &Ctid, net: &NetConfig) -> Result<()> {
    if net.ip.is_empty() {
        return Ok(());
    }
    for id in ct_config::list_ctids(paths)? {
        if &id == ctid {
            continue;
        }
        let Ok(other) = CtConfig::load(&paths.ct(&id).config, &id) else {
            continue;
        };
        if let Some(c) = net
            .ip
            .iter()
            .find(|c| other.net.ip.iter().any(|o| o.addr == c.addr))
        {
            return Err(Error::BadInput(format!(
                "address {} is already CT {id}'s",
                c.addr
            )));
        }
    }
    Ok(())
}

/// What holds each of `addrs` in this host: an address on one of the
/// interfaces of cove's network namespace, a host route or a proxy
/// ARP/NDP entry for it there (a routed CT's restore would make those and
/// fail), or another CT of this data directory than `ctid`. Pairs of the
/// address and what holds it, as "on its interface eth1", "CT 105's".
pub fn addresses_in_use(
    paths: &Paths,
    ctid: &Ctid,
    addrs: &[IpAddr],
) -> Result<Vec<(IpAddr, String)>> {
    let mut found = Vec::new();
    if addrs.is_empty() {
        return Ok(found);
    }
    for id in ct_config::list_ctids(paths)? {
        if &id == ctid {
            continue;
        }
        let Ok(other) = CtConfig::load(&paths.ct(&id).config, &id) else {
            continue;
        };
        for a in addrs {
            if other.net.ip.iter().any(|o| o.addr == *a) {
                found.push((*a, format!("CT {id}'s")));
            }
        }
    }
    let mut nl = Netlink::open()?;
    let names: std::collections::HashMap<u32, String> = link::links(&mut nl)?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let name = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("#{i}"));
    for (index, c) in addr::list(&mut nl, None)? {
        if addrs.contains(&c.addr) {
            found.push((c.addr, format!("on its interface {}", name(index))));
        }
    }
    for r in route::list(&mut nl)? {
        if let Some(d) = r.dest.filter(|d| d.is_host() && addrs.contains(&d.addr)) {
            let via = r.oif.map(|i| format!(" through {}", name(i)));
            found.push((d.addr, format!("a route to it{}", via.unwrap_or_default())));
        }
    }
    for (ip, index) in neigh::proxies(&mut nl)? {
        if addrs.contains(&ip) {
            found.push((ip, format!("a proxy ARP/NDP entry on {}", name(index))));
        }
    }
    Ok(found)
}

/// Whether this network namespace (cove's) has an interface `name`
/// (asked over netlink: /sys/class/net shows the namespace sysfs was
/// mounted in, not necessarily this one).
pub fn link_exists(name: &str) -> Result<bool> {
    let mut nl = Netlink::open()?;
    Ok(link::find(&mut nl, name)?.is_some())
}

/// `cove set` on a running CT: its network and DNS files as `new` says.
pub fn apply_to_running(ct: &CtPaths, ctid: &Ctid, old: &CtConfig, new: &CtConfig) -> Result<()> {
    let c = cove_engine::container::load(&ct.oci_root, ctid.as_str())
        .map_err(|_| Error::NotRunning(ctid.to_string()))?;
    // The pidfd proves the saved pid is still the CT's init while we open
    // its namespace.
    let pidfd = cove_engine::container::open_init(&c.saved)
        .map_err(|_| Error::NotRunning(ctid.to_string()))?;
    let pid = c.saved.pid;
    drop(c);
    apply_live(
        ct,
        ctid,
        &old.net,
        &new.net,
        &new.hostname,
        pid,
        pidfd.as_fd(),
    )
}

/// The network namespace of the CT's init, opened by pid, then checked
/// through the init's pidfd: still alive after the open means the pid was
/// still its own (a pid is reused only once its process is gone), so a
/// recycled pid can never lead into another namespace (the host's).
fn init_netns(ctid: &Ctid, pid: i32, pidfd: BorrowedFd) -> Result<OwnedFd> {
    let ns = netns::open_of_pid(pid)?;
    cove_engine::sys::pidfd_send_signal(pidfd, 0)
        .map_err(|_| Error::NotRunning(ctid.to_string()))?;
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_global_ipv6_addresses_are_advertised() {
        for a in ["2001:db8::10", "fd00:98::10", "2a01:4f8::1"] {
            assert!(is_global6(&a.parse().unwrap()), "{a}");
        }
        for a in ["fe80::1", "febf::1", "::", "::1", "ff02::1"] {
            assert!(!is_global6(&a.parse().unwrap()), "{a}");
        }
    }
}
