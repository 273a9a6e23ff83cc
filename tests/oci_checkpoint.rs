//! checkpoint and restore through CRIU, as a user of runc's command line
//! sees them. Where CRIU works (the VM lane) a counting process is
//! checkpointed and restored and goes on from where it was frozen, with the
//! same pids inside; --leave-running; a pre-dump then a dump with
//! --parent-path; CRIU's own `crit` reads the images; runc does the same on
//! the same bundle. Where CRIU cannot work (the host lane) checkpoint says
//! so in one line and the container runs on untouched. Each dump prints a
//! `FROZEN` line with CRIU's frozen time (from `crit show stats-dump`).

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::criu::*;
use support::*;

/// What a user sees of one checkpoint/restore cycle: the tree inside
/// before and after, the count unbroken across it, the state, the limits.
fn cycle(ct: &Ct, images: &Images, test: &str) -> String {
    run_detached(ct, &[]).assert_ok();
    wait_counts(ct, 3);
    let tree_before = tree_of(init_pid(ct));
    let img = images.join("full");
    checkpoint(ct, &img, &[]).assert_ok();
    // Without --leave-running the container is gone, as with runc.
    assert!(
        !rt(ct, &["state", &ct.id]).ok() || status(ct).as_deref() == Some("stopped"),
        "after checkpoint the container still exists:\n{}",
        rt(ct, &["state", &ct.id])
    );
    report_frozen(test, "dump", &runtime_name(ct), &img);
    assert_crit_reads(&img);
    // Frozen for a while: a restored counter must not have gone on meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let pid_file = ct.bundle.join("restored.pid").display().to_string();
    restore(ct, &img, &["--pid-file", &pid_file]).assert_ok();
    let state = rt(ct, &["state", &ct.id])
        .stdout_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "running", "state after restore: {state}");
    let pid = init_pid(ct);
    let listed = rt(ct, &["list", "--format", "json"]);
    assert!(
        listed.stdout.contains("\"running\"") && listed.stdout.contains(&ct.id),
        "list does not show the restored container running:\n{listed}"
    );
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap_or_default().trim(),
        pid.to_string(),
        "--pid-file does not hold the restored init"
    );
    let procs = cgroup_file(ct, "cgroup.procs");
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "the restored init {pid} is not in the container's cgroup ({procs})"
    );
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "sleep",
        "state's pid {pid} is not the restored init"
    );
    let after_restore = counts(ct);
    let later = wait_counts(ct, after_restore.len() + 3);
    assert_one_unbroken_count(&later, "after restore");
    let tree_after = tree_of(pid);
    assert_eq!(
        tree_before, tree_after,
        "the process tree inside changed across checkpoint/restore"
    );
    // exec works in the restored container, and a bind mount is back.
    let data = ct.cmd_timeout(
        &[
            "exec",
            &ct.id,
            "sh",
            "-c",
            "cat /data/hello 2>/dev/null || echo no-data",
        ],
        CRIU_TIMEOUT,
    );
    data.assert_ok();
    let limits = format!(
        "pids.max {} memory.max {}",
        cgroup_file(ct, "pids.max"),
        cgroup_file(ct, "memory.max")
    );
    rt(ct, &["kill", &ct.id, "KILL"]).assert_ok();
    assert!(
        {
            let deadline = Instant::now() + Duration::from_secs(120);
            while status(ct).as_deref() != Some("stopped") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            status(ct).as_deref() == Some("stopped")
        },
        "kill of the restored container did not stop it:\n{}",
        rt(ct, &["state", &ct.id])
    );
    rt(ct, &["delete", &ct.id]).assert_ok();
    assert!(
        ct.cgroup_dirs().is_empty(),
        "delete of a restored container left its cgroup"
    );
    format!(
        "tree:\n{}limits: {limits}\nexec: {}",
        tree_shape(&tree_after),
        data.stdout
    )
}

/// A tree from [`tree_of`] with every pid but 1 as N: pids other than 1
/// differ between runtimes before any checkpoint (runc's Go init spends a
/// few on its threads), so runtimes are compared on "child of 1".
fn tree_shape(tree: &str) -> String {
    tree.lines()
        .map(|l| match l.split_once(' ') {
            Some(("1", rest)) => format!("1 {rest}\n"),
            Some((_, rest)) => format!("N {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn checkpoint_and_restore_continue_the_count_with_the_same_pids() {
    let test = "checkpoint_and_restore_continue_the_count_with_the_same_pids";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) || !needs_cgroup_v2(test) {
        return;
    }
    let images = Images::new(test);
    let mut ct = counter(&env, test, &env.bin);
    // A bind mount: external to the dump, bound again at restore.
    let data = TempDir::new(test);
    fs::write(data.join("hello"), "from the host\n").expect("write");
    ct.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/data", "type": "bind",
            "source": data.path.display().to_string(), "options": ["rbind", "ro"]
        }));
    let saw = cycle(&ct, &images, test);
    assert!(
        saw.contains("pids.max 64") && saw.contains("memory.max 268435456"),
        "the cgroup limits are not back after restore: {saw}"
    );
    assert!(
        saw.contains("exec: from the host"),
        "the bind mount is not back (or exec failed) after restore: {saw}"
    );
}

#[test]
fn runc_checkpoints_and_restores_the_same_bundle_the_same_way() {
    let test = "runc_checkpoints_and_restores_the_same_bundle_the_same_way";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    if !needs_criu(test) || !needs_cgroup_v2(test) {
        return;
    }
    let runc = env.runc.clone().expect("runc");
    let ct = counter(&env, test, &env.bin);
    let twin = ct.twin(&runc);
    let runc_saw = {
        let images = Images::new(&format!("{test}-runc"));
        cycle(&twin, &images, test)
    };
    let images = Images::new(test);
    let cove_saw = cycle(&ct, &images, test);
    assert_same_as_runc(test, &runc_saw, &cove_saw, "checkpoint/restore cycle");
}

#[test]
fn leave_running_keeps_the_container_counting() {
    let test = "leave_running_keeps_the_container_counting";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let images = Images::new(test);
    let ct = counter(&env, test, &env.bin);
    ct.run_detached().assert_ok();
    wait_counts(&ct, 3);
    let pid = init_pid(&ct);
    let img = images.join("keep");
    checkpoint(&ct, &img, &["--leave-running"]).assert_ok();
    report_frozen(test, "dump --leave-running", &runtime_name(&ct), &img);
    assert_eq!(status(&ct).as_deref(), Some("running"));
    assert_eq!(init_pid(&ct), pid, "the init changed under --leave-running");
    let before = counts(&ct);
    let after = wait_counts(&ct, before.len() + 3);
    assert!(
        after.len() > before.len(),
        "the counter stopped after checkpoint --leave-running: {after:?}"
    );
    assert_one_unbroken_count(&after, "after --leave-running");
    assert!(Path::new(&img).join("descriptors.json").exists());
    assert_crit_reads(&img);

    // A restore CRIU fails half-way (a damaged process tree image) leaves
    // no state, cgroup or mount behind.
    let pstree = Path::new(&img).join("pstree.img");
    let len = fs::metadata(&pstree).map(|m| m.len()).unwrap_or(0);
    fs::OpenOptions::new()
        .write(true)
        .open(&pstree)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate pstree.img");
    let other = counter(&env, &format!("{test}-damaged"), &env.bin);
    other.save_config();
    let mounts_before = host_mounts();
    let out = restore(&other, &img, &[]);
    assert_refused_cleanly(&other, &out);
    assert!(out.stderr.contains("criu restore failed"), "{out}");
    // Only this restore's: tests running beside this one (two threads)
    // mount and unmount their own CRIU roots and cgroup yards meanwhile.
    let new: Vec<String> = new_mounts(&mounts_before, &host_mounts())
        .into_iter()
        .filter(|m| m.contains(other.id.as_str()) || m.contains(img.as_str()))
        .collect();
    assert!(new.is_empty(), "a failed restore left mounts: {new:?}");
}

#[test]
fn pre_dump_then_dump_with_parent_is_smaller_than_a_full_dump() {
    let test = "pre_dump_then_dump_with_parent_is_smaller_than_a_full_dump";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let images = Images::new(test);
    let mut ct = Ct::new(&env, test);
    // 8 MiB of non-zero memory held by an awk that never changes it (a
    // string doubled up: cheap even under emulation), and the counter,
    // which dirties a few pages.
    ct.sh(&format!(
        "exec </dev/null >/dev/null 2>&1; \
         awk 'BEGIN {{ s = \"x\"; while (length(s) < 8388608) s = s s; system(\"exec sleep 100000\") }}' & {}",
        COUNTER.trim_start_matches("exec </dev/null >/dev/null 2>&1; ")
    ));
    run_detached(&ct, &[]).assert_ok();
    wait_counts(&ct, 3);
    let rt = runtime_name(&ct);
    let full = images.join("full");
    checkpoint(&ct, &full, &["--leave-running"]).assert_ok();
    report_frozen(test, "full dump (--leave-running)", &rt, &full);
    let pre = images.join("pre");
    checkpoint(&ct, &pre, &["--pre-dump"]).assert_ok();
    assert_eq!(
        status(&ct).as_deref(),
        Some("running"),
        "a pre-dump stopped the container"
    );
    report_frozen(test, "pre-dump", &rt, &pre);
    let last = images.join("last");
    checkpoint(&ct, &last, &["--parent-path", "../pre"]).assert_ok();
    report_frozen(test, "dump --parent-path ../pre", &rt, &last);
    let (full_b, pre_b, last_b) = (pages_bytes(&full), pages_bytes(&pre), pages_bytes(&last));
    println!("SIZES {test}: full {full_b} B, pre-dump {pre_b} B, final with parent {last_b} B");
    assert!(
        full_b > 8 << 20,
        "the full dump holds less than the 8 MiB the shell keeps: {full_b} B"
    );
    assert!(
        last_b * 4 < full_b,
        "the dump after a pre-dump is not much smaller than a full one: {last_b} B vs {full_b} B"
    );
    // The incremental images restore.
    restore(&ct, &last, &[]).assert_ok();
    let c = counts(&ct);
    let c = wait_counts(&ct, c.len() + 2);
    assert_one_unbroken_count(&c, "after restore from pre-dump + dump");
}

#[test]
fn checkpoint_where_criu_cannot_work_says_so_and_leaves_the_container_running() {
    let test = "checkpoint_where_criu_cannot_work_says_so_and_leaves_the_container_running";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if in_vm_lane() || criu_bin().is_none() || criu_works() {
        skip(test, "CRIU works here (or is absent): nothing to refuse");
        return;
    }
    let images = Images::new(test);
    let ct = counter(&env, test, &env.bin);
    ct.run_detached().assert_ok();
    wait_counts(&ct, 2);
    let pid = init_pid(&ct);
    let img = images.join("never");
    let checks_before = criu_check_dirs();
    let out = checkpoint(&ct, &img, &[]);
    assert_eq!(out.code, 1, "{out}");
    let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{out}");
    assert!(
        lines[0].contains("CRIU cannot work on this host")
            && lines[0].contains("criu check")
            && lines[0].contains("still running"),
        "the error does not name the cause:\n{out}"
    );
    assert_eq!(status(&ct).as_deref(), Some("running"));
    assert_eq!(init_pid(&ct), pid);
    let before = counts(&ct);
    let after = wait_counts(&ct, before.len() + 2);
    assert!(after.len() > before.len(), "the counter stopped: {after:?}");
    assert!(!Path::new(&img).exists(), "checkpoint left {img} behind");
    assert_eq!(
        criu_check_dirs(),
        checks_before,
        "checkpoint left a CRIU work directory behind"
    );

    // restore says the same and leaves no state or cgroup.
    fs::create_dir_all(&img).expect("mkdir");
    fs::write(Path::new(&img).join("descriptors.json"), "[]").expect("write");
    let other = Ct::new(&env, &format!("{test}-restore"));
    other.save_config();
    let out = restore(&other, &img, &[]);
    assert_refused_cleanly(&other, &out);
    assert!(
        out.stderr.contains("CRIU cannot work on this host"),
        "{out}"
    );
}

/// `criu check` passes here.
fn criu_works() -> bool {
    criu_bin().is_some_and(|c| {
        std::process::Command::new(c)
            .arg("check")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn criu_check_dirs() -> Vec<String> {
    fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cove-criu-check"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn checkpoint_of_a_created_container_is_refused_like_runc() {
    let test = "checkpoint_of_a_created_container_is_refused_like_runc";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let images = Images::new(test);
    let ct = counter(&env, test, &env.bin);
    ct.create().assert_ok();
    let img = images.join("x");
    let out = checkpoint(&ct, &img, &[]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("created"), "{out}");
    assert_eq!(status(&ct).as_deref(), Some("created"));
    assert!(!Path::new(&img).exists(), "checkpoint left {img} behind");
}

#[test]
fn checkpoint_bad_flags_are_refused_before_anything_happens() {
    let test = "checkpoint_bad_flags_are_refused_before_anything_happens";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let images = Images::new(test);
    let ct = counter(&env, test, &env.bin);
    ct.run_detached().assert_ok();
    let img = images.join("x");
    for (flags, says) in [
        (
            vec!["--parent-path", "/abs"],
            "--parent-path must be relative",
        ),
        (vec!["--parent-path", "../nope"], "invalid --parent-path"),
        (vec!["--manage-cgroups-mode", "hard"], "manage-cgroups-mode"),
        (vec!["--empty-ns", "pid"], "not supported"),
        (vec!["--page-server", "nohost"], "page-server"),
    ] {
        let out = checkpoint(&ct, &img, &flags);
        assert_eq!(out.code, 1, "{out}");
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
        assert!(out.stderr.contains(says), "expected {says:?}:\n{out}");
        assert_eq!(status(&ct).as_deref(), Some("running"), "{out}");
        assert!(!Path::new(&img).exists(), "{out}\nleft {img} behind");
    }
}

#[test]
fn restore_without_images_is_refused_cleanly() {
    let test = "restore_without_images_is_refused_cleanly";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let images = Images::new(test);
    let ct = counter(&env, test, &env.bin);
    ct.save_config();
    let img = images.join("empty");
    fs::create_dir_all(&img).expect("mkdir");
    let out = restore(&ct, &img, &[]);
    assert_refused_cleanly(&ct, &out);
    assert!(out.stderr.contains("checkpoint image directory"), "{out}");
}

/// The numbers of `n=K` lines a terminal showed.
fn tty_numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_prefix("n=")?.parse().ok())
        .collect()
}

#[test]
fn restored_terminal_comes_back_on_the_console_socket() {
    let test = "restored_terminal_comes_back_on_the_console_socket";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let images = Images::new(test);
    let mut ct = Ct::new(&env, test);
    ct.config["process"]["terminal"] = json!(true);
    ct.sh("i=0; while :; do i=$((i+1)); echo n=$i; sleep 0.2; done");
    let sock = ConsoleSocket::bind(&ct.bundle.join("console.sock"));
    let sock_path = sock.path.display().to_string();
    run_detached(&ct, &["--console-socket", &sock_path]).assert_ok();
    let master = sock.receive_master(CRIU_TIMEOUT).expect("pty master");
    let before = tty_numbers(&read_pty(&master, Duration::from_secs(5)));
    let last_before = *before.last().expect("the container printed nothing");
    let img = images.join("tty");
    checkpoint(&ct, &img, &[]).assert_ok();
    report_frozen(
        test,
        "dump of a terminal container",
        &runtime_name(&ct),
        &img,
    );
    drop(master);
    let sock2 = ConsoleSocket::bind(&ct.bundle.join("console2.sock"));
    let sock2_path = sock2.path.display().to_string();
    restore(&ct, &img, &["--console-socket", &sock2_path]).assert_ok();
    let master2 = sock2
        .receive_master(CRIU_TIMEOUT)
        .expect("the restored pty master on the console socket");
    let after = tty_numbers(&read_pty(&master2, Duration::from_secs(5)));
    assert!(
        after.first().is_some_and(|f| *f > last_before),
        "the restored terminal shows no count going on from {last_before}: {after:?}"
    );
    for w in after.windows(2) {
        assert_eq!(w[1], w[0] + 1, "the restored count jumps: {after:?}");
    }
}

// ---------------------------------------------------------------- page server, lazy pages

/// A TCP port free on loopback a moment ago (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A CRIU process of this test (page server, lazy-pages daemon), killed by
/// pid if it is still there when the test ends.
struct CriuProcess {
    pid: i32,
    what: &'static str,
}

impl CriuProcess {
    fn alive(&self) -> bool {
        // A zombie child of ours still has /proc/PID: look at its state.
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    }

    /// Waits until it has ended on its own (what a finished transfer does).
    fn wait_gone(&self, timeout: Duration) -> bool {
        wait_until(timeout, || !self.alive())
    }
}

impl Drop for CriuProcess {
    fn drop(&mut self) {
        if self.alive() {
            eprintln!("killing the {} ({}) the test left", self.what, self.pid);
            // SAFETY: a plain kill(2) of a pid this test started.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// `criu page-server -d` on loopback writing into `dir`: when it returns the
/// server listens; its pid comes from its pid file.
fn start_page_server(dir: &str, port: u16) -> CriuProcess {
    let criu = criu_bin().expect("criu");
    fs::create_dir_all(dir).expect("mkdir");
    let pidfile = format!("{dir}/page-server.pid");
    let out = run_command(
        &criu,
        &[
            "page-server",
            "-d",
            "--images-dir",
            dir,
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--pidfile",
            &pidfile,
            "-v4",
            "-o",
            "page-server.log",
        ]
        .map(String::from),
        Path::new(TEST_TMP),
        CRIU_TIMEOUT,
    );
    assert!(out.ok(), "criu page-server did not start:\n{out}");
    let mut pid = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            pid = fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            pid > 0
        }),
        "criu page-server wrote no pid file"
    );
    CriuProcess {
        pid,
        what: "criu page-server",
    }
}

/// Moves the files of `from` into `to`.
fn move_files(from: &str, to: &str) {
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let dest = Path::new(to).join(e.file_name());
        fs::copy(e.path(), &dest).unwrap_or_else(|err| panic!("copy to {}: {err}", dest.display()));
    }
}

/// A checkpoint whose memory goes to a page server (a second CRIU, as on a
/// destination host) instead of the image directory; the two directories
/// together restore the container, which counts on from where it froze.
fn page_server_cycle(ct: &Ct, images: &Images, test: &str) -> String {
    run_detached(ct, &[]).assert_ok();
    wait_counts(ct, 3);
    let tree_before = tree_of(init_pid(ct));
    let (img, pages) = (images.join("rest"), images.join("pages"));
    let port = free_port();
    let server = start_page_server(&pages, port);
    checkpoint(ct, &img, &["--page-server", &format!("127.0.0.1:{port}")]).assert_ok();
    assert!(
        server.wait_gone(CRIU_TIMEOUT),
        "the page server did not end after the dump"
    );
    report_frozen(test, "dump to a page server", &runtime_name(ct), &img);
    assert_eq!(
        pages_bytes(&img),
        0,
        "memory pages were written to the image directory, not to the page server"
    );
    assert!(
        pages_bytes(&pages) > 0,
        "the page server received no pages (see {pages}/page-server.log)"
    );
    move_files(&pages, &img);
    restore(ct, &img, &[]).assert_ok();
    assert_eq!(status(ct).as_deref(), Some("running"));
    let pid = init_pid(ct);
    let c = counts(ct);
    let c = wait_counts(ct, c.len() + 3);
    assert_one_unbroken_count(&c, "after a restore from page-server images");
    let tree_after = tree_of(pid);
    assert_eq!(
        tree_before, tree_after,
        "the process tree inside changed across a page-server dump"
    );
    rt(ct, &["delete", "--force", &ct.id]).assert_ok();
    assert!(ct.cgroup_dirs().is_empty(), "delete left the cgroup");
    tree_shape(&tree_after)
}

#[test]
fn memory_sent_to_a_page_server_restores_like_runc() {
    let test = "memory_sent_to_a_page_server_restores_like_runc";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let runc = env.runc.clone().expect("runc");
    let ct = counter(&env, test, &env.bin);
    let runc_saw = {
        let twin = ct.twin(&runc);
        let images = Images::new(&format!("{test}-runc"));
        page_server_cycle(&twin, &images, test)
    };
    let images = Images::new(test);
    let cove_saw = page_server_cycle(&ct, &images, test);
    assert_same_as_runc(test, &runc_saw, &cove_saw, "page-server checkpoint/restore");
}

/// A pipe, both ends close-on-exec (the runtime gets the write end as fd 3).
fn cloexec_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just made and are owned by nothing else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// `criu check --feature NAME` passes.
fn criu_has(feature: &str) -> bool {
    criu_bin().is_some_and(|c| {
        std::process::Command::new(c)
            .args(["check", "--feature", feature])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Lazy migration as runc's users do it: checkpoint --lazy-pages serves the
/// memory from the frozen source; --status-fd says when; CRIU's lazy-pages
/// daemon fetches the pages for a restore of a second container, which
/// counts on from where the first froze; the source is gone at the end.
#[test]
fn lazy_pages_restore_a_second_container_from_the_frozen_first() {
    let test = "lazy_pages_restore_a_second_container_from_the_frozen_first";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    if !criu_has("uffd-noncoop") {
        skip(test, "this kernel's userfaultfd lacks what CRIU's lazy pages need (criu check --feature uffd-noncoop)");
        return;
    }
    let images = Images::new(test);
    let src = counter(&env, test, &env.bin);
    run_detached(&src, &[]).assert_ok();
    wait_counts(&src, 3);
    let tree_before = tree_of(init_pid(&src));
    let img = images.join("lazy");
    fs::create_dir_all(&img).expect("mkdir");
    let port = free_port();

    let (ready_r, ready_w) = cloexec_pipe();
    let dump = {
        let args: Vec<String> = [
            "--root",
            &src.state_root.display().to_string(),
            "checkpoint",
            "--image-path",
            &img,
            "--lazy-pages",
            "--page-server",
            &format!("127.0.0.1:{port}"),
            "--status-fd",
            "3",
            &src.id,
        ]
        .map(String::from)
        .to_vec();
        let (bin, bundle) = (src.bin.clone(), src.bundle.clone());
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let out =
                run_command_with_fds(&bin, &args, &bundle, CRIU_TIMEOUT, &[ready_w.as_raw_fd()]);
            drop(ready_w);
            out
        })
    };
    // One 0 byte once the source is frozen and its pages are served.
    let mut byte = [1u8; 1];
    let got = {
        use std::io::Read;
        let mut r = fs::File::from(ready_r);
        r.read(&mut byte).unwrap_or(0)
    };
    if got != 1 || byte[0] != 0 {
        let out = dump.join().expect("checkpoint thread");
        panic!("checkpoint --lazy-pages never said ready on --status-fd:\n{out}");
    }
    assert!(
        Path::new(&img).join("inventory.img").exists(),
        "no inventory.img when the lazy dump said ready"
    );

    let criu = criu_bin().expect("criu");
    let mut daemon = std::process::Command::new(&criu);
    daemon
        .args([
            "lazy-pages",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .args(["--images-dir", &img, "-v4", "-o", "lazy-pages.log"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut daemon = daemon.spawn().expect("criu lazy-pages");
    let _daemon_guard = CriuProcess {
        pid: daemon.id() as i32,
        what: "criu lazy-pages",
    };

    let dest = counter(&env, &format!("{test}-dest"), &env.bin);
    dest.save_config();
    let restored = restore(&dest, &img, &["--lazy-pages"]);
    let dumped = dump.join().expect("checkpoint thread");
    let daemon_status = daemon.wait().expect("wait criu lazy-pages");
    restored.assert_ok();
    dumped.assert_ok();
    assert!(
        daemon_status.success(),
        "criu lazy-pages failed ({daemon_status}); see {img}/lazy-pages.log"
    );
    assert_eq!(status(&dest).as_deref(), Some("running"));
    let pid = init_pid(&dest);
    let c = counts(&dest);
    let c = wait_counts(&dest, c.len() + 3);
    assert_one_unbroken_count(&c, "after a lazy restore");
    assert_eq!(
        tree_before,
        tree_of(pid),
        "the process tree inside changed across lazy migration"
    );
    // The source ended with the dump (no --leave-running), as with runc.
    assert!(
        matches!(status(&src).as_deref(), None | Some("stopped")),
        "the source container is still there after the lazy dump: {:?}",
        status(&src)
    );
    rt(&dest, &["delete", "--force", &dest.id]).assert_ok();
    assert!(
        dest.cgroup_dirs().is_empty(),
        "delete left the restored cgroup"
    );
    assert!(src.cgroup_dirs().is_empty(), "the source's cgroup is left");
}
