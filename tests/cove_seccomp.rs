//! A system container's seccomp profile: cove's default deny list (what a
//! CT's root could do to the host with the capabilities it keeps), a CT
//! set `unconfined` (no filter at all), a profile file of the user's, and
//! a bad profile refused at `cove set` with nothing saved. The probe
//! (tests/seccomp-probe.c) is copied into the CT's own upper directory and
//! run with `cove exec`.

mod support;

use std::fs;
use std::path::Path;

use support::*;

/// Where the probe lands in the CT: the root of its overlay upper
/// directory, so the template stays untouched.
const PROBE_IN_CT_ROOT: &str = "/seccomp-probe";

/// A busybox CT created with `extra` settings, the probe in its upper
/// directory, started.
fn started_ct_with_probe(env: &CoveEnv, probe: &Path, extra: &[&str]) -> String {
    let ctid = env.create_busybox(extra);
    let target = env
        .ct_dir(&ctid)
        .join("private/upper")
        .join(PROBE_IN_CT_ROOT.trim_start_matches('/'));
    fs::copy(probe, &target)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", probe.display(), target.display()));
    env.cmd(&["start", &ctid]).assert_ok();
    ctid
}

/// The Seccomp line of the CT's init (PID 1 inside).
fn init_seccomp_mode(env: &CoveEnv, ctid: &str) -> String {
    let out = env.cmd(&["exec", ctid, "grep", "^Seccomp:", "/proc/1/status"]);
    out.assert_ok();
    out.stdout.trim().to_string()
}

fn probe(env: &CoveEnv, ctid: &str, probes: &[&str]) -> String {
    let mut args = vec!["exec", ctid, PROBE_IN_CT_ROOT];
    args.extend_from_slice(probes);
    let out = env.cmd(&args);
    out.assert_ok();
    out.stdout
}

#[test]
fn default_profile_denies_host_reaching_calls_in_a_ct() {
    let test = "default_profile_denies_host_reaching_calls_in_a_ct";
    let Some(probe_bin) = needs_seccomp_probe(test) else {
        return;
    };
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    if !cfg!(target_arch = "x86_64") {
        skip(test, "cove's default profile is for x86_64 only");
        return;
    }
    let ctid = started_ct_with_probe(&env, &probe_bin, &[]);
    // The start compiled the profile into the engine's filter cache; the
    // execs below take it from there (a compile would store a new file).
    let cached = filter_cache_entries(&env);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(init_seccomp_mode(&env, &ctid), "Seccomp:\t2");
    let seen = probe(
        &env,
        &ctid,
        &[
            "open_by_handle_at",
            "kexec_load",
            "init_module",
            "bpf",
            "umount-force",
            "keyctl",
            "mkdir",
            "sethostname:ct-probe",
        ],
    );
    // Denied by the filter, not by a capability: the CT keeps
    // CAP_DAC_READ_SEARCH (open_by_handle_at would get ESTALE), CAP_SYS_BOOT
    // (kexec_load would get EINVAL for its bad flag) and CAP_SYS_ADMIN (bpf
    // EINVAL, umount ENOENT); the keyring answers ENOSYS as if absent.
    assert_eq!(
        seen,
        "open_by_handle_at: errno EPERM\n\
         kexec_load: errno EPERM\n\
         init_module: errno EPERM\n\
         bpf: errno EPERM\n\
         umount-force: errno EPERM\n\
         keyctl: errno ENOSYS\n\
         mkdir: ok\n\
         sethostname:ct-probe: ok\n"
    );
    assert_eq!(filter_cache_entries(&env), cached, "an exec compiled again");
}

/// The engine's seccomp filter cache under cove's state root: each entry's
/// name and inode (a compile stores a new file).
fn filter_cache_entries(env: &CoveEnv) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dir = env.run.join("oci/.seccomp-cache");
    let mut v: Vec<(String, u64)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.ino())))
                .filter(|(name, _)| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn unconfined_ct_runs_without_a_filter() {
    let test = "unconfined_ct_runs_without_a_filter";
    let Some(probe_bin) = needs_seccomp_probe(test) else {
        return;
    };
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let ctid = started_ct_with_probe(&env, &probe_bin, &["--seccomp", "unconfined"]);
    let config = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert!(config.contains("seccomp = \"unconfined\""), "{config}");
    assert_eq!(init_seccomp_mode(&env, &ctid), "Seccomp:\t0");
    // The calls reach the kernel, which refuses them for what they are.
    let seen = probe(
        &env,
        &ctid,
        &["open_by_handle_at", "bpf", "umount-force", "keyctl"],
    );
    assert!(
        !seen.contains("EPERM") && !seen.contains("ENOSYS"),
        "a filter answered in an unconfined CT:\n{seen}"
    );
    assert!(seen.contains("umount-force: errno ENOENT\n"), "{seen}");
    assert!(seen.contains("keyctl: ok\n"), "{seen}");
}

#[test]
fn set_seccomp_takes_a_profile_file_and_back_to_default() {
    let test = "set_seccomp_takes_a_profile_file_and_back_to_default";
    let Some(probe_bin) = needs_seccomp_probe(test) else {
        return;
    };
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let profile = env.root.join("no-mkdir.json");
    write_file(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ctid = env.create_busybox(&[]);
    let profile_arg = profile.display().to_string();
    env.cmd(&["set", &ctid, "--seccomp", &profile_arg])
        .assert_ok();
    let target = env.ct_dir(&ctid).join("private/upper/seccomp-probe");
    fs::copy(&probe_bin, &target).unwrap_or_else(|e| panic!("copy probe: {e}"));
    env.cmd(&["start", &ctid]).assert_ok();
    assert_eq!(
        probe(&env, &ctid, &["mkdir", "open_by_handle_at"]),
        "mkdir: errno ENOSPC\nopen_by_handle_at: errno ESTALE\n",
        "the CT's own profile replaces cove's default"
    );
    // Saved while running: a note, and the profile changes at the restart.
    let set = env.cmd(&["set", &ctid, "--seccomp", "default"]);
    set.assert_ok();
    assert!(set.stdout.contains("next start"), "{set}");
    let config = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert!(
        !config.contains("seccomp"),
        "default is the absence of the key:\n{config}"
    );
    env.cmd(&["restart", &ctid, "--timeout", "5"]).assert_ok();
    assert_eq!(
        probe(&env, &ctid, &["mkdir", "open_by_handle_at"]),
        "mkdir: ok\nopen_by_handle_at: errno EPERM\n"
    );
}

#[test]
fn bad_seccomp_profile_is_refused_at_set_with_nothing_saved() {
    let test = "bad_seccomp_profile_is_refused_at_set_with_nothing_saved";
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let config_path = env.ct_dir(&ctid).join("ct.toml");
    let before = fs::read_to_string(&config_path).unwrap_or_default();
    let bad = env.root.join("bad.json");
    write_file(
        &bad,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bad_arg = bad.display().to_string();
    for (value, needle) in [
        (bad_arg.as_str(), "SCMP_ACT_FOO"),
        ("/nonexistent/profile.json", "/nonexistent/profile.json"),
        ("strict", "strict"),
    ] {
        let out = env.cmd(&["set", &ctid, "--seccomp", value]);
        assert_cove_refused(&out, 1);
        assert!(
            out.stderr.contains(needle),
            "the error does not name {needle}:\n{out}"
        );
        let after = fs::read_to_string(&config_path).unwrap_or_default();
        assert_eq!(before, after, "ct.toml changed after a refused set");
    }
    // create refuses it the same way, and makes no CT.
    let other = env.new_ctid();
    let out = env.cmd(&[
        "create",
        &other,
        "--template",
        "busybox",
        "--seccomp",
        &bad_arg,
    ]);
    assert_cove_refused(&out, 1);
    assert!(
        !env.ct_dir(&other).exists(),
        "a CT was made with a bad profile"
    );
}
