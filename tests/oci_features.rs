//! runtime-spec features one by one, through the runc command line: what a
//! user sees inside the container and on the host. Where runc 1.1.5 has the
//! feature, the same bundle runs under runc first and the runtime under
//! test must show the same; features runc 1.1.5 lacks (idmapped mounts,
//! time namespaces, ioPriority) are checked against the kernel's view.

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// pid 1 ignores signals it has no handler for; the trap makes TERM work.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

/// A detached container running [`LONG_RUNNING`], prepared by `prepare`.
fn running(env: &Env, test: &str, bin: &Path, prepare: impl FnOnce(&mut Ct)) -> Ct {
    let mut ct = Ct::with_bin(env, test, bin);
    ct.sh(LONG_RUNNING);
    prepare(&mut ct);
    ct.run_detached().assert_ok();
    assert!(
        ct.wait_status("running", STOP_TIMEOUT),
        "{:?}",
        ct.state_json()
    );
    ct
}

/// `stdout` plus the exit code, for comparing exec results.
fn printed(out: &Out) -> String {
    observed(out)
}

fn no_change(_: &mut Ct) {}

// ---------------------------------------------------------------- --preserve-fds, --pid-file

/// A file holding `text`, opened read-only (close-on-exec, as std opens it).
fn open_file_with(dir: &TempDir, name: &str, text: &str) -> fs::File {
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The fd numbers a process has open, read from the host (a shell inside
/// would add fds of its own: glob directories, pipes, saved stdio).
fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

#[test]
fn preserve_fds_1_passes_fd_3_and_closes_fd_4() {
    let test = "preserve_fds_1_passes_fd_3_and_closes_fd_4";
    let dir = TempDir::new(test);
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let mut ct = Ct::with_bin(env, test, bin);
        ct.args(&["sleep", "100"]);
        ct.save_config();
        let third = open_file_with(&dir, "third", "content of the preserved fd\n");
        let fourth = open_file_with(&dir, "fourth", "must not be seen\n");
        let bundle = ct.bundle.display().to_string();
        ct.cmd_with_fds(
            &[
                "run",
                "-d",
                "--preserve-fds",
                "1",
                "--bundle",
                &bundle,
                &ct.id,
            ],
            &[third.as_raw_fd(), fourth.as_raw_fd()],
        )
        .assert_ok();
        let pid = ct.init_pid();
        // runc's `run -d` may return before its init has exec'd sleep
        // (runc:[2:INIT] still holds fds of its own): look after the exec.
        let comm = || fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        wait_until(Duration::from_secs(5), || comm().trim() == "sleep");
        let fd3 = fs::read_link(format!("/proc/{pid}/fd/3")).ok();
        format!(
            "open fds of the container process: {:?}\nfd 3 is the preserved file: {}\n",
            open_fds(pid),
            fd3 == Some(dir.join("third"))
        )
    });
    if let Some(seen) = seen {
        assert_eq!(
            seen,
            "open fds of the container process: [0, 1, 2, 3]\nfd 3 is the preserved file: true\n"
        );
    }
}

#[test]
fn pid_file_holds_the_state_pid() {
    let test = "pid_file_holds_the_state_pid";
    compare_scenario_with_runc(test, |env, bin| {
        let mut ct = Ct::with_bin(env, test, bin);
        ct.sh("sleep 100");
        ct.save_config();
        let pid_file = ct.bundle.join("init.pid");
        let bundle = ct.bundle.display().to_string();
        let pid_arg = pid_file.display().to_string();
        ct.cmd(&[
            "create",
            "--pid-file",
            &pid_arg,
            "--bundle",
            &bundle,
            &ct.id,
        ])
        .assert_ok();
        let text = fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", pid_file.display()));
        format!(
            "pid file equals state pid: {}\npid file ends in a newline: {}\n",
            text.trim() == ct.init_pid().to_string(),
            text.ends_with('\n')
        )
    });
}

// ---------------------------------------------------------------- exec variants

/// Runs one `exec` in a running container under runc and under the
/// runtime under test; both must print the same. Returns what the exec
/// printed under test.
fn compare_exec(
    test: &str,
    prepare: impl Fn(&mut Ct),
    exec: impl Fn(&Ct) -> Out,
) -> Option<String> {
    compare_scenario_with_runc(test, |env, bin| {
        let ct = running(env, test, bin, &prepare);
        printed(&exec(&ct))
    })
}

#[test]
fn exec_process_json_sets_args_env_cwd_and_user_as_runc() {
    let test = "exec_process_json_sets_args_env_cwd_and_user_as_runc";
    let seen = compare_exec(test, no_change, |ct| {
        let process = json!({
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [100]},
            "args": ["sh", "-c", "echo args: $0 \"$1\"; id; pwd; echo FOO=$FOO; echo PATH=$PATH", "argzero", "first arg"],
            "env": ["PATH=/bin:/usr/bin", "FOO=from process.json"],
            "cwd": "/tmp",
        });
        let path = ct.bundle.join("process.json");
        fs::write(&path, process.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        ct.exec(&["--process", &path.display().to_string()], &[])
    });
    if let Some(seen) = seen {
        assert!(seen.contains("uid=1000"), "{seen}");
        assert!(seen.contains("FOO=from process.json"), "{seen}");
    }
}

/// Bit 21 of CapEff.
fn cap_sys_admin_in_cap_eff(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

#[test]
fn exec_cap_sys_admin_adds_it_to_the_capability_sets_as_runc() {
    let test = "exec_cap_sys_admin_adds_it_to_the_capability_sets_as_runc";
    let seen = compare_exec(test, no_change, |ct| {
        ct.exec(
            &["--cap", "CAP_SYS_ADMIN"],
            &[
                "grep",
                "-E",
                "^Cap(Inh|Prm|Eff|Bnd|Amb):",
                "/proc/self/status",
            ],
        )
    });
    if let Some(seen) = seen {
        assert!(cap_sys_admin_in_cap_eff(&seen), "{seen}");
    }
}

#[test]
fn exec_no_new_privs_sets_no_new_privs_as_runc() {
    let test = "exec_no_new_privs_sets_no_new_privs_as_runc";
    let seen = compare_exec(
        test,
        |ct| {
            ct.config["process"]["noNewPrivileges"] = json!(false);
        },
        |ct| {
            let plain = ct.exec(&[], &["grep", "NoNewPrivs", "/proc/self/status"]);
            let nnp = ct.exec(
                &["--no-new-privs"],
                &["grep", "NoNewPrivs", "/proc/self/status"],
            );
            Out {
                stdout: format!("plain {}with flag {}", plain.stdout, nnp.stdout),
                code: plain.code.max(nnp.code),
                ..nnp
            }
        },
    );
    if let Some(seen) = seen {
        assert_eq!(
            seen,
            "plain NoNewPrivs:\t0\nwith flag NoNewPrivs:\t1\nexit code: 0\n"
        );
    }
}

#[test]
fn exec_additional_gids_show_in_id_as_runc() {
    let test = "exec_additional_gids_show_in_id_as_runc";
    let seen = compare_exec(test, no_change, |ct| {
        ct.exec(
            &[
                "--user",
                "1000:1000",
                "--additional-gids",
                "100",
                "--additional-gids",
                "2000",
            ],
            &["id", "-G"],
        )
    });
    if let Some(seen) = seen {
        assert_eq!(seen, "1000 100 2000\nexit code: 0\n");
    }
}

#[test]
fn exec_tty_with_console_socket_gets_a_pts_as_runc() {
    let test = "exec_tty_with_console_socket_gets_a_pts_as_runc";
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let ct = running(env, test, bin, no_change);
        let console = ConsoleSocket::bind(&ct.bundle.join("exec-console.sock"));
        let socket = console.path.display().to_string();
        let out = ct.exec(
            &["-d", "-t", "--console-socket", &socket],
            &[
                "sh",
                "-c",
                "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo stdio is a tty",
            ],
        );
        if !out.ok() {
            return format!("exec failed: {}\n", out.code);
        }
        match console.receive_master(STOP_TIMEOUT) {
            Ok(master) => read_pty(&master, STOP_TIMEOUT),
            Err(e) => format!("no pty master: {e}\n"),
        }
    });
    if let Some(seen) = seen {
        assert!(seen.starts_with("/dev/pts/"), "{seen}");
        assert!(seen.ends_with("stdio is a tty\n"), "{seen}");
    }
}

// ---------------------------------------------------------------- user namespace

/// Two ranges: container 0..999 -> host 100000.., 1000..1999 -> 101000..
fn two_range_user_namespace(ct: &mut Ct) {
    ct.set_namespace("user", None);
    let maps = json!([
        {"containerID": 0, "hostID": 100000, "size": 1000},
        {"containerID": 1000, "hostID": 101000, "size": 1000},
    ]);
    ct.config["linux"]["uidMappings"] = maps.clone();
    ct.config["linux"]["gidMappings"] = maps;
}

/// Owner uid and gid of /proc/<pid> on the host: the process's euid/egid.
fn host_owner(pid: i32) -> String {
    match fs::metadata(format!("/proc/{pid}")) {
        Ok(m) => format!("{}:{}", m.uid(), m.gid()),
        Err(e) => format!("/proc/{pid}: {e}"),
    }
}

#[test]
fn user_namespace_with_two_ranges_shows_both_maps_inside_as_runc() {
    let seen = compare_run_with_runc(
        "user_namespace_with_two_ranges_shows_both_maps_inside_as_runc",
        "cat /proc/self/uid_map /proc/self/gid_map; id",
        two_range_user_namespace,
    );
    if let Some(seen) = seen {
        let maps: Vec<Vec<&str>> = seen
            .lines()
            .take(4)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            maps,
            [
                ["0", "100000", "1000"],
                ["1000", "101000", "1000"],
                ["0", "100000", "1000"],
                ["1000", "101000", "1000"]
            ],
            "{seen}"
        );
    }
}

/// exec into a container with a user namespace: the new process joins it
/// (root inside, mapped outside) and sees the container's root, as under
/// runc. cove-oci's parent joins the mount namespace before clone3 and the
/// child the user namespace after it: both orders must hold here.
#[test]
fn exec_into_a_user_namespace_container_as_runc() {
    let seen = compare_exec(
        "exec_into_a_user_namespace_container_as_runc",
        two_range_user_namespace,
        |ct| {
            ct.exec(
                &[],
                &[
                    "sh",
                    "-c",
                    "id -u; cat /proc/self/uid_map; cd /; ls -d bin etc",
                ],
            )
        },
    );
    if let Some(seen) = seen {
        let mut lines = seen.lines();
        assert_eq!(lines.next(), Some("0"), "{seen}");
        assert!(seen.contains("100000") && seen.contains("etc"), "{seen}");
    }
}

#[test]
fn user_namespace_init_runs_as_host_uid_100000_as_under_runc() {
    let test = "user_namespace_init_runs_as_host_uid_100000_as_under_runc";
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let ct = running(env, test, bin, two_range_user_namespace);
        format!("init on the host: {}\n", host_owner(ct.init_pid()))
    });
    if let Some(seen) = seen {
        assert_eq!(seen, "init on the host: 100000:100000\n");
    }
}

#[test]
fn exec_as_uid_1000_in_a_user_namespace_runs_as_host_uid_101000_as_under_runc() {
    let test = "exec_as_uid_1000_in_a_user_namespace_runs_as_host_uid_101000_as_under_runc";
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let ct = running(env, test, bin, two_range_user_namespace);
        let inside = ct.exec(&["--user", "1000:1000"], &["id"]);
        let pid_file = ct.bundle.join("exec.pid");
        let pid_arg = pid_file.display().to_string();
        let detached = ct.exec(
            &["-d", "--user", "1000:1000", "--pid-file", &pid_arg],
            &["sleep", "30"],
        );
        let pid: i32 = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1);
        format!(
            "inside: {}exec -d exit code: {}\non the host: {}\n",
            printed(&inside),
            detached.code,
            host_owner(pid)
        )
    });
    if let Some(seen) = seen {
        assert!(seen.contains("on the host: 101000:101000\n"), "{seen}");
    }
}

// ---------------------------------------------------------------- idmapped mounts

/// runc 1.1.5 has no idmapped mounts. A host directory owned by 1234,
/// with a file owned by 1234 and one owned by root, is bind-mounted at
/// /home with the mapping container 0 <-> host 1234 (size 1): inside, 1234
/// shows as 0, and root (unmapped) as the overflow id 65534; a file the
/// container's root creates belongs to 1234 on the host.
#[test]
fn idmapped_bind_mount_shows_host_uid_1234_as_root_inside() {
    let test = "idmapped_bind_mount_shows_host_uid_1234_as_root_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 has no idmapped mounts");
    let dir = TempDir::new(test);
    let shared = dir.join("shared");
    fs::create_dir_all(&shared).unwrap_or_else(|e| panic!("mkdir {}: {e}", shared.display()));
    fs::write(shared.join("owned-by-1234"), "x").unwrap_or_else(|e| panic!("write: {e}"));
    fs::write(shared.join("owned-by-root"), "x").unwrap_or_else(|e| panic!("write: {e}"));
    for path in [shared.clone(), shared.join("owned-by-1234")] {
        std::os::unix::fs::chown(&path, Some(1234), Some(1234))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
    let mut ct = Ct::new(&env, test);
    ct.sh("stat -c '%n %u %g' /home /home/owned-by-1234 /home/owned-by-root; touch /home/made-inside && echo wrote");
    let map = json!([{"containerID": 0, "hostID": 1234, "size": 1}]);
    ct.add_mount(json!({
        "destination": "/home",
        "type": "bind",
        "source": shared.display().to_string(),
        "options": ["rbind", "idmap"],
        "uidMappings": map,
        "gidMappings": map,
    }));
    let out = ct.run();
    out.assert_ok();
    assert_eq!(
        out.stdout, "/home 0 0\n/home/owned-by-1234 0 0\n/home/owned-by-root 65534 65534\nwrote\n",
        "{out}"
    );
    let made = fs::metadata(shared.join("made-inside"))
        .map(|m| format!("{}:{}", m.uid(), m.gid()))
        .unwrap_or_else(|e| format!("{e}"));
    assert_eq!(
        made, "1234:1234",
        "owner on the host of a file root made inside"
    );
}

// ---------------------------------------------------------------- sysctl

#[test]
fn sysctl_ip_forward_in_a_new_network_namespace_is_seen_inside_as_runc() {
    let seen = compare_run_with_runc(
        "sysctl_ip_forward_in_a_new_network_namespace_is_seen_inside_as_runc",
        "cat /proc/sys/net/ipv4/ip_forward",
        |ct| ct.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}),
    );
    if let Some(seen) = seen {
        assert_eq!(seen, "1\n");
    }
}

#[test]
fn sysctl_shmmax_in_a_new_ipc_namespace_is_seen_inside_as_runc() {
    let seen = compare_run_with_runc(
        "sysctl_shmmax_in_a_new_ipc_namespace_is_seen_inside_as_runc",
        "cat /proc/sys/kernel/shmmax",
        |ct| ct.config["linux"]["sysctl"] = json!({"kernel.shmmax": "4294967296"}),
    );
    if let Some(seen) = seen {
        assert_eq!(seen, "4294967296\n");
    }
    let host = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap_or_default();
    assert_ne!(host.trim(), "4294967296", "the host's shmmax changed");
}

#[test]
fn sysctl_net_without_a_network_namespace_is_refused_before_anything_exists() {
    let out = create_refused_like_runc(
        "sysctl_net_without_a_network_namespace_is_refused_before_anything_exists",
        |ct| {
            ct.remove_namespace("network");
            ct.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        },
    );
    if let Some(out) = out {
        assert!(out.stderr.contains("net.ipv4.ip_forward"), "{out}");
    }
}

// ---------------------------------------------------------------- process attributes

#[test]
fn hostname_is_set_as_runc() {
    let seen = compare_run_with_runc("hostname_is_set_as_runc", "hostname", |ct| {
        ct.config["hostname"] = json!("cove-box");
    });
    if let Some(seen) = seen {
        assert_eq!(seen, "cove-box\n");
    }
}

/// runc 1.1.5 ignores `domainname` (runc 1.2 added it).
#[test]
fn domainname_is_set_inside() {
    let test = "domainname_is_set_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 ignores domainname");
    let mut ct = Ct::new(&env, test);
    ct.sh("cat /proc/sys/kernel/domainname; hostname");
    ct.config["hostname"] = json!("cove-box");
    ct.config["domainname"] = json!("example.test");
    let out = ct.run();
    out.assert_ok();
    assert_eq!(out.stdout, "example.test\ncove-box\n", "{out}");
}

#[test]
fn oom_score_adj_500_is_set_as_runc() {
    let seen = compare_run_with_runc(
        "oom_score_adj_500_is_set_as_runc",
        "cat /proc/self/oom_score_adj",
        |ct| ct.config["process"]["oomScoreAdj"] = json!(500),
    );
    if let Some(seen) = seen {
        assert_eq!(seen, "500\n");
    }
}

/// runc 1.1.5 ignores process.ioPriority (runc 1.2 added it).
#[test]
fn io_priority_best_effort_4_is_seen_inside() {
    let test = "io_priority_best_effort_4_is_seen_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 ignores process.ioPriority");
    let mut ct = Ct::new(&env, test);
    ct.sh("ionice -p $$");
    ct.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
    let out = ct.run();
    out.assert_ok();
    assert_eq!(out.stdout, "best-effort: prio 4\n", "{out}");
}

#[test]
fn rlimits_nofile_512_and_core_0_are_set_as_runc() {
    let seen = compare_run_with_runc(
        "rlimits_nofile_512_and_core_0_are_set_as_runc",
        "grep -E '^Max (open files|core file size)' /proc/self/limits",
        |ct| {
            ct.config["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            ])
        },
    );
    if let Some(seen) = seen {
        let fields: Vec<Vec<&str>> = seen
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            fields,
            vec![
                vec!["Max", "core", "file", "size", "0", "0", "bytes"],
                vec!["Max", "open", "files", "512", "512", "files"]
            ],
            "{seen}"
        );
    }
}

#[test]
fn umask_0027_applies_to_new_files_as_runc() {
    let seen = compare_run_with_runc(
        "umask_0027_applies_to_new_files_as_runc",
        "umask; touch /dev/shm/new; mkdir /dev/shm/dir; stat -c '%n %a' /dev/shm/new /dev/shm/dir",
        |ct| ct.config["process"]["user"]["umask"] = json!(0o027),
    );
    if let Some(seen) = seen {
        assert_eq!(seen, "0027\n/dev/shm/new 640\n/dev/shm/dir 750\n");
    }
}

// ---------------------------------------------------------------- time namespace

fn uptime_secs(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1.0)
}

/// runc 1.1.5 has no time namespaces.
#[test]
fn time_namespace_offsets_shift_boottime_and_monotonic_inside() {
    let test = "time_namespace_offsets_shift_boottime_and_monotonic_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 has no time namespaces");
    let mut ct = Ct::new(&env, test);
    ct.sh("cat /proc/self/timens_offsets; cat /proc/uptime");
    ct.set_namespace("time", None);
    ct.config["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": 86400, "nanosecs": 0},
        "monotonic": {"secs": 7200, "nanosecs": 0},
    });
    let host_before = uptime_secs(&fs::read_to_string("/proc/uptime").unwrap_or_default());
    let out = ct.run();
    out.assert_ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        lines.contains(&vec!["monotonic", "7200", "0"])
            && lines.contains(&vec!["boottime", "86400", "0"]),
        "timens_offsets inside:\n{out}"
    );
    let inside = uptime_secs(out.stdout.lines().last().unwrap_or(""));
    assert!(
        inside >= host_before + 86400.0,
        "uptime inside {inside} is not the host's {host_before} + 86400:\n{out}"
    );
}

// ---------------------------------------------------------------- joining namespaces

/// A named network namespace (`ip netns add`), deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn add(test: &str) -> Option<NetNs> {
        let name = format!("cove-test-{}", unique_name(test).trim_start_matches("ct-"));
        let name: String = name.chars().take(60).collect();
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => Some(NetNs { name }),
            Ok(o) => {
                skip(
                    test,
                    &format!(
                        "ip netns add failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ),
                );
                None
            }
            Err(e) => {
                skip(test, &format!("no ip(8): {e}"));
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// The network namespace inode, the interfaces in sysfs and in /proc.
const NETNS_PROBE: &str = "readlink /proc/self/ns/net; ls /sys/class/net; awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev";

#[test]
fn network_namespace_joined_by_path_is_the_one_inside_as_runc() {
    let test = "network_namespace_joined_by_path_is_the_one_inside_as_runc";
    if prerequisites_with_runc(test).is_none() {
        return;
    }
    let Some(netns) = NetNs::add(test) else {
        return;
    };
    let path = netns.path();
    let ino = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino();
    let seen = compare_run_with_runc(test, NETNS_PROBE, |ct| {
        ct.set_namespace("network", Some(&path.display().to_string()));
    });
    if let Some(seen) = seen {
        assert_eq!(seen, format!("net:[{ino}]\nlo\nlo\n"));
    }
}

#[test]
fn second_container_joins_the_network_namespace_of_the_first_as_runc() {
    let test = "second_container_joins_the_network_namespace_of_the_first_as_runc";
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let first = running(env, test, bin, no_change);
        let path = format!("/proc/{}/ns/net", first.init_pid());
        let first_ns = fs::read_link(&path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("{path}: {e}"));
        let mut second = Ct::with_bin(env, test, bin);
        second.sh("readlink /proc/self/ns/net");
        second.set_namespace("network", Some(&path));
        let out = second.run();
        format!(
            "same namespace as the first: {}\nexit code: {}\n",
            out.stdout.trim() == first_ns,
            out.code
        )
    });
    if let Some(seen) = seen {
        assert_eq!(seen, "same namespace as the first: true\nexit code: 0\n");
    }
}

// ---------------------------------------------------------------- rootfs

/// The optional fields (propagation) of the mount at / in mountinfo, with
/// peer group numbers replaced by N.
fn root_propagation(mountinfo: &str) -> String {
    mountinfo
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(4) == Some(&"/")).then(|| {
                let optional: Vec<String> = f[6..dash]
                    .iter()
                    .map(|o| match o.split_once(':') {
                        Some((k, _)) => format!("{k}:N"),
                        None => o.to_string(),
                    })
                    .collect();
                format!("/ [{}]\n", optional.join(" "))
            })
        })
        .collect()
}

fn rootfs_propagation_matches_runc(test: &str, propagation: &str) -> Option<String> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.sh("cat /proc/self/mountinfo");
    reference.config["linux"]["rootfsPropagation"] = json!(propagation);
    reference.save_config();
    let under_test = reference.twin(&env.bin);
    let runc_out = reference.run();
    runc_out.assert_ok();
    let out = under_test.run();
    out.assert_ok();
    let expected = root_propagation(&runc_out.stdout);
    let actual = root_propagation(&out.stdout);
    assert_same_as_runc(test, &expected, &actual, &format!("{runc_out}\n{out}"));
    Some(actual)
}

/// runc 1.1.5 leaves / private with rootfsPropagation "shared"; the spec
/// says the value sets the rootfs mount's propagation, so / must be in a
/// peer group of its own (the host's mounts here are all private, so the
/// group is new and nothing propagates to the host).
#[test]
fn rootfs_propagation_shared_makes_root_a_shared_mount() {
    let test = "rootfs_propagation_shared_makes_root_a_shared_mount";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 does not make / shared");
    let mut ct = Ct::new(&env, test);
    ct.sh("cat /proc/self/mountinfo");
    ct.config["linux"]["rootfsPropagation"] = json!("shared");
    let before = host_mounts();
    let out = ct.run();
    out.assert_ok();
    assert_eq!(root_propagation(&out.stdout), "/ [shared:N]\n", "{out}");
    assert_eq!(
        new_mounts(&before, &host_mounts()),
        Vec::<String>::new(),
        "host mounts appeared"
    );
}

#[test]
fn rootfs_propagation_rslave_is_accepted_as_runc() {
    rootfs_propagation_matches_runc("rootfs_propagation_rslave_is_accepted_as_runc", "rslave");
}

#[test]
fn rootfs_propagation_rprivate_makes_root_private_as_runc() {
    let seen = rootfs_propagation_matches_runc(
        "rootfs_propagation_rprivate_makes_root_private_as_runc",
        "rprivate",
    );
    if let Some(seen) = seen {
        assert_eq!(seen, "/ []\n");
    }
}

#[test]
fn writable_root_lets_the_container_write_its_rootfs() {
    let test = "writable_root_lets_the_container_write_its_rootfs";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let rootfs = dir.join("rootfs");
    minimal_busybox_rootfs(&rootfs).unwrap_or_else(|e| panic!("private rootfs: {e}"));
    let mut ct = Ct::new(&env, test);
    ct.config["root"] = json!({"path": rootfs.display().to_string(), "readonly": false});
    ct.sh("echo written inside > /written && cat /written");
    let out = ct.run();
    out.assert_ok();
    assert_eq!(out.stdout, "written inside\n", "{out}");
    assert_eq!(
        fs::read_to_string(rootfs.join("written")).unwrap_or_default(),
        "written inside\n",
        "the file is not in the rootfs on the host"
    );
}

#[test]
fn read_only_root_refuses_writes_as_runc() {
    let seen = compare_run_with_runc(
        "read_only_root_refuses_writes_as_runc",
        "touch /written 2>&1; echo status $?",
        no_change,
    );
    if let Some(seen) = seen {
        assert!(seen.contains("Read-only file system"), "{seen}");
    }
}

#[test]
fn no_pivot_still_shows_the_rootfs_as_root_as_runc() {
    let test = "no_pivot_still_shows_the_rootfs_as_root_as_runc";
    let env_rootfs = shared_rootfs().clone().ok();
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let mut ct = Ct::with_bin(env, test, bin);
        ct.sh("echo pid $$; ls /; stat -c '%i' /bin/busybox");
        ct.save_config();
        let bundle = ct.bundle.display().to_string();
        printed(&ct.cmd(&["run", "--no-pivot", "--bundle", &bundle, &ct.id]))
    });
    if let (Some(seen), Some(rootfs)) = (seen, env_rootfs) {
        let ino = fs::metadata(rootfs.join("bin/busybox"))
            .map(|m| m.ino())
            .unwrap_or(0);
        assert!(seen.starts_with("pid 1\n"), "{seen}");
        assert!(
            seen.contains(&format!("\n{ino}\n")),
            "not the rootfs's busybox: {seen}"
        );
    }
}

// ---------------------------------------------------------------- logging, version, features

/// The keys of every line of a JSON log, and the levels seen.
fn json_log_shape(text: &str) -> String {
    let mut shape = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => {
                let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
                keys.sort_unstable();
                shape.push_str(&format!("keys {keys:?} level {}\n", o["level"]));
            }
            _ => shape.push_str(&format!("not a JSON object: {line:?}\n")),
        }
    }
    shape
}

#[test]
fn json_log_of_a_failing_command_has_level_msg_and_time_as_runc() {
    let test = "json_log_of_a_failing_command_has_level_msg_and_time_as_runc";
    let seen = compare_scenario_with_runc(test, |env, bin| {
        let ct = Ct::with_bin(env, test, bin);
        let log = ct.bundle.join("runtime.log");
        let log_arg = log.display().to_string();
        let out = ct.cmd(&[
            "--log",
            &log_arg,
            "--log-format",
            "json",
            "state",
            "no-such-container",
        ]);
        let text = fs::read_to_string(&log).unwrap_or_default();
        let mentions = text.contains("does not exist");
        format!(
            "exit code {}\n{}mentions \"does not exist\": {mentions}\n",
            out.code,
            json_log_shape(&text)
        )
    });
    if let Some(seen) = seen {
        assert!(
            seen.contains("keys [\"level\", \"msg\", \"time\"] level \"error\""),
            "{seen}"
        );
    }
}

#[test]
fn version_prints_runc_style_lines_with_spec_1_3_0() {
    let test = "version_prints_runc_style_lines_with_spec_1_3_0";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let out = run_command(&env.bin, &["--version".into()], &dir.path, COMMAND_TIMEOUT);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let name = env
        .bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("{name} version "))),
        "first line is not `{name} version X`:\n{out}"
    );
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("commit: ")),
        "second line is not `commit: ...`:\n{out}"
    );
    note_if_runc("runc 1.1.5 implements runtime-spec 1.0.2");
    assert!(
        lines.contains(&"spec: 1.3.0"),
        "no `spec: 1.3.0` line:\n{out}"
    );
}

/// features.json as the runtime prints it.
fn features(bin: &Path, dir: &TempDir) -> Value {
    let out = run_command(bin, &["features".into()], &dir.path, COMMAND_TIMEOUT);
    out.assert_ok();
    out.stdout_json().unwrap_or_else(|e| panic!("{e}"))
}

fn string_set(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items
}

#[test]
fn features_lists_spec_versions_hooks_mount_options_and_namespaces() {
    let test = "features_lists_spec_versions_hooks_mount_options_and_namespaces";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let f = features(&env.bin, &dir);
    note_if_runc("runc 1.1.5 implements runtime-spec 1.0.2 without time namespaces");
    assert_eq!(f["ociVersionMin"], "1.0.0", "{f:#}");
    assert_eq!(f["ociVersionMax"], "1.3.0", "{f:#}");
    let mut hooks = vec![
        "createContainer",
        "createRuntime",
        "poststart",
        "poststop",
        "prestart",
        "startContainer",
    ];
    hooks.sort_unstable();
    assert_eq!(string_set(&f["hooks"]), hooks, "{f:#}");
    let options = string_set(&f["mountOptions"]);
    for want in [
        "bind",
        "rbind",
        "ro",
        "rro",
        "nosuid",
        "rprivate",
        "idmap",
        "ridmap",
        "tmpcopyup",
    ] {
        assert!(
            options.iter().any(|o| o == want),
            "mountOptions lacks {want}: {options:?}"
        );
    }
    assert_eq!(
        string_set(&f["linux"]["namespaces"]),
        ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
        "{f:#}"
    );
}

/// Every key runc's features.json has (top level and linux) is there too:
/// callers such as containerd read e.g. linux.seccomp to decide what to use.
#[test]
fn features_has_every_section_runc_features_has() {
    let test = "features_has_every_section_runc_features_has";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    let Some(runc) = env.runc.clone() else { return };
    let dir = TempDir::new(test);
    let reference = features(&runc, &dir);
    let f = features(&env.bin, &dir);
    let missing = |want: &Value, have: &Value| -> Vec<String> {
        want.as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| have.get(k.as_str()).is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        missing(&reference, &f),
        Vec::<String>::new(),
        "top-level keys missing:\n{f:#}"
    );
    assert_eq!(
        missing(&reference["linux"], &f["linux"]),
        Vec::<String>::new(),
        "linux keys missing:\n{f:#}"
    );
}

// ---------------------------------------------------------------- bad config fields

/// STRICTER THAN RUNC: runc 1.1.5 silently ignores the mappings and runs
/// the container as host root, which is not what the config asked for.
#[test]
fn uid_mappings_without_a_user_namespace_are_refused_cleanly() {
    let test = "uid_mappings_without_a_user_namespace_are_refused_cleanly";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 ignores uidMappings without a user namespace");
    let mut ct = Ct::new(&env, test);
    ct.sh("sleep 100");
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
    ct.config["linux"]["uidMappings"] = map.clone();
    ct.config["linux"]["gidMappings"] = map;
    let out = ct.create();
    assert_refused_cleanly(&ct, &out);
    assert!(out.stderr.contains("user namespace"), "{out}");
}

#[test]
fn hostname_without_a_uts_namespace_is_refused_as_runc() {
    let out = create_refused_like_runc(
        "hostname_without_a_uts_namespace_is_refused_as_runc",
        |ct| {
            ct.remove_namespace("uts");
            ct.config["hostname"] = json!("cove-box");
        },
    );
    if let Some(out) = out {
        assert!(out.stderr.contains("hostname"), "{out}");
    }
}

#[test]
fn duplicate_namespace_is_refused_as_runc() {
    let out = create_refused_like_runc("duplicate_namespace_is_refused_as_runc", |ct| {
        if let Some(list) = ct.config["linux"]["namespaces"].as_array_mut() {
            list.push(json!({"type": "ipc"}));
        }
    });
    if let Some(out) = out {
        assert!(
            out.stderr.contains("ipc") || out.stderr.contains("Ipc"),
            "{out}"
        );
    }
}
