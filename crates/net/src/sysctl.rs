//! The network sysctls cove sets. /proc/sys/net shows the network
//! namespace of whoever opens the file, so these act on the caller's.

use crate::{Error, Result};

/// What can be set, per interface or for the whole namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob<'a> {
    /// net.ipv4.conf.DEV.proxy_arp: answer ARP for addresses routed
    /// through another interface.
    ProxyArp(&'a str),
    /// net.ipv6.conf.DEV.proxy_ndp: answer solicitations for the proxy
    /// entries of DEV.
    ProxyNdp(&'a str),
    /// net.ipv4.ip_forward
    Forward4,
    /// net.ipv6.conf.all.forwarding
    Forward6,
}

impl Knob<'_> {
    pub fn path(&self) -> String {
        match self {
            Knob::ProxyArp(dev) => format!("/proc/sys/net/ipv4/conf/{dev}/proxy_arp"),
            Knob::ProxyNdp(dev) => format!("/proc/sys/net/ipv6/conf/{dev}/proxy_ndp"),
            Knob::Forward4 => "/proc/sys/net/ipv4/ip_forward".into(),
            Knob::Forward6 => "/proc/sys/net/ipv6/conf/all/forwarding".into(),
        }
    }
}

pub fn get(knob: Knob) -> Result<String> {
    let path = knob.path();
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::sys(format!("read {path}"), e))
}

pub fn set(knob: Knob, value: &str) -> Result<()> {
    let path = knob.path();
    std::fs::write(&path, value).map_err(|e| Error::sys(format!("write {value} to {path}"), e))
}

/// Sets `knob` to 1 unless it already is.
pub fn enable(knob: Knob) -> Result<()> {
    if get(knob)? == "1" {
        return Ok(());
    }
    set(knob, "1")
}
