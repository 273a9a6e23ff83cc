//! Bad input: each case must fail with exit code 1 (what runc exits with,
//! unknown flags included), ONE line on stderr saying what is wrong, and
//! nothing left behind: no state directory, no cgroup, no host mount.
//!
//! Cases marked STRICTER THAN RUNC check refusals that runc 1.1.5 does not
//! make (it accepts any ociVersion); they fail when COVE_OCI_BIN is runc.

mod support;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use support::*;

/// The host mount table is compared before and after each case, so the
/// cases of this file run one at a time (they are fast).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Host mounts the case added, after giving a runtime's transient mounts
/// (runc 1.1 briefly bind-mounts its own binary) time to go.
fn lasting_new_mounts(before: &[String]) -> Vec<String> {
    let mut added = Vec::new();
    for _ in 0..10 {
        added = new_mounts(before, &host_mounts());
        if added.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    added
}

/// The common verdict: exit 1, one line of stderr, no state, cgroup or mount.
#[track_caller]
fn assert_clean_failure(ct: &Ct, out: &Out, mounts_before: &[String], allowed_state: &[&str]) {
    assert_eq!(out.code, 1, "expected exit code 1:\n{out}");
    one_error_line(out);
    let left: Vec<String> = ct
        .state_root_entries()
        .into_iter()
        .filter(|e| !allowed_state.contains(&e.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "state left in {}: {left:?}\n{out}",
        ct.state_root.display()
    );
    if allowed_state.is_empty() {
        assert!(
            ct.cgroup_dirs().is_empty(),
            "cgroups left behind: {:?}\n{out}",
            ct.cgroup_dirs()
        );
    }
    let added = lasting_new_mounts(mounts_before);
    assert!(
        added.is_empty(),
        "host mounts left behind: {added:#?}\n{out}"
    );
}

/// Runs `create` on a bundle prepared by `prepare`, and checks a clean failure.
fn create_fails_cleanly(test: &str, prepare: impl FnOnce(&mut Ct)) -> Option<Out> {
    create_fails_cleanly_with(test, &[], prepare)
}

/// [`create_fails_cleanly`] with global flags before `create`.
fn create_fails_cleanly_with(
    test: &str,
    global: &[&str],
    prepare: impl FnOnce(&mut Ct),
) -> Option<Out> {
    let env = prerequisites(test)?;
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.sh("sleep 100");
    prepare(&mut ct);
    let before = host_mounts();
    ct.save_config();
    let bundle = ct.bundle.display().to_string();
    let mut args = global.to_vec();
    args.extend(["create", "--bundle", &bundle, &ct.id]);
    let out = ct.cmd(&args);
    assert_clean_failure(&ct, &out, &before, &[]);
    Some(out)
}

// ---------------------------------------------------------------- config.json

#[test]
fn truncated_config_json_fails_cleanly() {
    create_fails_cleanly("truncated_config_json_fails_cleanly", |ct| {
        let text = serde_json::to_string_pretty(&ct.config).unwrap_or_default();
        let cut = text.len() / 2;
        ct.write_raw_config(&text[..cut]);
    });
}

#[test]
fn config_json_that_is_not_an_object_fails_cleanly() {
    create_fails_cleanly("config_json_that_is_not_an_object_fails_cleanly", |ct| {
        ct.write_raw_config("[1, 2, 3]\n")
    });
}

#[test]
fn missing_config_json_fails_cleanly() {
    let out = create_fails_cleanly("missing_config_json_fails_cleanly", |ct| {
        // An empty raw config is replaced by no file at all.
        ct.write_raw_config("");
        let _ = std::fs::remove_file(ct.bundle.join("config.json"));
    });
    if let Some(out) = out {
        assert!(
            out.stderr.contains("config.json"),
            "the error does not name config.json:\n{out}"
        );
    }
}

/// STRICTER THAN RUNC: runc 1.1.5 runs a config with any ociVersion.
#[test]
fn unsupported_oci_version_0_1_0_fails_cleanly() {
    note_if_runc("cove is stricter: runc 1.1.5 accepts any ociVersion");
    let out = create_fails_cleanly("unsupported_oci_version_0_1_0_fails_cleanly", |ct| {
        ct.config["ociVersion"] = json!("0.1.0");
    });
    if let Some(out) = out {
        assert!(
            out.stderr.contains("0.1.0"),
            "the error does not name the version:\n{out}"
        );
    }
}

/// STRICTER THAN RUNC: runc 1.1.5 runs a config with any ociVersion.
#[test]
fn unsupported_oci_version_9_0_0_fails_cleanly() {
    note_if_runc("cove is stricter: runc 1.1.5 accepts any ociVersion");
    let out = create_fails_cleanly("unsupported_oci_version_9_0_0_fails_cleanly", |ct| {
        ct.config["ociVersion"] = json!("9.0.0");
    });
    if let Some(out) = out {
        assert!(
            out.stderr.contains("9.0.0"),
            "the error does not name the version:\n{out}"
        );
    }
}

#[test]
fn missing_rootfs_fails_cleanly_and_names_the_path() {
    let missing = format!("{TEST_TMP}/no-such-rootfs-{}", std::process::id());
    let out = create_fails_cleanly("missing_rootfs_fails_cleanly_and_names_the_path", |ct| {
        ct.config["root"]["path"] = json!(missing);
    });
    if let Some(out) = out {
        assert!(
            out.stderr.contains(&missing),
            "the error does not name the missing rootfs:\n{out}"
        );
        assert!(
            !Path::new(&missing).exists(),
            "the runtime created the missing rootfs {missing}"
        );
    }
}

// ---------------------------------------------------------------- container ids

#[test]
fn id_already_in_use_fails_and_keeps_the_first_container() {
    let test = "id_already_in_use_fails_and_keeps_the_first_container";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.sh("sleep 100");
    ct.create().assert_ok();
    let first = ct.state_json().unwrap_or_else(|e| panic!("{e}"));
    let before = host_mounts();
    let out = ct.create();
    assert_clean_failure(&ct, &out, &before, &[&ct.id]);
    let after = ct
        .state_json()
        .unwrap_or_else(|e| panic!("the first container is gone:\n{e}"));
    assert_eq!(
        after["pid"], first["pid"],
        "the first container changed: {first:#} -> {after:#}"
    );
    assert_eq!(after["status"], "created", "{after:#}");
    let procs: Vec<String> = ct
        .cgroup_dirs()
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let pid = first["pid"].to_string();
    assert!(
        procs.iter().all(|p| *p == pid),
        "the failed create put processes in the cgroup: {procs:?} (init {pid})"
    );
}

fn bad_id_fails_cleanly(test: &str, id: &str) {
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let ct = Ct::new(&env, test);
    ct.save_config();
    // Where a `..` id would land if the runtime joined it to --root.
    let escape = ct.state_root.parent().map(|p| p.join("x"));
    let escape_existed = escape.as_ref().is_some_and(|p| p.exists());
    let before = host_mounts();
    let bundle = ct.bundle.display().to_string();
    let out = ct.cmd(&["create", "--bundle", &bundle, id]);
    assert_clean_failure(&ct, &out, &before, &[]);
    if let Some(escape) = escape {
        assert!(
            escape_existed || !escape.exists(),
            "the runtime created {} for id {id:?}",
            escape.display()
        );
    }
}

#[test]
fn id_with_dot_dot_slash_fails_cleanly() {
    bad_id_fails_cleanly("id_with_dot_dot_slash_fails_cleanly", "../x");
}

#[test]
fn id_with_slash_fails_cleanly() {
    bad_id_fails_cleanly("id_with_slash_fails_cleanly", "a/b");
}

#[test]
fn empty_id_fails_cleanly() {
    bad_id_fails_cleanly("empty_id_fails_cleanly", "");
}

// ---------------------------------------------------------------- commands

#[test]
fn unknown_signal_fails_and_leaves_the_container_alone() {
    let test = "unknown_signal_fails_and_leaves_the_container_alone";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.sh("sleep 100");
    ct.run_detached().assert_ok();
    let before = host_mounts();
    let out = ct.kill("SIGFOO");
    assert_clean_failure(&ct, &out, &before, &[&ct.id]);
    assert!(
        out.stderr.contains("SIGFOO"),
        "the error does not name the signal:\n{out}"
    );
    assert_eq!(
        ct.status().as_deref(),
        Some("running"),
        "the container did not survive an unknown signal"
    );
}

#[test]
fn unknown_flag_fails_cleanly() {
    let test = "unknown_flag_fails_cleanly";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let ct = Ct::new(&env, test);
    ct.save_config();
    let before = host_mounts();
    let bundle = ct.bundle.display().to_string();
    let out = ct.cmd(&["create", "--nope", "--bundle", &bundle, &ct.id]);
    assert_clean_failure(&ct, &out, &before, &[]);
    assert!(
        out.stderr.contains("nope"),
        "the error does not name the flag:\n{out}"
    );
}

#[test]
fn state_of_unknown_id_says_does_not_exist() {
    let test = "state_of_unknown_id_says_does_not_exist";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let ct = Ct::new(&env, test);
    let before = host_mounts();
    let out = ct.state();
    assert_clean_failure(&ct, &out, &before, &[]);
    assert!(out.stderr.contains("does not exist"), "{out}");
}

#[test]
fn start_of_unknown_id_says_does_not_exist() {
    let test = "start_of_unknown_id_says_does_not_exist";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let ct = Ct::new(&env, test);
    let before = host_mounts();
    let out = ct.start();
    assert_clean_failure(&ct, &out, &before, &[]);
    assert!(out.stderr.contains("does not exist"), "{out}");
}

/// What a missing or non-executable args[0] says: Go's exec.LookPath
/// words, as runc prints them (docker and shims map "no such file or
/// directory" to exit 127 and "permission denied" to 126).
#[test]
fn bad_executables_are_reported_in_runcs_words() {
    let test = "bad_executables_are_reported_in_runcs_words";
    let _serial = serial();
    compare_scenario_with_runc(test, |env, bin| {
        let mut seen = String::new();
        for arg0 in ["/nonexistent", "/etc/passwd", "/etc", "nosuchcommand"] {
            let mut ct = Ct::with_bin(env, test, bin);
            ct.args(&[arg0]);
            let out = ct.create();
            let said = out
                .stderr
                .lines()
                .find_map(|l| l.find("exec: ").map(|i| l[i..].trim_end().to_string()))
                .unwrap_or_else(|| format!("no exec: line in {out}"));
            seen.push_str(&format!("exit {}: {said}\n", out.code));
        }
        seen
    });
}

// ---------------------------------------------------------------- systemd

/// `--systemd-cgroup` where systemd is not the init (this host: no
/// /run/systemd/system, no system bus): one line saying so, exit 1, and
/// nothing made: no state, no scope directory under any hierarchy, no
/// mount. The systemd lane (scripts/systemd-vm) tests the driver itself.
#[test]
fn systemd_cgroup_without_systemd_is_refused_cleanly() {
    let test = "systemd_cgroup_without_systemd_is_refused_cleanly";
    if Path::new("/run/systemd/system").is_dir() {
        skip(
            test,
            "systemd runs on this host; the systemd lane covers this driver",
        );
        return;
    }
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.sh("sleep 100");
    let scope = format!("cove-{}.scope", ct.id);
    ct.config["linux"]["cgroupsPath"] = json!(format!("cove-test.slice:cove:{}", ct.id));
    ct.save_config();
    let before = host_mounts();
    let bundle = ct.bundle.display().to_string();
    let out = ct.cmd(&["--systemd-cgroup", "create", "--bundle", &bundle, &ct.id]);
    assert_clean_failure(&ct, &out, &before, &[]);
    assert!(
        out.stderr.contains("systemd") && out.stderr.contains("--systemd-cgroup"),
        "the error should say systemd is missing and what to do:\n{out}"
    );
    for left in [
        cgroup_dirs_for(&format!("/cove.slice/cove-test.slice/{scope}")),
        cgroup_dirs_for("/cove.slice/cove-test.slice"),
    ] {
        assert!(left.is_empty(), "cgroups left behind: {left:?}\n{out}");
    }
}

/// A slice name systemd would refuse ("a--b.slice": an empty part) is
/// refused before anything is made, with or without systemd.
#[test]
fn systemd_cgroup_with_a_bad_slice_name_is_refused_cleanly() {
    let out = create_fails_cleanly_with(
        "systemd_cgroup_with_a_bad_slice_name_is_refused_cleanly",
        &["--systemd-cgroup"],
        |ct| ct.config["linux"]["cgroupsPath"] = json!("cove--bad.slice:cove:x"),
    );
    if let Some(out) = out {
        assert!(
            out.stderr.contains("cove--bad.slice") && out.stderr.contains("slice"),
            "the error does not name the slice:\n{out}"
        );
    }
}
