//! Published ports: DNAT rules in an nftables table of cove's own
//! (`inet cove`), through the `nft` program.
//!
//! Why the program and not netlink: nf_tables rules travel over netlink as
//! expressions of the kernel's rule VM (payload loads, compares, fib
//! lookups, nat with register ranges) that libnftables compiles from the
//! rule text; doing that ourselves means re-implementing that compiler
//! for every expression we use, with no library in Rust that does it for
//! us without libnftnl. `nft -f -` takes the whole change as one atomic
//! transaction, and its text is what an administrator reads in
//! `nft list ruleset`. Debian's `nftables` package provides it.
//!
//! Every rule carries the comment `cove:<tag>` (the CTID), so a CT's rules
//! are found and removed even when its own record is lost; the table goes
//! when its last rule does.
//!
//! Source guards: what a CT sends into the host through its veth must
//! come from the CT's own addresses ([`guard`]). One `netdev` table per
//! CT, named after the veth's host end, with one chain on that device's
//! ingress hook: it sees every frame the CT transmits, before the bridge
//! or routing does, so one shape serves bridged and routed CTs alike. A
//! table of its own makes adding and removing atomic without a lock that
//! other CTs share.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{Error, Result};

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "cove";
/// The base chains: packets from elsewhere, and the host's own.
const CHAINS: [(&str, &str); 2] = [("prerouting", "prerouting"), ("output", "output")];

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Traffic to `host_port` on any of the host's addresses goes to `to`:`to_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub proto: Proto,
    pub host_port: u16,
    pub to: IpAddr,
    pub to_port: u16,
}

impl Dnat {
    fn rule(&self, tag: &str) -> String {
        let (nfproto, family, to) = match self.to {
            IpAddr::V4(a) => ("ipv4", "ip", format!("{a}:{}", self.to_port)),
            IpAddr::V6(a) => ("ipv6", "ip6", format!("[{a}]:{}", self.to_port)),
        };
        format!(
            "meta nfproto {nfproto} fib daddr type local {} dport {} dnat {family} to {to} comment \"cove:{tag}\"",
            self.proto.as_str(),
            self.host_port
        )
    }
}

/// The nft program: /usr/sbin/nft or /sbin/nft, else from PATH.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/sbin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

fn nft(args: &[&str], script: Option<&str>) -> Result<String> {
    let bin = binary().ok_or_else(|| {
        Error::Nft(
            "nft is not installed: published ports and CT source guards need it (apt-get install nftables; or cove set CTID --ipguard no)".into(),
        )
    })?;
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .stdin(if script.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Nft(format!("{}: {e}", bin.display())))?;
    if let (Some(text), Some(mut stdin)) = (script, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Nft(format!("{}: {e}", bin.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("failed");
        return Err(Error::Nft(format!("nft {}: {first}", args.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds the DNAT rules of `tag`, creating the table and its chains when
/// missing; all in one transaction.
pub fn add(tag: &str, rules: &[Dnat]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut script = format!("add table {FAMILY} {TABLE}\n");
    for (chain, hook) in CHAINS {
        script.push_str(&format!(
            "add chain {FAMILY} {TABLE} {chain} {{ type nat hook {hook} priority -100; policy accept; }}\n"
        ));
    }
    for r in rules {
        for (chain, _) in CHAINS {
            script.push_str(&format!(
                "add rule {FAMILY} {TABLE} {chain} {}\n",
                r.rule(tag)
            ));
        }
    }
    nft(&["-f", "-"], Some(&script)).map(drop)
}

/// One rule of cove's table as `nft -a list` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub chain: String,
    pub handle: u64,
    pub text: String,
}

/// Every rule in cove's table; empty when there is no table.
pub fn list() -> Result<Vec<Listed>> {
    let text = match nft(&["-a", "list", "table", FAMILY, TABLE], None) {
        Ok(t) => t,
        Err(Error::Nft(m)) if m.contains("No such file or directory") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(parse_listing(&text))
}

fn parse_listing(text: &str) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut chain = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        if line.starts_with("table ") || line.starts_with("type ") {
            continue;
        }
        if let Some((rule, handle)) = line.rsplit_once(" # handle ") {
            if let Ok(h) = handle.trim().parse() {
                out.push(Listed {
                    chain: chain.clone(),
                    handle: h,
                    text: rule.trim().to_string(),
                });
            }
        }
    }
    out
}

/// The rules of `tag`.
pub fn tagged(tag: &str) -> Result<Vec<Listed>> {
    let mark = format!("comment \"cove:{tag}\"");
    Ok(list()?
        .into_iter()
        .filter(|r| r.text.ends_with(&mark))
        .collect())
}

/// Removes every rule of `tag`, and the table when no rule is left in it.
/// Returns how many rules went.
pub fn remove(tag: &str) -> Result<usize> {
    let all = list()?;
    let mark = format!("comment \"cove:{tag}\"");
    let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.text.ends_with(&mark));
    if mine.is_empty() && !others.is_empty() {
        return Ok(0);
    }
    let mut script = String::new();
    if others.is_empty() {
        // Nothing of anyone else's: the table goes, and our rules with it.
        if mine.is_empty() && !table_exists()? {
            return Ok(0);
        }
        script.push_str(&format!("delete table {FAMILY} {TABLE}\n"));
    } else {
        for r in &mine {
            script.push_str(&format!(
                "delete rule {FAMILY} {TABLE} {} handle {}\n",
                r.chain, r.handle
            ));
        }
    }
    nft(&["-f", "-"], Some(&script))?;
    Ok(mine.len())
}

/// The addresses a CT may send from through `dev`, the host end of its veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub dev: String,
    /// The CT end's MAC address: the only source the bridge may learn.
    pub mac: Option<Vec<u8>>,
    pub v4: Vec<std::net::Ipv4Addr>,
    pub v6: Vec<std::net::Ipv6Addr>,
}

/// The name of the guard table of host end `dev`.
pub fn guard_table(dev: &str) -> String {
    format!("cove-guard-{dev}")
}

fn addr_set<T: std::fmt::Display>(fixed: &[&str], addrs: &[T]) -> String {
    let all: Vec<String> = fixed
        .iter()
        .map(|s| s.to_string())
        .chain(addrs.iter().map(|a| a.to_string()))
        .collect();
    format!("{{ {} }}", all.join(", "))
}

impl Guard {
    /// One transaction that makes the table afresh (a table left by an
    /// earlier run of this CT, bound to a device since deleted, goes).
    pub fn script(&self) -> String {
        let t = guard_table(&self.dev);
        let mut s = format!(
            "add table netdev {t}\ndelete table netdev {t}\nadd table netdev {t}\n\
             add chain netdev {t} ingress {{ type filter hook ingress device \"{}\" priority -500; policy accept; }}\n",
            self.dev
        );
        let mut rule = |r: &str| s.push_str(&format!("add rule netdev {t} ingress {r}\n"));
        if let Some(mac) = &self.mac {
            let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            let mac = mac.join(":");
            rule(&format!("ether saddr != {mac} drop"));
            rule(&format!("ether type arp arp saddr ether != {mac} drop"));
        }
        // Tagged frames would carry their own inner addresses past the
        // checks below.
        rule("ether type { 0x8100, 0x88a8 } drop");
        if self.v4.is_empty() {
            rule("ether type { ip, arp } drop");
        } else {
            // 0.0.0.0: ARP probes of duplicate address detection.
            rule(&format!(
                "ether type arp arp saddr ip != {} drop",
                addr_set(&["0.0.0.0"], &self.v4)
            ));
            rule(&format!(
                "ether type ip ip saddr != {} drop",
                addr_set(&[], &self.v4)
            ));
        }
        // The unspecified address (duplicate address detection) and the
        // link-local ones (neighbour discovery) besides the CT's own.
        rule(&format!(
            "ether type ip6 ip6 saddr != {} drop",
            addr_set(&["::", "fe80::/10"], &self.v6)
        ));
        s
    }
}

/// Installs (or replaces) the source guard of `g.dev`.
pub fn guard(g: &Guard) -> Result<()> {
    nft(&["-f", "-"], Some(&g.script())).map(drop)
}

/// Removes the source guard of host end `dev`; none is fine (also when
/// nft is missing: then none was ever made).
pub fn unguard(dev: &str) -> Result<()> {
    delete_netdev_table(&guard_table(dev))
}

/// Deletes netdev table `name`; none (or no nft, so none was made) is fine.
fn delete_netdev_table(name: &str) -> Result<()> {
    if binary().is_none() {
        return Ok(());
    }
    match nft(&["delete", "table", "netdev", name], None) {
        Err(Error::Nft(m)) if m.contains("No such file or directory") => Ok(()),
        r => r.map(drop),
    }
}

/// The name of the table that mutes host end `dev`.
pub fn mute_table(dev: &str) -> String {
    format!("cove-mute-{dev}")
}

/// One transaction that makes the mute table of `dev` afresh: a chain on
/// the host end's ingress, ahead of the source guard, whose policy drops
/// every frame the CT sends. Its carrier, addresses and routes stay as
/// they are (a checkpoint taken meanwhile records them unchanged).
pub fn mute_script(dev: &str) -> String {
    let t = mute_table(dev);
    format!(
        "add table netdev {t}\ndelete table netdev {t}\nadd table netdev {t}\n\
         add chain netdev {t} ingress {{ type filter hook ingress device \"{dev}\" priority -1000; policy drop; }}\n"
    )
}

/// Drops everything the CT behind host end `dev` sends.
pub fn mute(dev: &str) -> Result<()> {
    nft(&["-f", "-"], Some(&mute_script(dev))).map(drop)
}

/// Lets the CT behind `dev` send again; no mute table is fine.
pub fn unmute(dev: &str) -> Result<()> {
    delete_netdev_table(&mute_table(dev))
}

fn table_exists() -> Result<bool> {
    match nft(&["list", "table", FAMILY, TABLE], None) {
        Ok(_) => Ok(true),
        Err(Error::Nft(m)) if m.contains("No such file or directory") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mute_drops_everything_from_the_ct_ahead_of_its_guard() {
        assert_eq!(
            mute_script("vc101"),
            "add table netdev cove-mute-vc101\ndelete table netdev cove-mute-vc101\n\
             add table netdev cove-mute-vc101\nadd chain netdev cove-mute-vc101 ingress \
             { type filter hook ingress device \"vc101\" priority -1000; policy drop; }\n"
        );
    }

    #[test]
    fn a_guard_admits_only_the_cts_addresses() {
        let g = Guard {
            dev: "vc101".into(),
            mac: Some(vec![0x02, 0xab, 0, 0, 0, 0x0f]),
            v4: vec!["198.18.0.2".parse().unwrap()],
            v6: vec![],
        };
        let s = g.script();
        assert!(
            s.starts_with(
                "add table netdev cove-guard-vc101\ndelete table netdev cove-guard-vc101\n"
            ),
            "{s}"
        );
        assert!(s.contains("hook ingress device \"vc101\""), "{s}");
        assert!(s.contains("ether saddr != 02:ab:00:00:00:0f drop"), "{s}");
        assert!(
            s.contains("arp saddr ether != 02:ab:00:00:00:0f drop"),
            "{s}"
        );
        assert!(
            s.contains("arp saddr ip != { 0.0.0.0, 198.18.0.2 } drop"),
            "{s}"
        );
        assert!(s.contains("ip saddr != { 198.18.0.2 } drop"), "{s}");
        assert!(s.contains("ip6 saddr != { ::, fe80::/10 } drop"), "{s}");
        let none4 = Guard {
            v4: vec![],
            v6: vec!["fd00::5".parse().unwrap()],
            ..g
        }
        .script();
        assert!(none4.contains("ether type { ip, arp } drop"), "{none4}");
        assert!(
            none4.contains("ip6 saddr != { ::, fe80::/10, fd00::5 } drop"),
            "{none4}"
        );
    }

    #[test]
    fn rules_read_as_nft_writes_them() {
        let r = Dnat {
            proto: Proto::Tcp,
            host_port: 8080,
            to: "198.18.0.2".parse().unwrap(),
            to_port: 80,
        };
        assert_eq!(
            r.rule("101"),
            "meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 198.18.0.2:80 comment \"cove:101\""
        );
        let listing = "table inet cove { # handle 7\n\tchain prerouting { # handle 1\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tmeta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 198.18.0.2:80 comment \"cove:101\" # handle 3\n\t}\n\tchain output { # handle 2\n\t\ttype nat hook output priority -100; policy accept;\n\t\tudp dport 53 dnat ip to 198.18.0.3:53 comment \"cove:102\" # handle 4\n\t}\n}\n";
        let rules = parse_listing(listing);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].chain.as_str(), rules[0].handle),
            ("prerouting", 3)
        );
        assert!(rules[1].text.ends_with("comment \"cove:102\""));
    }
}
