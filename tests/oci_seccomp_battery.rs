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
