//! The container lifecycle through the runc command line: create, state,
//! start, kill, delete, list, run, exec and ps, with runc's JSON and
//! runc's error wording (shims match on it).

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// pid 1 ignores signals it has no handler for, so the long-running
/// process traps TERM to make `kill SIGTERM` observable.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

fn created(env: &Env, test: &str) -> Ct {
    let mut ct = Ct::new(env, test);
    ct.sh(LONG_RUNNING);
    ct.create().assert_ok();
    ct
}

fn running(env: &Env, test: &str) -> Ct {
    let ct = created(env, test);
    ct.start().assert_ok();
    assert!(
        ct.wait_status("running", STOP_TIMEOUT),
        "container never became running: {:?}",
        ct.state_json()
    );
    ct
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn state_or_panic(ct: &Ct) -> Value {
    ct.state_json()
        .unwrap_or_else(|e| panic!("state failed:\n{e}"))
}

/// stderr must say `needle`, in any case (runc writes `level=error msg="..."`).
#[track_caller]
fn assert_stderr_says(out: &Out, needle: &str) {
    assert!(
        out.stderr.to_lowercase().contains(&needle.to_lowercase()),
        "expected stderr to contain {needle:?}:\n{out}"
    );
}

// ---------------------------------------------------------------- create / state

#[test]
fn state_after_create_says_created() {
    let Some(env) = prerequisites("state_after_create_says_created") else {
        return;
    };
    let ct = created(&env, "state_after_create_says_created");
    let state = state_or_panic(&ct);
    assert_eq!(state["status"], "created", "{state:#}");
    assert_eq!(state["id"], json!(ct.id), "{state:#}");
    assert_eq!(
        state["bundle"],
        json!(ct.bundle.display().to_string()),
        "{state:#}"
    );
    assert_eq!(
        state["rootfs"],
        json!(env.rootfs.display().to_string()),
        "{state:#}"
    );
    assert!(
        state["pid"].as_i64().unwrap_or(0) > 0,
        "no pid in state: {state:#}"
    );
    assert!(
        state["created"].as_str().is_some_and(|t| t.contains('T')),
        "created is not an RFC 3339 time: {state:#}"
    );
    assert!(state["ociVersion"].as_str().is_some(), "{state:#}");
}

#[test]
fn state_json_has_the_same_keys_as_runc() {
    let test = "state_json_has_the_same_keys_as_runc";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    let Some(runc) = env.runc.clone() else { return };
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.sh(LONG_RUNNING);
    reference.create().assert_ok();
    let under_test = created(&env, test);

    let compare_keys = |when: &str| {
        let want = keys(&state_or_panic(&reference));
        let got = keys(&state_or_panic(&under_test));
        assert_eq!(got, want, "state keys differ from runc's when {when}");
    };
    compare_keys("created");
    reference.start().assert_ok();
    under_test.start().assert_ok();
    assert!(
        reference.wait_status("running", STOP_TIMEOUT),
        "runc: {:?}",
        reference.state_json()
    );
    assert!(
        under_test.wait_status("running", STOP_TIMEOUT),
        "{:?}",
        under_test.state_json()
    );
    compare_keys("running");
}

#[test]
fn state_pid_after_create_is_alive_in_its_own_pid_namespace() {
    let Some(env) = prerequisites("state_pid_after_create_is_alive_in_its_own_pid_namespace")
    else {
        return;
    };
    let ct = created(
        &env,
        "state_pid_after_create_is_alive_in_its_own_pid_namespace",
    );
    let state = state_or_panic(&ct);
    let pid = state["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "no pid: {state:#}");
    let proc_dir = format!("/proc/{pid}");
    let stat = fs::read_to_string(format!("{proc_dir}/stat"))
        .unwrap_or_else(|e| panic!("pid {pid} is not alive: {e}"));
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    assert!(
        !after_comm.trim_start().starts_with('Z'),
        "pid {pid} is a zombie: {stat}"
    );
    let ns = |p: &str| fs::read_link(p).unwrap_or_else(|e| panic!("readlink {p}: {e}"));
    assert_ne!(
        ns(&format!("{proc_dir}/ns/pid")),
        ns("/proc/self/ns/pid"),
        "init shares the host pid namespace"
    );
    assert_ne!(
        ns(&format!("{proc_dir}/ns/mnt")),
        ns("/proc/self/ns/mnt"),
        "init shares the host mount namespace"
    );
}

// ---------------------------------------------------------------- start / kill

#[test]
fn start_makes_state_running() {
    let Some(env) = prerequisites("start_makes_state_running") else {
        return;
    };
    let ct = created(&env, "start_makes_state_running");
    ct.start().assert_ok();
    assert!(
        ct.wait_status("running", STOP_TIMEOUT),
        "state after start: {:?}",
        ct.state_json()
    );
}

/// `kill SIGNAL`, checked, then `state` until the container has stopped.
#[track_caller]
fn kill_until_stopped(ct: &Ct, signal: &str) {
    ct.kill(signal).assert_ok();
    assert!(
        ct.wait_status("stopped", STOP_TIMEOUT),
        "state after kill {signal}: {:?}",
        ct.state_json()
    );
}

fn kill_stops(test: &str, signal: &str) {
    let Some(env) = prerequisites(test) else {
        return;
    };
    let ct = running(&env, test);
    kill_until_stopped(&ct, signal);
}

#[test]
fn kill_sigkill_makes_state_stopped() {
    kill_stops("kill_sigkill_makes_state_stopped", "SIGKILL");
}

#[test]
fn kill_by_short_name_kill_makes_state_stopped() {
    kill_stops("kill_by_short_name_kill_makes_state_stopped", "KILL");
}

#[test]
fn kill_by_number_9_makes_state_stopped() {
    kill_stops("kill_by_number_9_makes_state_stopped", "9");
}

#[test]
fn kill_sigterm_reaches_the_trapping_process() {
    kill_stops("kill_sigterm_reaches_the_trapping_process", "SIGTERM");
}

#[test]
fn kill_of_stopped_container_says_not_running() {
    let Some(env) = prerequisites("kill_of_stopped_container_says_not_running") else {
        return;
    };
    let ct = running(&env, "kill_of_stopped_container_says_not_running");
    kill_until_stopped(&ct, "KILL");
    let out = ct.kill("KILL");
    assert_ne!(out.code, 0, "kill of a stopped container succeeded:\n{out}");
    assert_stderr_says(&out, "container not running");
}

// ---------------------------------------------------------------- delete

#[test]
fn delete_of_stopped_container_makes_state_say_does_not_exist() {
    let Some(env) = prerequisites("delete_of_stopped_container_makes_state_say_does_not_exist")
    else {
        return;
    };
    let ct = running(
        &env,
        "delete_of_stopped_container_makes_state_say_does_not_exist",
    );
    kill_until_stopped(&ct, "KILL");
    ct.delete().assert_ok();
    let out = ct.state();
    assert_ne!(out.code, 0, "state after delete succeeded:\n{out}");
    assert_stderr_says(&out, "does not exist");
    assert!(
        ct.state_root_entries().is_empty(),
        "state left behind: {:?}",
        ct.state_root_entries()
    );
}

#[test]
fn delete_removes_the_container_cgroup() {
    let Some(env) = prerequisites("delete_removes_the_container_cgroup") else {
        return;
    };
    let ct = running(&env, "delete_removes_the_container_cgroup");
    assert!(
        !ct.cgroup_dirs().is_empty(),
        "the container has no cgroup {} on the host",
        ct.cgroups_path
    );
    kill_until_stopped(&ct, "KILL");
    ct.delete().assert_ok();
    assert!(
        ct.cgroup_dirs().is_empty(),
        "cgroups left after delete: {:?}",
        ct.cgroup_dirs()
    );
}

#[test]
fn delete_of_running_container_without_force_fails() {
    let Some(env) = prerequisites("delete_of_running_container_without_force_fails") else {
        return;
    };
    let ct = running(&env, "delete_of_running_container_without_force_fails");
    let out = ct.delete();
    assert_ne!(
        out.code, 0,
        "delete of a running container succeeded:\n{out}"
    );
    assert_eq!(
        ct.status().as_deref(),
        Some("running"),
        "failed delete changed the container"
    );
}

#[test]
fn delete_force_removes_running_container() {
    let Some(env) = prerequisites("delete_force_removes_running_container") else {
        return;
    };
    let ct = running(&env, "delete_force_removes_running_container");
    let pid = state_or_panic(&ct)["pid"].as_i64().unwrap_or(0);
    ct.delete_force().assert_ok();
    let out = ct.state();
    assert_stderr_says(&out, "does not exist");
    assert!(
        ct.cgroup_dirs().is_empty(),
        "cgroups left after delete --force: {:?}",
        ct.cgroup_dirs()
    );
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z');
    assert!(
        !alive,
        "init pid {pid} still alive after delete --force: {stat}"
    );
}

// ---------------------------------------------------------------- list

#[test]
fn list_json_contains_the_container_with_its_fields() {
    let Some(env) = prerequisites("list_json_contains_the_container_with_its_fields") else {
        return;
    };
    let ct = running(&env, "list_json_contains_the_container_with_its_fields");
    let out = ct.list(&["--format", "json"]);
    out.assert_ok();
    let list = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("list is not a JSON array:\n{out}"));
    let entry = entries
        .iter()
        .find(|e| e["id"] == json!(ct.id))
        .unwrap_or_else(|| panic!("{} not in list:\n{out}", ct.id));
    let state = state_or_panic(&ct);
    assert_eq!(entry["status"], "running", "{entry:#}");
    assert_eq!(entry["pid"], state["pid"], "{entry:#}");
    assert_eq!(
        entry["bundle"],
        json!(ct.bundle.display().to_string()),
        "{entry:#}"
    );
    assert_eq!(
        entry["rootfs"],
        json!(env.rootfs.display().to_string()),
        "{entry:#}"
    );
    assert_eq!(entry["created"], state["created"], "{entry:#}");
    // runc's list names the owner ("root"), where state leaves it empty.
    assert_eq!(entry["owner"], "root", "{entry:#}");
    let want: BTreeSet<String> = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ]
    .map(String::from)
    .into();
    let have = keys(entry);
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "list entry lacks {missing:?}: {entry:#}"
    );
}

#[test]
fn list_quiet_prints_only_ids() {
    let Some(env) = prerequisites("list_quiet_prints_only_ids") else {
        return;
    };
    let ct = created(&env, "list_quiet_prints_only_ids");
    let out = ct.list(&["-q"]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{}\n", ct.id), "list -q output:\n{out}");
}

#[test]
fn list_table_has_runc_header() {
    let Some(env) = prerequisites("list_table_has_runc_header") else {
        return;
    };
    let ct = created(&env, "list_table_has_runc_header");
    let out = ct.list(&[]);
    out.assert_ok();
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(ct.id.as_str())),
        "{out}"
    );
}

// ---------------------------------------------------------------- run

#[test]
fn run_exits_with_the_container_exit_code() {
    let Some(env) = prerequisites("run_exits_with_the_container_exit_code") else {
        return;
    };
    let mut ct = Ct::new(&env, "run_exits_with_the_container_exit_code");
    ct.sh("echo out; echo err >&2; exit 7");
    let out = ct.run();
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err\n"), "{out}");
}

/// Without a pid namespace the shell is not an init, so `kill -9 $$` kills
/// it (an init would ignore a SIGKILL sent from inside its namespace).
#[test]
fn run_exits_128_plus_signal_when_the_process_is_killed() {
    let Some(env) = prerequisites("run_exits_128_plus_signal_when_the_process_is_killed") else {
        return;
    };
    let mut ct = Ct::new(&env, "run_exits_128_plus_signal_when_the_process_is_killed");
    ct.sh("kill -9 $$; echo survived");
    let namespaces = ct.config["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ct.config["linux"]["namespaces"] = json!(namespaces
        .into_iter()
        .filter(|n| n["type"] != "pid")
        .collect::<Vec<_>>());
    let out = ct.run();
    assert_eq!(out.code, 137, "{out}");
    assert!(!out.stdout.contains("survived"), "{out}");
}

#[test]
fn run_exits_137_when_the_init_is_killed_from_outside() {
    let Some(env) = prerequisites("run_exits_137_when_the_init_is_killed_from_outside") else {
        return;
    };
    let mut ct = Ct::new(&env, "run_exits_137_when_the_init_is_killed_from_outside");
    ct.sh("sleep 1000 & wait");
    let out = std::thread::scope(|s| {
        let runner = s.spawn(|| ct.run());
        let up = ct.wait_status("running", STOP_TIMEOUT);
        let kill = ct.kill("KILL");
        let out = runner
            .join()
            .unwrap_or_else(|_| panic!("run thread panicked"));
        assert!(up, "container never became running:\n{out}");
        kill.assert_ok();
        out
    });
    assert_eq!(out.code, 137, "{out}");
}

#[test]
fn run_detached_returns_while_the_container_runs() {
    let Some(env) = prerequisites("run_detached_returns_while_the_container_runs") else {
        return;
    };
    let mut ct = Ct::new(&env, "run_detached_returns_while_the_container_runs");
    ct.sh(LONG_RUNNING);
    ct.run_detached().assert_ok();
    assert_eq!(
        ct.status().as_deref(),
        Some("running"),
        "{:?}",
        ct.state_json()
    );
}

// ---------------------------------------------------------------- exec

fn detached(env: &Env, test: &str) -> Ct {
    let mut ct = Ct::new(env, test);
    ct.sh(LONG_RUNNING);
    ct.run_detached().assert_ok();
    ct
}

#[test]
fn exec_passes_stdout_and_exit_code_through() {
    let Some(env) = prerequisites("exec_passes_stdout_and_exit_code_through") else {
        return;
    };
    let ct = detached(&env, "exec_passes_stdout_and_exit_code_through");
    let out = ct.exec(&[], &["sh", "-c", "echo hello from exec; exit 5"]);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(out.stdout, "hello from exec\n", "{out}");
}

#[test]
fn exec_applies_env_cwd_and_user() {
    let Some(env) = prerequisites("exec_applies_env_cwd_and_user") else {
        return;
    };
    let ct = detached(&env, "exec_applies_env_cwd_and_user");
    let out = ct.exec(
        &["--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000"],
        &[
            "sh",
            "-c",
            "echo FOO=$FOO; pwd; grep -E '^(Uid|Gid):' /proc/self/status",
        ],
    );
    out.assert_ok();
    assert_eq!(
        out.stdout, "FOO=bar\n/tmp\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n",
        "{out}"
    );
}

#[test]
fn exec_joins_the_container_pid_namespace() {
    let Some(env) = prerequisites("exec_joins_the_container_pid_namespace") else {
        return;
    };
    let ct = detached(&env, "exec_joins_the_container_pid_namespace");
    let out = ct.exec(&[], &["cat", "/proc/1/cmdline"]);
    out.assert_ok();
    assert_eq!(
        out.stdout.replace('\0', " ").trim_end(),
        format!("sh -c {LONG_RUNNING}"),
        "{out}"
    );
}

#[test]
fn exec_into_stopped_container_fails() {
    let Some(env) = prerequisites("exec_into_stopped_container_fails") else {
        return;
    };
    let ct = detached(&env, "exec_into_stopped_container_fails");
    kill_until_stopped(&ct, "KILL");
    let out = ct.exec(&[], &["true"]);
    assert_ne!(out.code, 0, "{out}");
}

// ---------------------------------------------------------------- terminal

#[test]
fn console_socket_receives_the_pty_master_of_the_container() {
    let test = "console_socket_receives_the_pty_master_of_the_container";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let mut ct = Ct::new(&env, test);
    ct.config["process"]["terminal"] = json!(true);
    ct.sh("echo hello from the tty; tty; stat -c '%F %t' /dev/console; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo stdio is a tty");
    ct.save_config();
    let console = ConsoleSocket::bind(&ct.bundle.join("console.sock"));
    let bundle = ct.bundle.display().to_string();
    let socket = console.path.display().to_string();
    ct.cmd(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        &socket,
        &ct.id,
    ])
    .assert_ok();
    let master = console
        .receive_master(STOP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    ct.start().assert_ok();
    let seen = read_pty(&master, STOP_TIMEOUT);
    // pts devices have major 136 (0x88).
    assert_eq!(
        seen, "hello from the tty\n/dev/pts/0\ncharacter special file 88\nstdio is a tty\n",
        "what the container wrote to its terminal"
    );
}

// ---------------------------------------------------------------- ps

#[test]
fn ps_json_lists_the_container_pids() {
    let Some(env) = prerequisites("ps_json_lists_the_container_pids") else {
        return;
    };
    let ct = detached(&env, "ps_json_lists_the_container_pids");
    let init = state_or_panic(&ct)["pid"].clone();
    let out = ct.ps(&["--format", "json"]);
    out.assert_ok();
    let pids = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    let pids = pids
        .as_array()
        .unwrap_or_else(|| panic!("ps output is not an array:\n{out}"));
    assert!(pids.contains(&init), "init pid {init} not in ps:\n{out}");
    // The shell and its backgrounded sleep.
    assert!(pids.len() >= 2, "expected at least 2 pids:\n{out}");
    assert!(
        pids.iter().all(|p| p.as_i64().is_some_and(|p| p > 0)),
        "{out}"
    );
}

/// The foreground exec blocks signals in the runtime to forward them; the
/// process it starts must not inherit that mask (nor Rust's ignored SIGPIPE).
#[test]
fn exec_process_starts_with_no_signal_blocked_or_ignored() {
    let Some(env) = prerequisites("exec_process_starts_with_no_signal_blocked_or_ignored") else {
        return;
    };
    let ct = detached(
        &env,
        "exec_process_starts_with_no_signal_blocked_or_ignored",
    );
    let out = ct.exec(&[], &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    out.assert_ok();
    let field = |name: &str| {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("ffff"), 16)
            .unwrap_or(u64::MAX)
    };
    assert_eq!(
        field("SigBlk:"),
        0,
        "signals blocked in the exec'd process: {out}"
    );
    // SIGPIPE is bit 12; signals the caller ignores may stay ignored, as with runc.
    assert_eq!(
        field("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
}

// ---------------------------------------------------------------- NOTIFY_SOCKET

/// A container of `bin` running `script` with the sd-notify probe at
/// /probe, its config saved, and a state root `/tmp/cove-TAG<pid>-<bin>`
/// short enough for `<root>/<id>/notify/notify.sock` to fit in sun_path's
/// 108 bytes, for runc as for cove-oci.
fn notify_probe_ct(
    env: &Env,
    test: &str,
    bin: &std::path::Path,
    probe: &std::path::Path,
    tag: &str,
    script: &str,
) -> Ct {
    let mut ct = Ct::with_bin(env, test, bin);
    let short_root = std::path::PathBuf::from(format!(
        "/tmp/cove-{tag}{}-{}",
        std::process::id(),
        bin.file_name().and_then(|n| n.to_str()).unwrap_or("rt")
    ));
    let _ = fs::remove_dir_all(&short_root);
    // The state root made for the Ct goes: its Drop removes only the one
    // it holds.
    let _ = fs::remove_dir_all(&ct.state_root);
    ct.state_root = short_root;
    ct.sh(script);
    ct.add_mount(json!({
        "destination": "/probe", "type": "bind",
        "source": probe.parent().expect("probe dir"),
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }));
    ct.save_config();
    ct
}

/// runc's NOTIFY_SOCKET handling: with NOTIFY_SOCKET in the runtime's
/// environment the container's process finds a socket at the path its own
/// NOTIFY_SOCKET names; `start` returns only once the process said READY=1
/// there, and the host's socket gets READY=1 and MAINPID= the container's
/// pid (nothing the process said before READY). The same under runc.
#[test]
fn start_relays_ready_from_the_container_to_notify_socket_like_runc() {
    let test = "start_relays_ready_to_notify_socket";
    let Some(probe) = needs_notify_probe(test) else {
        return;
    };
    compare_scenario_with_runc(test, |env, bin| {
        let ct = notify_probe_ct(
            env,
            test,
            bin,
            &probe,
            "n",
            "sleep 1; /probe/sd-notify STATUS=warming-up; sleep 1; \
             /probe/sd-notify READY=1 STATUS=serving; exec sleep 1000",
        );
        let short_root = ct.state_root.clone();
        let sock_path = ct.bundle.join("host-notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
        let envs = [("NOTIFY_SOCKET".to_string(), sock_path.display().to_string())];
        let root = ct.state_root.display().to_string();
        let bundle = ct.bundle.display().to_string();
        let run = |args: &[&str]| {
            let mut full = vec!["--root".to_string(), root.clone()];
            full.extend(args.iter().map(|a| a.to_string()));
            run_command_env(&ct.bin, &full, &envs, &ct.bundle, command_timeout())
        };
        run(&["create", "--bundle", &bundle, &ct.id]).assert_ok();
        let t = std::time::Instant::now();
        let start = run(&["start", &ct.id]);
        let took = t.elapsed();
        start.assert_ok();
        let pid = ct.init_pid();
        let got = datagrams(&sock, Duration::from_millis(500), None);
        // runc's path for it (exec's environment does not name it).
        let inside = ct.exec(
            &[],
            &["sh", "-c", "ls -l /run/notify/notify.sock | cut -c1"],
        );
        let mut seen = format!(
            "start waited for READY=1: {}\nstatus after start: {:?}\n",
            took >= Duration::from_millis(1800),
            ct.status()
        );
        let mut lines: Vec<String> = got
            .iter()
            .flat_map(|(_, m)| m.lines().map(str::to_string))
            .map(|l| {
                if l == format!("MAINPID={pid}") {
                    "MAINPID=<the container's pid>".to_string()
                } else {
                    l
                }
            })
            .collect();
        lines.sort();
        seen.push_str(&format!("the host's socket got: {lines:?}\n"));
        seen.push_str(&format!(
            "exec finds a socket at /run/notify/notify.sock: {:?} (exit {})\n",
            inside.stdout.trim(),
            inside.code
        ));
        ct.delete_force().assert_ok();
        let _ = fs::remove_dir_all(&short_root);
        seen
    })
    .map(|seen| {
        assert!(seen.contains("start waited for READY=1: true"), "{seen}");
        assert!(
            seen.contains(r#"the host's socket got: ["MAINPID=<the container's pid>", "READY=1"]"#),
            "{seen}"
        );
        assert!(seen.contains(r#"notify.sock: "s" (exit 0)"#), "{seen}");
    });
}

/// `run -d` with a NOTIFY_SOCKET where nobody listens: the container's
/// READY=1 cannot be passed on, and the run goes on as runc's does (exit
/// 0, the container running), rather than failing with the container
/// left running behind a failed run.
#[test]
fn run_goes_on_when_ready_cannot_be_relayed_as_runc() {
    let test = "run_goes_on_when_ready_cannot_be_relayed_as_runc";
    let Some(probe) = needs_notify_probe(test) else {
        return;
    };
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let ct = notify_probe_ct(
            env,
            test,
            bin,
            &probe,
            "r",
            "/probe/sd-notify READY=1; exec sleep 1000",
        );
        let short_root = ct.state_root.clone();
        // A path where no socket is: the relay's send fails.
        let nobody = ct.bundle.join("nobody-listens.sock");
        let envs = [("NOTIFY_SOCKET".to_string(), nobody.display().to_string())];
        let args: Vec<String> = [
            "--root",
            &ct.state_root.display().to_string(),
            "run",
            "-d",
            "--bundle",
            &ct.bundle.display().to_string(),
            &ct.id,
        ]
        .map(String::from)
        .into();
        let run = run_command_env(&ct.bin, &args, &envs, &ct.bundle, command_timeout());
        let status = ct.status();
        let delete = ct.delete_force();
        let seen = format!(
            "run exit code: {}\nstate after run: {status:?}\ndelete -f exit code: {}\n\
             after delete: state dirs {:?}, cgroup left {}\n",
            run.code,
            delete.code,
            ct.state_root_entries(),
            !ct.cgroup_dirs().is_empty()
        );
        let _ = fs::remove_dir_all(&short_root);
        seen
    });
    if let Some(seen) = seen {
        assert_eq!(
            seen,
            "run exit code: 0\nstate after run: Some(\"running\")\ndelete -f exit code: 0\n\
             after delete: state dirs [], cgroup left false\n"
        );
    }
}

/// With NOTIFY_SOCKET and a --root so long that the container's notify
/// socket (`<root>/<id>/notify/notify.sock`) does not fit in a unix
/// socket's 107 bytes, `start` fails with one line that says to shorten
/// --root, and the container stays created for a delete.
#[test]
fn start_with_a_root_too_long_for_the_notify_socket_says_to_shorten_it() {
    let test = "start_with_a_root_too_long_for_the_notify_socket";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let mut ct = Ct::new(&env, test);
    let _ = fs::remove_dir_all(&ct.state_root);
    // One directory, which the Ct removes when it drops.
    ct.state_root = format!("{}-{}", ct.state_root.display(), "x".repeat(100)).into();
    ct.sh(LONG_RUNNING);
    ct.save_config();
    let envs = [(
        "NOTIFY_SOCKET".to_string(),
        ct.bundle.join("host-notify.sock").display().to_string(),
    )];
    let run = |args: &[&str]| {
        let mut full = vec!["--root".to_string(), ct.state_root.display().to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        run_command_env(&ct.bin, &full, &envs, &ct.bundle, command_timeout())
    };
    let bundle = ct.bundle.display().to_string();
    run(&["create", "--bundle", &bundle, &ct.id]).assert_ok();
    let start = run(&["start", &ct.id]);
    assert_eq!(start.code, 1, "{start}");
    let line = one_error_line(&start);
    assert!(
        line.contains("shorter --root"),
        "the error does not say what to do:\n{start}"
    );
    assert_eq!(ct.status().as_deref(), Some("created"), "{start}");
    ct.delete_force().assert_ok();
}

/// A create killed before its first save leaves `<root>/<id>` without
/// state.json: the id then "does not exist", and a create with it fails.
/// `delete` removes such a directory (saying the container does not exist,
/// or silently with --force), so the id can be used again, as with runc.
#[test]
fn delete_removes_what_an_aborted_create_left_as_runc() {
    let test = "delete_removes_what_an_aborted_create_left_as_runc";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    let Some(runc) = env.runc.clone() else { return };
    for bin in [&runc, &env.bin] {
        for force in [false, true] {
            let mut ct = Ct::with_bin(&env, test, bin);
            ct.sh(LONG_RUNNING);
            let stale = ct.state_root.join(&ct.id);
            fs::create_dir_all(&stale).expect("mkdir a stale state dir");
            assert_ne!(
                ct.create().code,
                0,
                "create over a stale dir under {}",
                bin.display()
            );
            let out = if force {
                ct.delete_force()
            } else {
                ct.delete()
            };
            if force {
                out.assert_ok();
            } else {
                assert_eq!(out.code, 1, "under {}:\n{out}", bin.display());
                assert!(out.stderr.contains("does not exist"), "{out}");
            }
            assert!(
                !stale.exists(),
                "{} left {}",
                bin.display(),
                stale.display()
            );
            ct.create().assert_ok();
            ct.delete_force().assert_ok();
        }
    }
}

/// A cgroupsPath whose cgroup already holds processes (another container's,
/// a slice's) is refused before anything is made, and its processes are
/// left alone: the clean-up of a failed create, or a delete, would
/// otherwise kill them. STRICTER THAN RUNC: runc 1.1.5 accepts such a
/// cgroup (its delete then kills the strangers too).
#[test]
fn create_refuses_a_cgroup_that_holds_processes() {
    let test = "create_refuses_a_cgroup_that_holds_processes";
    let Some(env) = prerequisites(test) else {
        return;
    };
    for bin in [&env.bin] {
        let mut ct = Ct::with_bin(&env, test, bin);
        ct.sh(LONG_RUNNING);
        // A stranger in the container's cgroup: a sleep of this test's own.
        let mut stranger = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("spawn sleep");
        let rel = ct.cgroups_path.trim_start_matches('/').to_string();
        // Not cpuset v1: a new cpuset cgroup takes no task until its cpus
        // and mems are set.
        for h in cgroup_hierarchies()
            .into_iter()
            .filter(|h| !h.ends_with("cpuset"))
        {
            let dir = h.join(&rel);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            fs::write(dir.join("cgroup.procs"), stranger.id().to_string())
                .unwrap_or_else(|e| panic!("join {}: {e}", dir.display()));
        }
        let out = ct.create();
        let alive = stranger.try_wait().expect("try_wait").is_none();
        let _ = stranger.kill();
        let _ = stranger.wait();
        assert_eq!(out.code, 1, "under {}:\n{out}", bin.display());
        assert!(
            out.stderr.contains("cgroup is not empty"),
            "under {}:\n{out}",
            bin.display()
        );
        assert!(alive, "{} killed the cgroup's process", bin.display());
        assert!(
            !ct.state_root.join(&ct.id).exists(),
            "{} left its state",
            bin.display()
        );
    }
}

/// A created container can be paused: its state says paused (not created),
/// start refuses it at once instead of waiting on an init that cannot
/// move, and after resume it starts, as under runc.
#[test]
fn a_paused_created_container_is_paused_until_resumed_as_runc() {
    let test = "a_paused_created_container_is_paused_until_resumed_as_runc";
    compare_scenario_with_runc(test, |env, bin| {
        let mut ct = Ct::with_bin(env, test, bin);
        ct.sh(LONG_RUNNING);
        ct.create().assert_ok();
        ct.cmd(&["pause", &ct.id]).assert_ok();
        let paused = ct.state_json().map(|s| s["status"].clone());
        let refused = ct.cmd_timeout(&["start", &ct.id], Duration::from_secs(10));
        ct.cmd(&["resume", &ct.id]).assert_ok();
        let resumed = ct.state_json().map(|s| s["status"].clone());
        ct.start().assert_ok();
        let started = ct.state_json().map(|s| s["status"].clone());
        ct.delete_force().assert_ok();
        format!(
            "paused: {paused:?}\nstart: exit {} ({})\nresumed: {resumed:?}\nstarted: {started:?}\n",
            refused.code,
            refused.stderr.contains("paused")
        )
    });
}
