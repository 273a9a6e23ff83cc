//! podman drives cove-oci unmodified, as a user drives it: every command
//! and option below is played with `podman --runtime <runc>` first, then
//! with `podman --runtime <cove-oci>` (or the same runtime named in a
//! containers.conf), on the same machine, and what podman and the
//! container showed must be the same; then cove-oci's observation is
//! checked against what it should be, so that a step broken under both
//! runtimes fails too. One test per feature group, so that a failure names
//! what broke.
//!
//! podman's own world for each test (storage, mount namespace, cgroup
//! parent under /cove-test): tests/support/podman.rs. The VM lane (pure
//! cgroup v2, software emulation) runs the limits test only; the others
//! print a SKIP line there (see `Podman::new_host_lane`).

#[path = "support/podman.rs"]
mod podman;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use podman::*;
use support::*;

/// `podman logs NAME` once it contains `needle` (output of a detached
/// container arrives a moment after the command that caused it).
fn logs_with(podman: &Podman, runtime: &Runtime, name: &str, needle: &str, times: usize) -> String {
    let mut logs = String::new();
    wait_until(Duration::from_secs(10), || {
        logs = podman.podman_with(runtime, &["logs", name]).stdout;
        logs.matches(needle).count() >= times
    });
    logs
}

fn inspect(podman: &Podman, runtime: &Runtime, name: &str, format: &str) -> String {
    let out = podman.podman_with(runtime, &["inspect", "--format", format, name]);
    out.assert_ok();
    out.stdout.trim().to_string()
}

fn containers_left(podman: &Podman, runtime: &Runtime) -> usize {
    podman
        .podman_with(runtime, &["ps", "--all", "--quiet"])
        .stdout
        .lines()
        .count()
}

/// The freezer state of the cgroup process `pid` is in, as the host sees
/// it: v1's freezer.state, or v2's cgroup.freeze as FROZEN/THAWED.
fn freezer_state(pid: &str) -> String {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "freezer") {
            let file = format!("/sys/fs/cgroup/freezer{path}/freezer.state");
            return fs::read_to_string(&file)
                .unwrap_or_else(|e| format!("({file}: {e})"))
                .trim()
                .to_string();
        }
        if controllers.is_empty() && is_pure_cgroup_v2() {
            let file = format!("/sys/fs/cgroup{path}/cgroup.freeze");
            return match fs::read_to_string(&file).map(|s| s.trim().to_string()) {
                Ok(s) if s == "1" => "FROZEN".into(),
                Ok(_) => "THAWED".into(),
                Err(e) => format!("({file}: {e})"),
            };
        }
    }
    format!("(no freezer cgroup for pid {pid})")
}

/// Whether every cgroup of `pid` is the cgroup parent or below it, or the
/// root (conmon's place in the controller-less v2 tree of a hybrid host),
/// and none is the machine supervisor's.
fn cgroups_kept_under(pid: &str, parent: &str) -> Result<(), String> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    for line in cgroups.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        let under = path == parent || path.starts_with(&format!("{parent}/"));
        if path.contains("process_api") || !(under || path == "/") {
            return Err(format!("pid {pid} is in {line:?}:\n{cgroups}"));
        }
    }
    Ok(())
}

#[test]
fn podman_run_rm_exit_code_env_user_workdir_read_only_as_runc() {
    let test = "podman_run_rm_exit_code_env_user_workdir_read_only_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    let ours = podman.compare(test, |label, runtime| {
        let rt = Runtime::Path(runtime.to_path_buf());
        let mut seen = String::new();
        let out = podman.run_with(
            &rt,
            &["--rm"],
            &[],
            &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
        );
        seen.push_str(&format!(
            "run: {}stderr has it: {}\nexit code: {}\n",
            out.stdout,
            out.stderr.contains("to-stderr"),
            out.code
        ));
        let out = podman.run_with(
            &rt,
            &["--rm"],
            &[
                "--user",
                "1000:1000",
                "--workdir",
                "/etc",
                "--env",
                "FOO=bar baz",
                "--env",
                "PATH=/bin:/usr/bin",
            ],
            &[
                "sh",
                "-c",
                "id; pwd; echo \"FOO=$FOO\"; echo \"PATH=$PATH\"",
            ],
        );
        seen.push_str(&format!("user/workdir/env:\n{}", observed(&out)));
        let out = podman.run_with(
            &rt,
            &["--rm"],
            &["--read-only"],
            &[
                "sh",
                "-c",
                "touch /x 2>&1; echo \"touch / $?\"; touch /tmp/x && echo tmp writable; \
                 grep ' / ' /proc/mounts | grep -o ' ro[ ,]'",
            ],
        );
        seen.push_str(&format!("read-only:\n{}", observed(&out)));
        // Without --rm the container stays, exited, with its code.
        let name = format!("{}-{label}", unique_name("keep"));
        let out = podman.run_with(&rt, &["--name", &name], &[], &["sh", "-c", "exit 5"]);
        seen.push_str(&format!("kept run exit code: {}\n", out.code));
        seen.push_str(&format!(
            "kept: {}\n",
            inspect(&podman, &rt, &name, "{{.State.Status}} {{.State.ExitCode}}")
        ));
        podman.podman_with(&rt, &["rm", &name]).assert_ok();
        seen.push_str(&format!(
            "containers left: {}\n",
            containers_left(&podman, &rt)
        ));
        seen
    });
    assert_eq!(
        ours,
        "run: to-stdout\nstderr has it: true\nexit code: 3\n\
         user/workdir/env:\nuid=1000(user) gid=1000(user) groups=1000(user)\n/etc\n\
         FOO=bar baz\nPATH=/bin:/usr/bin\nexit code: 0\n\
         read-only:\ntouch: /x: Read-only file system\ntouch / 1\ntmp writable\n ro,\nexit code: 0\n\
         kept run exit code: 5\nkept: exited 5\ncontainers left: 0\n"
    );
    let left = podman.container_cgroups_left();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}

#[test]
fn podman_tty_run_and_exec_through_the_console_socket_as_runc() {
    let test = "podman_tty_run_and_exec_through_the_console_socket_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    let script = "tty; test -t 0 && echo stdin is a tty; test -t 1 && echo stdout is a tty; \
                  echo TERM=$TERM";
    let ours = podman.compare(test, |label, runtime| {
        let rt = Runtime::Path(runtime.to_path_buf());
        let mut seen = String::new();
        let out = podman.run_with(&rt, &["--rm", "-t"], &[], &["sh", "-c", script]);
        seen.push_str(&format!("run -t:\n{}", observed(&out)));
        let name = format!("{}-{label}", unique_name("tty"));
        podman
            .run_with(&rt, &["-d", "--name", &name], &[], &["sleep", "1000"])
            .assert_ok();
        let out = podman.podman_with(&rt, &["exec", "-t", &name, "sh", "-c", script]);
        seen.push_str(&format!("exec -t:\n{}", observed(&out)));
        let out = podman.podman_with(
            &rt,
            &[
                "exec",
                &name,
                "sh",
                "-c",
                "test -t 1 || echo no tty without -t",
            ],
        );
        seen.push_str(&format!("exec:\n{}", observed(&out)));
        podman
            .podman_with(&rt, &["rm", "--force", "--time", "0", &name])
            .assert_ok();
        seen
    });
    // A terminal's line discipline turns \n into \r\n: proof that the
    // output went through the pty the runtime handed to conmon.
    let tty_block =
        "/dev/pts/0\r\nstdin is a tty\r\nstdout is a tty\r\nTERM=xterm\r\nexit code: 0\n";
    assert_eq!(
        ours,
        format!(
            "run -t:\n{tty_block}exec -t:\n{tty_block}exec:\nno tty without -t\nexit code: 0\n"
        ),
    );
}

#[test]
fn podman_detached_logs_top_stats_exec_kill_pause_restart_stop_as_runc() {
    let test = "podman_detached_logs_top_stats_exec_kill_pause_restart_stop_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    // sh as PID 1 only gets the signals it handles; `wait` returns when a
    // trapped signal arrives, the loop waits again.
    let main = "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; \
                echo started; sleep 1000 & while :; do wait; done";
    let parent = podman.cgroup.path.clone();
    let ours = podman.compare(test, |label, runtime| {
        let rt = Runtime::Path(runtime.to_path_buf());
        let name = format!("{}-{label}", unique_name("det"));
        let mut seen = String::new();
        let run = podman.run_with(
            &rt,
            &["-d", "--name", &name],
            &["--memory", "64m"],
            &["sh", "-c", main],
        );
        run.assert_ok();
        seen.push_str(&format!(
            "logs: {}",
            logs_with(&podman, &rt, &name, "started", 1)
        ));
        seen.push_str(&format!(
            "inspect: {}\n",
            inspect(
                &podman,
                &rt,
                &name,
                "{{.State.Status}} {{.State.Running}} {{.HostConfig.Memory}} {{.Config.Cmd}}"
            )
        ));
        let pid = inspect(&podman, &rt, &name, "{{.State.Pid}}");
        let conmon = inspect(&podman, &rt, &name, "{{.State.ConmonPid}}");
        for (who, pid) in [("container", &pid), ("conmon", &conmon)] {
            let kept = cgroups_kept_under(pid, &parent);
            assert!(kept.is_ok(), "{label}: {who}: {}", kept.unwrap_err());
        }
        // runc's own setup takes pids in the container's namespace, so
        // only PID 1 is the same number under both.
        let top = podman.podman_with(&rt, &["top", &name, "pid", "user", "args"]);
        let top_lines: String = top
            .stdout
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((pid, rest)) if pid != "1" && pid.parse::<u32>().is_ok() => {
                    format!("N{}{rest}\n", " ".repeat(pid.len()))
                }
                _ => format!("{l}\n"),
            })
            .collect();
        seen.push_str(&format!("top:\n{top_lines}exit code: {}\n", top.code));
        let stats = podman.podman_with(
            &rt,
            &[
                "stats",
                "--no-stream",
                "--format",
                "{{.PIDs}} {{.MemUsage}}",
                &name,
            ],
        );
        // Memory in use differs from run to run; the limit does not.
        let stats_line = stats.stdout.trim();
        let (pids, usage) = stats_line.split_once(' ').unwrap_or((stats_line, ""));
        let limit = usage.split_once(" / ").map_or("", |(_, l)| l);
        seen.push_str(&format!(
            "stats: pids {pids}, limit {limit}, exit code {}\n",
            stats.code
        ));
        let exec = podman.podman_with(
            &rt,
            &[
                "exec",
                &name,
                "sh",
                "-c",
                "cat /proc/1/comm; echo exec ok; exit 4",
            ],
        );
        seen.push_str(&format!("exec:\n{}", observed(&exec)));
        // `podman update` hands the runtime new resources (`update
        // --resources FILE`); the container reads them from its cgroup.
        let update = podman.podman_with(&rt, &["update", "--memory", "32m", "--cpus", "0.25", &name]);
        let limits = podman.podman_with(
            &rt,
            &[
                "exec",
                &name,
                "sh",
                "-c",
                "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then \
                 cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; else \
                 cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                 echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi",
            ],
        );
        seen.push_str(&format!("update: {}, then {}", update.code, observed(&limits)));
        let kill = podman.podman_with(&rt, &["kill", "--signal", "USR1", &name]);
        seen.push_str(&format!("kill USR1: {}\n", kill.code));
        let logs = logs_with(&podman, &rt, &name, "got-usr1", 1);
        seen.push_str(&format!("got usr1: {}\n", logs.contains("got-usr1")));
        podman.podman_with(&rt, &["pause", &name]).assert_ok();
        seen.push_str(&format!(
            "paused: {} {}\n",
            inspect(&podman, &rt, &name, "{{.State.Status}}"),
            freezer_state(&pid)
        ));
        podman.podman_with(&rt, &["unpause", &name]).assert_ok();
        seen.push_str(&format!(
            "unpaused: {} {}\n",
            inspect(&podman, &rt, &name, "{{.State.Status}}"),
            freezer_state(&pid)
        ));
        let restart = podman.podman_with(&rt, &["restart", "--time", "10", &name]);
        seen.push_str(&format!("restart: {}\n", restart.code));
        let logs = logs_with(&podman, &rt, &name, "started", 2);
        let new_pid = inspect(&podman, &rt, &name, "{{.State.Pid}}");
        seen.push_str(&format!(
            "after restart: {}, new pid {}, started {} times, got-term {} times\n",
            inspect(&podman, &rt, &name, "{{.State.Status}}"),
            new_pid != pid && new_pid != "0",
            logs.matches("started").count(),
            logs.matches("got-term").count()
        ));
        let stop = podman.podman_with(&rt, &["stop", "--time", "10", &name]);
        seen.push_str(&format!(
            "stop: {} -> {}\n",
            stop.code,
            inspect(&podman, &rt, &name, "{{.State.Status}} {{.State.ExitCode}}")
        ));
        podman.podman_with(&rt, &["start", &name]).assert_ok();
        logs_with(&podman, &rt, &name, "started", 3);
        let kill = podman.podman_with(&rt, &["kill", &name]);
        let wait = podman.podman_with(&rt, &["wait", &name]);
        seen.push_str(&format!("kill: {}, wait: {}", kill.code, observed(&wait)));
        seen.push_str(&format!(
            "killed: {}\n",
            inspect(&podman, &rt, &name, "{{.State.Status}} {{.State.ExitCode}}")
        ));
        let rm = podman.podman_with(&rt, &["rm", &name]);
        seen.push_str(&format!(
            "rm: {}, containers left: {}\n",
            rm.code,
            containers_left(&podman, &rt)
        ));
        seen
    });
    assert_eq!(
        ours,
        "logs: started\n\
         inspect: running true 67108864 [sh -c trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; echo started; sleep 1000 & while :; do wait; done]\n\
         top:\nPID         USER        COMMAND\n\
         1           root        sh -c trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; echo started; sleep 1000 & while :; do wait; done \n\
         N           root        sleep 1000 \nexit code: 0\n\
         stats: pids 2, limit 67.11MB, exit code 0\n\
         exec:\nsh\nexec ok\nexit code: 4\n\
         update: 0, then 33554432\n25000 100000\nexit code: 0\n\
         kill USR1: 0\ngot usr1: true\n\
         paused: paused FROZEN\nunpaused: running THAWED\n\
         restart: 0\n\
         after restart: running, new pid true, started 2 times, got-term 1 times\n\
         stop: 0 -> exited 7\n\
         kill: 0, wait: 137\nexit code: 0\n\
         killed: exited 137\n\
         rm: 0, containers left: 0\n"
    );
    let left = podman.container_cgroups_left();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}

#[test]
fn podman_memory_cpus_pids_limits_are_seen_and_enforced_inside_as_runc() {
    let test = "podman_memory_cpus_pids_limits_are_seen_and_enforced_inside_as_runc";
    let Some(podman) = Podman::new(test) else {
        return;
    };
    // The limits as the container reads them from its own cgroup files;
    // 60 background sleeps against a limit of 50 tasks, started by a
    // subshell (a failed fork ends busybox sh): sh, the subshell and 48
    // sleeps make 50, then the subshell exits;
    // a 100 MiB buffer against 64 MiB of memory (the OOM killer ends dd).
    let script = r#"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo memory $(cat /sys/fs/cgroup/memory.max)
    echo cpu $(cat /sys/fs/cgroup/cpu.max)
    echo pids $(cat /sys/fs/cgroup/pids.max)
    current=/sys/fs/cgroup/pids.current
else
    echo memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
    echo cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
    echo pids $(cat /sys/fs/cgroup/pids/pids.max)
    current=/sys/fs/cgroup/pids/pids.current
fi
dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null
echo dd exit $?
i=0
(while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null
read n < $current
echo tasks $n
"#;
    let ours = podman.compare(test, |_, runtime| {
        let out = podman.run_rm(
            runtime,
            &["--memory", "64m", "--cpus", "0.5", "--pids-limit", "50"],
            &["sh", "-c", script],
        );
        observed(&out)
    });
    // 0.5 CPU: 50 ms in every 100 ms (cpu.max and v1's quota/period alike).
    assert_eq!(
        ours,
        "memory 67108864\ncpu 50000 100000\npids 50\ndd exit 137\ntasks 49\nexit code: 0\n"
    );
}

#[test]
fn podman_cap_add_cap_drop_and_seccomp_profiles_as_runc() {
    let test = "podman_cap_add_cap_drop_and_seccomp_profiles_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    // A profile that allows everything but mkdir/mkdirat (EPERM) and
    // makes chmod fail with ENOSYS.
    let profile = podman.tmp.join("deny-mkdir.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [
  {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
  {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
 ]}"#,
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", profile.display()));
    let seccomp = format!("seccomp={}", profile.display());
    let caps = "grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let ours = podman.compare(test, |_, runtime| {
        let mut seen = String::new();
        let mut run = |what: &str, extra: &[&str], script: &str| {
            let out = podman.run_rm(runtime, extra, &["sh", "-c", script]);
            seen.push_str(&format!("{what}:\n{}", observed(&out)));
        };
        run("default", &[], caps);
        run(
            "drop all, add NET_ADMIN",
            &["--cap-drop", "all", "--cap-add", "NET_ADMIN"],
            caps,
        );
        run("add SYS_ADMIN", &["--cap-add", "SYS_ADMIN"], caps);
        run(
            "drop CHOWN",
            &["--cap-drop", "CHOWN"],
            "chown 1000 /tmp 2>&1; echo chown $?; touch /tmp/f; chmod 600 /tmp/f && echo chmod ok",
        );
        run(
            "profile",
            &["--security-opt", &seccomp],
            "grep '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1; echo mkdir $?; \
             touch /tmp/f; chmod 600 /tmp/f 2>&1; echo chmod $?; echo still alive",
        );
        run(
            "unconfined",
            &["--security-opt", "seccomp=unconfined"],
            "grep '^Seccomp:' /proc/self/status; mkdir /tmp/d && echo mkdir ok",
        );
        seen
    });
    assert!(
        ours.contains("drop all, add NET_ADMIN:\nCapEff:\t0000000000001000\nCapBnd:\t0000000000001000\nexit code: 0\n"),
        "{ours}"
    );
    // podman's default set (containers.conf) is 0x800405fb; SYS_ADMIN is bit 21.
    assert!(
        ours.contains("default:\nCapEff:\t00000000800405fb\n"),
        "{ours}"
    );
    assert!(
        ours.contains("add SYS_ADMIN:\nCapEff:\t00000000802405fb\n"),
        "{ours}"
    );
    assert!(
        ours.contains(
            "drop CHOWN:\nchown: /tmp: Operation not permitted\nchown 1\nchmod ok\nexit code: 0\n"
        ),
        "{ours}"
    );
    assert!(
        ours.contains(
            "profile:\nSeccomp:\t2\nmkdir: can't create directory '/tmp/d': Operation not permitted\n\
             mkdir 1\nchmod: /tmp/f: Function not implemented\nchmod 1\nstill alive\nexit code: 0\n"
        ),
        "{ours}"
    );
    assert!(
        ours.contains("unconfined:\nSeccomp:\t0\nmkdir ok\nexit code: 0\n"),
        "{ours}"
    );
}

#[test]
fn podman_healthcheck_run_as_runc() {
    let test = "podman_healthcheck_run_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    let ours = podman.compare(test, |label, runtime| {
        let rt = Runtime::Path(runtime.to_path_buf());
        let name = format!("{}-{label}", unique_name("hc"));
        let mut seen = String::new();
        // No interval: no systemd timer (there is no systemd here); the
        // checks run when `podman healthcheck run` asks.
        podman
            .run_with(
                &rt,
                &["-d", "--name", &name],
                &[
                    "--health-cmd",
                    "test -f /tmp/ok",
                    "--health-interval",
                    "disable",
                    "--health-retries",
                    "1",
                ],
                &["sleep", "1000"],
            )
            .assert_ok();
        let check = podman.podman_with(&rt, &["healthcheck", "run", &name]);
        seen.push_str(&format!("before: {}", observed(&check)));
        seen.push_str(&format!(
            "status: {}\n",
            inspect(&podman, &rt, &name, "{{.State.Health.Status}}")
        ));
        podman
            .podman_with(&rt, &["exec", &name, "touch", "/tmp/ok"])
            .assert_ok();
        let check = podman.podman_with(&rt, &["healthcheck", "run", &name]);
        seen.push_str(&format!("after: {}", observed(&check)));
        seen.push_str(&format!(
            "status: {}\n",
            inspect(&podman, &rt, &name, "{{.State.Health.Status}}")
        ));
        podman
            .podman_with(&rt, &["rm", "--force", "--time", "0", &name])
            .assert_ok();
        seen
    });
    assert_eq!(
        ours,
        "before: unhealthy\nexit code: 1\nstatus: unhealthy\n\
         after: exit code: 0\nstatus: healthy\n"
    );
}

#[test]
fn podman_with_cove_oci_named_in_containers_conf_as_runc() {
    let test = "podman_with_cove_oci_named_in_containers_conf_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    let confs = [
        ("runc", podman.write_containers_conf("runc", &podman.runc)),
        (
            "cove",
            podman.write_containers_conf("cove", &podman.cove_oci),
        ),
    ];
    let scenario = |name: &str, conf: &Path| -> String {
        let rt = Runtime::Conf(conf.to_path_buf());
        let mut seen = String::new();
        let info = podman.podman_with(&rt, &["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
        seen.push_str(&format!(
            "configured runtime in use: {}\n",
            info.stdout.trim() == name
        ));
        let out = podman.run_with(&rt, &["--rm"], &[], &["sh", "-c", "echo hello; exit 2"]);
        seen.push_str(&format!("run: {}", observed(&out)));
        let ct = format!("{}-{name}", unique_name("conf"));
        podman
            .run_with(
                &rt,
                &["-d", "--name", &ct],
                &[],
                &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
            )
            .assert_ok();
        seen.push_str(&format!(
            "its runtime: {}\n",
            inspect(&podman, &rt, &ct, "{{.OCIRuntime}}") == name
        ));
        let exec = podman.podman_with(&rt, &["exec", &ct, "cat", "/proc/1/comm"]);
        seen.push_str(&format!("exec: {}", observed(&exec)));
        let stop = podman.podman_with(&rt, &["stop", "--time", "10", &ct]);
        seen.push_str(&format!(
            "stop: {} -> {}\n",
            stop.code,
            inspect(&podman, &rt, &ct, "{{.State.Status}} {{.State.ExitCode}}")
        ));
        podman.podman_with(&rt, &["rm", &ct]).assert_ok();
        seen
    };
    let seen: Vec<(String, String)> = confs
        .iter()
        .map(|(name, conf)| (name.to_string(), scenario(name, conf)))
        .collect();
    let ours = same_under_both(test, &seen);
    assert_eq!(
        ours,
        "configured runtime in use: true\nrun: hello\nexit code: 2\n\
         its runtime: true\nexec: sh\nexit code: 0\nstop: 0 -> exited 7\n"
    );
}

#[test]
fn podman_failed_start_shows_the_runtimes_error_as_runc() {
    let test = "podman_failed_start_shows_the_runtimes_error_as_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
        return;
    };
    // Named in a containers.conf that lists them as writing runc's JSON
    // log: podman passes `--log FILE --log-format json` and puts the
    // runtime's message into its own. With `--runtime PATH` alone podman
    // knows that only of runc and crun: cove-oci's message then comes
    // from its stderr (logrus text), and podman still shows it.
    let cases = [
        (
            "/nonexistent",
            "exec: \"/nonexistent\": stat /nonexistent: no such file or directory",
            "OCI runtime attempted to invoke a command that was not found",
        ),
        (
            "/etc/passwd",
            "exec: \"/etc/passwd\": permission denied",
            "OCI permission denied",
        ),
    ];
    let confs = [
        ("runc", podman.write_containers_conf("runc", &podman.runc)),
        (
            "cove",
            podman.write_containers_conf("cove", &podman.cove_oci),
        ),
    ];
    let runtimes = podman.runtimes();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, (label, conf)) in confs.iter().enumerate() {
        let conf_rt = Runtime::Conf(conf.clone());
        let path_rt = Runtime::Path(runtimes[i].1.clone());
        let mut text = String::new();
        for (arg0, words, podmans) in cases {
            let out = podman.run_with(&conf_rt, &["--rm"], &[], &[arg0]);
            let message = out.stderr.trim();
            text.push_str(&format!(
                "conf {arg0}: exit code {}, runtime's words: {}, podman's words: {}, \
                 from the JSON log: {}, one line: {}\n",
                out.code,
                message.contains(words),
                message.contains(podmans),
                !message.contains("level=error"),
                message.lines().count() == 1
            ));
            let out = podman.run_with(&path_rt, &["--rm"], &[], &[arg0]);
            let unquoted = out.stderr.replace("\\\"", "\"");
            text.push_str(&format!(
                "--runtime {arg0}: exit code {}, runtime's words: {}, podman's words: {}\n",
                out.code,
                unquoted.contains(words),
                out.stderr.contains(podmans)
            ));
        }
        // exec of a missing executable in a running container.
        let ct = format!("{}-{label}", unique_name("fail"));
        podman
            .run_with(&conf_rt, &["-d", "--name", &ct], &[], &["sleep", "1000"])
            .assert_ok();
        let out = podman.podman_with(&conf_rt, &["exec", &ct, "/nonexistent"]);
        text.push_str(&format!(
            "exec /nonexistent: exit code {}, runtime's words: {}\n",
            out.code,
            out.stderr.contains(cases[0].1)
        ));
        podman
            .podman_with(&conf_rt, &["rm", "--force", "--time", "0", &ct])
            .assert_ok();
        text.push_str(&format!(
            "containers left: {}\n",
            containers_left(&podman, &conf_rt)
        ));
        seen.push((label.to_string(), text));
    }
    let ours = same_under_both(test, &seen);
    assert_eq!(
        ours,
        "conf /nonexistent: exit code 127, runtime's words: true, podman's words: true, from the JSON log: true, one line: true\n\
         --runtime /nonexistent: exit code 127, runtime's words: true, podman's words: true\n\
         conf /etc/passwd: exit code 126, runtime's words: true, podman's words: true, from the JSON log: true, one line: true\n\
         --runtime /etc/passwd: exit code 126, runtime's words: true, podman's words: true\n\
         exec /nonexistent: exit code 127, runtime's words: true\n\
         containers left: 0\n"
    );
    let left = podman.container_cgroups_left();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}
