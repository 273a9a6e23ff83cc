//! Device cgroup rules as the v1 devices controller understands them, kept
//! as a set (runc's "emulator"): a default verdict plus exceptions keyed by
//! (major, minor, type). Both device back ends start from it:
//!
//! - v1: the set now in the cgroup (parsed from `devices.list`) and the
//!   set wanted give the smallest list of writes between the two, so an
//!   `update` of a running container never passes through "deny all";
//! - v2: the set becomes the eBPF program (`device_program`), so a rule
//!   list means the same thing on both kinds of host.
//!
//! Rules apply in order. A wildcard rule ("a", or no type) resets the set:
//! deny-all makes it an allow list, allow-all a deny list. Any other rule
//! adds an exception, or takes access away from an exact exception. As in
//! runc, a set starts as an allow list that allows nothing, and taking
//! access away from a device that a wildcard exception covers is refused:
//! the v1 kernel would ignore it silently.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// Device kind as the kernel checks it. Ordered as runc orders 'b' < 'c'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Block,
    Char,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// A set of r, w, m. The bits are the kernel's BPF_DEVCG_ACC_* values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub(crate) struct Access(u8);

impl Access {
    pub(crate) const MKNOD: Access = Access(1);
    pub(crate) const READ: Access = Access(2);
    pub(crate) const WRITE: Access = Access(4);
    pub(crate) const ALL: Access = Access(7);

    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    fn parse(text: &str) -> Option<Access> {
        let mut bits = 0;
        for c in text.chars() {
            bits |= match c {
                'r' => Self::READ.0,
                'w' => Self::WRITE.0,
                'm' => Self::MKNOD.0,
                _ => return None,
            };
        }
        Some(Access(bits))
    }

    fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    fn overlaps(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::MKNOD, 'm')] {
            if self.overlaps(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Which devices an exception is about; `None` is the wildcard "*".
/// Ordered (major, minor, kind) with wildcards first, like runc's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Node {
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) kind: Kind,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{}",
            self.kind.letter(),
            number(self.major),
            number(self.minor)
        )
    }
}

/// One rule: `node` `None` is every device ("a").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) allow: bool,
    pub(crate) node: Option<Node>,
    pub(crate) access: Access,
}

impl Rule {
    /// The line devices.allow / devices.deny take: "c 1:3 rwm", or "a".
    pub(crate) fn v1_line(&self) -> String {
        match self.node {
            None => "a".to_string(),
            Some(node) => format!("{node} {}", self.access),
        }
    }

    /// One spec rule; `Ok(None)` for a fifo rule, which the kernel never
    /// checks (runc skips them too).
    pub(crate) fn from_spec(rule: &LinuxDeviceCgroup) -> Result<Option<Rule>> {
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(Kind::Block),
            // 'u' (unbuffered character device) is a character device to the kernel.
            LinuxDeviceType::C | LinuxDeviceType::U => Some(Kind::Char),
            LinuxDeviceType::P => return Ok(None),
        };
        let number = |n: Option<i64>, what: &str| -> Result<Option<u32>> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                    Error::InvalidResources(format!(
                        "device rule {what} {n} is out of range (0..=4294967295, or -1 for any)"
                    ))
                }),
            }
        };
        let major = number(rule.major(), "major")?;
        let minor = number(rule.minor(), "minor")?;
        let text = rule.access().as_deref().unwrap_or("");
        let access = if text.is_empty() {
            Access::ALL
        } else {
            Access::parse(text).ok_or_else(|| {
                Error::InvalidResources(format!(
                    "device rule access {text:?}: use letters of \"rwm\""
                ))
            })?
        };
        Ok(Some(Rule {
            allow: rule.allow(),
            node: kind.map(|kind| Node { major, minor, kind }),
            access,
        }))
    }
}

/// What a device cgroup allows: a default verdict and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DeviceSet {
    /// true: allow what no exception names (a deny list).
    pub(crate) default_allow: bool,
    pub(crate) exceptions: BTreeMap<Node, Access>,
}

impl DeviceSet {
    /// The set a rule list makes, applied in order from "allow nothing".
    pub(crate) fn from_spec(rules: &[LinuxDeviceCgroup]) -> Result<DeviceSet> {
        let mut set = DeviceSet::default();
        for rule in rules {
            if let Some(rule) = Rule::from_spec(rule)? {
                set.apply(&rule)?;
            }
        }
        Ok(set)
    }

    pub(crate) fn apply(&mut self, rule: &Rule) -> Result<()> {
        let Some(node) = rule.node else {
            *self = DeviceSet {
                default_allow: rule.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        };
        if rule.allow == self.default_allow {
            self.remove(node, rule.access)
        } else {
            let entry = self.exceptions.entry(node).or_default();
            *entry = entry.union(rule.access);
            Ok(())
        }
    }

    fn remove(&mut self, node: Node, access: Access) -> Result<()> {
        // The kernel only takes access away from an exception that names
        // exactly these numbers; a wildcard exception would go on granting
        // it. Refused rather than silently ignored, as runc does.
        let wider = [
            Node {
                major: None,
                ..node
            },
            Node {
                minor: None,
                ..node
            },
            Node {
                major: None,
                minor: None,
                ..node
            },
        ];
        for wide in wider {
            if wide == node {
                continue;
            }
            if let Some(held) = self.exceptions.get(&wide) {
                if held.overlaps(access) {
                    return Err(Error::InvalidResources(format!(
                        "device rule \"{node} {access}\" cannot take access away from \
                         the wider rule \"{wide} {held}\" given before it: \
                         list the narrower rule first or drop the wider one"
                    )));
                }
            }
        }
        if let Some(held) = self.exceptions.get_mut(&node) {
            *held = held.minus(access);
            if held.is_empty() {
                self.exceptions.remove(&node);
            }
        }
        Ok(())
    }

    /// The set a v1 `devices.list` describes. The list only shows what is
    /// allowed: "a *:* rwm" means a deny list whose exceptions cannot be
    /// read back, so such a cgroup counts as "allow all".
    pub(crate) fn from_list(text: &str) -> std::result::Result<DeviceSet, String> {
        let mut set = DeviceSet::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || format!("unexpected devices.list line {line:?}");
            let mut fields = line.split_whitespace();
            let (Some(kind), Some(numbers), Some(access), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            let kind = match kind {
                "a" => {
                    set = DeviceSet {
                        default_allow: true,
                        exceptions: BTreeMap::new(),
                    };
                    continue;
                }
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return Err(bad()),
            };
            let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
            let number = |n: &str| -> std::result::Result<Option<u32>, String> {
                if n == "*" {
                    Ok(None)
                } else {
                    n.parse().map(Some).map_err(|_| bad())
                }
            };
            let access = Access::parse(access)
                .filter(|a| !a.is_empty())
                .ok_or_else(bad)?;
            let node = Node {
                major: number(major)?,
                minor: number(minor)?,
                kind,
            };
            // Every line is an allowed entry.
            let entry = set.exceptions.entry(node).or_default();
            *entry = entry.union(access);
        }
        Ok(set)
    }

    /// The fewest rules that turn a cgroup holding `self` into `target`.
    /// "Deny all" (or "allow all") comes first only when the default verdict
    /// changes, or when `self` is a deny list whose exceptions are unknown.
    pub(crate) fn transition(&self, target: &DeviceSet) -> Vec<Rule> {
        let mut rules = Vec::new();
        let empty = BTreeMap::new();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            rules.push(Rule {
                allow: target.default_allow,
                node: None,
                access: Access::ALL,
            });
            &empty
        } else {
            &self.exceptions
        };
        for (node, held) in old {
            let wanted = target.exceptions.get(node).copied().unwrap_or_default();
            let dropped = held.minus(wanted);
            if !dropped.is_empty() {
                rules.push(Rule {
                    allow: target.default_allow,
                    node: Some(*node),
                    access: dropped,
                });
            }
        }
        for (node, wanted) in &target.exceptions {
            let held = old.get(node).copied().unwrap_or_default();
            let gained = wanted.minus(held);
            if !gained.is_empty() {
                rules.push(Rule {
                    allow: !target.default_allow,
                    node: Some(*node),
                    access: gained,
                });
            }
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).expect("valid device rules")
    }

    fn lines(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {}", if r.allow { "allow" } else { "deny" }, r.v1_line()))
            .collect()
    }

    #[test]
    fn deny_all_then_allows_is_an_allow_list() {
        let set = DeviceSet::from_spec(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "m"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"}]"#,
        ))
        .unwrap();
        assert!(!set.default_allow);
        let got: Vec<String> = set
            .exceptions
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect();
        assert_eq!(got, ["c 1:3 rwm", "c 136:* rwm"]);
    }

    #[test]
    fn last_wildcard_wins_and_later_rules_refine_it() {
        let set = DeviceSet::from_spec(&rules(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "access": "rwm"},
                {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "w"}]"#,
        ))
        .unwrap();
        assert!(
            set.default_allow,
            "allow-all after the first rule resets it"
        );
        let got: Vec<String> = set
            .exceptions
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect();
        assert_eq!(got, ["b 8:0 w"]);
    }

    #[test]
    fn a_deny_narrower_than_an_earlier_wildcard_allow_is_refused() {
        let err = DeviceSet::from_spec(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "access": "rw"},
                {"allow": false, "type": "c", "major": 1, "minor": 1, "access": "r"}]"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("c 1:*"), "{err}");
        // Taking away what no wildcard grants is fine.
        DeviceSet::from_spec(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "access": "m"},
                {"allow": false, "type": "c", "major": 1, "minor": 1, "access": "r"}]"#,
        ))
        .unwrap();
    }

    #[test]
    fn bad_access_letters_are_refused() {
        assert!(DeviceSet::from_spec(&rules(r#"[{"allow": true, "access": "rx"}]"#)).is_err());
    }

    #[test]
    fn list_with_a_star_entry_is_allow_all() {
        let set = DeviceSet::from_list("a *:* rwm\n").unwrap();
        assert!(set.default_allow);
        assert!(set.exceptions.is_empty());
        let set = DeviceSet::from_list("c 1:3 rwm\nc *:* m\nb 8:0 r\n").unwrap();
        assert!(!set.default_allow);
        assert_eq!(set.exceptions.len(), 3);
        assert!(DeviceSet::from_list("x 1:2 r\n").is_err());
    }

    #[test]
    fn transition_from_allow_all_starts_with_deny_all() {
        let from = DeviceSet::from_list("a *:* rwm\n").unwrap();
        let to = DeviceSet::from_list("c 1:3 rwm\nc *:* m\n").unwrap();
        assert_eq!(
            lines(&from.transition(&to)),
            ["deny a", "allow c *:* m", "allow c 1:3 rwm"]
        );
    }

    #[test]
    fn transition_between_allow_lists_writes_only_the_difference() {
        let from = DeviceSet::from_list("c *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 10:200 rwm\n").unwrap();
        let to = DeviceSet::from_list("c *:* m\nc 1:3 rwm\nc 1:5 r\nc 42:1 rw\n").unwrap();
        assert_eq!(
            lines(&from.transition(&to)),
            ["deny c 1:5 wm", "deny c 10:200 rwm", "allow c 42:1 rw"]
        );
        assert!(to.transition(&to).is_empty(), "nothing to write");
    }
}
