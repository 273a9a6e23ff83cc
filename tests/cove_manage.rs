//! `cove` beyond start and stop, from a user's side: the console
//! (`cove console`), reboots from inside, `mount`/`umount`, `set --swap
//! --cpuunits --onboot`, `list -o/-s/-H` and names claimed concurrently.
//! Checked inside the CT and outside (cgroups, mounts, run-time state).
//! Run as root; every test has its own data and run directories.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

const MIB: u64 = 1 << 20;

/// `cove console`: what the CT writes to /dev/console reaches the attached
/// terminal, what is typed there reaches the CT, Ctrl-] detaches and the CT
/// runs on; a stopped CT has no console (exit 31).
#[test]
fn console_attaches_relays_both_ways_and_detaches_on_ctrl_bracket() {
    let Some(env) = CoveEnv::with_busybox("console_attach") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    assert_cove_refused(&env.cmd(&["console", &ctid]), 31);
    env.cmd(&["start", &ctid]).assert_ok();
    // A reader of the console inside, waiting for one line.
    env.cmd(&[
        "exec",
        &ctid,
        "sh",
        "-c",
        "(head -n 1 /dev/console > /tmp/typed &)",
    ])
    .assert_ok();

    let mut client = ConsoleClient::attach(&env, &ctid);
    assert!(
        client.banner.starts_with(b"Connected"),
        "{:?}",
        client.banner
    );
    env.cmd(&[
        "exec",
        &ctid,
        "sh",
        "-c",
        "echo from-the-ct-42 > /dev/console",
    ])
    .assert_ok();
    assert!(
        client.shows("from-the-ct-42", Duration::from_secs(60)),
        "console output did not reach the client: {:?}",
        client.shown()
    );
    client.type_in(b"typed-on-the-host\n");
    assert!(
        wait_until(Duration::from_secs(60), || {
            env.cmd(&["exec", &ctid, "cat", "/tmp/typed"]).stdout.trim() == "typed-on-the-host"
        }),
        "what was typed did not reach the CT's console"
    );
    let (status, rest) = client.detach();
    assert!(status.success(), "cove console: {status}: {rest}");
    assert!(rest.contains("Detached"), "{rest}");
    assert_eq!(env.status_json(&ctid)["status"], "running");

    // vzctl's keys: Esc then `.`, here typed in two writes.
    let client = ConsoleClient::attach(&env, &ctid);
    let (status, rest) = client.detach_with(&[&[0x1b], b"."]);
    assert!(status.success(), "cove console: {status}: {rest}");
    assert!(rest.contains("Detached"), "{rest}");
    assert_eq!(env.status_json(&ctid)["status"], "running");
    env.cmd(&["stop", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

/// A CT whose init asks for a reboot (`reboot` inside) is started again by
/// its monitor: a new init, the same monitor, "reboot" recorded.
#[test]
fn reboot_inside_starts_the_ct_again() {
    let Some(env) = CoveEnv::with_busybox("reboot_inside") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd(&["start", &ctid]).assert_ok();
    let before = env.status_json(&ctid);
    env.cmd(&["exec", &ctid, "reboot"]);
    let rebooted = wait_until(Duration::from_secs(120), || {
        let now = env.status_json(&ctid);
        now["status"] == "running"
            && now["init_pid"] != before["init_pid"]
            && now["last_exit"]["how"] == "reboot"
    });
    let after = env.status_json(&ctid);
    assert!(
        rebooted,
        "not started again after reboot:\nbefore {before}\nafter {after}"
    );
    assert_eq!(after["monitor_pid"], before["monitor_pid"], "{after}");
    let out = env.cmd(&["exec", &ctid, "cat", "/proc/1/comm"]);
    assert_eq!(out.stdout.trim(), "init", "{out}");
    env.cmd(&["stop", &ctid]).assert_ok();
    assert_eq!(env.status_json(&ctid)["last_exit"]["how"], "poweroff");
    env.assert_ct_cleaned_up(&ctid);
}

/// `set --swap --cpuunits --onboot`: saved, applied live to the CT's
/// cgroup, shown by `list -o`; values out of range are refused.
#[test]
fn set_swap_cpuunits_and_onboot() {
    let Some(env) = CoveEnv::with_busybox("set_swap_cpuunits_onboot") else {
        return;
    };
    let bare = env.create_busybox(&[]);
    let out = env.cmd(&["set", &bare, "--swap", "32M"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("memory"), "{out}");
    assert_cove_refused(&env.cmd(&["set", &bare, "--cpuunits", "5"]), 1);
    assert_cove_refused(&env.cmd(&["set", &bare, "--onboot", "maybe"]), 1);

    let ctid = env.create_busybox(&["--memory", "128M"]);
    env.cmd(&["start", &ctid]).assert_ok();
    // --onboot enables the CT's unit: the units go to a directory of the
    // test's (tests/cove_units.rs checks the links themselves).
    let units = TempDir::new("set_swap_cpuunits_onboot_units");
    let units_dir = units.path.display().to_string();
    env.cmd(&["systemd", "install", "--dir", &units_dir])
        .assert_ok();
    let mut set = env.command(&[
        "set",
        &ctid,
        "--swap",
        "32M",
        "--cpuunits",
        "500",
        "--onboot",
        "yes",
    ]);
    set.env("COVE_SYSTEMD_DIR", &units.path);
    let done = set.output().expect("spawn cove set");
    assert!(
        done.status.success(),
        "cove set failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let config = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).expect("ct.toml");
    for line in ["swap = \"32M\"", "cpuunits = 500", "onboot = true"] {
        assert!(config.contains(line), "{line} not saved:\n{config}");
    }
    // memory+swap on v1, swap alone on v2.
    if let Some(memsw) = cgroup_value(&env, &ctid, &["memory.memsw.limit_in_bytes"]) {
        assert_eq!(memsw, (160 * MIB).to_string());
    } else if let Some(swap) = cgroup_value(&env, &ctid, &["memory.swap.max"]) {
        assert_eq!(swap, (32 * MIB).to_string());
    } else {
        skip(
            "set_swap_cpuunits_and_onboot",
            "no swap accounting on this kernel",
        );
    }
    // 500 cpuunits = half the default weight: shares 512, or its v2 weight.
    let weight = cgroup_value(&env, &ctid, &["cpu.shares"])
        .or_else(|| cgroup_value(&env, &ctid, &["cpu.weight"]));
    assert!(
        matches!(weight.as_deref(), Some("512") | Some("20")),
        "cpu weight {weight:?}"
    );
    let out = env.cmd(&[
        "list",
        "-a",
        "-H",
        "-o",
        "ctid,onboot,swap,cpuunits",
        "-s",
        "ctid",
    ]);
    out.assert_ok();
    let mine = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&ctid))
        .unwrap_or_else(|| panic!("{ctid} not listed:\n{out}"));
    assert_eq!(
        mine.split_whitespace().collect::<Vec<_>>(),
        [ctid.as_str(), "yes", &(32 * MIB).to_string(), "500"],
        "{out}"
    );
    let mut unset = env.command(&["set", &ctid, "--swap", "unlimited", "--onboot", "no"]);
    unset.env("COVE_SYSTEMD_DIR", &units.path);
    let done = unset.output().expect("spawn cove set");
    assert!(
        done.status.success(),
        "cove set failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let config = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).expect("ct.toml");
    assert!(
        !config.contains("swap") && !config.contains("onboot = true"),
        "{config}"
    );
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

/// `--ioweight` at create and live with `set`: in the CT's cgroup where the
/// kernel has proportional I/O control (BFQ, or io.cost on v2), else kept
/// in the config with a note that says it is not in force.
#[test]
fn ioweight_is_set_where_the_kernel_can() {
    let Some(env) = CoveEnv::with_busybox("ioweight") else {
        return;
    };
    let bare = env.create_busybox(&[]);
    assert_cove_refused(&env.cmd(&["set", &bare, "--ioweight", "5"]), 1);
    assert_cove_refused(&env.cmd(&["set", &bare, "--ioweight", "1001"]), 1);

    let ctid = env.create_busybox(&["--ioweight", "300"]);
    env.cmd(&["start", &ctid]).assert_ok();
    const FILES: [&str; 4] = [
        "blkio.bfq.weight",
        "blkio.weight",
        "io.bfq.weight",
        "io.weight",
    ];
    // BFQ and blkio take the weight as is; io.weight (1..10000) gets it
    // converted as runc converts blkio weights.
    let weight_is = |w: u64| {
        let io = 1 + (w - 10) * 9999 / 990;
        let value = cgroup_value(&env, &ctid, &FILES).expect("weight file");
        let last = value
            .lines()
            .find(|l| l.starts_with("default") || !l.contains(' '))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string();
        assert!(
            last == w.to_string() || last == io.to_string(),
            "I/O weight {value:?}, wanted {w} (or {io} as io.weight)"
        );
    };
    let out = env.cmd(&["set", &ctid, "--ioweight", "500"]);
    out.assert_ok();
    let config = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).expect("ct.toml");
    assert!(config.contains("ioweight = 500"), "{config}");
    if cgroup_value(&env, &ctid, &FILES).is_some() {
        assert!(!out.stdout.contains("not in force"), "{out}");
        weight_is(500);
        env.cmd(&["restart", &ctid]).assert_ok();
        weight_is(500);
    } else {
        assert!(
            out.stdout
                .contains("ioweight 500 is saved but not in force"),
            "no note for a weight this kernel cannot set: {out}"
        );
        let log = fs::read_to_string(env.ct_run_dir(&ctid).join("monitor.log")).unwrap_or_default();
        assert!(log.contains("ioweight 300"), "no note at start: {log}");
        skip(
            "ioweight_is_set_where_the_kernel_can",
            "no proportional I/O control on this kernel (checked the note only)",
        );
    }
    let out = env.cmd(&["list", "-a", "-H", "-o", "ctid,ioweight"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq([ctid.as_str(), "500"])),
        "{out}"
    );
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

/// `list -o FIELDS -s [-]FIELD -H` as vzlist has them; an unknown field is
/// one line naming the known ones.
#[test]
fn list_picks_fields_and_sorts() {
    let Some(env) = CoveEnv::with_busybox("list_fields_sort") else {
        return;
    };
    let small = env.create_busybox(&["--memory", "64M"]);
    let big = env.create_busybox(&["--memory", "512M"]);
    let none = env.create_busybox(&[]);
    let rows = |args: &[&str]| {
        let mut full = vec!["list", "-a", "-H"];
        full.extend_from_slice(args);
        let out = env.cmd(&full);
        out.assert_ok();
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let by_memory = rows(&["-o", "ctid,memory", "-s", "memory"]);
    assert_eq!(
        by_memory,
        [
            vec![small.clone(), (64 * MIB).to_string()],
            vec![big.clone(), (512 * MIB).to_string()],
            vec![none.clone(), "-".to_string()],
        ]
    );
    let reversed = rows(&["-o", "ctid", "-s", "-memory"]);
    assert_eq!(
        reversed,
        [vec![none.clone()], vec![big.clone()], vec![small.clone()]]
    );
    let out = env.cmd(&["list", "-o", "ctid,nosuch"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("memory"), "{out}");
    assert_cove_refused(&env.cmd(&["list", "-s", "nosuch"]), 1);
    let json = env.cmd(&["list", "-a", "--json", "-o", "ctid,status"]);
    json.assert_ok();
    let v = json.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    let first = v.as_array().and_then(|a| a.first()).expect("rows");
    assert_eq!(
        first
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["ctid".to_string(), "status".to_string()])
    );
}

/// Two creates claiming one --name at the same time: exactly one gets it.
#[test]
fn concurrent_creates_cannot_share_a_name() {
    let Some(env) = CoveEnv::with_busybox("concurrent_creates_name") else {
        return;
    };
    for round in 0..5 {
        let name = format!("same{round}");
        let (a, b) = (env.new_ctid(), env.new_ctid());
        let spawn = |ctid: &str| {
            let mut c = env.command(&["create", ctid, "--template", "busybox", "--name", &name]);
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().expect("spawn cove create")
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        let (oa, ob) = (
            pa.wait_with_output().expect("wait"),
            pb.wait_with_output().expect("wait"),
        );
        let won = [oa.status.success(), ob.status.success()];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {:?} / {:?}: {} / {}",
            oa.status,
            ob.status,
            String::from_utf8_lossy(&oa.stderr),
            String::from_utf8_lossy(&ob.stderr)
        );
        let loser = if won[0] { (&b, &ob) } else { (&a, &oa) };
        assert_eq!(loser.1.status.code(), Some(1));
        assert!(
            !env.ct_dir(loser.0).exists(),
            "the losing create left {}",
            env.ct_dir(loser.0).display()
        );
    }
}

/// `cove mount/umount`: a stopped CT's root on the host, its changes in
/// the CT's private area; refused while the CT runs; nothing left after
/// umount or destroy.
#[test]
fn mount_shows_a_stopped_ct_root_and_umount_removes_it() {
    let Some(env) = CoveEnv::with_busybox("mount_umount") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let out = env.cmd(&["mount", &ctid]);
    out.assert_ok();
    let root = out
        .stdout
        .trim()
        .rsplit(' ')
        .next()
        .map(std::path::PathBuf::from)
        .expect("mount point");
    assert!(root.join("bin/busybox").exists(), "{out}");
    assert_eq!(env.status_json(&ctid)["mounted"], true);
    assert_eq!(env.our_mounts().len(), 1, "{:?}", env.our_mounts());
    fs::write(root.join("etc/motd"), "written from the host\n").expect("write");
    assert!(env.ct_dir(&ctid).join("private/upper/etc/motd").is_file());
    // A second mount changes nothing; a start takes the mounted CT.
    env.cmd(&["mount", &ctid]).assert_ok();
    assert_eq!(env.our_mounts().len(), 1, "{:?}", env.our_mounts());
    env.cmd(&["start", &ctid]).assert_ok();
    let out = env.cmd(&["exec", &ctid, "cat", "/etc/motd"]);
    assert_eq!(out.stdout, "written from the host\n", "{out}");
    assert_cove_refused(&env.cmd(&["mount", &ctid]), 32);
    assert_cove_refused(&env.cmd(&["umount", &ctid]), 32);
    env.cmd(&["stop", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
    let out = env.cmd(&["umount", &ctid]);
    out.assert_ok();
    assert!(out.stdout.contains("was not mounted"), "{out}");

    env.cmd(&["mount", &ctid]).assert_ok();
    env.cmd(&["umount", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
    assert_eq!(env.status_json(&ctid)["mounted"], false);
    // destroy unmounts a mounted CT.
    env.cmd(&["mount", &ctid]).assert_ok();
    env.cmd(&["destroy", &ctid]).assert_ok();
    assert!(env.our_mounts().is_empty(), "{:?}", env.our_mounts());
    assert!(!env.ct_dir(&ctid).exists());
}

/// An init that asks for a reboot at once, again and again, is not
/// restarted forever: after a few reboots the monitor leaves the CT
/// stopped, with nothing left behind.
#[test]
fn reboot_storm_leaves_the_ct_stopped() {
    let Some(env) = CoveEnv::with_busybox("reboot_storm") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let out = env.cmd(&["mount", &ctid]);
    out.assert_ok();
    let root = std::path::PathBuf::from(out.stdout.trim().rsplit(' ').next().expect("path"));
    let script = root.join("sbin/rebooter");
    fs::write(&script, "#!/bin/sh\nreboot -f\n").expect("write");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .expect("chmod");
    env.cmd(&["umount", &ctid]).assert_ok();
    append_file(
        &env.ct_dir(&ctid).join("ct.toml"),
        "init = \"/sbin/rebooter\"\n",
    );
    env.cmd(&["start", &ctid]);
    let log = || fs::read_to_string(env.ct_run_dir(&ctid).join("monitor.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(120), || log().contains("left stopped")),
        "still rebooting:\n{}",
        log()
    );
    // The monitor ends right after its last word.
    assert!(wait_until(Duration::from_secs(60), || env
        .monitor_pid(&ctid)
        .is_none()));
    assert_eq!(env.status_json(&ctid)["status"], "stopped");
    assert_eq!(env.status_json(&ctid)["last_exit"]["how"], "reboot");
    env.assert_ct_cleaned_up(&ctid);
}
