//! An address with its prefix length: `198.18.0.2/24`, `fd00::2/64`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The longest prefix of the address's family (32 or 128).
    pub fn max_prefix(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// A single address: /32 or /128.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: Self::max_prefix(&addr),
        }
    }

    pub fn is_host(&self) -> bool {
        self.prefix == Self::max_prefix(&self.addr)
    }

    /// True when `other` lies in this network.
    pub fn contains(&self, other: &IpAddr) -> bool {
        match (self.addr, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(*b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(*b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `A` (a single address) or `A/P`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address (A or A/PREFIX)"))?;
        let max = Cidr::max_prefix(&addr);
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(format!(
                "{s:?}: not an address an interface can have (unspecified, multicast or loopback)"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_contains() {
        let c: Cidr = "198.18.0.2/24".parse().unwrap();
        assert_eq!(c.to_string(), "198.18.0.2/24");
        assert!(c.contains(&"198.18.0.1".parse().unwrap()));
        assert!(!c.contains(&"198.18.1.1".parse().unwrap()));
        assert!(!c.contains(&"fd00::1".parse().unwrap()));
        let h: Cidr = "fd00::2".parse().unwrap();
        assert_eq!((h.prefix, h.is_host()), (128, true));
        let n: Cidr = "fd00::2/64".parse().unwrap();
        assert!(n.contains(&"fd00::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().is_err());
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "fd00::1/129",
            "1.2.3.4/x",
            "224.0.0.1",
            "::1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }
}
