//! A full OS in a CT: the debian-12 template boots systemd as PID 1 to
//! `systemctl is-system-running` = running, on a hybrid host (host lane)
//! and a pure cgroup v2 one (VM lane); the CT manages its own cgroup subtree
//! but cannot raise its limits; `cove stop` shuts it down gracefully
//! (SIGRTMIN+3) and leaves nothing behind. Under a unit (a NOTIFY_SOCKET
//! of the test's) its monitor says READY=1 only once the CT's systemd has.
//!
//! Needs the debian-12 template: COVE_TEST_DEBIAN=1 (built from the
//! machine's apt mirror, once) or COVE_TEST_DEBIAN_TARBALL (the VM lane).

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

/// How long systemd may take to settle (software emulation in the VM lane
/// is slow).
fn boot_timeout() -> Duration {
    if in_vm_lane() {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(120)
    }
}

/// `systemctl is-system-running` until it is no longer starting up;
/// returns its last answer and how long it took.
fn wait_settled(env: &CoveEnv, ctid: &str) -> (String, Duration) {
    wait_system_settled(env, ctid, boot_timeout())
}

fn exec_ok(env: &CoveEnv, ctid: &str, args: &[&str]) -> String {
    let mut full = vec!["exec", ctid];
    full.extend_from_slice(args);
    let out = env.cmd(&full);
    out.assert_ok();
    out.stdout
}

/// The first of `files` that exists in `dir`, trimmed.
fn read_first(dir: &std::path::Path, files: &[&str]) -> Option<String> {
    files
        .iter()
        .find_map(|f| fs::read_to_string(dir.join(f)).ok())
        .map(|v| v.trim().to_string())
}

/// Attaches `cove console`, types `input` and returns what the console
/// showed once `want` appears (or after 30 s); then detaches with Ctrl-].
fn console_answer(env: &CoveEnv, ctid: &str, input: &[u8], want: &str) -> String {
    let mut client = ConsoleClient::attach(env, ctid);
    client.type_in(input);
    client.shows(want, Duration::from_secs(30));
    let text = client.shown();
    let (status, rest) = client.detach();
    assert!(status.success(), "cove console: {status}: {rest}");
    text
}

#[test]
fn debian_ct_boots_systemd_to_running_and_stops_gracefully() {
    let test = "debian_ct_boots_systemd_to_running_and_stops_gracefully";
    let Some(env) = CoveEnv::with_debian(test) else {
        return;
    };
    let ctid = env.new_ctid();
    env.cmd(&[
        "create",
        &ctid,
        "--template",
        "debian-12",
        "--hostname",
        "deb1",
        "--memory",
        "512M",
        "--pids",
        "2000",
    ])
    .assert_ok();
    let t = Instant::now();
    env.cmd(&["start", &ctid]).assert_ok();
    let (state, waited) = wait_settled(&env, &ctid);
    let boot = t.elapsed();
    if state != "running" {
        let failed = env.cmd(&["exec", &ctid, "systemctl", "--failed", "--no-pager"]);
        let log = fs::read_to_string(env.ct_run_dir(&ctid).join("console.log")).unwrap_or_default();
        panic!(
            "systemctl is-system-running: {state:?} after {waited:?}\n{failed}\n--- console ---\n{log}"
        );
    }
    eprintln!("MEASURE debian-12 CT start to systemd \"running\": {boot:?}");

    // Inside: systemd is PID 1, told it is in a container, on a pty console,
    // with the CT's hostname, in its own init.scope.
    assert_eq!(
        exec_ok(&env, &ctid, &["cat", "/proc/1/comm"]).trim(),
        "systemd"
    );
    let virt = env.cmd(&["exec", &ctid, "systemd-detect-virt", "--container"]);
    assert_eq!(virt.code, 0, "systemd does not see a container:\n{virt}");
    assert_eq!(exec_ok(&env, &ctid, &["hostname"]).trim(), "deb1");
    let console = exec_ok(&env, &ctid, &["stat", "-c", "%t", "/dev/console"]);
    assert_eq!(
        console.trim(),
        "88",
        "/dev/console is not a pty (major 136)"
    );
    let cgroup = exec_ok(&env, &ctid, &["cat", "/proc/1/cgroup"]);
    assert!(
        cgroup.lines().any(|l| l == "0::/init.scope"),
        "systemd is not in its own init.scope at the root of the CT's cgroup namespace:\n{cgroup}"
    );
    if is_hybrid_cgroups() {
        assert!(
            cgroup
                .lines()
                .any(|l| l.ends_with(":name=systemd:/init.scope")),
            "systemd could not use its name=systemd hierarchy:\n{cgroup}"
        );
    }
    // /proc/sys stays read-only, the units run.
    let sysctl = env.cmd(&["exec", &ctid, "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"]);
    assert_ne!(sysctl.code, 0, "/proc/sys is writable:\n{sysctl}");
    let units = exec_ok(
        &env,
        &ctid,
        &[
            "systemctl",
            "is-active",
            "systemd-journald",
            "dbus",
            "systemd-logind",
        ],
    );
    assert_eq!(units.split_whitespace().collect::<Vec<_>>(), ["active"; 3]);

    // Outside: the CT's systemd made its slices below the payload; the
    // limits stay on the CT's outer cgroup whatever the CT writes.
    let cg_path = format!("{}/{ctid}", env.cgroup_parent);
    let dirs = cgroup_dirs_for(&cg_path);
    assert!(
        dirs.iter()
            .any(|d| d.join("payload/init.scope").is_dir()
                && d.join("payload/system.slice").is_dir()),
        "no payload/init.scope and payload/system.slice under {dirs:?}"
    );
    let limit = || {
        dirs.iter()
            .find_map(|d| read_first(d, &["memory.max", "memory.limit_in_bytes"]))
    };
    assert_eq!(limit().as_deref(), Some("536870912"));
    let inside = exec_ok(
        &env,
        &ctid,
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; true",
        ],
    );
    // What the CT sees of its limit: the payload's copy.
    assert_eq!(
        inside.trim(),
        "536870912",
        "the CT does not see its memory limit"
    );
    let raise = if is_pure_cgroup_v2() {
        "echo max > /sys/fs/cgroup/memory.max"
    } else {
        "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let _ = env.cmd(&["exec", &ctid, "sh", "-c", raise]);
    assert_eq!(
        limit().as_deref(),
        Some("536870912"),
        "the CT changed its own memory limit"
    );

    // The console: getty answers a new line with its login prompt.
    let t = Instant::now();
    let prompt = console_answer(&env, &ctid, b"\n", "login:");
    eprintln!("MEASURE console prompt: {:?}", t.elapsed());
    assert!(
        prompt.contains("deb1 login:"),
        "no login prompt on the console: {prompt:?}"
    );

    // `systemctl reboot` inside: the monitor starts the CT again.
    let before = env.status_json(&ctid);
    let _ = env.cmd(&["exec", &ctid, "systemctl", "reboot"]);
    let t = Instant::now();
    while t.elapsed() < boot_timeout() {
        let now = env.status_json(&ctid);
        if now["init_pid"] != before["init_pid"] && now["status"] == "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = env.status_json(&ctid);
    assert_eq!(after["last_exit"]["how"], "reboot", "{after}");
    assert_ne!(after["init_pid"], before["init_pid"], "{after}");
    let (state, _) = wait_settled(&env, &ctid);
    assert_eq!(state, "running", "after the reboot");
    eprintln!(
        "MEASURE debian-12 CT reboot to \"running\": {:?}",
        t.elapsed()
    );

    // A graceful stop: SIGRTMIN+3, systemd powers off.
    let t = Instant::now();
    env.cmd_timeout(&["stop", &ctid], Duration::from_secs(120))
        .assert_ok();
    eprintln!("MEASURE debian-12 CT graceful stop: {:?}", t.elapsed());
    let status = env.status_json(&ctid);
    assert_eq!(status["status"], "stopped", "{status}");
    assert_eq!(
        status["last_exit"]["how"], "poweroff",
        "systemd did not shut down on its own: {status}"
    );
    let log = fs::read_to_string(env.ct_run_dir(&ctid).join("console.log")).unwrap_or_default();
    assert!(
        log.contains("Reached target") && log.contains("shutdown.target"),
        "no orderly shutdown on the console:\n{log}"
    );
    env.assert_ct_cleaned_up(&ctid);
    env.cmd(&["destroy", &ctid]).assert_ok();
}

/// What systemd sees of `cove@CTID.service` running a debian-12 CT, with
/// the test's socket as systemd's NOTIFY_SOCKET: the foreground monitor
/// says READY=1 only once the CT's own systemd has said it (through
/// /run/host/notify, as under systemd-nspawn), that is once
/// `systemctl is-system-running` inside no longer says "starting"; before
/// it, a "booting" STATUS=. MAINPID= is the monitor, the unit's main
/// process. SIGTERM (systemctl stop) then stops the CT gracefully.
#[test]
fn debian_ct_under_a_unit_is_ready_when_its_systemd_is() {
    let test = "debian_ct_under_a_unit_is_ready_when_its_systemd_is";
    let Some(env) = CoveEnv::with_debian(test) else {
        return;
    };
    let ctid = env.new_ctid();
    env.cmd(&["create", &ctid, "--template", "debian-12"])
        .assert_ok();
    let sock_path = env.root.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    let mut child = env
        .command(&["start", "--foreground", &ctid])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cove start --foreground");
    let pid = child.id();
    let t = Instant::now();
    let got = receive_until(&sock, boot_timeout(), "READY=1");
    let ready_after = t.elapsed();
    // What `systemctl is-system-running` inside says the moment the unit
    // would turn active.
    let state_at_ready = env.cmd(&["exec", &ctid, "systemctl", "is-system-running"]);
    let pid1_env = env.cmd(&[
        "exec",
        &ctid,
        "sh",
        "-c",
        "tr '\\0' '\\n' < /proc/1/environ",
    ]);
    let sock_inside = env.cmd(&["exec", &ctid, "stat", "-c", "%F", "/run/host/notify"]);
    let ready = got
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .cloned();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stopping = receive_until(&sock, Duration::from_secs(120), "STOPPING=1");
    let status = wait_child(&mut child, Duration::from_secs(120));
    eprintln!("MEASURE debian-12 CT under a unit: READY=1 after {ready_after:?}");
    eprintln!("notify messages until READY=1: {got:?}; is-system-running then: {state_at_ready}");
    let Some(ready) = ready else {
        panic!("no READY=1 within {:?}; got {got:?}", boot_timeout());
    };
    let booting = got
        .iter()
        .position(|m| m.contains(&format!("STATUS=CT {ctid} booting")));
    assert!(
        booting.is_some_and(|i| !got[i].contains("READY=1")),
        "no \"booting\" status before READY=1: {got:?}"
    );
    assert!(
        ready.lines().any(|l| l == format!("MAINPID={pid}")),
        "READY=1 without the monitor as MAINPID: {ready:?}"
    );
    assert!(
        ready.contains(&format!("STATUS=CT {ctid} running")) && ready.contains("its systemd ready"),
        "{ready:?}"
    );
    let state = state_at_ready.stdout.trim();
    assert!(
        state == "running" || state == "degraded",
        "READY=1 came before the CT's systemd was up: is-system-running said {state:?}"
    );
    assert!(
        pid1_env
            .stdout
            .lines()
            .any(|l| l == "NOTIFY_SOCKET=/run/host/notify"),
        "{pid1_env}"
    );
    assert_eq!(sock_inside.stdout.trim(), "socket", "{sock_inside}");
    assert!(
        stopping
            .iter()
            .any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {stopping:?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the monitor's exit");
    assert_eq!(env.status_json(&ctid)["last_exit"]["how"], "poweroff");
    assert!(
        !env.ct_run_dir(&ctid).join("notify").exists(),
        "the notify socket is left"
    );
    env.assert_ct_cleaned_up(&ctid);
    env.cmd(&["destroy", &ctid]).assert_ok();
}
