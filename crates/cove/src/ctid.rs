//! CT identifiers and the other names a user types: CTIDs, CT names,
//! template names and hostnames, each with the rule that keeps it usable
//! as a path element, a cgroup name and an engine container id.

use std::fmt;

use crate::error::{Error, Result};

/// A CT's identifier: a number as vzctl's (`101`), or a name starting with a
/// letter (`web`). It names the CT's directories, its cgroup and its engine
/// container, so it is restricted to characters safe in all three.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ctid(String);

impl Ctid {
    pub fn parse(s: &str) -> Result<Ctid> {
        if is_number(s) {
            if s.starts_with('0') {
                return Err(Error::BadInput(format!(
                    "invalid CTID {s:?}: a numeric CTID has no leading zeros and is not 0"
                )));
            }
            if s.parse::<u32>().is_err() {
                return Err(Error::BadInput(format!(
                    "invalid CTID {s:?}: numbers go up to {}",
                    u32::MAX
                )));
            }
            return Ok(Ctid(s.to_string()));
        }
        if is_name(s) {
            return Ok(Ctid(s.to_string()));
        }
        Err(Error::BadInput(format!(
            "invalid CTID {s:?}: use a number (101) or a name of up to 64 letters, digits and _ . - starting with a letter"
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_numeric(&self) -> bool {
        is_number(&self.0)
    }
}

impl fmt::Display for Ctid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A letter, then up to 63 letters, digits, `_`, `.` or `-`. Starting with a
/// letter keeps names and numeric CTIDs apart.
fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A CT's `--name`: the same rule as a CTID made of letters.
pub fn validate_name(s: &str) -> Result<()> {
    if is_name(s) {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "invalid name {s:?}: use up to 64 letters, digits and _ . - starting with a letter"
        )))
    }
}

/// A template name: lower-case letters, digits, `_`, `.`, `-`, starting with
/// a letter or digit (`busybox`, `debian-12`).
pub fn validate_template_name(s: &str) -> Result<()> {
    let mut bytes = s.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "invalid template name {s:?}: use up to 64 lower-case letters, digits and _ . -"
        )))
    }
}

/// RFC 1123 host names, within the kernel's 64-byte utsname field.
pub fn validate_hostname(s: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !s.is_empty() && s.len() <= 64 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "invalid hostname {s:?}: use dot-separated labels of letters, digits and -, 64 characters at most"
        )))
    }
}

/// The hostname a CT gets when none is given: its name, else `ct<CTID>`
/// for a numeric CTID, else the CTID itself when that is a valid hostname.
pub fn default_hostname(ctid: &Ctid, name: Option<&str>) -> String {
    if let Some(n) = name.filter(|n| validate_hostname(n).is_ok()) {
        return n.to_string();
    }
    if ctid.is_numeric() {
        return format!("ct{ctid}");
    }
    if validate_hostname(ctid.as_str()).is_ok() {
        return ctid.to_string();
    }
    let cleaned: String = ctid
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "ct".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctids_are_numbers_or_names() {
        assert!(Ctid::parse("101").is_ok());
        assert!(Ctid::parse("web-1").is_ok());
        assert!(Ctid::parse("web.example_2").is_ok());
        for bad in [
            "",
            "0",
            "0101",
            "-x",
            "1a",
            "a/b",
            "..",
            "x y",
            "99999999999",
            &"a".repeat(65),
        ] {
            assert!(Ctid::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn hostnames_follow_rfc1123() {
        assert!(validate_hostname("ct101").is_ok());
        assert!(validate_hostname("web.example.org").is_ok());
        for bad in ["", "-a", "a-", "a..b", "a_b", &"a".repeat(65)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn default_hostnames() {
        let n = Ctid::parse("101").unwrap();
        assert_eq!(default_hostname(&n, None), "ct101");
        assert_eq!(default_hostname(&n, Some("web")), "web");
        let w = Ctid::parse("db_main").unwrap();
        assert_eq!(default_hostname(&w, None), "db-main");
    }

    #[test]
    fn template_names() {
        assert!(validate_template_name("debian-12").is_ok());
        assert!(validate_template_name("Busybox").is_err());
        assert!(validate_template_name("../x").is_err());
    }
}
