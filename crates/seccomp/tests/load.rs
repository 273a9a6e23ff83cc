//! Filters loaded into forked children: what the kernel does with them.
//!
//! Each child loads a filter compiled by the parent, makes raw syscalls
//! and reports through its exit status; between fork and `_exit` it only
//! makes syscalls, which is safe in a child of the multi-threaded test
//! harness.

// Syscall numbers and `int 0x80` are x86_64's, as is the compiler so far.
#![cfg(target_arch = "x86_64")]

use std::io;

use cove_seccomp::{compile, from_value, Error, Filter};
use serde_json::json;

const SYS_GETPID: i64 = libc::SYS_getpid;
const SYS_PERSONALITY: i64 = libc::SYS_personality;
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

fn filter(value: serde_json::Value) -> Filter {
    compile(&from_value(&value).unwrap()).unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

/// Forks; the child runs `body` and exits with what it returns.
fn in_child(body: impl FnOnce() -> i32) -> Exit {
    // SAFETY: the child only makes syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        // No core files from the SIGSYS deaths this provokes.
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls in the child.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: leaves the child without running the parent's atexit or
        // destructors.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

fn wait(pid: libc::pid_t) -> Exit {
    let mut status = 0;
    // SAFETY: waits for our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", io::Error::last_os_error());
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// A raw syscall's result as `Ok(value)` or `Err(errno)`.
fn syscall(nr: i64, a0: u64) -> Result<i64, i32> {
    // SAFETY: the syscalls used here take integers only.
    let rc = unsafe { libc::syscall(nr, a0) };
    if rc < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

fn load(f: &Filter) -> bool {
    f.load().is_ok()
}

#[test]
fn errno_rule_returns_the_configured_errno() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        match (syscall(SYS_GETPID, 0), syscall(libc::SYS_getppid, 0)) {
            (Err(42), Ok(_)) => 0,
            _ => 1,
        }
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn allow_default_changes_nothing() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        if syscall(SYS_GETPID, 0) == Ok(pid as i64) {
            0
        } else {
            1
        }
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn argument_condition_denies_one_value_only() {
    // personality(0xffffffff) only queries; deny exactly that call.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        if syscall(SYS_PERSONALITY, 0xffff_ffff) != Err(13) {
            return 3;
        }
        // The comparison is on 64 bits, as libseccomp does on x86_64: the
        // kernel truncates this to the same query, the filter does not.
        if syscall(SYS_PERSONALITY, 0x1_ffff_ffff).is_err() {
            return 4;
        }
        // PER_LINUX, which the process has anyway.
        if syscall(SYS_PERSONALITY, 0).is_err() {
            return 5;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn syscall_beyond_the_profile_gets_enosys_and_known_ones_the_default() {
    // exit_group (231) is the largest syscall the profile names.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        if syscall(SYS_GETPID, 0).is_err() {
            return 3;
        }
        // times (100) is known to the profile's range but not allowed.
        if syscall(libc::SYS_times, 0) != Err(libc::EPERM) {
            return 4;
        }
        // fchmodat2 (452) is newer than anything the profile names.
        if syscall(452, 0) != Err(libc::ENOSYS) {
            return 5;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn kill_process_kills_with_sigsys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        let _ = syscall(SYS_GETPID, 0);
        1
    });
    assert_eq!(exit, Exit::Signal(libc::SIGSYS));
}

#[test]
fn i386_syscalls_meet_the_x86_section() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 21}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        // i386 getpid is 20.
        if int80(20) == -21 {
            0
        } else {
            1
        }
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn i386_syscalls_are_killed_when_the_profile_does_not_list_x86() {
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}),
    );
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        int80(20);
        1
    });
    assert_eq!(exit, Exit::Signal(libc::SIGSYS));
}

#[test]
fn x32_numbers_reach_x32_rules() {
    // This kernel may lack CONFIG_X86_X32_ABI; seccomp still sees the call
    // first, and an allowed x32 call then fails with ENOSYS.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["readv"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33}]
    }));
    let exit = in_child(|| {
        if !load(&f) {
            return 2;
        }
        // x32 readv is 515.
        if syscall(515 | X32_SYSCALL_BIT, 0) != Err(33) {
            return 3;
        }
        if syscall(SYS_GETPID, 0).is_err() {
            return 4;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn every_flag_is_accepted_by_the_kernel() {
    for flags in [
        json!([]),
        json!(["SECCOMP_FILTER_FLAG_LOG"]),
        json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
        json!(["SECCOMP_FILTER_FLAG_TSYNC"]),
        json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
    ] {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "flags": flags,
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let exit = in_child(|| match f.load() {
            Ok(None) if syscall(SYS_GETPID, 0) == Err(libc::EPERM) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        });
        assert_eq!(exit, Exit::Code(0), "flags {flags}");
    }
}

#[test]
fn without_no_new_privs_or_cap_sys_admin_load_says_why() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    // A child that has not set no_new_privs and drops CAP_SYS_ADMIN.
    // SAFETY: the child only makes syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = if drop_cap_sys_admin() {
            match f.load() {
                Err(Error::NeedsNoNewPrivs) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            }
        } else {
            3
        };
        // SAFETY: as in in_child.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(wait(pid), Exit::Code(0));
}

/// Clears CAP_SYS_ADMIN from the effective set with capset(2).
fn drop_cap_sys_admin() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_ADMIN: u32 = 21;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return false;
        }
        data[0].effective &= !(1 << CAP_SYS_ADMIN);
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
    }
}

/// An i386 syscall without arguments from a 64-bit process.
fn int80(nr: u32) -> i32 {
    let ret: i32;
    // SAFETY: `int 0x80` enters the ia32 compat syscall path; it returns in
    // eax and the kernel preserves the other registers (r8-r11 declared
    // clobbered for kernels before 4.17, which zeroed them).
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") nr as i32 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}
