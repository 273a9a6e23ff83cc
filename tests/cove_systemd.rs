//! A full OS in a CT: the debian-12 template boots systemd as PID 1 to
//! `systemctl is-system-running` = running, on a hybrid host (host lane)
//! and a pure cgroup v2 one (VM lane); the CT manages its own cgroup subtree
//! but cannot raise its limits; `cove stop` shuts it down gracefully
//! (SIGRTMIN+3) and leaves nothing behind.
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
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let mut client = env
        .command(&["console", ctid])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cove console");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = client.stdout.take().expect("stdout");
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stderr = client.stderr.take().expect("stderr");
    let mut banner = [0u8; 20];
    stderr.read_exact(&mut banner).expect("console banner");
    let mut stdin = client.stdin.take().expect("stdin");
    stdin.write_all(input).expect("type");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30)
        && !String::from_utf8_lossy(&seen.lock().unwrap()).contains(want)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stdin.write_all(&[0x1d]).expect("Ctrl-]");
    let status = client.wait().expect("wait for cove console");
    let _ = reader.join();
    assert!(status.success(), "cove console: {status}");
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
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
