//! Where the cgroup hierarchies are mounted and where the calling process
//! sits in each: parsed from /proc/self/mountinfo and /proc/self/cgroup.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The v1 controllers runc places a container in, in runc's order (which is
/// also the order limits are written in). `name=systemd` is not a
/// controller but a named hierarchy that systemd tracks processes by; runc
/// joins it so a container is not mistaken for part of the caller's unit.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "freezer",
    "rdma",
    "misc",
    "name=systemd",
];

/// One mounted v1 hierarchy (possibly several controllers co-mounted, as
/// `cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Hierarchy {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The cgroup the mount shows as its root ("/" on a host; a sub-cgroup
    /// when /sys/fs/cgroup was bind-mounted into a container).
    pub mount_root: String,
    /// The caller's cgroup in this hierarchy, from /proc/self/cgroup.
    pub own_cgroup: Option<String>,
}

/// The cgroup2 hierarchy: the whole tree on a unified host, the
/// controller-less (or nearly) companion tree on a hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnifiedHierarchy {
    pub mount_point: PathBuf,
    pub mount_root: String,
    pub own_cgroup: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<UnifiedHierarchy>,
}

/// /proc/self/mountinfo, read once per process: a command builds several
/// managers (status, then the operation) and the container's init, a copy
/// of the runtime, needs the mount order too. Where cgroup hierarchies
/// are mounted does not change while a command runs; /proc/self/cgroup
/// (where this process sits) can, and is read each time.
pub(crate) fn mountinfo() -> Result<&'static str> {
    static TEXT: OnceLock<String> = OnceLock::new();
    if let Some(text) = TEXT.get() {
        return Ok(text);
    }
    let text = read_proc("/proc/self/mountinfo")?;
    Ok(TEXT.get_or_init(|| text))
}

/// The cgroup and cgroup2 mount points in the host's mount order (the
/// order runc shows them in a container's /sys/fs/cgroup); empty if the
/// mount table cannot be read.
pub fn mount_order() -> Vec<PathBuf> {
    mountinfo()
        .map(|text| {
            parse_mountinfo(text)
                .into_iter()
                .map(|m| m.mount_point)
                .collect()
        })
        .unwrap_or_default()
}

impl Layout {
    pub(crate) fn of_this_process() -> Result<Self> {
        let cgroup = read_proc("/proc/self/cgroup")?;
        Ok(Self::parse(mountinfo()?, &cgroup))
    }

    pub(crate) fn parse(mountinfo: &str, proc_cgroup: &str) -> Self {
        let own = parse_proc_cgroup(proc_cgroup);
        let mut layout = Layout::default();
        for mount in parse_mountinfo(mountinfo) {
            match mount.fstype.as_str() {
                "cgroup2" if layout.unified.is_none() => {
                    let own_cgroup = own
                        .iter()
                        .find(|line| line.hierarchy_id == 0 && line.controllers.is_empty())
                        .map(|line| line.path.clone());
                    layout.unified = Some(UnifiedHierarchy {
                        mount_point: mount.mount_point,
                        mount_root: mount.root,
                        own_cgroup,
                    });
                }
                "cgroup" => {
                    let mut controllers: Vec<String> = mount
                        .super_options
                        .iter()
                        .filter(|opt| V1_CONTROLLERS.contains(&opt.as_str()))
                        .cloned()
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    controllers.sort();
                    // A hierarchy can be mounted more than once (bind
                    // mounts); the first mount is as good as any.
                    if layout.v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    let own_cgroup = own
                        .iter()
                        .find(|line| {
                            let mut theirs = line.controllers.clone();
                            theirs.sort();
                            // /proc/self/cgroup may list controllers we do not
                            // use (e.g. "name=foo" co-mounted); match on ours.
                            controllers.iter().all(|c| theirs.contains(c))
                        })
                        .map(|line| line.path.clone());
                    layout.v1.push(V1Hierarchy {
                        controllers,
                        mount_point: mount.mount_point,
                        mount_root: mount.root,
                        own_cgroup,
                    });
                }
                _ => {}
            }
        }
        layout
    }
}

fn read_proc(path: &str) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: PathBuf::from(path),
        source,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// The cgroup and cgroup2 mounts of a mountinfo text, in order. Lines that
/// do not parse are skipped: the kernel's format is stable, and one odd
/// line must not hide the others.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // "id parent maj:min root mount-point options [optional...] - fstype source super-options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let fstype = right[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        mounts.push(Mount {
            root: unescape(left[3]),
            mount_point: PathBuf::from(unescape(left[4])),
            fstype: fstype.to_string(),
            super_options: right[2].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(octal, 8) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroupLine {
    pub hierarchy_id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

/// "hierarchy-id:controllers:path" lines; the path may itself hold ':'.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroupLine> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy_id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroupLine {
                hierarchy_id,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's hybrid layout, with the caller in a memory sub-cgroup.
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_lists_v1_hierarchies_and_the_unified_tree() {
        let layout = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let names: Vec<_> = layout.v1.iter().map(|h| h.controllers.join(",")).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "pids", "name=systemd"]
        );
        let memory = &layout.v1[3];
        assert_eq!(memory.mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(memory.own_cgroup.as_deref(), Some("/process_api/abc"));
        let unified = layout.unified.as_ref().map(|u| u.mount_point.clone());
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn comounted_controllers_are_one_hierarchy() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 /docker/x /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
";
        let cgroup = "3:net_cls,net_prio:/docker/x\n2:cpu,cpuacct:/user.slice\n";
        let layout = Layout::parse(mountinfo, cgroup);
        assert_eq!(layout.v1.len(), 2);
        assert_eq!(layout.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(layout.v1[0].own_cgroup.as_deref(), Some("/user.slice"));
        assert_eq!(layout.v1[1].mount_root, "/docker/x");
        assert!(layout.unified.is_none());
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        let mounts =
            parse_mountinfo("41 31 0:38 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my cgroup"));
        assert_eq!(mounts[0].super_options, ["rw", "nsdelegate"]);
    }

    #[test]
    fn proc_cgroup_path_may_contain_colons() {
        let lines = parse_proc_cgroup("0::/a:b/c\n");
        assert_eq!(lines[0].hierarchy_id, 0);
        assert!(lines[0].controllers.is_empty());
        assert_eq!(lines[0].path, "/a:b/c");
    }
}
