//! create/delete under stress and under crashes: many create/kill/delete
//! cycles on one bundle, and cove-oci SIGKILLed at each step of create
//! followed by runc's `delete --force`. After each, nothing of the
//! container may be left: no cgroup directory in any hierarchy mounted on
//! the host (every v1 hierarchy and the cgroup2 tree), no state directory,
//! no mount, no process; and the id can be created again.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

/// The two tests take turns: the crash test makes this process a child
/// subreaper and counts its children, which the other test's commands
/// would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The mount point of every cgroup hierarchy (v1 `cgroup` or `cgroup2`)
/// this process sees whose root is the hierarchy's root, from mountinfo:
/// not only those under /sys/fs/cgroup.
fn cgroup_mount_points() -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            let fstype = *f.get(dash + 1)?;
            (matches!(fstype, "cgroup" | "cgroup2") && f.get(3) == Some(&"/"))
                .then(|| PathBuf::from(f[4]))
        })
        .collect();
    points.sort();
    points.dedup();
    points
}

/// `ct`'s cgroup directories that exist in any hierarchy.
fn cgroups_left(ct: &Ct) -> Vec<PathBuf> {
    let rel = ct.cgroups_path.trim_start_matches('/');
    cgroup_mount_points()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|d| d.exists())
        .collect()
}

/// What is left of `ct` on the host, one line per thing; empty when clean.
fn leftovers(ct: &Ct, mounts_before: &[String]) -> Vec<String> {
    let mut left: Vec<String> = cgroups_left(ct)
        .into_iter()
        .map(|d| format!("cgroup directory {}", d.display()))
        .collect();
    left.extend(
        ct.state_root_entries()
            .into_iter()
            .map(|e| format!("state entry {}/{e}", ct.state_root.display())),
    );
    // Other test binaries mount and unmount on this host meanwhile: only
    // new mounts that name this container (its id is in its bundle's and
    // state root's paths) or its rootfs count.
    let rootfs = ct.config["root"]["path"].as_str().unwrap_or("/nonexistent");
    left.extend(
        new_mounts(mounts_before, &host_mounts())
            .into_iter()
            .filter(|m| m.contains(&ct.id) || m.contains(rootfs))
            .map(|m| format!("mount {m}")),
    );
    left
}

/// Cycles of the first test: `$COVE_STRESS_CYCLES`, else 200 on a host
/// and VM_LANE_CYCLES in the VM lane, whose software emulation makes a
/// cycle some ten times slower (the lane gives a test binary 600 s).
fn cycles() -> usize {
    std::env::var("COVE_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if in_vm_lane() { VM_LANE_CYCLES } else { 200 })
}

const VM_LANE_CYCLES: usize = 50;

/// A line on stderr past libtest's capture: the figures show even when a
/// lane's timeout ends the binary before libtest prints captured output.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn create_kill_delete_cycles_leave_no_cgroup_state_or_mount() {
    let test = "create_kill_delete_cycles_leave_no_cgroup_state_or_mount";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.args(&["sleep", "1000"]);
    assert!(ct.cgroups_path.starts_with("/cove-test/"));
    let mounts_before = host_mounts();
    let hierarchies = cgroup_mount_points();
    assert!(
        !hierarchies.is_empty(),
        "no cgroup hierarchy in /proc/self/mountinfo"
    );
    let n = cycles();
    let started = Instant::now();
    for i in 0..n {
        ct.create().assert_ok();
        // Every cycle sees its cgroup made: a runtime that made none
        // would pass the checks below for nothing.
        assert!(
            !cgroups_left(&ct).is_empty(),
            "cycle {i}: no cgroup directory after create"
        );
        // Half the cycles kill a created container (its init waits on the
        // exec fifo), half a started one.
        if i % 2 == 1 {
            ct.start().assert_ok();
        }
        ct.kill("KILL").assert_ok();
        assert!(
            ct.wait_status("stopped", STOP_TIMEOUT),
            "cycle {i}: not stopped {STOP_TIMEOUT:?} after kill: {:?}",
            ct.state_json()
        );
        ct.delete().assert_ok();
        let left = leftovers(&ct, &mounts_before);
        assert!(
            left.is_empty(),
            "cycle {i} of {n} left:\n{}",
            left.join("\n")
        );
    }
    let took = started.elapsed();
    report(&format!(
        "{test}: {n} cycles in {:.1} s ({:.0} ms each), hierarchies checked: {}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n.max(1) as f64,
        hierarchies
            .iter()
            .map(|h| h.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    ));
}

// ---------------------------------------------------------------- SIGKILL at each step

/// Makes this process the reaper of orphans below it for as long as it
/// lives, so that whatever a killed cove-oci leaves running becomes our
/// child and is seen; reaps and clears on drop.
struct Subreaper;

impl Subreaper {
    fn new() -> Subreaper {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        for pid in live_children() {
            // SAFETY: kill(2) on an orphan of our own test's runtime.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        reap_zombies();
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
    }
}

/// (pid, state, command) of each child of this process.
fn children() -> Vec<(i32, char, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so from the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if rest.next().and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push((pid, state, comm));
        }
    }
    out
}

fn live_children() -> Vec<i32> {
    children()
        .into_iter()
        .filter(|(_, state, _)| *state != 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Waits for each zombie child by pid (never `waitpid(-1)`, which could
/// take a status a running command of this test waits for).
fn reap_zombies() {
    for (pid, state, _) in children() {
        if state == 'Z' {
            // SAFETY: waitpid on a zombie child of ours.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// Processes left below us: orphans of a killed create get a moment to
/// notice their runtime is gone and exit (the init reads EOF on its sync
/// socket); what still runs after that is a leak.
fn processes_left() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        reap_zombies();
        let live: Vec<(i32, char, String)> = children()
            .into_iter()
            .filter(|(_, state, _)| *state != 'Z')
            .collect();
        if live.is_empty() || Instant::now() >= deadline {
            return live
                .into_iter()
                .map(|(pid, state, comm)| format!("process {pid} ({comm}) state {state}"))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `strace [-o TRACE] [-e inject=SYSCALL:signal=SIGKILL:when=N] cove-oci
/// create` of `ct`'s bundle. strace follows only cove-oci's main thread:
/// the syscalls counted are the runtime's own, never the container init's.
fn traced_create(
    strace: &Path,
    ct: &Ct,
    trace: Option<&Path>,
    inject: Option<(&str, usize)>,
) -> Out {
    traced(
        strace,
        ct,
        "create",
        trace,
        inject.map(|(syscall, n)| format!("{syscall}:signal=SIGKILL:when={n}")),
    )
}

/// `strace [-o TRACE] [-e inject=INJECT] cove-oci COMMAND --bundle B ID`
/// (COMMAND: create or run).
fn traced(
    strace: &Path,
    ct: &Ct,
    command: &str,
    trace: Option<&Path>,
    inject: Option<String>,
) -> Out {
    let mut args: Vec<String> = vec!["-qq".into(), "-o".into()];
    args.push(trace.map_or("/dev/null".into(), |t| t.display().to_string()));
    if let Some(i) = inject {
        args.push("-e".into());
        args.push(format!("inject={i}"));
    }
    args.push(ct.bin.display().to_string());
    args.extend(
        [
            "--root",
            &ct.state_root.display().to_string(),
            command,
            "--bundle",
            &ct.bundle.display().to_string(),
            &ct.id,
        ]
        .map(String::from),
    );
    run_command(strace, &args, &ct.bundle, command_timeout())
}

/// Calls that change nothing outside cove-oci and wait for nobody: a kill
/// on entering one leaves the host as a kill on entering the next call
/// that is not in this list, so runs killed at them would repeat others.
/// Any call not named here is a step (and killed at), so an unknown or new
/// one is never skipped. `$COVE_STRESS_ALL_SYSCALLS=1` kills at these too.
const CHANGES_NOTHING: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "clock_gettime",
    "close",
    "faccessat",
    "faccessat2",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpid",
    "getrandom",
    "gettid",
    "getuid",
    "lseek",
    "lstat",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "pread64",
    "read",
    "readlink",
    "readlinkat",
    "readv",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "sched_getaffinity",
    "sched_yield",
    "set_robust_list",
    "set_tid_address",
    "sigaltstack",
    "stat",
    "statfs",
    "statx",
    "uname",
];

/// For each syscall of an strace log (one call a line): how many calls of
/// it come before the line holding `from`, and how many in all.
fn syscall_counts(trace: &str, from: &str) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut reached = false;
    for line in trace.lines() {
        reached |= line.contains(from);
        let Some(open) = line.find('(') else { continue };
        let name = &line[..open];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let entry = counts.entry(name.to_string()).or_default();
            entry.1 += 1;
            if !reached {
                entry.0 += 1;
            }
        }
    }
    counts
}

/// After a kill (or a clean run): `delete --force` succeeds as runc's does
/// and leaves nothing; then the id is created again and deleted.
#[track_caller]
fn assert_delete_force_cleans(ct: &Ct, mounts_before: &[String], step: &str) {
    let out = ct.delete_force();
    assert!(out.ok(), "{step}: delete --force failed:\n{out}");
    let mut left = leftovers(ct, mounts_before);
    left.extend(processes_left());
    assert!(
        left.is_empty(),
        "{step}: left after delete --force:\n{}\n{out}",
        left.join("\n")
    );
    let again = ct.create();
    assert!(
        again.ok(),
        "{step}: the id cannot be created again:\n{again}"
    );
    ct.delete_force().assert_ok();
    let mut left = leftovers(ct, mounts_before);
    left.extend(processes_left());
    assert!(
        left.is_empty(),
        "{step}: left after create and delete --force again:\n{}",
        left.join("\n")
    );
}

#[test]
fn sigkill_at_each_step_of_create_then_delete_force_leaves_nothing() {
    let test = "sigkill_at_each_step_of_create_then_delete_force_leaves_nothing";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let Some(strace) = needs_strace(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    ct.args(&["sleep", "1000"]);
    ct.save_config();
    let mounts_before = host_mounts();
    let _subreaper = Subreaper::new();

    // One clean traced create: which syscalls cove-oci makes, how often.
    let trace_path = ct.bundle.join("create.strace");
    traced_create(&strace, &ct, Some(&trace_path), None).assert_ok();
    let trace = fs::read_to_string(&trace_path).unwrap_or_default();
    // The first thing create makes is the container's state directory:
    // a kill before it leaves nothing to look for.
    let first_made = format!("\"{}\"", ct.state_root.join(&ct.id).display());
    assert!(
        trace
            .lines()
            .any(|l| l.starts_with("mkdir(") && l.contains(&first_made)),
        "no mkdir of {first_made} in the trace:\n{trace}"
    );
    let counts = syscall_counts(&trace, &first_made);
    assert!(
        counts.contains_key("clone3") || counts.contains_key("clone"),
        "the trace shows no clone: strace followed the wrong process?\n{trace}"
    );
    let every_call = std::env::var_os("COVE_STRESS_ALL_SYSCALLS").is_some_and(|v| v == "1");
    assert_delete_force_cleans(&ct, &mounts_before, "after a clean create");

    // Then one run per (syscall, k): killed on entering the k-th call of
    // that syscall, k from the first call after the state directory's mkdir
    // until create gets through. Together the runs stop create before each
    // of its steps.
    let started = Instant::now();
    let mut kills = 0;
    let mut steps = 0;
    for (syscall, &(before, seen)) in &counts {
        if syscall == "execve" || (!every_call && CHANGES_NOTHING.contains(&syscall.as_str())) {
            continue;
        }
        steps += seen - before;
        let mut k = before + 1;
        loop {
            let step = format!("SIGKILL at {syscall} #{k}");
            let out = traced_create(&strace, &ct, None, Some((syscall, k)));
            match out.code {
                0 => break,
                137 => kills += 1,
                _ => panic!("{step}: create failed on its own:\n{out}"),
            }
            assert_delete_force_cleans(&ct, &mounts_before, &step);
            k += 1;
            // Counts vary a little between runs (retries, polls); a create
            // that never gets through is a bug of its own.
            assert!(
                k <= seen + 20,
                "{step}: create still killed past {seen} calls seen"
            );
        }
        // The run that got through made a container: gone again.
        assert_delete_force_cleans(
            &ct,
            &mounts_before,
            &format!("{syscall}: after the clean run"),
        );
        let killed_at = if k > before + 1 {
            format!("calls {} to {} killed at", before + 1, k - 1)
        } else {
            "no call after the state directory's mkdir".to_string()
        };
        report(&format!(
            "{test}: {syscall}: {killed_at}, {:.1} s so far",
            started.elapsed().as_secs_f64()
        ));
    }
    assert!(
        kills >= steps.min(1),
        "no run was killed: strace injected nothing?"
    );
    report(&format!(
        "{test}: {kills} kills at {steps} steps ({} calls in the clean trace, every call: {every_call}) in {:.1} s",
        counts.values().map(|c| c.1).sum::<usize>(),
        started.elapsed().as_secs_f64()
    ));
}

/// `run` that fails after its create (signal forwarding cannot be set up;
/// the wait for the container fails) kills and deletes the container, as
/// runc's run does: it says it failed and leaves nothing running.
#[test]
fn run_failing_after_create_leaves_nothing() {
    let test = "run_failing_after_create_leaves_nothing";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let Some(strace) = needs_strace(test) else {
        return;
    };
    let _serial = serial();
    let mut ct = Ct::new(&env, test);
    let mounts_before = host_mounts();
    let _subreaper = Subreaper::new();

    // A clean traced run of `true`: the last poll(2) of cove-oci's main
    // thread is the wait for the container.
    ct.args(&["true"]);
    ct.save_config();
    let trace_path = ct.bundle.join("run.strace");
    traced(&strace, &ct, "run", Some(&trace_path), None).assert_ok();
    let trace = fs::read_to_string(&trace_path).unwrap_or_default();
    let polls = trace.lines().filter(|l| l.starts_with("poll(")).count();
    assert!(polls > 0, "no poll in the trace of run:\n{trace}");
    assert!(
        leftovers(&ct, &mounts_before).is_empty(),
        "a clean run left: {:?}",
        leftovers(&ct, &mounts_before)
    );

    ct.args(&["sleep", "1000"]);
    ct.save_config();
    for inject in [
        "signalfd4:error=EMFILE:when=1".to_string(),
        format!("poll:error=ENOMEM:when={polls}"),
    ] {
        let out = traced(&strace, &ct, "run", None, Some(inject.clone()));
        assert!(!out.ok(), "{inject}: run did not fail:\n{out}");
        assert!(
            out.stderr.contains(if inject.starts_with("signalfd4") {
                "signalfd"
            } else {
                "poll"
            }),
            "{inject}: the error does not say what failed:\n{out}"
        );
        let mut left = leftovers(&ct, &mounts_before);
        left.extend(processes_left());
        assert!(
            left.is_empty(),
            "{inject}: left after the failed run:\n{}\n{out}",
            left.join("\n")
        );
    }
}
