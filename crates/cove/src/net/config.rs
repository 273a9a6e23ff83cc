//! The `[net]` table of ct.toml and the `create`/`set` flags that change it.
//!
//! ```toml
//! [net]
//! netif = "bridged"                 # or "routed"; bridged when absent
//! bridge = "cove0"                  # bridged: the bridge the veth joins
//! ip = ["198.18.0.2/24", "fd00:c0::2/64"]
//! gateway = ["198.18.0.1"]          # bridged: one per IP family
//! uplink = "eth1"                   # routed: proxy ARP/NDP there
//! nameserver = ["198.18.0.1"]       # the CT's /etc/resolv.conf
//! searchdomain = ["example.test"]
//! publish = ["8080:80/tcp"]         # bridged: host port -> CT port
//! ```
//!
//! A CT has a network interface when `netif`, `ip` or `bridge` is set;
//! without, it has only its loopback, as before networking existed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Args;
use serde::{Deserialize, Serialize};

use cove_net::nft::Proto;
use cove_net::Cidr;

pub const DEFAULT_BRIDGE: &str = "cove0";
/// resolv(5): the resolver reads at most 3 nameservers and 6 search domains.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHDOMAINS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Netif {
    /// A veth pair whose host end is a port of a bridge.
    Bridged,
    /// A veth pair with single addresses in the CT, routed by the host
    /// (OpenVZ's venet).
    Routed,
}

impl fmt::Display for Netif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Netif::Bridged => "bridged",
            Netif::Routed => "routed",
        })
    }
}

/// `HOSTPORT:CTPORT[/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Publish {
    pub host_port: u16,
    pub ct_port: u16,
    pub proto: Proto,
}

fn parse_port(s: &str, whole: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && !s.starts_with('+') => Ok(p),
        _ => Err(format!("{whole:?}: {s:?} is not a port (1 to 65535)")),
    }
}

fn parse_proto(s: Option<&str>, whole: &str) -> Result<Proto, String> {
    match s {
        None | Some("tcp") => Ok(Proto::Tcp),
        Some("udp") => Ok(Proto::Udp),
        Some(other) => Err(format!("{whole:?}: protocol {other:?} is not tcp or udp")),
    }
}

impl FromStr for Publish {
    type Err = String;
    fn from_str(s: &str) -> Result<Publish, String> {
        let (ports, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (s, None),
        };
        let (h, c) = ports
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not HOSTPORT:CTPORT[/tcp|udp]"))?;
        Ok(Publish {
            host_port: parse_port(h, s)?,
            ct_port: parse_port(c, s)?,
            proto: parse_proto(proto, s)?,
        })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.ct_port,
            self.proto.as_str()
        )
    }
}

impl Serialize for Publish {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Publish {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Publish, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `HOSTPORT[/tcp|udp]`: what `--unpublish` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub port: u16,
    pub proto: Proto,
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<HostPort, String> {
        let (p, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (s, None),
        };
        Ok(HostPort {
            port: parse_port(p, s)?,
            proto: parse_proto(proto, s)?,
        })
    }
}

/// A flag value that can also be `none` (clears the setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrNone<T> {
    Value(T),
    None,
}

impl<T: FromStr<Err = String>> FromStr for OrNone<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<OrNone<T>, String> {
        if s == "none" {
            Ok(OrNone::None)
        } else {
            s.parse().map(OrNone::Value)
        }
    }
}

/// An address to remove, or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpDel {
    Addr(IpAddr),
    All,
}

impl FromStr for IpDel {
    type Err = String;
    fn from_str(s: &str) -> Result<IpDel, String> {
        if s == "all" {
            return Ok(IpDel::All);
        }
        let a = s.split_once('/').map_or(s, |(a, _)| a);
        a.parse()
            .map(IpDel::Addr)
            .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address (or all)"))
    }
}

/// An interface name, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(pub String);

impl FromStr for IfName {
    type Err = String;
    fn from_str(s: &str) -> Result<IfName, String> {
        cove_net::validate_ifname(s)?;
        Ok(IfName(s.to_string()))
    }
}

/// A search domain, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(pub String);

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Domain, String> {
        validate_domain(s)?;
        Ok(Domain(s.to_string()))
    }
}

fn validate_domain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a domain name (letters, digits, '-' and '.')"
        ))
    }
}

/// A nameserver: an address.
fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

/// An address, as a type `OrNone` can wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl FromStr for Ip {
    type Err = String;
    fn from_str(s: &str) -> Result<Ip, String> {
        parse_ip(s).map(Ip)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netif: Option<Netif>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameserver: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searchdomain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    /// Source guard of the CT's veth (see [`NetConfig::guarded`]); unset
    /// means on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipguard: Option<bool>,
}

impl NetConfig {
    pub fn is_empty(&self) -> bool {
        self == &NetConfig::default()
    }

    /// The CT gets a network interface (a bridged one without addresses
    /// can still take them by DHCP from the bridge's network).
    pub fn enabled(&self) -> bool {
        self.netif.is_some() || !self.ip.is_empty() || self.bridge.is_some()
    }

    pub fn netif(&self) -> Netif {
        self.netif.unwrap_or(Netif::Bridged)
    }

    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    /// The CT may send only from its own addresses: on unless turned off
    /// (a CT that routes for others), and only for a CT with addresses (one
    /// without takes them by DHCP, unknown to cove).
    pub fn guarded(&self) -> bool {
        self.ipguard != Some(false) && !self.ip.is_empty()
    }

    /// The first IPv4 address, else the first: what `cove list` shows and
    /// where published ports lead.
    pub fn first_ip(&self) -> Option<IpAddr> {
        self.ip
            .iter()
            .find(|c| c.addr.is_ipv4())
            .or(self.ip.first())
            .map(|c| c.addr)
    }

    /// Checks the values together; each message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let netif = self.netif();
        if let Some(b) = &self.bridge {
            cove_net::validate_ifname(b).map_err(|e| format!("net.bridge: {e}"))?;
            if netif != Netif::Bridged {
                return Err(format!(
                    "net.bridge = {b:?}: only a bridged CT joins a bridge (netif is {netif})"
                ));
            }
        }
        if let Some(u) = &self.uplink {
            cove_net::validate_ifname(u).map_err(|e| format!("net.uplink: {e}"))?;
            if netif != Netif::Routed {
                return Err(format!(
                    "net.uplink = {u:?}: only for a routed CT (netif is {netif}); a bridged CT reaches the uplink through its bridge"
                ));
            }
        }
        for (i, c) in self.ip.iter().enumerate() {
            if self.ip[..i].iter().any(|o| o.addr == c.addr) {
                return Err(format!("net.ip: {} is there twice", c.addr));
            }
            if netif == Netif::Routed && !c.is_host() {
                return Err(format!(
                    "net.ip = {c}: a routed CT takes single addresses (/32, /128); use --netif bridged for a subnet"
                ));
            }
        }
        if !self.gateway.is_empty() && netif != Netif::Bridged {
            return Err(
                "net.gateway: a routed CT's traffic goes through the host; --gateway is for bridged CTs"
                    .into(),
            );
        }
        for (i, g) in self.gateway.iter().enumerate() {
            if self.gateway[..i].iter().any(|o| o.is_ipv4() == g.is_ipv4()) {
                return Err(format!(
                    "net.gateway: one gateway per IP family ({g} is the second)"
                ));
            }
            if !self.ip.iter().any(|c| c.addr.is_ipv4() == g.is_ipv4()) {
                return Err(format!(
                    "net.gateway = {g}: the CT has no {} address (add one with --ipadd)",
                    if g.is_ipv4() { "IPv4" } else { "IPv6" }
                ));
            }
            if self.ip.iter().any(|c| c.addr == *g) {
                return Err(format!("net.gateway = {g}: that is the CT's own address"));
            }
        }
        if self.nameserver.len() > MAX_NAMESERVERS {
            return Err(format!(
                "net.nameserver: at most {MAX_NAMESERVERS} (the resolver reads no more)"
            ));
        }
        if self.searchdomain.len() > MAX_SEARCHDOMAINS {
            return Err(format!("net.searchdomain: at most {MAX_SEARCHDOMAINS}"));
        }
        for d in &self.searchdomain {
            validate_domain(d).map_err(|e| format!("net.searchdomain: {e}"))?;
        }
        if !self.publish.is_empty() {
            if netif != Netif::Bridged || !self.enabled() {
                return Err(
                    "net.publish: published ports are for bridged CTs (a routed CT is reached at its own address)"
                        .into(),
                );
            }
            if !self.ip.iter().any(|c| c.addr.is_ipv4()) {
                return Err("net.publish: the CT needs an IPv4 address to publish to".into());
            }
        }
        for (i, p) in self.publish.iter().enumerate() {
            if self.publish[..i]
                .iter()
                .any(|o| o.host_port == p.host_port && o.proto == p.proto)
            {
                return Err(format!(
                    "net.publish: host port {}/{} is published twice",
                    p.host_port,
                    p.proto.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// The network flags of `cove create` and `cove set`.
#[derive(Debug, Clone, Default, Args)]
pub struct NetArgs {
    /// Network interface: bridged (a veth on a bridge; the default once the CT has an address) or routed (single addresses routed by the host, OpenVZ venet-style)
    #[arg(long, value_name = "MODE", value_enum)]
    pub netif: Option<Netif>,
    /// Bridge of a bridged CT [default: cove0, created when missing]
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<IfName>,
    /// Add an address, IPv4 or IPv6: A (a single address) or A/PREFIX; repeatable
    #[arg(long, value_name = "A[/P]")]
    pub ipadd: Vec<Cidr>,
    /// Remove an address, or all of them; repeatable
    #[arg(long, value_name = "A|all")]
    pub ipdel: Vec<IpDel>,
    /// Default gateway of a bridged CT, one per IP family (none removes them); repeatable
    #[arg(long, value_name = "A|none")]
    pub gateway: Vec<OrNone<Ip>>,
    /// Host interface where a routed CT's addresses are answered for (proxy ARP/NDP), or none
    #[arg(long, value_name = "DEV|none")]
    pub uplink: Option<OrNone<IfName>>,
    /// DNS server for the CT's /etc/resolv.conf; repeatable, replaces the list (none clears it)
    #[arg(long, value_name = "A|none")]
    pub nameserver: Vec<OrNone<Ip>>,
    /// Search domain for the CT's /etc/resolv.conf; repeatable, replaces the list (none clears it)
    #[arg(long, value_name = "DOMAIN|none")]
    pub searchdomain: Vec<OrNone<Domain>>,
    /// Publish a bridged CT's port on the host's addresses: HOSTPORT:CTPORT[/tcp|udp]; repeatable
    #[arg(long, value_name = "HOSTPORT:CTPORT[/PROTO]")]
    pub publish: Vec<Publish>,
    /// Stop publishing a host port: HOSTPORT[/tcp|udp]; repeatable
    #[arg(long, value_name = "HOSTPORT[/PROTO]")]
    pub unpublish: Vec<HostPort>,
    /// Drop what the CT sends from addresses other than its own (IP, ARP; tagged frames) [default: yes]; no for a CT that routes for others
    #[arg(long, value_name = "yes|no", value_parser = clap::builder::BoolishValueParser::new())]
    pub ipguard: Option<bool>,
}

impl NetArgs {
    pub fn is_empty(&self) -> bool {
        self.netif.is_none()
            && self.bridge.is_none()
            && self.ipadd.is_empty()
            && self.ipdel.is_empty()
            && self.gateway.is_empty()
            && self.uplink.is_none()
            && self.nameserver.is_empty()
            && self.searchdomain.is_empty()
            && self.publish.is_empty()
            && self.unpublish.is_empty()
            && self.ipguard.is_none()
    }

    /// `net` with these changes, or what is wrong with them.
    pub fn applied_to(&self, net: &NetConfig) -> Result<NetConfig, String> {
        let mut n = net.clone();
        if let Some(m) = self.netif {
            // What only the other kind has goes with the change of kind
            // (given again in this call, it is refused below).
            if n.netif() != m {
                match m {
                    Netif::Routed => {
                        n.bridge = None;
                        n.gateway.clear();
                        n.publish.clear();
                    }
                    Netif::Bridged => n.uplink = None,
                }
            }
            n.netif = Some(m);
        }
        if let Some(b) = &self.bridge {
            n.bridge = Some(b.0.clone());
        }
        for d in &self.ipdel {
            match d {
                IpDel::All => n.ip.clear(),
                IpDel::Addr(a) => {
                    let before = n.ip.len();
                    n.ip.retain(|c| c.addr != *a);
                    if n.ip.len() == before {
                        return Err(format!("--ipdel {a}: the CT has no such address"));
                    }
                }
            }
        }
        for c in &self.ipadd {
            if n.ip.iter().any(|o| o.addr == c.addr) {
                return Err(format!("--ipadd {c}: the CT already has {}", c.addr));
            }
            n.ip.push(*c);
        }
        // A gateway of a family the CT no longer has an address of goes
        // with the last such address.
        let ip = n.ip.clone();
        n.gateway
            .retain(|g| ip.iter().any(|c| c.addr.is_ipv4() == g.is_ipv4()));
        for g in &self.gateway {
            match g {
                OrNone::None => n.gateway.clear(),
                OrNone::Value(Ip(g)) => {
                    n.gateway.retain(|o| o.is_ipv4() != g.is_ipv4());
                    n.gateway.push(*g);
                }
            }
        }
        match &self.uplink {
            Some(OrNone::None) => n.uplink = None,
            Some(OrNone::Value(u)) => n.uplink = Some(u.0.clone()),
            None => {}
        }
        if !self.nameserver.is_empty() {
            n.nameserver = self
                .nameserver
                .iter()
                .filter_map(|v| match v {
                    OrNone::Value(Ip(a)) => Some(*a),
                    OrNone::None => None,
                })
                .collect();
        }
        if !self.searchdomain.is_empty() {
            n.searchdomain = self
                .searchdomain
                .iter()
                .filter_map(|v| match v {
                    OrNone::Value(Domain(d)) => Some(d.clone()),
                    OrNone::None => None,
                })
                .collect();
        }
        for u in &self.unpublish {
            let before = n.publish.len();
            n.publish
                .retain(|p| !(p.host_port == u.port && p.proto == u.proto));
            if n.publish.len() == before {
                return Err(format!(
                    "--unpublish {}/{}: that port is not published",
                    u.port,
                    u.proto.as_str()
                ));
            }
        }
        for p in &self.publish {
            n.publish
                .retain(|o| !(o.host_port == p.host_port && o.proto == p.proto));
            n.publish.push(*p);
        }
        if let Some(g) = self.ipguard {
            // On is the default: kept out of the file.
            n.ipguard = (!g).then_some(false);
        }
        n.validate()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> NetArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            net: NetArgs,
        }
        let mut argv = vec!["t"];
        argv.extend_from_slice(list);
        T::try_parse_from(argv).unwrap().net
    }

    #[test]
    fn flags_build_the_table_and_round_trip() {
        let n = args(&[
            "--ipadd",
            "198.18.0.2/24",
            "--ipadd",
            "fd00:c0::2/64",
            "--gateway",
            "198.18.0.1",
            "--nameserver",
            "198.18.0.1",
            "--searchdomain",
            "example.test",
            "--publish",
            "8080:80",
        ])
        .applied_to(&NetConfig::default())
        .unwrap();
        assert!(n.enabled() && n.netif() == Netif::Bridged && n.bridge() == "cove0");
        assert_eq!(n.publish[0].to_string(), "8080:80/tcp");
        let text = toml::to_string(&n).unwrap();
        assert!(text.contains("\"198.18.0.2/24\""), "{text}");
        let back: NetConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, n);
        // Live changes: one address goes, another comes.
        let m = args(&["--ipdel", "fd00:c0::2", "--ipadd", "198.18.0.9/24"])
            .applied_to(&n)
            .unwrap();
        let ips: Vec<String> = m.ip.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["198.18.0.2/24", "198.18.0.9/24"]);
        let u = args(&["--unpublish", "8080"]).applied_to(&m).unwrap();
        assert!(u.publish.is_empty());
        // Turning routed drops what only a bridged CT has.
        let r = args(&[
            "--netif",
            "routed",
            "--ipdel",
            "all",
            "--ipadd",
            "198.19.0.5",
        ])
        .applied_to(&n)
        .unwrap();
        assert!(r.gateway.is_empty() && r.publish.is_empty() && r.bridge.is_none());
    }

    #[test]
    fn bad_combinations_are_refused_with_the_reason() {
        let routed_subnet = args(&["--netif", "routed", "--ipadd", "198.18.0.2/24"])
            .applied_to(&NetConfig::default())
            .unwrap_err();
        assert!(
            routed_subnet.contains("single addresses"),
            "{routed_subnet}"
        );
        let gw = args(&["--gateway", "198.18.0.1"])
            .applied_to(&NetConfig::default())
            .unwrap_err();
        assert!(gw.contains("no IPv4 address"), "{gw}");
        let publish = args(&[
            "--netif",
            "routed",
            "--ipadd",
            "198.18.0.2",
            "--publish",
            "80:80",
        ])
        .applied_to(&NetConfig::default())
        .unwrap_err();
        assert!(publish.contains("bridged"), "{publish}");
        let uplink = args(&["--ipadd", "198.18.0.2/24", "--uplink", "eth0"])
            .applied_to(&NetConfig::default())
            .unwrap_err();
        assert!(uplink.contains("routed"), "{uplink}");
        let del = args(&["--ipdel", "198.18.0.7"])
            .applied_to(&NetConfig::default())
            .unwrap_err();
        assert!(del.contains("no such address"), "{del}");
        for bad in ["80", "0:80", "80:70000", "80:80/sctp", "a:b"] {
            assert!(bad.parse::<Publish>().is_err(), "{bad:?} was accepted");
        }
        assert!("bad_domain!".parse::<Domain>().is_err());
    }
}
