//! `cove` refusing bad input: one clear line on stderr, the documented
//! exit code, and nothing half-made left (no CT directory, mount, cgroup
//! or run-time state).

mod support;

use std::fs;

use support::*;

#[test]
fn unknown_ct_is_one_line_and_exit_1() {
    let Some(env) = CoveEnv::with_busybox("unknown_ct") else {
        return;
    };
    for args in [
        &["start", "4242"][..],
        &["stop", "4242"],
        &["status", "4242"],
        &["exec", "4242", "true"],
        &["enter", "4242"],
        &["destroy", "4242"],
        &["set", "4242", "--memory", "1G"],
        &["restart", "nosuch"],
    ] {
        let out = env.cmd(args);
        assert_cove_refused(&out, 1);
        assert!(out.stderr.contains("does not exist"), "{out}");
    }
    assert!(env.our_mounts().is_empty());
}

/// Refusals over something that exists say how to get past it: a CTID
/// taken names `cove destroy`, a template in use the CTs to destroy, a CT
/// locked by another command (here a test-held flock on its lock file)
/// says to try again.
#[test]
fn refusals_over_what_exists_say_what_to_do() {
    let Some(env) = CoveEnv::with_busybox("refusals_say_what_to_do") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let out = env.cmd(&["create", &ctid, "--template", "busybox"]);
    assert_cove_refused(&out, 44);
    assert!(
        out.stderr.contains(&format!("`cove destroy {ctid}`")),
        "{out}"
    );
    let out = env.cmd(&["template", "remove", "busybox"]);
    assert_cove_refused(&out, 1);
    assert!(
        out.stderr
            .contains(&format!("CT {ctid} (destroy those CTs first)")),
        "{out}"
    );
    assert!(env.data.join("templates/busybox/rootfs").is_dir());
    let lock = env.run.join("lock").join(format!("{ctid}.lock"));
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo locked; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock");
    let mut line = String::new();
    if let Some(out) = holder.stdout.take() {
        use std::io::BufRead;
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let out = env.cmd(&["start", &ctid]);
    // Our own child: killed by its pid.
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(line, "locked\n", "flock did not take the CT's lock");
    assert_cove_refused(&out, 9);
    assert!(out.stderr.contains("try again"), "{out}");
}

#[test]
fn bad_command_lines_are_one_line_and_exit_1() {
    let Some(env) = CoveEnv::with_busybox("bad_command_lines") else {
        return;
    };
    for args in [
        &["start", "101", "--bogus"][..],
        &["frobnicate"],
        &["create", "0", "--template", "busybox"],
        &["create", "-x", "--template", "busybox"],
        &["create", "a/b", "--template", "busybox"],
        &["create", "101"],
        &["create", "101", "--template", "busybox", "--memory", "12Q"],
        &["create", "101", "--template", "busybox", "--cpus", "0"],
        &["create", "101", "--template", "busybox", "--pids", "-3"],
        &[
            "create",
            "101",
            "--template",
            "busybox",
            "--hostname",
            "-bad-",
        ],
        &["create", "101", "--template", "busybox", "--name", "9lives"],
        &["exec", "101"],
        &["stop", "101", "--timeout", "soon"],
    ] {
        assert_cove_refused(&env.cmd(args), 1);
    }
    assert!(
        !env.data.join("ct").join("101").exists(),
        "a refused create left its CT"
    );
}

#[test]
fn unknown_template_and_duplicate_ctid_leave_nothing() {
    let Some(env) = CoveEnv::with_busybox("unknown_template") else {
        return;
    };
    let ctid = env.new_ctid();
    let out = env.cmd(&["create", &ctid, "--template", "nosuch"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("template nosuch"), "{out}");
    assert!(!env.ct_dir(&ctid).exists(), "a CT directory was left");

    let ctid = env.create_busybox(&["--name", "taken"]);
    let toml_before = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert_cove_refused(
        &env.cmd(&["create", &ctid, "--template", "busybox", "--memory", "1G"]),
        44,
    );
    let toml_after = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert_eq!(
        toml_before, toml_after,
        "a refused duplicate changed the existing CT"
    );
    let other = env.new_ctid();
    assert_cove_refused(
        &env.cmd(&["create", &other, "--template", "busybox", "--name", "taken"]),
        1,
    );
    assert!(!env.ct_dir(&other).exists());
    assert_cove_refused(&env.cmd(&["set", &ctid]), 1);
}

/// A hand-edited config with a bad value or an unknown key: start refuses
/// with the file and line, and nothing of the start is left.
#[test]
fn hand_edited_config_errors_name_file_and_line() {
    let Some(env) = CoveEnv::with_busybox("hand_edited_config") else {
        return;
    };
    let ctid = env.create_busybox(&["--memory", "128M"]);
    let path = env.ct_dir(&ctid).join("ct.toml");
    let good = fs::read_to_string(&path).expect("read ct.toml");
    let cases = [
        (
            good.replace("memory = \"128M\"", "memory = \"lots\""),
            "is not a size",
        ),
        (
            good.replace("memory = \"128M\"", "memroy = \"128M\""),
            "unknown field",
        ),
        (format!("colour = \"blue\"\n{good}"), "unknown field"),
        (
            good.replace(&format!("hostname = \"ct{ctid}\""), "hostname = \"-bad-\""),
            "hostname",
        ),
        (
            good.replace("template = \"busybox\"", "template = \"nosuch\""),
            "template nosuch",
        ),
        (format!("{good}\n[[[broken"), "line"),
        (
            good.replace(&format!("ctid = \"{ctid}\""), "ctid = \"999\""),
            "belongs to CT",
        ),
    ];
    for (text, says) in cases {
        fs::write(&path, &text).expect("write ct.toml");
        let out = env.cmd(&["start", &ctid]);
        assert_cove_refused(&out, 1);
        assert!(
            out.stderr.contains(says),
            "expected {says:?} in:\n{out}\n--- ct.toml ---\n{text}"
        );
        assert!(
            env.our_mounts().is_empty(),
            "a refused start left a mount:\n{out}"
        );
        assert!(
            env.cgroup_dirs(&ctid).is_empty(),
            "a refused start left a cgroup:\n{out}"
        );
        assert!(
            !env.ct_run_dir(&ctid).join("bundle").exists(),
            "a refused start left a bundle:\n{out}"
        );
    }
    fs::write(&path, &good).expect("restore ct.toml");
    env.cmd(&["start", &ctid]).assert_ok();
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
}

#[test]
fn a_ct_whose_init_is_missing_fails_to_start_cleanly() {
    let Some(env) = CoveEnv::with_busybox("init_missing") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.add_to_ct_toml(&ctid, "init = \"/sbin/nosuchinit\"");
    let out = env.cmd(&["start", &ctid]);
    assert_ne!(out.code, 0, "{out}");
    assert!(one_error_line(&out).contains("nosuchinit"), "{out}");
    assert_eq!(env.status_json(&ctid)["status"], "stopped");
    env.assert_ct_cleaned_up(&ctid);
}
