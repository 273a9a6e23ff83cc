//! podman's and docker's own profile format (containers-common's
//! `/usr/share/containers/seccomp.json`, moby's `default.json`) turned into
//! the OCI form the way they do it for each container: the architectures
//! of the host's entry in `archMap`, and only the rules whose
//! `includes`/`excludes` fit this host and the container's capabilities.
//! Used by tests and the compile benchmark; cove's own default profile may
//! start from it too.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Map, Value};

use crate::Error;

/// Converts a containers-common/moby seccomp profile for a container on
/// this host with the bounding set `capabilities` (`"CAP_SYS_ADMIN"`, ...).
pub fn from_containers_json(json: &[u8], capabilities: &[&str]) -> Result<LinuxSeccomp, Error> {
    let profile: Value = serde_json::from_slice(json).map_err(Error::Json)?;
    let arch = go_arch();
    let kernel = kernel_version();

    let mut oci = Map::new();
    for key in [
        "defaultAction",
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if let Some(v) = profile.get(key) {
            oci.insert(key.to_string(), v.clone());
        }
    }

    let native = native_scmp_arch();
    let mut architectures: Vec<Value> = Vec::new();
    for entry in profile
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if entry.get("architecture").and_then(Value::as_str) == Some(native) {
            architectures.push(json!(native));
            architectures.extend(strings(entry.get("subArchitectures")).map(|s| json!(s)));
        }
    }
    if let Some(list) = profile.get("architectures") {
        architectures.extend(list.as_array().into_iter().flatten().cloned());
    }
    oci.insert("architectures".into(), Value::Array(architectures));

    let mut syscalls = Vec::new();
    for call in profile
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let includes = call.get("includes");
        let excludes = call.get("excludes");
        let field = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).cloned();
        let has_cap = |c: &str| capabilities.contains(&c);

        let ex_arches: Vec<&str> = strings(excludes.and_then(|e| e.get("arches"))).collect();
        let in_arches: Vec<&str> = strings(includes.and_then(|i| i.get("arches"))).collect();
        let ex_caps: Vec<&str> = strings(excludes.and_then(|e| e.get("caps"))).collect();
        let in_caps: Vec<&str> = strings(includes.and_then(|i| i.get("caps"))).collect();
        let min_kernel = |v: Option<&Value>| {
            field(v, "minKernel").and_then(|m| m.as_str().and_then(parse_version))
        };
        if ex_arches.contains(&arch)
            || ex_caps.iter().any(|c| has_cap(c))
            || min_kernel(excludes).is_some_and(|m| kernel >= m)
            || (!in_arches.is_empty() && !in_arches.contains(&arch))
            || !in_caps.iter().all(|c| has_cap(c))
            || min_kernel(includes).is_some_and(|m| kernel < m)
        {
            continue;
        }

        let mut rule = Map::new();
        let names = match call.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => json!([name]),
            _ => call.get("names").cloned().unwrap_or_else(|| json!([])),
        };
        rule.insert("names".into(), names);
        for key in ["action", "errnoRet", "args"] {
            if let Some(v) = call.get(key).filter(|v| !v.is_null()) {
                rule.insert(key.to_string(), v.clone());
            }
        }
        syscalls.push(Value::Object(rule));
    }
    oci.insert("syscalls".into(), Value::Array(syscalls));
    crate::from_value(&Value::Object(oci))
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Go's GOARCH, which the profile's `arches` use.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        other => other,
    }
}

fn native_scmp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn kernel_version() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_version(r.trim()))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes_pick_rules_for_this_host_and_caps() {
        let profile = br#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["futuristic"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
            ]
        }"#;
        let spec = from_containers_json(profile, &["CAP_SYS_CHROOT"]).unwrap();
        let archs: Vec<String> = spec
            .architectures()
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                archs,
                ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
            );
        }
        let names: Vec<(String, String)> = spec
            .syscalls()
            .iter()
            .flatten()
            .map(|s| (s.names().join(","), s.action().to_string()))
            .collect();
        let want = [
            ("read", "SCMP_ACT_ALLOW"),
            ("arch_prctl", "SCMP_ACT_ALLOW"),
            ("chroot", "SCMP_ACT_ALLOW"),
            ("bpf", "SCMP_ACT_ERRNO"),
        ];
        assert_eq!(names, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }
}
