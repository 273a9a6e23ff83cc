//! `linux.cgroupsPath` as runc reads it, turned into one directory per
//! hierarchy.
//!
//! - An absolute path names the same cgroup under every hierarchy's mount.
//! - A relative path (and an empty one, which stands for the container id)
//!   is placed under the *caller's* cgroup in each hierarchy, as
//!   /proc/self/cgroup shows it, so a runtime started inside a cgroup keeps
//!   its containers there.
//! - On a pure v2 host runc goes one level up first: the caller's own cgroup
//!   holds processes (the caller), and a cgroup with processes cannot hand
//!   controllers down to children ("no internal processes"), so the
//!   container lands beside the caller's cgroup rather than under it.
//! - With the systemd driver the path is "slice:prefix:name".

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mounts::{Layout, V1_CONTROLLERS};
use crate::HostMode;

/// What the engine knows about a container's cgroup before it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSpec {
    /// `linux.cgroupsPath`, if the spec has one.
    pub path: Option<String>,
    /// The container id: the cgroup name when `path` is absent or empty.
    pub id: String,
    /// `--systemd-cgroup`: `path` is "slice:prefix:name".
    pub systemd: bool,
}

/// The cgroup path inside each hierarchy, after runc's cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InnerPath {
    /// "/a/b": the same under every hierarchy's mount point.
    Absolute(String),
    /// "a/b": below the caller's cgroup.
    Relative(String),
}

impl CgroupSpec {
    pub(crate) fn inner_path(&self) -> Result<InnerPath> {
        let raw = self.path.as_deref().unwrap_or("");
        if raw.is_empty() {
            let name = clean_relative(&self.id);
            if name.is_empty() {
                return Err(Error::InvalidPath {
                    path: self.id.clone(),
                    reason: "no cgroupsPath and the container id is not a usable cgroup name"
                        .into(),
                });
            }
            return Ok(InnerPath::Relative(name));
        }
        if raw.starts_with('/') {
            let cleaned = clean_absolute(raw);
            if cleaned == "/" {
                return Err(Error::InvalidPath {
                    path: raw.to_string(),
                    reason: "it names the root cgroup, which no container may own".into(),
                });
            }
            return Ok(InnerPath::Absolute(cleaned));
        }
        // runc cleans a relative path as if it were rooted, so ".." can
        // never climb out of the caller's cgroup.
        let cleaned = clean_relative(raw);
        if cleaned.is_empty() {
            return Err(Error::InvalidPath {
                path: raw.to_string(),
                reason: "it names the caller's own cgroup".into(),
            });
        }
        Ok(InnerPath::Relative(cleaned))
    }
}

/// The parts of a systemd cgroupsPath, "system.slice:docker:1234".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    pub slice: String,
    pub prefix: String,
    pub name: String,
}

/// Splits a systemd cgroupsPath; an empty path means runc's defaults
/// (the default slice, prefix "runc", the container id as name).
pub fn parse_systemd_path(path: Option<&str>, id: &str) -> Result<SystemdPath> {
    let raw = path.unwrap_or("");
    if raw.is_empty() {
        return Ok(SystemdPath {
            slice: String::new(),
            prefix: "runc".into(),
            name: id.to_string(),
        });
    }
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [slice, prefix, name] => Ok(SystemdPath {
            slice: slice.to_string(),
            prefix: prefix.to_string(),
            name: name.to_string(),
        }),
        _ => Err(Error::InvalidPath {
            path: raw.to_string(),
            reason: "the systemd cgroup driver expects \"slice:prefix:name\"".into(),
        }),
    }
}

/// A lexically cleaned absolute path: no ".", "..", or repeated '/';
/// ".." at the root stays at the root.
pub(crate) fn clean_absolute(path: &str) -> String {
    format!("/{}", normalized_components(path).join("/"))
}

/// A relative path cleaned as if rooted, without the leading '/'; "" when
/// nothing is left.
pub(crate) fn clean_relative(path: &str) -> String {
    normalized_components(path).join("/")
}

fn normalized_components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts
}

/// The directories of one container's cgroup: one per v1 controller (a
/// co-mounted hierarchy appears under each of its controllers, as in runc's
/// state), and the cgroup2 directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub v1: Vec<(String, PathBuf)>,
    pub unified: Option<PathBuf>,
}

pub(crate) fn resolve(inner: &InnerPath, layout: &Layout, mode: HostMode) -> Result<Resolved> {
    let mut resolved = Resolved::default();
    if mode != HostMode::Unified {
        for hierarchy in &layout.v1 {
            let dir = place(
                &hierarchy.mount_point,
                &hierarchy.mount_root,
                hierarchy.own_cgroup.as_deref(),
                inner,
                false,
            )
            .map_err(|reason| Error::InvalidPath {
                path: inner_text(inner),
                reason: format!("{reason} (hierarchy {})", hierarchy.controllers.join(",")),
            })?;
            for controller in &hierarchy.controllers {
                resolved.v1.push((controller.clone(), dir.clone()));
            }
        }
        resolved.v1.sort_by_key(|(name, _)| controller_rank(name));
    }
    if mode != HostMode::Legacy {
        match &layout.unified {
            Some(unified) => {
                let dir = place(
                    &unified.mount_point,
                    &unified.mount_root,
                    unified.own_cgroup.as_deref(),
                    inner,
                    mode == HostMode::Unified,
                )
                .map_err(|reason| Error::InvalidPath {
                    path: inner_text(inner),
                    reason: format!("{reason} (cgroup2 hierarchy)"),
                })?;
                resolved.unified = Some(dir);
            }
            None if mode == HostMode::Unified => {
                return Err(Error::Unsupported {
                    what: "cgroup v2".into(),
                    reason: "no cgroup2 mount in /proc/self/mountinfo".into(),
                })
            }
            None => {}
        }
    }
    Ok(resolved)
}

fn controller_rank(name: &str) -> usize {
    V1_CONTROLLERS
        .iter()
        .position(|c| *c == name)
        .unwrap_or(V1_CONTROLLERS.len())
}

fn inner_text(inner: &InnerPath) -> String {
    match inner {
        InnerPath::Absolute(p) | InnerPath::Relative(p) => p.clone(),
    }
}

/// The directory of `inner` in one hierarchy.
fn place(
    mount_point: &Path,
    mount_root: &str,
    own_cgroup: Option<&str>,
    inner: &InnerPath,
    beside_own: bool,
) -> std::result::Result<PathBuf, String> {
    match inner {
        InnerPath::Absolute(path) => Ok(mount_point.join(path.trim_start_matches('/'))),
        InnerPath::Relative(path) => {
            let own = own_cgroup
                .ok_or_else(|| "the caller's cgroup is not in /proc/self/cgroup".to_string())?;
            // /proc/self/cgroup paths are from the hierarchy's root; the
            // mount may show only a subtree of it (mount root).
            let mut below_mount = strip_mount_root(own, mount_root);
            if beside_own {
                below_mount = parent_of(&below_mount);
            }
            Ok(mount_point
                .join(below_mount.trim_start_matches('/'))
                .join(path))
        }
    }
}

fn strip_mount_root(own: &str, mount_root: &str) -> String {
    let root = mount_root.trim_end_matches('/');
    if root.is_empty() {
        return own.to_string();
    }
    match own.strip_prefix(root) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        // The caller's cgroup is outside what the mount shows (a cgroup
        // namespace made elsewhere): take the path as the mount's own.
        _ => own.to_string(),
    }
}

fn parent_of(path: &str) -> String {
    let cleaned = clean_absolute(path);
    match cleaned.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: Option<&str>) -> CgroupSpec {
        CgroupSpec {
            path: path.map(str::to_string),
            id: "ct1".into(),
            systemd: false,
        }
    }

    const MOUNTINFO: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:33 /outer /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    const PROC_CGROUP: &str = "\
5:pids:/outer/inner
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/user.slice/session-1.scope
";

    fn layout() -> Layout {
        Layout::parse(MOUNTINFO, PROC_CGROUP)
    }

    fn dir(resolved: &Resolved, controller: &str) -> PathBuf {
        resolved
            .v1
            .iter()
            .find(|(name, _)| name == controller)
            .map(|(_, dir)| dir.clone())
            .unwrap_or_default()
    }

    #[test]
    fn absolute_path_is_kept_under_every_mount() {
        let inner = spec(Some("/cove//test/../ct1/")).inner_path().unwrap();
        assert_eq!(inner, InnerPath::Absolute("/cove/ct1".into()));
        let resolved = resolve(&inner, &layout(), HostMode::Hybrid).unwrap();
        assert_eq!(
            dir(&resolved, "memory"),
            PathBuf::from("/sys/fs/cgroup/memory/cove/ct1")
        );
        assert_eq!(
            dir(&resolved, "cpuacct"),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/cove/ct1")
        );
        assert_eq!(
            resolved.unified,
            Some(PathBuf::from("/sys/fs/cgroup/unified/cove/ct1"))
        );
    }

    #[test]
    fn relative_path_goes_below_the_callers_cgroup() {
        let inner = spec(Some("a/b")).inner_path().unwrap();
        let resolved = resolve(&inner, &layout(), HostMode::Hybrid).unwrap();
        assert_eq!(
            dir(&resolved, "memory"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/a/b")
        );
        assert_eq!(
            dir(&resolved, "cpu"),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a/b")
        );
        // The pids mount shows the subtree /outer: the caller's
        // /outer/inner is /inner below the mount point.
        assert_eq!(
            dir(&resolved, "pids"),
            PathBuf::from("/sys/fs/cgroup/pids/inner/a/b")
        );
        // Hybrid: the unified leaf sits below the caller's own cgroup.
        assert_eq!(
            resolved.unified,
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/user.slice/session-1.scope/a/b"
            ))
        );
    }

    #[test]
    fn relative_path_on_a_unified_host_goes_beside_the_callers_cgroup() {
        let layout = Layout::parse(
            "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/user.slice/session-1.scope\n",
        );
        let inner = spec(Some("ct")).inner_path().unwrap();
        let resolved = resolve(&inner, &layout, HostMode::Unified).unwrap();
        assert!(resolved.v1.is_empty());
        assert_eq!(
            resolved.unified,
            Some(PathBuf::from("/sys/fs/cgroup/user.slice/ct"))
        );
    }

    #[test]
    fn empty_path_is_the_container_id_below_the_callers_cgroup() {
        for path in [None, Some("")] {
            let inner = spec(path).inner_path().unwrap();
            assert_eq!(inner, InnerPath::Relative("ct1".into()));
            let resolved = resolve(&inner, &layout(), HostMode::Legacy).unwrap();
            assert_eq!(
                dir(&resolved, "memory"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/ct1")
            );
            assert_eq!(resolved.unified, None, "legacy mode has no unified leaf");
        }
    }

    #[test]
    fn dot_dot_cannot_climb_out_of_the_callers_cgroup() {
        let inner = spec(Some("../../etc/x")).inner_path().unwrap();
        assert_eq!(inner, InnerPath::Relative("etc/x".into()));
        assert!(spec(Some("..")).inner_path().is_err());
        assert!(spec(Some("/..")).inner_path().is_err());
    }

    #[test]
    fn v1_paths_come_in_runcs_controller_order() {
        let inner = spec(Some("/x")).inner_path().unwrap();
        let resolved = resolve(&inner, &layout(), HostMode::Legacy).unwrap();
        let names: Vec<&str> = resolved.v1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["memory", "cpu", "cpuacct", "pids"]);
    }

    #[test]
    fn systemd_path_has_three_parts() {
        let parsed = parse_systemd_path(Some("system.slice:docker:1234"), "id").unwrap();
        assert_eq!(parsed.slice, "system.slice");
        assert_eq!(parsed.prefix, "docker");
        assert_eq!(parsed.name, "1234");
        assert!(parse_systemd_path(Some("/a/b"), "id").is_err());
        let default = parse_systemd_path(None, "id").unwrap();
        assert_eq!(
            (default.prefix.as_str(), default.name.as_str()),
            ("runc", "id")
        );
    }
}
