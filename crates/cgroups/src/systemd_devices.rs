//! Device rules as systemd unit properties (`DevicePolicy`, `DeviceAllow`)
//! for the `--systemd-cgroup` scope, with runc's mapping.
//!
//! cove enforces the rules itself (the v2 device program, the v1
//! devices.allow/deny lists), but systemd owns the scope: whenever it
//! realises the unit's cgroup again (a `systemctl daemon-reload` does), it
//! applies its own idea of the devices. With no device property, that idea
//! is `DevicePolicy=auto` without a list, and on a hybrid host systemd then
//! moves the container's processes out of the scope's devices cgroup into
//! the nearest one it manages, which allows every device (seen in the
//! systemd lane). Given the same rules as properties, systemd keeps the
//! scope's devices cgroup and writes them again.
//!
//! The mapping (systemd's syntax, runc's choices):
//! - the rules folded into one set as the kernel would (`DeviceSet`);
//! - an allow list becomes `DeviceAllow=` (empty: clears what a unit had),
//!   `DevicePolicy=strict`, then one `DeviceAllow` entry per exception:
//!   `/dev/char/M:m` or `/dev/block/M:m` for a device, `char-M`/`block-M`
//!   for every minor of a major (systemd >= 240; before, the group name
//!   from /proc/devices), `char-*`/`block-*` for every device of a type;
//!   a rule for one minor of every major ("c *:3") has no systemd form and
//!   is left to cove's own enforcement;
//! - a deny list that denies nothing is "allow all": `DevicePolicy=auto`
//!   and no entry;
//! - any other deny list has no systemd form: systemd gets "deny all"
//!   (strict, no entry) and cove's own rules are the finer ones (runc does
//!   the same, with a warning).

use zbus::zvariant::Value;

use crate::device_rules::{DeviceSet, Kind, Node};

/// systemd's (path, access) entries of `DeviceAllow`, D-Bus type a(ss).
type Entries = Vec<(String, String)>;

/// The properties for `set`, in the order runc sends them (a later
/// DeviceAllow adds to the list an earlier empty one cleared). systemd
/// `version` decides the form of a whole-major rule; `proc_devices` is
/// /proc/devices, read only for systemd before 240.
pub(crate) fn device_properties(
    set: &DeviceSet,
    version: u32,
    proc_devices: impl Fn() -> String,
) -> Vec<(&'static str, Value<'static>)> {
    let clear = ("DeviceAllow", Value::from(Entries::new()));
    if set.default_allow {
        if set.exceptions.is_empty() {
            return vec![clear, ("DevicePolicy", Value::from("auto"))];
        }
        tracing::warn!(
            "systemd has no form for a device deny list: the scope gets DevicePolicy=strict \
             without entries, cove's own device rules allow the rest"
        );
        return vec![clear, ("DevicePolicy", Value::from("strict"))];
    }
    let mut entries = Entries::new();
    let mut devices_text: Option<String> = None;
    for (node, access) in &set.exceptions {
        if access.is_empty() {
            continue;
        }
        let path = match (node.major, node.minor) {
            (None, Some(_)) => {
                tracing::warn!("systemd has no form for the device rule \"{node}\": left to cove");
                continue;
            }
            (None, None) => format!("{}*", prefix(node.kind)),
            (Some(major), None) if version >= 240 => format!("{}{major}", prefix(node.kind)),
            (Some(_), None) => {
                let text = devices_text.get_or_insert_with(&proc_devices);
                match device_group(text, node) {
                    Some(group) => group,
                    None => {
                        tracing::warn!("no group in /proc/devices for \"{node}\": left to cove");
                        continue;
                    }
                }
            }
            (Some(major), Some(minor)) => {
                let path = format!("/dev/{}/{major}:{minor}", dir(node.kind));
                // systemd before 240 stat()s the path and drops a missing one.
                if version < 240 && !std::path::Path::new(&path).exists() {
                    continue;
                }
                path
            }
        };
        entries.push((path, access.to_string()));
    }
    vec![
        clear,
        ("DevicePolicy", Value::from("strict")),
        ("DeviceAllow", Value::from(entries)),
    ]
}

fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Block => "block-",
        Kind::Char => "char-",
    }
}

fn dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Block => "block",
        Kind::Char => "char",
    }
}

/// The `char-NAME`/`block-NAME` group of a whole major, from the text of
/// /proc/devices ("Character devices:" then "  1 mem" lines).
fn device_group(proc_devices: &str, node: &Node) -> Option<String> {
    let major = node.major?.to_string();
    let mut kind = None;
    for line in proc_devices.lines().map(str::trim) {
        match line {
            "Character devices:" => kind = Some(Kind::Char),
            "Block devices:" => kind = Some(Kind::Block),
            _ if kind == Some(node.kind) => {
                if let Some((number, name)) = line.split_once(' ') {
                    if number == major {
                        return Some(format!("{}{}", prefix(node.kind), name.trim()));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(json: &str) -> DeviceSet {
        DeviceSet::from_spec(&serde_json::from_str::<Vec<_>>(json).unwrap()).unwrap()
    }

    fn entries(props: &[(&str, Value<'static>)]) -> Vec<(String, String)> {
        let (_, last) = props.last().unwrap();
        Entries::try_from(last.try_clone().unwrap()).unwrap()
    }

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n136 pts\n\nBlock devices:\n  8 sd\n";

    #[test]
    fn allow_list_becomes_strict_policy_with_paths_and_majors() {
        let props = device_properties(
            &set(r#"[{"allow": false, "access": "rwm"},
                     {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                     {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                     {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "r"},
                     {"allow": true, "type": "c", "access": "m"}]"#),
            252,
            || unreachable!("no /proc/devices for systemd >= 240"),
        );
        let names: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["DeviceAllow", "DevicePolicy", "DeviceAllow"]);
        assert_eq!(entries(&props[..1]), Vec::<(String, String)>::new());
        assert_eq!(props[1].1, Value::from("strict"));
        let e = entries(&props);
        let want = [
            ("char-*", "m"),
            ("/dev/char/1:3", "rwm"),
            ("/dev/block/8:0", "r"),
            ("char-136", "rwm"),
        ]
        .map(|(p, a)| (p.to_string(), a.to_string()));
        for w in &want {
            assert!(e.contains(w), "{w:?} missing from {e:?}");
        }
        assert_eq!(e.len(), want.len(), "{e:?}");
    }

    #[test]
    fn whole_major_before_systemd_240_is_the_proc_devices_group() {
        let props = device_properties(
            &set(
                r#"[{"allow": true, "type": "c", "major": 136, "access": "rw"},
                     {"allow": true, "type": "b", "major": 8, "access": "r"},
                     {"allow": true, "type": "c", "major": 250, "access": "r"}]"#,
            ),
            239,
            || PROC_DEVICES.to_string(),
        );
        let e = entries(&props);
        assert!(e.contains(&("char-pts".into(), "rw".into())), "{e:?}");
        assert!(e.contains(&("block-sd".into(), "r".into())), "{e:?}");
        assert_eq!(e.len(), 2, "major 250 has no group: left out: {e:?}");
    }

    #[test]
    fn one_minor_of_every_major_has_no_systemd_form() {
        let props = device_properties(
            &set(r#"[{"allow": true, "type": "c", "minor": 3, "access": "r"}]"#),
            252,
            String::new,
        );
        assert!(entries(&props).is_empty());
        assert_eq!(props[1].1, Value::from("strict"));
    }

    #[test]
    fn allow_all_is_auto_and_other_deny_lists_deny_all() {
        let all = device_properties(
            &set(r#"[{"allow": true, "access": "rwm"}]"#),
            252,
            String::new,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], ("DevicePolicy", Value::from("auto")));
        let deny_list = device_properties(
            &set(r#"[{"allow": true, "access": "rwm"},
                     {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]"#),
            252,
            String::new,
        );
        assert_eq!(deny_list.len(), 2);
        assert_eq!(deny_list[1], ("DevicePolicy", Value::from("strict")));
        assert!(entries(&deny_list[..1]).is_empty());
    }
}
