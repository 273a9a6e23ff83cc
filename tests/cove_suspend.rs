//! `cove suspend` and `cove resume` of a busybox CT (where CRIU works: the
//! VM lane): a counting process started in the CT goes on from where it
//! was frozen after resume, with the same pids inside, and the CT runs
//! under a new monitor with its console; the frozen time is printed and in
//! `--json`; the dump is readable by CRIU's `crit`. A CT on a bridge keeps
//! its address, routes and an open TCP connection to a peer in the test's
//! own network namespace across suspend/resume. Where CRIU cannot work
//! (the host lane), suspend says so and the CT runs on.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const CRIU_TIMEOUT: Duration = Duration::from_secs(180);

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
    env.cmd_timeout(&["exec", &ctid, "sh", "-c", CT_START_COUNTER], CRIU_TIMEOUT)
        .assert_ok();
    env.wait_ct_counts(&ctid, 3);
    let before = tree_of(env.ct_init_pid(&ctid));
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
    let c = env.ct_counts(&ctid);
    let c = env.wait_ct_counts(&ctid, c.len() + 3);
    for (i, v) in c.iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "the count restarted or skipped: {c:?}");
    }
    assert_eq!(
        before,
        tree_of(env.ct_init_pid(&ctid)),
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

/// How long the CT's echo may take to answer under emulation.
const ECHO_WAIT: Duration = Duration::from_secs(90);

#[test]
fn suspended_ct_keeps_its_address_and_an_open_tcp_connection() {
    let test = "suspended_ct_keeps_its_address_and_an_open_tcp_connection";
    let Some(ns) = HostNetns::new(test) else {
        return;
    };
    let Some(mut env) = CoveEnv::with_busybox(test) else {
        return;
    };
    env.netns = Some(ns);
    if !needs_criu(test) {
        return;
    }
    let ctid = env.create_busybox(&["--ipadd", "198.18.7.2/24", "--gateway", "198.18.7.1"]);
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    // An echo server in the CT (adopted by its init, so it is dumped).
    env.cmd_timeout(
        &[
            "exec",
            &ctid,
            "sh",
            "-c",
            "(setsid sh -c 'exec </dev/null >/dev/null 2>&1; exec nc -ll -p 7007 -e cat' &); true",
        ],
        CRIU_TIMEOUT,
    )
    .assert_ok();
    let ns = env.netns.as_ref().expect("netns");
    let mut conn = tcp_connect_in(ns, "198.18.7.2:7007");
    assert_eq!(
        tcp_echo(&mut conn, "before suspend", ECHO_WAIT),
        "before suspend"
    );
    let local = conn.local_addr().expect("local address");

    let out = env.cmd_timeout(&["suspend", &ctid, "--json"], CRIU_TIMEOUT);
    out.assert_ok();
    let s = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "FROZEN {test} cove suspend (veth, TCP): frozen_time {} us, pages_written {}",
        s["frozen_time_us"], s["pages_written"]
    );
    assert_eq!(env.status_json(&ctid)["status"], "stopped");
    let host_veth = format!("vc{ctid}");
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(
        !links.stdout.contains(&host_veth),
        "the veth stays while suspended:\n{links}"
    );
    std::thread::sleep(Duration::from_secs(1));

    env.cmd_timeout(&["resume", &ctid], CRIU_TIMEOUT)
        .assert_ok();
    assert_eq!(env.status_json(&ctid)["status"], "running");
    // The same connection carries data both ways after the resume.
    assert_eq!(
        tcp_echo(&mut conn, "after resume", ECHO_WAIT),
        "after resume"
    );
    assert_eq!(conn.local_addr().expect("local address"), local);
    // The host end is back on the bridge; inside, the address and route.
    let link = ns.ip(&["-o", "link", "show", &host_veth]);
    link.assert_ok();
    assert!(
        link.stdout.contains("master cove0") && link.stdout.contains("state UP"),
        "the host end is not up on the bridge after resume:\n{link}"
    );
    let addr = env.cmd_timeout(
        &["exec", &ctid, "ip", "-4", "addr", "show", "eth0"],
        CRIU_TIMEOUT,
    );
    addr.assert_ok();
    assert!(addr.stdout.contains("198.18.7.2/24"), "{addr}");
    let route = env.cmd_timeout(&["exec", &ctid, "ip", "route"], CRIU_TIMEOUT);
    assert!(
        route.stdout.contains("default via 198.18.7.1"),
        "the default route is gone after resume:\n{route}"
    );
    // A new connection works too.
    let mut second = tcp_connect_in(ns, "198.18.7.2:7007");
    drop(conn);
    assert_eq!(
        tcp_echo(&mut second, "new connection", ECHO_WAIT),
        "new connection"
    );
    drop(second);
    env.cmd_timeout(&["stop", &ctid], CRIU_TIMEOUT).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(
        !links.stdout.contains(&host_veth) && !links.stdout.contains("cove0"),
        "stop after resume left the veth or the bridge:\n{links}"
    );
}

/// `--dump-dir` must be new or empty: resume removes the dump, and must
/// never take a user's files with it. Refused before anything is frozen.
#[test]
fn suspend_refuses_a_dump_dir_that_holds_files() {
    let test = "suspend_refuses_a_dump_dir_that_holds_files";
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    let dir = TempDir::new(test);
    let precious = dir.path.join("precious.txt");
    fs::write(&precious, "keep me").expect("write");
    let out = env.cmd_timeout(
        &[
            "suspend",
            &ctid,
            "--dump-dir",
            &dir.path.display().to_string(),
        ],
        CRIU_TIMEOUT,
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("is not empty"), "{out}");
    assert_eq!(
        fs::read_to_string(&precious).ok().as_deref(),
        Some("keep me")
    );
    assert_eq!(env.status_json(&ctid)["status"], "running");
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}

/// A daemon in the CT holding a deleted 2 MiB file open: CRIU refuses to
/// dump it (a deleted file's contents go into the images only up to its
/// ghost limit, 1 MiB), after it wrote part of the images.
const HOLD_GHOST: &str = "(setsid sh -c 'exec </dev/null >/dev/null 2>&1; \
    dd if=/dev/zero of=/root/ghost bs=1M count=2; exec 3</root/ghost; rm /root/ghost; \
    : >/root/ready; exec sleep 100000' &) ; true";

/// A suspend CRIU refuses leaves no images behind: a `--dump-dir` cove
/// made is gone, an empty one of the user's is empty again, cove's own
/// one is gone too; the CT runs on, and CRIU's log is kept as
/// `<ct>/suspend-failed.log`, which the error names.
#[test]
fn failed_suspend_removes_the_images_it_wrote() {
    let test = "failed_suspend_removes_the_images_it_wrote";
    if !needs_criu(test) {
        return;
    }
    let Some(env) = CoveEnv::with_busybox(test) else {
        return;
    };
    let ctid = env.create_busybox(&[]);
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    env.cmd_timeout(&["exec", &ctid, "sh", "-c", HOLD_GHOST], CRIU_TIMEOUT)
        .assert_ok();
    let t = Instant::now();
    while !env
        .cmd_timeout(&["exec", &ctid, "test", "-e", "/root/ready"], CRIU_TIMEOUT)
        .ok()
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the holder never got ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tmp = TempDir::new(test);
    let fresh = tmp.path.join("fresh");
    let empty = tmp.path.join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let kept_log = env.ct_dir(&ctid).join("suspend-failed.log");
    for dir in [Some(&fresh), Some(&empty), None] {
        let mut args = vec!["suspend".to_string(), ctid.clone()];
        if let Some(d) = dir {
            args.extend(["--dump-dir".to_string(), d.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.cmd_timeout(&args, CRIU_TIMEOUT);
        assert!(!out.ok(), "CRIU dumped a deleted 2 MiB file: {out}");
        assert!(out.stderr.contains("ghost"), "not CRIU's refusal: {out}");
        assert!(
            out.stderr.contains(&kept_log.display().to_string()),
            "the error does not name the kept log: {out}"
        );
        let log = fs::read_to_string(&kept_log).unwrap_or_default();
        assert!(
            log.contains("Error"),
            "no CRIU log kept at {}",
            kept_log.display()
        );
        match dir {
            Some(d) if d == &fresh => assert!(!d.exists(), "{} left", d.display()),
            Some(d) => {
                let left: Vec<_> = fs::read_dir(d).expect("read_dir").flatten().collect();
                assert!(left.is_empty(), "left in {}: {left:?}", d.display());
            }
            None => {
                let own = env.ct_dir(&ctid).join("dump");
                assert!(!own.exists(), "{} left", own.display());
            }
        }
        assert!(!env.ct_dir(&ctid).join("suspended.json").exists());
        assert_eq!(env.status_json(&ctid)["status"], "running", "{out}");
    }
    env.cmd(&["stop", "--fast", &ctid]).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}
