//! cove and systemd, on a machine where systemd is not PID 1: the units
//! `cove systemd install` writes, the links and drop-ins `cove set --onboot
//! --bootorder` makes, and the notify messages the foreground monitor sends
//! to $NOTIFY_SOCKET (a socket the test binds, in systemd's place).
//! scripts/systemd-vm runs the same things under a real systemd.

mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use support::*;

/// `cove ARGS` with the units in `units`.
fn cmd_units(env: &CoveEnv, units: &Path, args: &[&str]) -> Out {
    let mut c = env.command(args);
    c.env("COVE_SYSTEMD_DIR", units);
    let out = c.output().expect("spawn cove");
    Out {
        cmdline: format!(
            "COVE_SYSTEMD_DIR={} cove {}",
            units.display(),
            args.join(" ")
        ),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dropin(units: &Path, ctid: &str) -> std::path::PathBuf {
    units
        .join(format!("cove@{ctid}.service.d"))
        .join("50-cove-bootorder.conf")
}

fn wants(units: &Path, ctid: &str) -> std::path::PathBuf {
    units
        .join("cove.target.wants")
        .join(format!("cove@{ctid}.service"))
}

#[test]
fn systemd_install_writes_units_that_run_this_binary() {
    let Some(env) = CoveEnv::new("systemd_install_writes_units") else {
        return;
    };
    let units = env.root.join("units");
    env.cmd(&["systemd", "install", "--dir", &units.display().to_string()])
        .assert_ok();
    let service = read(&units.join("cove@.service"));
    let bin = env.bin.display().to_string();
    for line in [
        "Type=notify".to_string(),
        format!("ExecStart={bin} start --foreground %I"),
        format!("ExecStop={bin} stop --timeout 60 %I"),
        "KillMode=mixed".into(),
        "Delegate=yes".into(),
        "Slice=cove.slice".into(),
        "TimeoutStopSec=90".into(),
        "WantedBy=cove.target".into(),
        // The test's own data and run directories are not the defaults.
        format!("Environment=COVE_DATA={}", env.data.display()),
        format!("Environment=COVE_RUN={}", env.run.display()),
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "{line} missing:\n{service}"
        );
    }
    assert!(read(&units.join("cove.slice")).contains("[Unit]"));
    assert!(read(&units.join("cove.target")).contains("WantedBy=multi-user.target"));
    let link = units.join("multi-user.target.wants/cove.target");
    assert_eq!(
        fs::read_link(&link).ok(),
        Some(units.join("cove.target")),
        "cove.target is not enabled"
    );
}

#[test]
fn onboot_enables_units_in_boot_order() {
    let Some(env) = CoveEnv::with_busybox("onboot_enables_units") else {
        return;
    };
    let units = env.root.join("units");
    env.cmd(&["systemd", "install", "--dir", &units.display().to_string()])
        .assert_ok();
    let first = env.create_busybox(&[]);
    let second = env.create_busybox(&[]);
    let last = env.create_busybox(&[]);
    cmd_units(
        &env,
        &units,
        &["set", &first, "--onboot", "yes", "--bootorder", "20"],
    )
    .assert_ok();
    cmd_units(
        &env,
        &units,
        &["set", &second, "--onboot", "yes", "--bootorder", "10"],
    )
    .assert_ok();
    // Unset bootorder: after every CT that has one.
    cmd_units(&env, &units, &["set", &last, "--onboot", "yes"]).assert_ok();
    for id in [&first, &second, &last] {
        assert_eq!(
            fs::read_link(wants(&units, id)).ok(),
            Some(units.join("cove@.service")),
            "CT {id} is not enabled"
        );
    }
    let toml = read(&env.ct_dir(&first).join("ct.toml"));
    assert!(
        toml.contains("onboot = true") && toml.contains("bootorder = 20"),
        "{toml}"
    );
    assert!(
        !dropin(&units, &first).exists(),
        "the first CT waits for none"
    );
    let after = |id: &str| {
        let text = read(&dropin(&units, id));
        let mut units: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("After="))
            .flat_map(|l| l.split_whitespace().map(String::from))
            .collect();
        units.sort();
        units
    };
    assert_eq!(after(&second), [format!("cove@{first}.service")]);
    let mut both = vec![
        format!("cove@{first}.service"),
        format!("cove@{second}.service"),
    ];
    both.sort();
    assert_eq!(after(&last), both);

    // cove list names the unit of each onboot CT.
    let v = cmd_units(&env, &units, &["list", "-a", "--json"])
        .stdout_json()
        .unwrap_or_else(|e| panic!("{e}"));
    let unit_of = |id: &str| {
        v.as_array()
            .and_then(|rows| rows.iter().find(|r| r["ctid"] == id))
            .map(|r| r["unit"].clone())
    };
    assert_eq!(
        unit_of(&first).and_then(|u| u.as_str().map(String::from)),
        Some(format!("cove@{first}.service"))
    );
    let table = cmd_units(&env, &units, &["list", "-a"]);
    assert!(
        table
            .stdout
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("UNIT")),
        "{table}"
    );

    // --onboot no: disabled, and nobody waits for it any more.
    cmd_units(&env, &units, &["set", &second, "--onboot", "no"]).assert_ok();
    assert!(wants(&units, &second).symlink_metadata().is_err());
    assert!(!dropin(&units, &second).exists());
    assert_eq!(after(&last), [format!("cove@{first}.service")]);
    assert!(read(&env.ct_dir(&second).join("ct.toml")).contains("onboot = false"));

    // destroy takes the CT's unit links with it.
    cmd_units(&env, &units, &["destroy", &last]).assert_ok();
    assert!(wants(&units, &last).symlink_metadata().is_err());
    assert!(!units.join(format!("cove@{last}.service.d")).exists());
}

#[test]
fn onboot_without_units_or_with_a_bad_value_is_refused() {
    let Some(env) = CoveEnv::with_busybox("onboot_refused") else {
        return;
    };
    let units = env.root.join("no-units");
    let ctid = env.create_busybox(&[]);
    let before = read(&env.ct_dir(&ctid).join("ct.toml"));
    let out = cmd_units(&env, &units, &["set", &ctid, "--onboot", "yes"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("cove systemd install"), "{out}");
    assert_eq!(read(&env.ct_dir(&ctid).join("ct.toml")), before);
    assert!(!units.exists(), "a refused set wrote units");
    assert_cove_refused(
        &cmd_units(&env, &units, &["set", &ctid, "--onboot", "maybe"]),
        1,
    );
    assert_cove_refused(
        &cmd_units(&env, &units, &["set", &ctid, "--bootorder", "-1"]),
        1,
    );
}

#[test]
fn foreground_monitor_notifies_ready_status_and_stopping() {
    let Some(env) = CoveEnv::with_busybox("foreground_monitor_notifies") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let sock_path = env.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let mut fg = env.command(&["start", "--foreground", &ctid]);
    fg.env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = fg.spawn().expect("spawn cove start --foreground");
    let pid = child.id();
    let got = receive_until(&sock, Duration::from_secs(20), "READY=1");
    // What a user of systemctl would see at the moment the unit turns active.
    let status_at_ready = env.cmd(&["status", &ctid, "--json"]);
    let ready = got
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("no READY=1 from the monitor; got {got:?}")
        });
    assert!(
        ready.lines().any(|l| l == format!("MAINPID={pid}")),
        "READY=1 without MAINPID={pid}: {ready:?}"
    );
    assert!(
        ready.contains(&format!("STATUS=CT {ctid} running")),
        "{ready:?}"
    );
    assert!(
        got[0].starts_with("STATUS=Starting CT"),
        "no starting status first: {got:?}"
    );
    let v = status_at_ready
        .stdout_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["status"], "running", "READY=1 before the CT ran: {v}");
    let init = v["init_pid"].as_i64().unwrap_or(0);
    let comm = fs::read_to_string(format!("/proc/{init}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "init",
        "the CT's init had not exec'd at READY=1"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let got = receive_until(&sock, Duration::from_secs(20), "STOPPING=1");
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {got:?}"
    );
    let status = wait_child(&mut child, Duration::from_secs(20))
        .expect("the foreground monitor did not end after SIGTERM");
    assert_eq!(status.code(), Some(0));
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn foreground_monitor_reports_a_failed_start_without_ready() {
    let Some(env) = CoveEnv::with_busybox("foreground_monitor_failed_start") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.add_to_ct_toml(&ctid, "init = \"/no/such/init\"");
    // An abstract socket name, the other form systemd uses.
    let name = format!("cove-test-notify-{}", std::process::id());
    let sock = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket")
    };
    let out = env
        .command(&["start", "--foreground", &ctid])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .output()
        .expect("run cove start --foreground");
    assert_ne!(out.status.code(), Some(0), "a CT without an init started");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        !got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 for a CT that did not start: {got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.starts_with(&format!("STATUS=CT {ctid} did not start"))),
        "no failure status: {got:?}"
    );
    env.assert_ct_cleaned_up(&ctid);
}

/// The cgroup2 mount point: /sys/fs/cgroup, or /sys/fs/cgroup/unified on
/// a hybrid host; None on a v1-only host.
fn cgroup2_mount() -> Option<&'static Path> {
    [
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup/unified"),
    ]
    .into_iter()
    .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

/// A process's cgroup in `hierarchy` ("" for the cgroup2 line, else a v1
/// controller name).
fn cgroup_of(pid: u32, hierarchy: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if hierarchy.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == hierarchy)
        };
        hit.then(|| path.to_string())
    })
}

/// What systemd does for `cove@CTID.service` (its own cgroup, INVOCATION_ID,
/// NOTIFY_SOCKET), done by hand under the test's cgroup parent: a shell
/// joins the "unit" cgroup and becomes `cove start --foreground CTID`.
/// Returns the monitor and the unit's cgroup path.
fn start_in_fake_unit(
    env: &CoveEnv,
    mount: &Path,
    ctid: &str,
    sock_path: &Path,
) -> (std::process::Child, String) {
    let unit = format!("{}/cove@{ctid}.service", env.cgroup_parent);
    let unit_dir = mount.join(unit.trim_start_matches('/'));
    fs::create_dir_all(&unit_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", unit_dir.display()));
    // COVE_CGROUP_PARENT would choose the parent itself, so it is not passed.
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!(
            "echo $$ > {} && exec {} start --foreground {ctid}",
            shell_quote(&unit_dir.join("cgroup.procs").display().to_string()),
            shell_quote(&env.bin.display().to_string())
        ))
        .envs(
            env.envs()
                .into_iter()
                .filter(|(k, _)| k != "COVE_CGROUP_PARENT"),
        )
        .env_remove("COVE_CGROUP_PARENT")
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env("NOTIFY_SOCKET", sock_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    (c.spawn().expect("spawn cove start --foreground"), unit)
}

/// What systemd does for `cove@CTID.service` (its own cgroup, INVOCATION_ID,
/// NOTIFY_SOCKET), done by hand under this test's cgroup parent: the
/// monitor moves into the unit's `supervisor` sub-cgroup and the CT's cgroup
/// is made inside the unit's, in the cgroup2 tree and the v1 hierarchies.
#[test]
fn monitor_in_a_delegated_unit_makes_the_ct_cgroup_inside_it() {
    let Some(env) = CoveEnv::with_busybox("monitor_in_a_delegated_unit") else {
        return;
    };
    let Some(mount) = cgroup2_mount() else {
        skip(
            "monitor_in_a_delegated_unit",
            "no cgroup2 hierarchy on this host",
        );
        return;
    };
    let ctid = env.create_busybox(&[]);
    let sock_path = env.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let (mut child, unit) = start_in_fake_unit(&env, mount, &ctid, &sock_path);
    let pid = child.id();
    let got = receive_until(&sock, Duration::from_secs(20), "READY=1");
    let ready = got.iter().any(|m| m.lines().any(|l| l == "READY=1"));
    let init = env.status_json(&ctid)["init_pid"].as_u64().unwrap_or(0) as u32;
    let monitor_cg = cgroup_of(pid, "");
    let init_cg = cgroup_of(init, "");
    let init_memory_cg = cgroup_of(init, "memory");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert!(ready, "no READY=1: {got:?}");
    assert_eq!(
        monitor_cg,
        Some(format!("{unit}/supervisor")),
        "the monitor's cgroup"
    );
    // The engine's cgroup is the CT's payload level, inside the CT's own
    // (which holds its limits).
    assert_eq!(
        init_cg,
        Some(format!("{unit}/{ctid}/payload")),
        "the CT's cgroup"
    );
    if mount != Path::new("/sys/fs/cgroup") {
        // Hybrid: the v1 controllers' cgroups are inside the unit's too.
        assert_eq!(
            init_memory_cg,
            Some(format!("{unit}/{ctid}/payload")),
            "the CT's memory cgroup"
        );
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the monitor did not end with 0"
    );
    let left = cgroup_dirs_for(&format!("{unit}/{ctid}"));
    assert!(left.is_empty(), "the CT's cgroups are left: {left:?}");
    env.assert_ct_cleaned_up(&ctid);
}

/// Under a unit only the monitor knows the CT's cgroup path (inside the
/// unit's). A `cove stop` run from elsewhere, while the monitor lives and
/// after it was killed (SIGKILL: the CT runs on without it), still leaves
/// no cgroup of the CT behind: the monitor records the path it made.
#[test]
fn stop_of_a_ct_in_a_unit_leaves_no_cgroup_even_without_its_monitor() {
    let test = "stop_in_a_unit_leaves_no_cgroup";
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let Some(mount) = cgroup2_mount() else {
        skip(test, "no cgroup2 hierarchy on this host");
        return;
    };
    let ctid = env.create_busybox(&[]);
    let sock_path = env.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    for kill_monitor in [false, true] {
        let (mut child, unit) = start_in_fake_unit(&env, mount, &ctid, &sock_path);
        let got = receive_until(&sock, Duration::from_secs(20), "READY=1");
        assert!(
            got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
            "no READY=1: {got:?}"
        );
        let ct_cgroup = format!("{unit}/{ctid}");
        assert!(
            !cgroup_dirs_for(&ct_cgroup).is_empty(),
            "the CT's cgroup is not inside the unit's"
        );
        if kill_monitor {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            wait_child(&mut child, Duration::from_secs(20));
            assert_eq!(
                env.status_json(&ctid)["status"],
                "running",
                "the CT did not run on without its monitor"
            );
        }
        env.cmd(&["stop", &ctid]).assert_ok();
        let status = wait_child(&mut child, Duration::from_secs(20));
        assert!(status.is_some(), "the monitor did not end after cove stop");
        let left = cgroup_dirs_for(&ct_cgroup);
        assert!(
            left.is_empty(),
            "cove stop (monitor killed: {kill_monitor}) left the CT's cgroups: {left:?}"
        );
        env.assert_ct_cleaned_up(&ctid);
        // systemd removes a unit's cgroup when the unit has stopped, and the
        // next start gets a fresh one: on pure v2 the old one, whose
        // subtree_control the monitor filled, takes no process any more.
        let unit_dir = mount.join(unit.trim_start_matches('/'));
        let _ = fs::remove_dir(unit_dir.join("supervisor"));
        let _ = fs::remove_dir(&unit_dir);
    }
}
