//! cove-net: what cove's CT networking asks of the kernel, over rtnetlink
//! (links, addresses, routes, neighbour proxy entries), /proc/sys/net
//! (sysctls) and nftables (published ports, source guards), in the network namespace of
//! the calling process or, through [`netns::run_in`], in a CT's.
//!
//! Synchronous: one netlink socket per [`Netlink`], a request, its answer.
//! No async runtime, no `ip` subprocess; nothing here knows what a CT is.
//!
//! | module | job |
//! |---|---|
//! | `netlink` | the socket: requests, acks, dumps, kernel errors |
//! | `link` | veth pairs, bridges, master, up/down, rename, move to a netns, delete |
//! | `addr` | IPv4/IPv6 addresses on a link |
//! | `route` | routes through a link or a gateway |
//! | `neigh` | neighbour proxy entries (proxy ARP / NDP for single addresses) |
//! | `arp` | gratuitous ARP: IPv4 addresses announced at an interface's MAC (after a move) |
//! | `ndp` | unsolicited neighbour advertisements: the same for IPv6 addresses |
//! | `packet` | whole Ethernet frames out of one interface (a raw packet socket) |
//! | `sysctl` | proxy_arp, forwarding, proxy_ndp |
//! | `netns` | run a closure in another network namespace (a forked child) |
//! | `nft` | a table of cove's own: DNAT rules for published ports; per-CT source guards on the veth's ingress |
//! | `cidr` | an address with its prefix length |

pub mod addr;
pub mod arp;
pub mod cidr;
pub mod link;
pub mod ndp;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod nft;
mod packet;
pub mod route;
pub mod sysctl;

pub use cidr::Cidr;
pub use netlink::Netlink;

/// What went wrong, naming the object and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        source: std::io::Error,
    },
    /// A system call of ours failed (socket, fork, setns, a /proc file).
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    /// The kernel answered with something we could not read.
    #[error("netlink: {0}")]
    Decode(String),
    #[error("no network interface {0}")]
    NoSuchLink(String),
    /// `nft` failed or is missing.
    #[error("{0}")]
    Nft(String),
    /// The child that worked in another namespace reported this.
    #[error("{0}")]
    InNamespace(String),
}

impl Error {
    pub(crate) fn sys(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// The errno the kernel answered with, if this is a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } | Error::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the thing to remove is already gone: no such device,
    /// address, route or entry.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::NoSuchLink(_))
            || matches!(
                self.errno(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            )
    }

    /// True when the thing to add is already there.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Interface names are at most 15 bytes (IFNAMSIZ less the NUL), with no
/// `/`, `:`, white space, and neither `.` nor `..`.
pub fn validate_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "{name:?} is not an interface name: 1 to 15 characters"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(format!(
            "{name:?} is not an interface name: no '/', ':' or white space"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(validate_ifname("cove0").is_ok());
        assert!(validate_ifname("abcdefghijklmno").is_ok());
        for bad in ["", "abcdefghijklmnop", "a/b", "a b", "a:1", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
