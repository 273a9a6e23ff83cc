//! `cove suspend` and `cove resume` of a busybox CT (where CRIU works: the
//! VM lane): a counting process started in the CT goes on from where it
//! was frozen after resume, with the same pids inside, and the CT runs
//! under a new monitor with its console; the frozen time is printed and in
//! `--json`; the dump is readable by CRIU's `crit`. Where CRIU cannot work
//! (the host lane), suspend says so and the CT runs on.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const CRIU_TIMEOUT: Duration = Duration::from_secs(180);

/// A counter daemonised inside the CT (its parent exits, so the CT's init
/// adopts it: CRIU dumps the tree below the init).
const START_COUNTER: &str = "(setsid sh -c 'exec </dev/null >/dev/null 2>&1; i=0; \
    while :; do i=$((i+1)); echo $i >> /root/count; sleep 0.2; done' &) ; true";

fn init_pid(env: &CoveEnv, ctid: &str) -> i32 {
    let st = env.status_json(ctid);
    st["init_pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no init pid: {st}"))
}

fn counts(env: &CoveEnv, ctid: &str) -> Vec<u64> {
    numbers_in(init_pid(env, ctid), "/root/count")
}

fn wait_counts(env: &CoveEnv, ctid: &str, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = counts(env, ctid);
        if c.len() >= n || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The numbers in a file inside the container, one a line, read from the
/// host through its init's root (no exec: exec is slow under emulation).
fn numbers_in(pid: i32, path: &str) -> Vec<u64> {
    fs::read_to_string(format!("/proc/{pid}/root{path}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `pid (comm) ppid` of pid 1 and its children, as the container's own
/// /proc shows them (read from the host through the init's root).
fn tree_of(pid: i32) -> String {
    let dir = format!("/proc/{pid}/root/proc");
    let mut rows: Vec<(u64, String)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n: u64 = e.file_name().to_str()?.parse().ok()?;
                    let stat = fs::read_to_string(e.path().join("stat")).ok()?;
                    let (head, rest) = stat.rsplit_once(')')?;
                    let comm = head.split_once('(')?.1;
                    let ppid: u64 = rest.split_whitespace().nth(1)?.parse().ok()?;
                    (n == 1 || ppid == 1).then(|| (n, format!("{n} ({comm}) {ppid}\n")))
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    rows.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn suspended_ct_resumes_counting_with_the_same_pids() {
    let test = "suspended_ct_resumes_counting_with_the_same_pids";
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let ctid = env.create_busybox(&[]);
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    env.cmd_timeout(&["exec", &ctid, "sh", "-c", START_COUNTER], CRIU_TIMEOUT)
        .assert_ok();
    wait_counts(&env, &ctid, 3);
    let before = tree_of(init_pid(&env, &ctid));
    let monitor_before = env.monitor_pid(&ctid);

    // One pre-dump while the CT runs, then the final dump on top of it.
    let out = env.cmd_timeout(
        &["suspend", &ctid, "--pre-dumps", "1", "--json"],
        CRIU_TIMEOUT,
    );
    out.assert_ok();
    let s = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    let frozen = s["frozen_time_us"].as_u64().expect("frozen_time_us");
    let dump = s["dump_dir"].as_str().expect("dump_dir").to_string();
    println!(
        "FROZEN {test} cove suspend: frozen_time {frozen} us, pages_written {}",
        s["pages_written"]
    );
    assert!(frozen > 0, "no frozen time: {s}");
    let pre = s["pre_dumps"].as_array().expect("pre_dumps");
    assert_eq!(pre.len(), 1, "{s}");
    println!(
        "FROZEN {test} cove suspend pre-dump: frozen_time {} us, pages_written {}",
        pre[0]["frozen_time_us"], pre[0]["pages_written"]
    );
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "stopped", "after suspend: {st}");
    for img in ["inventory.img", "pstree.img", "stats-dump"] {
        let out = run_command(
            Path::new("/usr/bin/crit"),
            &["show".into(), format!("{dump}/{img}")],
            Path::new(TEST_TMP),
            CRIU_TIMEOUT,
        );
        assert!(out.ok(), "crit cannot read {img}:\n{out}");
    }
    std::thread::sleep(Duration::from_secs(1));

    env.cmd_timeout(&["resume", &ctid], CRIU_TIMEOUT)
        .assert_ok();
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "running", "after resume: {st}");
    assert_ne!(
        env.monitor_pid(&ctid),
        monitor_before,
        "no new monitor after resume"
    );
    let c = counts(&env, &ctid);
    let c = wait_counts(&env, &ctid, c.len() + 3);
    for (i, v) in c.iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "the count restarted or skipped: {c:?}");
    }
    assert_eq!(
        before,
        tree_of(init_pid(&env, &ctid)),
        "the pids inside changed"
    );
    assert!(!Path::new(&dump).exists(), "the dump stays after resume");
    // The resumed CT stops like any other.
    env.cmd_timeout(&["stop", &ctid], CRIU_TIMEOUT).assert_ok();
    assert_eq!(env.status_json(&ctid)["status"], "stopped");
    env.assert_ct_cleaned_up(&ctid);
}

#[test]
fn suspend_where_criu_cannot_work_leaves_the_ct_running() {
    let test = "suspend_where_criu_cannot_work_leaves_the_ct_running";
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    if in_vm_lane() || criu_bin().is_none() {
        skip(test, "CRIU works here (or is absent): nothing to refuse");
        return;
    }
    let criu_works = std::process::Command::new(criu_bin().expect("criu"))
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success());
    if criu_works {
        skip(test, "CRIU works here: nothing to refuse");
        return;
    }
    let ctid = env.create_busybox(&[]);
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    let pid = env.status_json(&ctid)["init_pid"].clone();
    let out = env.cmd_timeout(&["suspend", &ctid], CRIU_TIMEOUT);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("CRIU cannot work on this host"),
        "{out}"
    );
    let st = env.status_json(&ctid);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["init_pid"], pid);
    assert!(
        !env.ct_dir(&ctid).join("dump").exists(),
        "suspend left a dump dir"
    );
    assert!(!env.ct_dir(&ctid).join("suspended.json").exists());
    let out = env.cmd(&["resume", &ctid]);
    assert_ne!(out.code, 0, "{out}");
    let _ = fs::metadata(env.ct_dir(&ctid));
}
