//! Which kind of cgroup host this is, decided once per process.

use std::sync::OnceLock;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

use crate::mounts::parse_mountinfo;

/// The three layouts found in the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostMode {
    /// Pure cgroup v2: /sys/fs/cgroup is the cgroup2 mount.
    Unified,
    /// v1 controllers under `/sys/fs/cgroup/<controller>`, plus a cgroup2
    /// tree at /sys/fs/cgroup/unified (systemd's "hybrid" layout).
    Hybrid,
    /// Only v1 hierarchies.
    Legacy,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The host's mode, detected on first use: two statfs calls (the same test
/// runc and systemd make), or /proc/self/mountinfo if /sys/fs/cgroup cannot
/// be looked at.
pub fn host_mode() -> HostMode {
    static MODE: OnceLock<HostMode> = OnceLock::new();
    *MODE.get_or_init(detect)
}

fn detect() -> HostMode {
    match statfs(CGROUP_ROOT) {
        Ok(fs) if fs.filesystem_type() == CGROUP2_SUPER_MAGIC => HostMode::Unified,
        Ok(fs) if fs.filesystem_type() == TMPFS_MAGIC => {
            let unified = statfs(HYBRID_UNIFIED)
                .map(|u| u.filesystem_type() == CGROUP2_SUPER_MAGIC)
                .unwrap_or(false);
            if unified {
                HostMode::Hybrid
            } else {
                HostMode::Legacy
            }
        }
        _ => mode_from_mountinfo(crate::mounts::mountinfo().unwrap_or_default()),
    }
}

/// The mode as the mount table shows it: a cgroup2 mount alone is unified;
/// with v1 mounts beside it, hybrid.
pub(crate) fn mode_from_mountinfo(text: &str) -> HostMode {
    let mounts = parse_mountinfo(text);
    let v2 = mounts.iter().any(|m| m.fstype == "cgroup2");
    let v1 = mounts.iter().any(|m| m.fstype == "cgroup");
    match (v1, v2) {
        (false, true) => HostMode::Unified,
        (true, true) => HostMode::Hybrid,
        _ => HostMode::Legacy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_decides_the_mode_when_statfs_cannot() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let hybrid_v2 = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(mode_from_mountinfo(v2), HostMode::Unified);
        assert_eq!(mode_from_mountinfo(v1), HostMode::Legacy);
        assert_eq!(
            mode_from_mountinfo(&format!("{v1}{hybrid_v2}")),
            HostMode::Hybrid
        );
    }
}
