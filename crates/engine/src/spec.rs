//! Loading and validating an OCI runtime spec before anything is created,
//! so bad input fails with one clear line and leaves nothing behind.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Spec};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// The runtime-spec versions this engine implements (major 1, minor 0..=3).
pub const SPEC_VERSION: &str = "1.3.0";
const MAX_MINOR: u64 = 3;

pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = read_config(&path)?;
    serde_json::from_slice::<Spec>(&bytes).map_err(|source| parse_error(&bytes, &path, source))
}

/// A config.json as create and exec read it: the spec, the bytes it was
/// parsed from, and linux.seccomp left as JSON.
///
/// The bytes are saved as they are (writing them back costs nothing,
/// serialising a spec with a large seccomp profile again costs as much as
/// parsing it). linux.seccomp is not parsed with the rest: a profile seen
/// before comes compiled from the filter cache (`seccomp.rs`), keyed by
/// its JSON text, and podman's profile is some 400 strings that would be
/// built and freed for nothing.
pub struct Config {
    /// The spec; its linux.seccomp is None when [`Config::seccomp_json`]
    /// is Some (see [`Config::seccomp`]).
    pub spec: Spec,
    /// The file's bytes, linux.seccomp included.
    pub bytes: Vec<u8>,
    pub path: PathBuf,
    seccomp: Option<Range<usize>>,
}

impl Config {
    /// The text of linux.seccomp as the file has it.
    pub fn seccomp_json(&self) -> Option<&[u8]> {
        self.seccomp.clone().map(|r| &self.bytes[r])
    }

    /// linux.seccomp parsed, with the same messages a parse of the whole
    /// file gives (a name the profile gets wrong is named).
    pub fn seccomp(&self) -> Result<Option<LinuxSeccomp>> {
        let Some(json) = self.seccomp_json() else {
            return Ok(None);
        };
        match serde_json::from_slice(json) {
            Ok(profile) => Ok(Some(profile)),
            Err(source) => Err(parse_error(&self.bytes, &self.path, source)),
        }
    }
}

/// `<bundle>/config.json`, see [`Config`].
pub fn load_config(bundle: &Path) -> Result<Config> {
    let path = bundle.join("config.json");
    let bytes = read_config(&path)?;
    parse_config(bytes, path)
}

/// [`Config`] from bytes read from `path`.
pub fn parse_config(mut bytes: Vec<u8>, path: PathBuf) -> Result<Config> {
    let seccomp = seccomp_span(&bytes);
    let parsed = match &seccomp {
        // Parsed with the profile's text blanked to `null` and spaces: the
        // same length, so an error elsewhere keeps its line and column.
        Some(span) => {
            let text = bytes[span.clone()].to_vec();
            bytes[span.clone()].fill(b' ');
            bytes[span.start..span.start + 4].copy_from_slice(b"null");
            let parsed = serde_json::from_slice::<Spec>(&bytes);
            bytes[span.clone()].copy_from_slice(&text);
            parsed
        }
        None => serde_json::from_slice::<Spec>(&bytes),
    };
    match parsed {
        Ok(spec) => Ok(Config {
            spec,
            bytes,
            path,
            seccomp,
        }),
        Err(source) => Err(parse_error(&bytes, &path, source)),
    }
}

/// Where linux.seccomp's object lies in `bytes`, if it is one. A file that
/// does not parse this far gets None (its full parse says what is wrong).
fn seccomp_span(bytes: &[u8]) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow, default)]
        linux: Option<Linux<'a>>,
    }
    #[derive(Deserialize)]
    struct Linux<'a> {
        #[serde(borrow, default)]
        seccomp: Option<&'a RawValue>,
    }
    let top: Top = serde_json::from_slice(bytes).ok()?;
    let raw = top.linux?.seccomp?.get();
    let start = raw.as_ptr() as usize - bytes.as_ptr() as usize;
    // `{}` is too short to blank as `null`; it costs nothing to parse.
    (raw.starts_with('{') && raw.len() >= 4).then_some(start..start + raw.len())
}

fn read_config(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadConfig {
        path: path.to_path_buf(),
        source,
    })
}

/// The error for a config.json that does not parse. oci-spec's message for
/// a bad seccomp name is generic; the seccomp compiler names the action,
/// operator or architecture.
fn parse_error(bytes: &[u8], path: &Path, source: serde_json::Error) -> Error {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        if let Some(sc) = v.pointer("/linux/seccomp") {
            if let Err(e) = cove_seccomp::from_value(sc) {
                return Error::InvalidConfig(format!("{}: {e}", path.display()));
            }
        }
    }
    // A profile parsed alone gives positions within the profile: the whole
    // file's error names the right line.
    let source = serde_json::from_slice::<Spec>(bytes)
        .err()
        .unwrap_or(source);
    Error::ParseConfig {
        path: path.to_path_buf(),
        source,
    }
}

/// runc's id rule: letters, digits and `_+-.`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId(id.into(), "the id is empty"));
    }
    if id == "." || id == ".." {
        return Err(Error::InvalidId(id.into(), "the id cannot be . or .."));
    }
    if id == crate::seccomp::CACHE_DIR {
        return Err(Error::InvalidId(
            id.into(),
            "the name of the seccomp filter cache's directory in the state root",
        ));
    }
    if id.len() > 1024 {
        return Err(Error::InvalidId(
            id.into(),
            "the id is longer than 1024 characters",
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
    {
        return Err(Error::InvalidId(
            id.into(),
            "use only letters, digits and _ + - .",
        ));
    }
    Ok(())
}

fn validate_version(v: &str) -> Result<()> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([1, minor, _patch]) if *minor <= MAX_MINOR => Ok(()),
        Some([_, _, _]) => Err(Error::InvalidConfig(format!(
            "config.json: unsupported ociVersion {v:?}: cove implements runtime-spec 1.0 to {SPEC_VERSION}"
        ))),
        _ => Err(Error::InvalidConfig(format!(
            "config.json: ociVersion {v:?} is not a version like \"{SPEC_VERSION}\""
        ))),
    }
}

/// Namespace kinds the sysctl key needs to be private for a container to set it
/// (the same table runc validates against).
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    if IPC.contains(&key)
        || key == "kernel.shmmni"
        || key == "kernel.shm_rmid_forced"
        || key.starts_with("fs.mqueue.")
    {
        return Some(LinuxNamespaceType::Ipc);
    }
    if key.starts_with("net.") {
        return Some(LinuxNamespaceType::Network);
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Some(LinuxNamespaceType::Uts);
    }
    None
}

/// Checks everything that can be checked without touching the system.
/// `bundle` is the absolute bundle path; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    validate_version(spec.version())?;
    let root = spec.root().as_ref().ok_or_else(|| {
        Error::InvalidConfig(
            "config.json: root is missing: set root.path to the rootfs directory".into(),
        )
    })?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidConfig(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )))
        }
        Err(e) => {
            return Err(Error::InvalidConfig(format!(
                "rootfs {} does not exist ({e}): check root.path in config.json",
                rootfs.display()
            )))
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("config.json: process is missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidConfig(
            "config.json: process.args must not be empty".into(),
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidConfig(format!(
            "config.json: process.cwd {:?} must be an absolute path",
            process.cwd()
        )));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("config.json: linux section is missing".into()))?;
    let mut seen = HashSet::new();
    let mut private = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(Error::InvalidConfig(format!(
                "config.json: namespace {:?} listed twice",
                ns.typ()
            )));
        }
        if let Some(p) = ns.path() {
            if !p.exists() {
                return Err(Error::InvalidConfig(format!(
                    "config.json: namespace path {} does not exist",
                    p.display()
                )));
            }
        }
        private.insert(ns.typ());
    }
    if private.contains(&LinuxNamespaceType::User) {
        let joins = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if !joins && !has_maps {
            return Err(Error::InvalidConfig(
                "config.json: a user namespace needs linux.uidMappings and linux.gidMappings"
                    .into(),
            ));
        }
    } else if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(Error::InvalidConfig(
            "config.json: uidMappings given without a user namespace: add {\"type\":\"user\"} to linux.namespaces".into(),
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !private.contains(&LinuxNamespaceType::Uts)
    {
        return Err(Error::InvalidConfig(
            "unable to set hostname without a private UTS namespace".into(),
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !private.contains(&LinuxNamespaceType::Uts)
    {
        return Err(Error::InvalidConfig(
            "unable to set domainname without a private UTS namespace".into(),
        ));
    }
    if linux.time_offsets().is_some() && !private.contains(&LinuxNamespaceType::Time) {
        return Err(Error::InvalidConfig(
            "config.json: timeOffsets need a time namespace".into(),
        ));
    }
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        match sysctl_namespace(key) {
            Some(ns) if !private.contains(&ns) => {
                return Err(Error::InvalidConfig(format!(
                    "sysctl {key:?} is not allowed: it needs a private {ns:?} namespace"
                )))
            }
            Some(_) => {}
            None => {
                return Err(Error::InvalidConfig(format!(
                    "sysctl {key:?} is not in a separate kernel namespace: it would change the host"
                )))
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.destination().as_os_str().is_empty() {
            return Err(Error::InvalidConfig(
                "config.json: a mount has an empty destination".into(),
            ));
        }
        for opt in m.options().iter().flatten() {
            if crate::mounts::parse_option(opt).is_none() && opt.contains('\n') {
                return Err(Error::InvalidConfig(format!(
                    "config.json: bad mount option {opt:?}"
                )));
            }
        }
    }
    if let Some(ps) = linux.personality() {
        crate::process::personality_value(ps)?;
    }
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_1_0_to_1_3_accepted() {
        for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3.0", "1.2.1+dev"] {
            assert!(validate_version(v).is_ok(), "{v}");
        }
        for v in ["0.1.0", "2.0.0", "9.0.0", "1.4.0", "", "1.0", "x.y.z"] {
            assert!(validate_version(v).is_err(), "{v}");
        }
    }

    #[test]
    fn sysctl_needs_its_namespace() {
        assert_eq!(
            sysctl_namespace("net.ipv4.ip_forward"),
            Some(LinuxNamespaceType::Network)
        );
        assert_eq!(
            sysctl_namespace("fs.mqueue.msg_max"),
            Some(LinuxNamespaceType::Ipc)
        );
        assert_eq!(
            sysctl_namespace("kernel.shmmax"),
            Some(LinuxNamespaceType::Ipc)
        );
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
    }
}
