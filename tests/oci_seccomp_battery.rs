//! A battery of exact syscalls (tests/seccomp-probe.c) run inside a busybox
//! container under several seccomp profiles, first with runc 1.1.5 (whose
//! filter libseccomp builds) and then with the runtime under test, on the
//! same bundle: the two outputs must be identical, line for line, exit
//! status included. Every profile is also checked against what it is meant
//! to do, so that runc agreeing with a broken probe cannot pass.
//!
//! The container gets CAP_SYS_ADMIN, so mount, unshare and sethostname
//! would succeed without a filter (the `no_profile_*` test shows it): the
//! only thing that denies them here is seccomp.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::*;

const ARCHES: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const S_ISUID: u64 = 0o4000;

/// Every probe the battery runs, in order. Each one forks, so a probe that
/// changes the process or gets it killed does not touch the next.
const BATTERY: &[&str] = &[
    "mkdir",
    "mkdir-i386",
    "mkdir-x32",
    "chmod:0755",
    "chmod:04755",
    "unshare:0x20000",
    "unshare:0x10000000",
    "unshare:0x10020000",
    "sethostname",
    "sethostname:abc",
    "ptrace",
    "personality:0xffffffff",
    "personality:0",
    "mount",
];

/// What a busybox shell, the static probe and runc's own last steps before
/// execve need on x86_64. mkdir, mount, unshare, sethostname, ptrace and
/// personality are left out on purpose. `sendto` is not needed by runc,
/// which tells its parent it is ready before it loads the filter; see
/// `allow_list_need_not_allow_the_runtimes_sync_socket_as_runc`.
const ALLOWED: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "clock_gettime",
    "clock_nanosleep",
    "clone",
    "clone3",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_wait",
    "execve",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchown",
    "fcntl",
    "fork",
    "fstat",
    "fstatfs",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getrlimit",
    "gettid",
    "getuid",
    "ioctl",
    "kill",
    "lseek",
    "lstat",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "prlimit64",
    "read",
    "readlink",
    "readlinkat",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "sendto",
    "set_robust_list",
    "set_tid_address",
    "setgid",
    "setgroups",
    "setresgid",
    "setresuid",
    "setuid",
    "sigaltstack",
    "stat",
    "statx",
    "tgkill",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// Runs the probe with `probe_args` under `profile` with runc, then with
/// the runtime under test on the same bundle; panics with a diff unless
/// both printed the same lines and exited alike. Returns what the runtime
/// under test printed with its exit code, or None when skipped.
fn battery_like_runc(test: &str, profile: Value, probe_args: &[&str]) -> Option<String> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let probe = needs_seccomp_probe(test)?;
    let mut reference = Ct::with_bin(&env, test, &runc);
    let mut args = vec![PROBE_IN_CT];
    args.extend_from_slice(probe_args);
    reference
        .args(&args)
        .mount_seccomp_probe(&probe)
        .add_capabilities(&["CAP_SYS_ADMIN"]);
    reference.config["linux"]["seccomp"] = profile;
    reference.save_config();
    let under_test = reference.twin(&env.bin);
    let runc_out = reference.run();
    let out = under_test.run();
    assert_same_as_runc(
        test,
        &observed(&runc_out),
        &observed(&out),
        &format!("===== runc run =====\n{runc_out}\n===== run under test =====\n{out}"),
    );
    Some(observed(&out))
}

/// `probe: result` lines for `expected`, then the exit code line.
fn lines(expected: &[(&str, &str)], code: i32) -> String {
    let mut text: String = expected
        .iter()
        .map(|(probe, result)| format!("{probe}: {result}\n"))
        .collect();
    text.push_str(&format!("exit code: {code}\n"));
    text
}

#[test]
fn no_profile_lets_every_probe_through_as_runc() {
    // The control: with CAP_SYS_ADMIN and no filter everything succeeds
    // but x32 (this kernel has no x32 ABI), so every denial below is the
    // filter's doing.
    let test = "no_profile_lets_every_probe_through_as_runc";
    let Some(seen) = battery_like_runc(test, Value::Null, BATTERY) else {
        return;
    };
    let expected: Vec<(&str, &str)> = BATTERY
        .iter()
        .map(|p| {
            (
                *p,
                if *p == "mkdir-x32" {
                    "errno ENOSYS"
                } else {
                    "ok"
                },
            )
        })
        .collect();
    assert_eq!(seen, lines(&expected, 0));
}

#[test]
fn errno_default_with_allow_list_and_conditional_allows_as_runc() {
    // (a) Everything not allowed fails with EPERM, on all three ABIs;
    // personality is allowed only as the query (0xffffffff), unshare only
    // without CLONE_NEWUSER: conditions on an ALLOW rule.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["unshare"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    });
    let test = "errno_default_with_allow_list_and_conditional_allows_as_runc";
    let Some(seen) = battery_like_runc(test, profile, BATTERY) else {
        return;
    };
    let eperm = "errno EPERM";
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", eperm),
                ("mkdir-i386", eperm),
                ("mkdir-x32", eperm),
                ("chmod:0755", "ok"),
                ("chmod:04755", "ok"),
                ("unshare:0x20000", "ok"),
                ("unshare:0x10000000", eperm),
                ("unshare:0x10020000", eperm),
                ("sethostname", eperm),
                ("sethostname:abc", eperm),
                ("ptrace", eperm),
                ("personality:0xffffffff", "ok"),
                ("personality:0", eperm),
                ("mount", eperm),
            ],
            0
        )
    );
}

#[test]
fn allow_list_need_not_allow_the_runtimes_sync_socket_as_runc() {
    // With noNewPrivileges the filter is loaded as late as possible: runc
    // sends its last message to the parent before that, so the profile
    // need not allow the runtime's socket calls.
    let allowed: Vec<&str> = ALLOWED.iter().copied().filter(|s| *s != "sendto").collect();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ARCHES,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    });
    let test = "allow_list_need_not_allow_the_runtimes_sync_socket_as_runc";
    let Some(seen) = battery_like_runc(test, profile, &["mkdir", "chmod:0755"]) else {
        return;
    };
    assert_eq!(
        seen,
        lines(&[("mkdir", "errno EPERM"), ("chmod:0755", "ok")], 0)
    );
}

#[test]
fn default_errno_ret_is_the_errno_of_everything_not_allowed_as_runc() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "architectures": ARCHES,
        "syscalls": [{"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}],
    });
    let test = "default_errno_ret_is_the_errno_of_everything_not_allowed_as_runc";
    let Some(seen) = battery_like_runc(test, profile, &["mkdir", "mkdir-i386", "chmod:0755"])
    else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", "errno EACCES"),
                ("mkdir-i386", "errno EACCES"),
                ("chmod:0755", "ok"),
            ],
            0
        )
    );
}

#[test]
fn allow_default_with_conditional_errno_rules_as_runc() {
    // (b) setuid chmod, a new user namespace and the personality query are
    // refused; the same calls with other arguments go through.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 1, "value": S_ISUID, "valueTwo": S_ISUID, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
        ],
    });
    let test = "allow_default_with_conditional_errno_rules_as_runc";
    let Some(seen) = battery_like_runc(test, profile, BATTERY) else {
        return;
    };
    let eperm = "errno EPERM";
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", "ok"),
                ("mkdir-i386", "ok"),
                ("mkdir-x32", "errno ENOSYS"),
                ("chmod:0755", "ok"),
                ("chmod:04755", eperm),
                ("unshare:0x20000", "ok"),
                ("unshare:0x10000000", eperm),
                ("unshare:0x10020000", eperm),
                ("sethostname", "ok"),
                ("sethostname:abc", "ok"),
                ("ptrace", "ok"),
                ("personality:0xffffffff", eperm),
                ("personality:0", "ok"),
                ("mount", "ok"),
            ],
            0
        )
    );
}

#[test]
fn every_operator_and_condition_combination_as_runc() {
    // NE, LT, LE, GT, GE next to EQ and MASKED_EQ; two conditions on two
    // arguments are ANDed; two on the same argument are ORed, because runc
    // splits them into one rule each (libseccomp cannot hold both in one).
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            // sethostname(name, len): len > 4 is refused.
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EINVAL,
             "args": [{"index": 1, "value": 4, "op": "SCMP_CMP_GT"}]},
            // ptrace(request, ...): any request but PTRACE_TRACEME (0).
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
            // personality(p): p < 8 or p >= 0x100000000 (never, 32 bits).
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_LT"}]},
            // unshare(flags): flags >= CLONE_NEWUSER OR flags <= CLONE_NEWNS.
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [
                {"index": 0, "value": CLONE_NEWUSER, "op": "SCMP_CMP_GE"},
                {"index": 0, "value": CLONE_NEWNS, "op": "SCMP_CMP_LE"}
             ]},
            // mount(src, target, type, flags, data): flags == 0 AND data != NULL.
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EBUSY,
             "args": [
                {"index": 3, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 4, "value": 0, "op": "SCMP_CMP_NE"}
             ]},
            // chmod(path, mode): mode <= 0755 (0644 passes the LE, 0755 too).
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS,
             "args": [{"index": 1, "value": 0o755, "op": "SCMP_CMP_LE"}]},
        ],
    });
    let probes = [
        "sethostname",
        "sethostname:abcd",
        "ptrace",
        "personality:0",
        "personality:8",
        "personality:0xffffffff",
        "unshare:0",
        "unshare:0x20000",
        "unshare:0x4000000",
        "unshare:0x40000000",
        "mount",
        "chmod:0644",
        "chmod:0755",
        "chmod:0756",
    ];
    let test = "every_operator_and_condition_combination_as_runc";
    let Some(seen) = battery_like_runc(test, profile, &probes) else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("sethostname", "errno EINVAL"),
                ("sethostname:abcd", "ok"),
                ("ptrace", "ok"),
                ("personality:0", "errno EACCES"),
                ("personality:8", "ok"),
                ("personality:0xffffffff", "ok"),
                ("unshare:0", "errno EPERM"),
                ("unshare:0x20000", "errno EPERM"),
                ("unshare:0x4000000", "ok"),
                ("unshare:0x40000000", "errno EPERM"),
                ("mount", "errno EBUSY"),
                ("chmod:0644", "errno EROFS"),
                ("chmod:0755", "errno EROFS"),
                ("chmod:0756", "ok"),
            ],
            0
        )
    );
}

/// (c) sethostname killed: SCMP_ACT_KILL_PROCESS.
fn sethostname_killed() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL"},
            {"names": ["personality"], "action": "SCMP_ACT_TRAP"},
        ],
    })
}

#[test]
fn kill_and_trap_actions_kill_the_probe_with_sigsys_as_runc() {
    let test = "kill_and_trap_actions_kill_the_probe_with_sigsys_as_runc";
    let Some(seen) = battery_like_runc(
        test,
        sethostname_killed(),
        &[
            "mkdir",
            "sethostname",
            "ptrace",
            "personality:0",
            "chmod:0755",
        ],
    ) else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", "ok"),
                ("sethostname", "killed by SIGSYS"),
                ("ptrace", "killed by SIGSYS"),
                ("personality:0", "killed by SIGSYS"),
                ("chmod:0755", "ok"),
            ],
            0
        )
    );
}

#[test]
fn sethostname_kills_the_container_process_with_exit_159_as_runc() {
    // In-process (-x): the container's own process dies of SIGSYS and the
    // runtime reports 128 + 31; the probe after it never runs.
    let test = "sethostname_kills_the_container_process_with_exit_159_as_runc";
    let Some(seen) = battery_like_runc(
        test,
        sethostname_killed(),
        &["-x", "mkdir", "sethostname", "chmod:0755"],
    ) else {
        return;
    };
    assert_eq!(seen, lines(&[("mkdir", "ok")], 128 + libc::SIGSYS));
}

#[test]
fn custom_errno_ret_values_are_returned_as_runc() {
    // (d) ptrace gets ENOSYS, mount EPERM (1), mkdir ENOSPC, and errnoRet
    // 0 is a success the kernel never carried out.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSPC},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
        ],
    });
    let test = "custom_errno_ret_values_are_returned_as_runc";
    let Some(seen) = battery_like_runc(
        test,
        profile,
        &[
            "ptrace",
            "mount",
            "mkdir",
            "mkdir-i386",
            "unshare:0x10000000",
            "exists",
        ],
    ) else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("ptrace", "errno ENOSYS"),
                ("mount", "errno EPERM"),
                ("mkdir", "errno ENOSPC"),
                ("mkdir-i386", "errno ENOSPC"),
                ("unshare:0x10000000", "ok"),
                ("exists", "errno ENOENT"),
            ],
            0
        )
    );
}

#[test]
fn unknown_syscall_names_are_skipped_not_refused_as_runc() {
    // (e) A name no table knows is skipped; the rest of its rule applies.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ["no_such_syscall_cove", "mkdir", "sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["another_unknown_one"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    });
    let test = "unknown_syscall_names_are_skipped_not_refused_as_runc";
    let Some(seen) = battery_like_runc(test, profile, &["mkdir", "sethostname", "chmod:0755"])
    else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", "errno EPERM"),
                ("sethostname", "errno EPERM"),
                ("chmod:0755", "ok"),
            ],
            0
        )
    );
}

#[test]
fn abis_left_out_of_architectures_are_killed_as_runc() {
    // Only x86_64 listed: an int 0x80 call comes from an architecture the
    // filter does not know, which libseccomp kills (its default bad-arch
    // action), and x32 numbers are not x86_64 syscalls either.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    });
    let test = "abis_left_out_of_architectures_are_killed_as_runc";
    let Some(seen) = battery_like_runc(
        test,
        profile,
        &["mkdir", "mkdir-i386", "mkdir-x32", "sethostname"],
    ) else {
        return;
    };
    assert_eq!(
        seen,
        lines(
            &[
                ("mkdir", "ok"),
                ("mkdir-i386", "killed by SIGSYS"),
                ("mkdir-x32", "killed by SIGSYS"),
                ("sethostname", "errno EPERM"),
            ],
            0
        )
    );
}

// ------------------------------------------------------- the filter cache
//
// cove-oci keeps each compiled filter in `<root>/.seccomp-cache/`: a later
// create or exec with the same profile text loads it instead of compiling.
// Its debug log says which: "seccomp filter compiled" (then "seccomp
// filter cached") or "seccomp filter from cache".

const COMPILED: &str = "seccomp filter compiled";
const STORED: &str = "seccomp filter cached";
const FROM_CACHE: &str = "seccomp filter from cache";
const IGNORED: &str = "ignored";

/// The cache is cove-oci's: a validation run against runc skips it.
fn cache_prerequisites(test: &str) -> Option<(Env, PathBuf)> {
    if under_test_is_runc() {
        skip(test, "the seccomp filter cache is cove-oci's own");
        return None;
    }
    let env = prerequisites_with_runc(test)?;
    let probe = needs_seccomp_probe(test)?;
    Some((env, probe))
}

/// A container for the runtime under test running the probe under `profile`.
fn probe_ct(env: &Env, test: &str, probe: &Path, bin: &Path, profile: Value, args: &[&str]) -> Ct {
    let mut ct = Ct::with_bin(env, test, bin);
    let mut full = vec![PROBE_IN_CT];
    full.extend_from_slice(args);
    ct.args(&full)
        .mount_seccomp_probe(probe)
        .add_capabilities(&["CAP_SYS_ADMIN"]);
    ct.config["linux"]["seccomp"] = profile;
    ct
}

/// `run` with --debug --log: what the container showed, and the log.
fn run_logged(ct: &Ct, tmp: &TempDir, name: &str) -> (String, String) {
    ct.save_config();
    let log = tmp.join(&format!("{name}.log"));
    let (log_s, bundle) = (log.display().to_string(), ct.bundle.display().to_string());
    let out = ct.cmd(&[
        "--debug", "--log", &log_s, "run", "--bundle", &bundle, &ct.id,
    ]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (observed(&out), text)
}

fn cache_dir(ct: &Ct) -> PathBuf {
    ct.state_root.join(".seccomp-cache")
}

/// The cache's entries (temporary files left out), sorted.
fn cache_entries(ct: &Ct) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache_dir(ct))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    v.sort();
    v
}

#[track_caller]
fn assert_compiled(log: &str, what: &str) {
    assert!(
        log.contains(COMPILED) && log.contains(STORED) && !log.contains(FROM_CACHE),
        "{what}: expected a compile and a store:\n{log}"
    );
}

#[track_caller]
fn assert_from_cache(log: &str, what: &str) {
    assert!(
        log.contains(FROM_CACHE) && !log.contains(COMPILED),
        "{what}: expected the filter from the cache, without a compile:\n{log}"
    );
}

#[test]
fn second_run_takes_the_filter_from_the_cache_and_acts_as_the_first_and_as_runc() {
    // The allow-list profile with conditions on all three ABIs: every kind
    // of jump the program has, so a cached program that lost or changed an
    // instruction shows in the battery.
    let test = "second_run_takes_the_filter_from_the_cache_and_acts_as_the_first_and_as_runc";
    let Some((env, probe)) = cache_prerequisites(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["unshare"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    });
    let runc = env.runc.clone().unwrap();
    let reference = probe_ct(&env, test, &probe, &runc, profile, BATTERY);
    let runc_seen = observed(&reference.run());
    let ct = reference.twin(&env.bin);

    assert!(cache_entries(&ct).is_empty());
    let (first, log) = run_logged(&ct, &tmp, "first");
    assert_compiled(&log, "first run");
    assert_eq!(cache_entries(&ct).len(), 1, "one entry after the first run");
    let (second, log) = run_logged(&ct, &tmp, "second");
    assert_from_cache(&log, "second run");
    assert_eq!(cache_entries(&ct).len(), 1);

    assert_same_as_runc(test, &runc_seen, &first, "first run (compiled)");
    assert_same_as_runc(test, &runc_seen, &second, "second run (from the cache)");
    assert!(second.contains("mkdir: errno EPERM\n") && second.contains("unshare:0x20000: ok\n"));
}

#[test]
fn damaged_cache_entry_is_ignored_and_the_profile_still_applies() {
    let test = "damaged_cache_entry_is_ignored_and_the_profile_still_applies";
    let Some((env, probe)) = cache_prerequisites(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSPC}],
    });
    let ct = probe_ct(
        &env,
        test,
        &probe,
        &env.bin,
        profile,
        &["mkdir", "mkdir-i386", "chmod:0755"],
    );
    let expected = lines(
        &[
            ("mkdir", "errno ENOSPC"),
            ("mkdir-i386", "errno ENOSPC"),
            ("chmod:0755", "ok"),
        ],
        0,
    );
    let (seen, log) = run_logged(&ct, &tmp, "fill");
    assert_compiled(&log, "first run");
    assert_eq!(seen, expected);
    let entries = cache_entries(&ct);
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let good = std::fs::read(entry).unwrap();

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let mut trailing = good.clone();
    trailing.push(0);
    let damages: [(&str, Vec<u8>); 5] = [
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("cut before its checksum", good[..good.len() - 8].to_vec()),
        ("one bit flipped", flipped),
        ("a byte too many", trailing),
        ("someone else's file", b"not a cache entry\n".to_vec()),
    ];
    for (i, (what, bytes)) in damages.iter().enumerate() {
        std::fs::write(entry, bytes).unwrap();
        let (seen, log) = run_logged(&ct, &tmp, &format!("damage{i}"));
        assert!(
            log.contains(IGNORED),
            "{what}: no line says the entry was ignored:\n{log}"
        );
        assert_compiled(&log, what);
        assert_eq!(seen, expected, "{what}: the container got another filter");
        assert_eq!(
            std::fs::read(entry).unwrap(),
            good,
            "{what}: the entry was not replaced"
        );
    }
    let (seen, log) = run_logged(&ct, &tmp, "after");
    assert_from_cache(&log, "after the damaged entry was replaced");
    assert_eq!(seen, expected);
}

#[test]
fn different_profiles_do_not_share_a_cache_entry() {
    let test = "different_profiles_do_not_share_a_cache_entry";
    let Some((env, probe)) = cache_prerequisites(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let deny = |name: &str| {
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ARCHES,
            "syscalls": [{"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSPC}],
        })
    };
    let probes = ["mkdir", "sethostname"];
    let mut ct = probe_ct(&env, test, &probe, &env.bin, deny("mkdir"), &probes);
    let denies_mkdir = lines(&[("mkdir", "errno ENOSPC"), ("sethostname", "ok")], 0);
    let denies_sethostname = lines(&[("mkdir", "ok"), ("sethostname", "errno ENOSPC")], 0);

    let (seen, log) = run_logged(&ct, &tmp, "a1");
    assert_compiled(&log, "profile A, first");
    assert_eq!(seen, denies_mkdir);
    ct.config["linux"]["seccomp"] = deny("sethostname");
    let (seen, log) = run_logged(&ct, &tmp, "b1");
    assert_compiled(&log, "profile B, first (A's entry must not serve it)");
    assert_eq!(seen, denies_sethostname);
    assert_eq!(cache_entries(&ct).len(), 2, "one entry per profile");

    let (seen, log) = run_logged(&ct, &tmp, "b2");
    assert_from_cache(&log, "profile B, again");
    assert_eq!(seen, denies_sethostname);
    ct.config["linux"]["seccomp"] = deny("mkdir");
    let (seen, log) = run_logged(&ct, &tmp, "a2");
    assert_from_cache(&log, "profile A, again");
    assert_eq!(seen, denies_mkdir);

    // The same profile written without spaces is other text: its own
    // entry (the key is the text, which costs no parse to compare).
    ct.write_raw_config(&serde_json::to_string(&ct.config).unwrap());
    let (seen, log) = run_logged(&ct, &tmp, "a3");
    assert_compiled(&log, "profile A written compactly");
    assert_eq!(seen, denies_mkdir);
    assert_eq!(cache_entries(&ct).len(), 3);
}

#[test]
fn cache_directory_is_private_and_its_name_is_no_container_id() {
    let test = "cache_directory_is_private_and_its_name_is_no_container_id";
    let Some((env, probe)) = cache_prerequisites(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    let ct = probe_ct(&env, test, &probe, &env.bin, profile, &["mkdir"]);
    let (seen, _) = run_logged(&ct, &tmp, "run");
    assert_eq!(seen, lines(&[("mkdir", "errno EPERM")], 0));
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::symlink_metadata(cache_dir(&ct)).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.mode() & 0o7777, 0o700, "cache directory mode");
    assert_eq!(
        dir.uid(),
        unsafe { libc::geteuid() },
        "cache directory owner"
    );
    for entry in cache_entries(&ct) {
        let m = std::fs::metadata(&entry).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{}", entry.display());
    }
    // A container cannot take the directory's name, and deleting that
    // name leaves the cache alone.
    let out = ct.cmd(&[
        "create",
        "--bundle",
        &ct.bundle.display().to_string(),
        ".seccomp-cache",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        one_error_line(&out).contains("seccomp filter cache"),
        "{out}"
    );
    let out = ct.cmd(&["delete", "--force", ".seccomp-cache"]);
    assert!(out.ok(), "{out}");
    assert_eq!(cache_entries(&ct).len(), 1, "delete removed the cache");
    // Listing skips it.
    let out = ct.list(&["-q"]);
    assert!(out.ok() && out.stdout.trim().is_empty(), "{out}");
}

#[test]
fn exec_takes_the_filter_from_the_cache_create_filled() {
    let test = "exec_takes_the_filter_from_the_cache_create_filled";
    let Some((env, probe)) = cache_prerequisites(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSPC}],
    });
    let mut ct = probe_ct(&env, test, &probe, &env.bin, profile, &[]);
    ct.args(&["sleep", "60"]);
    ct.run_detached().assert_ok();
    assert_eq!(cache_entries(&ct).len(), 1, "create stored the filter");
    for round in ["first", "second"] {
        let log = tmp.join(&format!("exec-{round}.log"));
        let log_s = log.display().to_string();
        let out = ct.cmd(&[
            "--debug",
            "--log",
            &log_s,
            "exec",
            &ct.id,
            PROBE_IN_CT,
            "mkdir",
            "chmod:0755",
        ]);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_from_cache(&text, &format!("{round} exec"));
        assert_eq!(
            observed(&out),
            lines(&[("mkdir", "errno ENOSPC"), ("chmod:0755", "ok")], 0),
            "{round} exec"
        );
    }
    ct.kill("KILL");
    ct.wait_status("stopped", std::time::Duration::from_secs(10));
}
