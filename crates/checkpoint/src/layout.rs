//! What of a container CRIU must treat as outside it, read from the spec
//! the way runc's libcontainer reads it: bind mounts, cgroup v1 bind
//! mounts, masked files, device nodes, namespaces joined by path.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

/// The device nodes every container gets (the runtime-spec's list).
const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// `dest` as an absolute, lexically clean path inside the container.
fn clean(dest: &Path) -> String {
    let mut out = PathBuf::from("/");
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

fn mounts(spec: &Spec) -> &[Mount] {
    spec.mounts().as_deref().unwrap_or(&[])
}

pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// (destination in the container, host source) of every bind mount.
pub fn bind_mounts(spec: &Spec) -> Vec<(String, String)> {
    mounts(spec)
        .iter()
        .filter(|m| is_bind(m))
        .map(|m| {
            let src = m
                .source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (clean(m.destination()), src)
        })
        .collect()
}

/// Destinations of tmpfs mounts: CRIU restores their content itself.
pub fn tmpfs_mounts(spec: &Spec) -> Vec<String> {
    mounts(spec)
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| clean(m.destination()))
        .collect()
}

fn has_namespace(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == kind))
}

/// On a v1 or hybrid host without a cgroup namespace, the container's
/// /sys/fs/cgroup is a tmpfs with one bind mount per hierarchy (the
/// engine's rootfs::mount_cgroup): (destination, host directory) of each.
pub fn cgroup_binds(spec: &Spec, cgroup_paths: &[(String, PathBuf)]) -> Vec<(String, String)> {
    if cove_cgroups::host_mode() == cove_cgroups::HostMode::Unified
        || has_namespace(spec, LinuxNamespaceType::Cgroup)
    {
        return Vec::new();
    }
    let Some(cg) = mounts(spec)
        .iter()
        .find(|m| m.typ().as_deref() == Some("cgroup"))
    else {
        return Vec::new();
    };
    let base = clean(cg.destination());
    cgroup_paths
        .iter()
        .filter_map(|(_, dir)| {
            let hier = dir
                .strip_prefix("/sys/fs/cgroup")
                .ok()?
                .components()
                .next()?;
            let hier = hier.as_os_str().to_string_lossy();
            Some((format!("{base}/{hier}"), dir.to_string_lossy().into_owned()))
        })
        .collect()
}

pub fn masked_paths(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
}

/// Every device node path: the default ones and linux.devices.
pub fn device_paths(spec: &Spec) -> Vec<String> {
    let mut v: Vec<String> = DEFAULT_DEVICES.iter().map(|s| s.to_string()).collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let p = clean(d.path());
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// CRIU's name for a namespace kind.
pub fn ns_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The key CRIU files an external namespace under, the same as runc's
/// ("extRootNetNS", "extRootPidNS"), so images move between the two.
pub fn ns_key(kind: LinuxNamespaceType) -> String {
    let n = ns_name(kind);
    format!("extRoot{}{}NS", n[..1].to_uppercase(), &n[1..])
}

/// Namespaces of the spec joined by path: (kind, path).
pub fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n.typ(), n.path().clone()?)))
        .collect()
}

/// The cgroup CRIU freezes the tasks with: the v1 freezer hierarchy, or
/// the cgroup2 leaf on a unified host.
pub fn freeze_cgroup(cgroup_paths: &[(String, PathBuf)]) -> Option<String> {
    let unified = cove_cgroups::host_mode() == cove_cgroups::HostMode::Unified;
    cgroup_paths
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "freezer") || (unified && c.is_empty()))
        .map(|(_, p)| p.to_string_lossy().into_owned())
}

/// The CRIU configuration file: annotation `org.criu.config` names one
/// (empty: none); otherwise runc's, so a host's CRIU settings for runc
/// apply to cove-oci too.
pub fn config_file(spec: &Spec) -> Option<String> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        Some(f) if f.is_empty() => None,
        Some(f) => Some(f.clone()),
        None => Some("/etc/criu/runc.conf".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_cleaned() {
        assert_eq!(clean(Path::new("data/../x//y/")), "/x/y");
        assert_eq!(clean(Path::new("/")), "/");
    }

    #[test]
    fn namespace_keys_are_runcs() {
        assert_eq!(ns_key(LinuxNamespaceType::Network), "extRootNetNS");
        assert_eq!(ns_key(LinuxNamespaceType::Pid), "extRootPidNS");
    }
}
