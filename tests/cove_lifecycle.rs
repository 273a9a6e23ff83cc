//! `cove` system containers from a user's side: create, start, exec,
//! enter, set, stop, restart, destroy; checked inside the CT (PID 1,
//! hostname, files) and outside (cgroups, mounts, run-time state).
//! Run as root; every test has its own data and run directories.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const MIB: u64 = 1 << 20;

#[test]
fn create_is_fast_and_copies_nothing() {
    let Some(env) = CoveEnv::with_busybox("create_is_fast_and_copies_nothing") else {
        return;
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let ctid = env.new_ctid();
        // A blocking wait, so the time is the command's, not a poll's.
        let mut create = env.command(&["create", &ctid, "--template", "busybox"]);
        create.stdout(std::process::Stdio::null());
        let t = Instant::now();
        let status = create.status().expect("spawn cove create");
        times.push(t.elapsed());
        assert!(status.success(), "cove create {ctid}: {status}");
        let dir = env.ct_dir(&ctid);
        assert!(dir.join("ct.toml").is_file(), "no config for {ctid}");
        let upper = dir.join("private/upper");
        let entries = fs::read_dir(&upper)
            .map(|rd| rd.count())
            .unwrap_or(usize::MAX);
        assert_eq!(
            entries,
            0,
            "the private area of a new CT is not empty: {}",
            upper.display()
        );
        assert!(dir.join("private/work").is_dir());
    }
    times.sort();
    // Measured, not asserted: the number is for the report.
    eprintln!(
        "MEASURE cove create (busybox template, whole command): min {:?}, median {:?}, max {:?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn started_ct_runs_init_as_pid_1_with_its_hostname_limits_and_overlay() {
    let Some(env) = CoveEnv::with_busybox("started_ct_runs_init") else {
        return;
    };
    let before = env.our_mounts();
    let ctid = env.create_busybox(&[
        "--hostname",
        "box1",
        "--memory",
        "256M",
        "--cpus",
        "1.5",
        "--pids",
        "100",
    ]);
    let out = env.cmd(&["start", &ctid]);
    out.assert_ok();
    assert_eq!(env.status_json(&ctid)["status"], "running", "{out}");

    // Inside: init is PID 1 of its own pid namespace, the hostname is the CT's.
    let ps = env.cmd(&["exec", &ctid, "ps"]);
    ps.assert_ok();
    let pid1 = ps
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"));
    assert!(
        pid1.is_some_and(|l| l.ends_with("init")),
        "PID 1 is not init:\n{ps}"
    );
    let host = env.cmd(&["exec", &ctid, "hostname"]);
    assert_eq!(host.stdout.trim(), "box1", "{host}");

    // Outside: the limits are in the CT's cgroup under cove's parent.
    let mem = cgroup_value(&env, &ctid, &["memory.limit_in_bytes", "memory.max"]);
    assert_eq!(
        mem.as_deref(),
        Some((256 * MIB).to_string().as_str()),
        "memory limit"
    );
    let pids = cgroup_value(&env, &ctid, &["pids.max"]);
    assert_eq!(pids.as_deref(), Some("100"), "pids limit");
    let quota = cgroup_value(&env, &ctid, &["cpu.cfs_quota_us"])
        .or_else(|| cgroup_value(&env, &ctid, &["cpu.max"]));
    assert!(
        quota.as_deref().is_some_and(|q| q.starts_with("150000")),
        "cpu quota: {quota:?}"
    );

    // The root is an overlay: what the CT writes lands in its private
    // upper directory, never in the template.
    env.cmd(&[
        "exec",
        &ctid,
        "sh",
        "-c",
        "echo written-inside > /root/probe",
    ])
    .assert_ok();
    let upper = env.ct_dir(&ctid).join("private/upper/root/probe");
    assert_eq!(
        fs::read_to_string(&upper).ok().as_deref(),
        Some("written-inside\n"),
        "{}",
        upper.display()
    );
    let template = env.data.join("templates/busybox/rootfs/root/probe");
    assert!(
        !template.exists(),
        "the CT wrote into its template: {}",
        template.display()
    );
    let mounted = new_mounts(&before, &env.our_mounts());
    assert!(
        mounted.iter().any(|m| m.contains(" overlay ")),
        "no overlay mount: {mounted:?}"
    );

    // stop: graceful (busybox init powers off on SIGUSR2), then nothing left.
    let t = Instant::now();
    let out = env.cmd(&["stop", &ctid, "--timeout", "20"]);
    out.assert_ok();
    eprintln!("MEASURE cove stop (busybox, graceful): {:?}", t.elapsed());
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "stopped", "{st}");
    assert_eq!(st["mounted"], false, "{st}");
    assert_eq!(
        st["last_exit"]["how"], "poweroff",
        "the CT did not shut down gracefully: {st}"
    );
    assert_eq!(env.our_mounts(), before, "mounts differ after stop");
    env.assert_ct_cleaned_up(&ctid);
    // The CT's files survive a stop.
    assert!(upper.exists());

    // destroy removes everything of the CT.
    env.cmd(&["destroy", &ctid]).assert_ok();
    assert!(!env.ct_dir(&ctid).exists(), "CT directory left");
    assert!(!env.ct_run_dir(&ctid).exists(), "run directory left");
    assert!(
        !env.run.join("lock").join(format!("{ctid}.lock")).exists(),
        "lock file left"
    );
    assert_cove_refused(&env.cmd(&["status", &ctid]), 1);
}

#[test]
fn list_json_shows_every_ct_with_its_status() {
    let Some(env) = CoveEnv::with_busybox("list_json_shows_every_ct") else {
        return;
    };
    let running = env.create_busybox(&["--name", "web"]);
    let stopped = env.create_busybox(&[]);
    env.cmd(&["start", "web"]).assert_ok();
    let all = env.cmd(&["list", "-a", "--json"]);
    all.assert_ok();
    let v = all.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    let rows = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{all}"));
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["ctid"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing:\n{all}"))
    };
    let r = row(&running);
    assert_eq!(
        (
            r["status"].as_str(),
            r["name"].as_str(),
            r["template"].as_str()
        ),
        (Some("running"), Some("web"), Some("busybox")),
        "{r}"
    );
    assert!(r["ip"].is_null(), "{r}");
    assert_eq!(row(&stopped)["status"], "stopped");
    // Without -a, like vzlist: only what runs.
    let v = env
        .cmd(&["list", "--json"])
        .stdout_json()
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["ctid"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [running.as_str()]);
    let text = env.cmd(&["list", "-a"]);
    assert!(text.stdout.starts_with("CTID"), "{text}");
    env.cmd(&["stop", "--fast", &running]).assert_ok();
}

#[test]
fn exec_passes_the_exit_status_and_refuses_a_stopped_ct() {
    let Some(env) = CoveEnv::with_busybox("exec_passes_the_exit_status") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    assert_cove_refused(&env.cmd(&["exec", &ctid, "true"]), 31);
    env.cmd(&["start", &ctid]).assert_ok();
    let out = env.cmd(&["exec", &ctid, "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (7, "out\n", "err\n"),
        "{out}"
    );
    let killed = env.cmd(&["exec", &ctid, "sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.code, 137, "{killed}");
    // enter without a terminal reads its commands from stdin.
    let mut enter = env.command(&["enter", &ctid]);
    enter
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = enter.spawn().expect("spawn cove enter");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo in-$(hostname); exit 5\n")
            .expect("write");
    }
    let done = child.wait_with_output().expect("wait for cove enter");
    assert_eq!(done.status.code(), Some(5));
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        format!("in-ct{ctid}")
    );
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    assert_cove_refused(&env.cmd(&["exec", &ctid, "true"]), 31);
}

#[test]
fn ct_whose_monitor_was_killed_is_still_managed() {
    let Some(env) = CoveEnv::with_busybox("ct_whose_monitor_was_killed") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd(&["start", &ctid]).assert_ok();
    let monitor = env.monitor_pid(&ctid).expect("monitor record");
    // SAFETY: kill(2) on the monitor this test started (its pid is from
    // its record, and it runs as our CT's parent).
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    assert!(wait_until(Duration::from_secs(5), || !Path::new(&format!(
        "/proc/{monitor}"
    ))
    .exists()
        || fs::read_to_string(format!("/proc/{monitor}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)));
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "running", "{st}");
    assert!(st["monitor_pid"].is_null(), "{st}");
    let out = env.cmd(&["exec", &ctid, "cat", "/proc/1/comm"]);
    assert_eq!(out.stdout.trim(), "init", "{out}");
    env.cmd(&["stop", &ctid, "--timeout", "20"]).assert_ok();
    assert_eq!(env.status_json(&ctid)["status"], "stopped");
    env.assert_ct_cleaned_up(&ctid);
    // And it starts again.
    env.cmd(&["start", &ctid]).assert_ok();
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn foreground_monitor_shuts_the_ct_down_on_sigterm() {
    let Some(env) = CoveEnv::with_busybox("foreground_monitor_shuts_down") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let out_path = env.root.join("fg.out");
    let mut fg = env.command(&["start", "--foreground", &ctid]);
    fg.stdout(fs::File::create(&out_path).expect("create fg.out"))
        .stderr(std::process::Stdio::null());
    let mut child = fg.spawn().expect("spawn cove start --foreground");
    let up = wait_until(Duration::from_secs(60), || {
        env.cmd(&["status", &ctid]).stdout.contains("running")
    });
    assert!(up, "the CT did not come up in the foreground");
    assert_eq!(
        env.monitor_pid(&ctid),
        Some(child.id() as i32),
        "the foreground process is not the monitor"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut child, Duration::from_secs(20))
        .expect("the foreground monitor did not end after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "a CT that powered off as asked ends the monitor with 0"
    );
    let console = fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        console.contains("CT ") && console.contains("started"),
        "{console}"
    );
    assert!(
        console.contains("poweroff"),
        "the console was not relayed to stdout:\n{console}"
    );
    let log = fs::read_to_string(env.ct_run_dir(&ctid).join("console.log")).unwrap_or_default();
    assert!(log.contains("poweroff"), "console.log:\n{log}");
    assert_eq!(env.status_json(&ctid)["last_exit"]["how"], "poweroff");
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn restart_starts_a_new_init_and_destroy_refuses_a_running_ct() {
    let Some(env) = CoveEnv::with_busybox("restart_and_destroy") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd(&["restart", &ctid]).assert_ok();
    let first = env.status_json(&ctid)["init_pid"].clone();
    env.cmd(&["restart", &ctid, "--timeout", "20"]).assert_ok();
    let second = env.status_json(&ctid)["init_pid"].clone();
    assert!(
        first.is_i64() && second.is_i64() && first != second,
        "{first} {second}"
    );
    assert_cove_refused(&env.cmd(&["start", &ctid]), 32);
    assert_cove_refused(&env.cmd(&["destroy", &ctid]), 32);
    assert!(env.ct_dir(&ctid).exists());
    env.cmd(&["destroy", "--force", &ctid]).assert_ok();
    assert!(!env.ct_dir(&ctid).exists() && !env.ct_run_dir(&ctid).exists());
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn concurrent_starts_one_wins() {
    let Some(env) = CoveEnv::with_busybox("concurrent_starts_one_wins") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    let spawn = || {
        let mut c = env.command(&["start", &ctid]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c.spawn().expect("spawn cove start")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("wait"),
        b.wait_with_output().expect("wait"),
    );
    let mut codes = [a.status.code().unwrap_or(-1), b.status.code().unwrap_or(-1)];
    codes.sort();
    // The loser either found the lock held (9) or, if it came after the
    // winner had finished, the CT running (32).
    assert!(
        codes[0] == 0 && (codes[1] == 9 || codes[1] == 32),
        "exit codes {codes:?}: {} / {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(env.status_json(&ctid)["status"], "running");
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn set_saves_the_config_and_changes_limits_live() {
    let Some(env) = CoveEnv::with_busybox("set_saves_the_config") else {
        return;
    };
    let ctid = env.create_busybox(&["--memory", "128M"]);
    env.cmd(&[
        "set", &ctid, "--memory", "64M", "--pids", "50", "--name", "db",
    ])
    .assert_ok();
    let toml = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert!(
        toml.contains("memory = \"64M\"")
            && toml.contains("pids = 50")
            && toml.contains("name = \"db\""),
        "{toml}"
    );
    env.cmd(&["start", "db"]).assert_ok();
    assert_eq!(
        cgroup_value(&env, &ctid, &["memory.limit_in_bytes", "memory.max"]),
        Some((64 * MIB).to_string())
    );
    env.cmd(&["set", "db", "--memory", "96M", "--pids", "unlimited"])
        .assert_ok();
    assert_eq!(
        cgroup_value(&env, &ctid, &["memory.limit_in_bytes", "memory.max"]),
        Some((96 * MIB).to_string())
    );
    assert_eq!(
        cgroup_value(&env, &ctid, &["pids.max"]).as_deref(),
        Some("max")
    );
    let toml = fs::read_to_string(env.ct_dir(&ctid).join("ct.toml")).unwrap_or_default();
    assert!(
        toml.contains("memory = \"96M\"") && !toml.contains("pids"),
        "{toml}"
    );
    env.cmd(&["stop", "--fast", "db"]).assert_ok();
}

#[test]
fn stop_kills_a_ct_that_ignores_its_stop_signal() {
    let Some(env) = CoveEnv::with_busybox("stop_kills_a_ct") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    // The init of a pid namespace ignores a signal it has no handler for:
    // busybox init has none for SIGWINCH.
    env.add_to_ct_toml(&ctid, "stop_signal = \"SIGWINCH\"");
    env.cmd(&["start", &ctid]).assert_ok();
    let t = Instant::now();
    env.cmd(&["stop", &ctid, "--timeout", "1"]).assert_ok();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "stopped before the timeout: {took:?}"
    );
    let st = env.status_json(&ctid);
    assert_eq!(st["last_exit"]["how"], "killed by SIGKILL", "{st}");
    env.assert_ct_cleaned_up(&ctid);
}

/// An init that answers the stop signal with a reboot (busybox init
/// reboots on SIGTERM) is not started again: `cove stop` means stopped.
#[test]
fn stop_stays_stopped_when_the_init_answers_with_a_reboot() {
    let Some(env) = CoveEnv::with_busybox("stop_then_reboot") else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.add_to_ct_toml(&ctid, "stop_signal = \"SIGTERM\"");
    env.cmd(&["start", &ctid]).assert_ok();
    env.cmd(&["stop", &ctid]).assert_ok();
    // A monitor that took the reboot would start the CT again within a
    // second or two.
    std::thread::sleep(Duration::from_secs(3));
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "stopped", "{st}");
    assert_eq!(st["last_exit"]["how"], "reboot", "{st}");
    env.assert_ct_cleaned_up(&ctid);
}

/// `cove exec` that fails once its process runs (here: signal forwarding
/// cannot be set up, an error strace injects into cove's own signalfd4)
/// says so and leaves no process behind in the CT.
#[test]
fn exec_failing_after_its_process_started_leaves_no_process() {
    let test = "exec_failing_after_its_process_started_leaves_no_process";
    let Some(strace) = needs_strace(test) else {
        return;
    };
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd(&["start", &ctid]).assert_ok();
    // Output into files: a process left behind would hold a pipe open.
    let err = env.data.join("exec.err");
    let traced = |inject: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(&strace);
        c.args(["-qq", "-o", "/dev/null"]);
        if let Some(i) = inject {
            c.args(["-e", &format!("inject={i}")]);
        }
        c.arg(&env.bin)
            .args(args)
            .envs(env.envs())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&err).expect("stderr file"));
        c.status().expect("strace cove exec")
    };
    // Without an injection, exec works under strace.
    let ok = traced(None, &["exec", &ctid, "true"]);
    assert!(
        ok.success(),
        "{ok:?}: {}",
        fs::read_to_string(&err).unwrap_or_default()
    );

    let failed = traced(
        Some("signalfd4:error=EMFILE:when=1"),
        &["exec", &ctid, "sleep", "1000"],
    );
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(!failed.success(), "exec did not fail: {stderr}");
    assert!(stderr.contains("signalfd"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ps = env.cmd(&["exec", &ctid, "ps", "-o", "args"]);
        ps.assert_ok();
        if !ps.stdout.contains("sleep 1000") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec'd process runs on in the CT:\n{ps}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
}
