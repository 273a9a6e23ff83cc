//! Compiler tests: programs are run through the interpreter in `bpf.rs`
//! with hand-made `seccomp_data`, so every ABI and corner is reachable
//! without loading anything into the kernel.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use crate::arch::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::{bpf, compile, from_json, from_value, Error, Filter};

const ALLOW: u32 = 0x7fff_0000;
const KILL_THREAD: u32 = 0;
const fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

// x86_64 numbers.
const GETPID: u32 = 39;
const PERSONALITY: u32 = 135;
const MKDIRAT: u32 = 258;
const I386_GETPID: u32 = 20;

fn spec(value: serde_json::Value) -> LinuxSeccomp {
    from_value(&value).unwrap()
}

fn filter(value: serde_json::Value) -> Filter {
    compile(&spec(value)).unwrap()
}

fn run(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let data = libc::seccomp_data {
        nr: nr as i32,
        arch,
        instruction_pointer: 0x1234,
        args,
    };
    bpf::run(f.instructions(), &data)
}

fn run64(f: &Filter, nr: u32) -> u32 {
    run(f, AUDIT_ARCH_X86_64, nr, [0; 6])
}

fn refused(value: serde_json::Value) -> String {
    match from_value(&value).and_then(|s| compile(&s)) {
        Ok(_) => panic!("profile accepted: {value}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errno_rule_returns_configured_errno_and_default_allows() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    }));
    assert_eq!(run64(&f, GETPID), errno(42));
    assert_eq!(run64(&f, GETPID - 1), ALLOW);
    assert_eq!(run64(&f, GETPID + 1), ALLOW);
    assert_eq!(
        run64(&f, 5000),
        ALLOW,
        "no ENOSYS stub under an ALLOW default"
    );
    assert!(!f.uses_notify());
}

#[test]
fn every_action_is_returned_as_the_kernel_expects() {
    let actions = [
        ("SCMP_ACT_KILL", 0),
        ("SCMP_ACT_KILL_THREAD", 0),
        ("SCMP_ACT_KILL_PROCESS", 0x8000_0000),
        ("SCMP_ACT_TRAP", 0x0003_0000),
        ("SCMP_ACT_ERRNO", errno(EPERM)),
        ("SCMP_ACT_TRACE", 0x7ff0_0001),
        ("SCMP_ACT_LOG", 0x7ffc_0000),
        ("SCMP_ACT_NOTIFY", 0x7fc0_0000),
    ];
    for (action, want) in actions {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdirat"], "action": action}]
        }));
        assert_eq!(run64(&f, MKDIRAT), want, "{action}");
        assert_eq!(f.uses_notify(), action == "SCMP_ACT_NOTIFY");
    }
}

#[test]
fn bad_profiles_are_refused_with_one_clear_line() {
    let cases = [
        (json!({"defaultAction": "SCMP_ACT_FOO"}), "seccomp: unknown action SCMP_ACT_FOO"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BAR"}]}),
            "seccomp: unknown action SCMP_ACT_BAR",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}),
            "seccomp: unknown architecture SCMP_ARCH_VAX",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}),
            "seccomp: unknown flag SECCOMP_FILTER_FLAG_FAST",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
            "seccomp: unknown operator SCMP_CMP_ABOUT",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "seccomp: errnoRet set on rule with action SCMP_ACT_ALLOW (syscalls read,write)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}),
            "seccomp: defaultErrnoRet set with defaultAction SCMP_ACT_KILL",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
            "seccomp: errnoRet 70000 does not fit in the 16 bits seccomp returns",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "seccomp: argument index 6 on syscalls read is out of range (0 to 5)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}),
            "seccomp: SCMP_ACT_NOTIFY cannot be the default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall (the runtime needs write to hand over the notify fd)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp: SCMP_ACT_NOTIFY is used but linux.seccomp.listenerPath is not set",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]}),
            "seccomp: a rule with action SCMP_ACT_ERRNO names an empty syscall",
        ),
    ];
    for (profile, message) in cases {
        assert_eq!(refused(profile), message);
    }
    let err = from_json(b"{\"defaultAction\": ").unwrap_err();
    assert!(matches!(err, Error::Json(_)), "{err}");
    assert!(err.to_string().starts_with("seccomp: invalid profile: "));
}

#[test]
fn errno_ret_is_allowed_with_errno_and_trace() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 9,
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]
    }));
    assert_eq!(run64(&f, GETPID), errno(0));
    assert_eq!(run64(&f, 1), 0x7ff0_0009);
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall", "getpid"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(run64(&f, GETPID), errno(EPERM));
}

/// What a comparison means, straight from libseccomp's documentation.
fn holds(op: &str, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two & value,
        _ => unreachable!(),
    }
}

const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

fn interesting_values() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x1_0000_0004,
        0x1_0000_0006,
    ];
    v.extend([
        0x0_ffff_fffe,
        0x2_0000_0000,
        0xffff_ffff_0000_0005,
        u64::MAX,
        u64::MAX - 1,
        0x8000_0000_0000_0000,
    ]);
    v
}

#[test]
fn argument_conditions_compare_both_halves_on_x86_64() {
    for op in OPS {
        for &value in &interesting_values() {
            for value_two in [0u64, 5, 0x1_0000_0005] {
                let f = filter(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                        "args": [{"index": 3, "value": value, "valueTwo": value_two, "op": op}]}]
                }));
                for &arg in &interesting_values() {
                    let mut args = [0u64; 6];
                    args[3] = arg;
                    // A different argument must not matter.
                    args[2] = value ^ 1;
                    let got = run(&f, AUDIT_ARCH_X86_64, PERSONALITY, args);
                    let want = if holds(op, arg, value, value_two) {
                        errno(7)
                    } else {
                        ALLOW
                    };
                    assert_eq!(
                        got, want,
                        "{op} arg={arg:#x} value={value:#x} value_two={value_two:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn argument_conditions_see_the_low_half_on_i386_like_libseccomp() {
    for op in OPS {
        for &value in &interesting_values() {
            let f = filter(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                    "args": [{"index": 0, "value": value, "valueTwo": 5, "op": op}]}]
            }));
            for &arg in &interesting_values() {
                let got = run(&f, AUDIT_ARCH_I386, I386_GETPID, [arg, 0, 0, 0, 0, 0]);
                let (a, v) = (arg as u32 as u64, value as u32 as u64);
                let want = if holds(op, a, v, 5) { errno(7) } else { ALLOW };
                assert_eq!(got, want, "{op} arg={arg:#x} value={value:#x}");
            }
        }
    }
}

#[test]
fn conditions_in_a_rule_are_anded_and_rules_are_ored() {
    // podman's socket rules: EINVAL for socket(AF_NETLINK, *, NETLINK_AUDIT).
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]}
        ]
    }));
    let socket = |a0: u64, a2: u64| run(&f, AUDIT_ARCH_X86_64, 41, [a0, 1, a2, 0, 0, 0]);
    assert_eq!(socket(16, 9), errno(22));
    assert_eq!(socket(16, 0), ALLOW);
    assert_eq!(socket(2, 9), ALLOW);
    assert_eq!(socket(2, 0), ALLOW);
}

#[test]
fn repeated_argument_index_means_any_of_them_like_runc() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]
    }));
    let personality = |a0: u64| run(&f, AUDIT_ARCH_X86_64, PERSONALITY, [a0, 0, 0, 0, 0, 0]);
    assert_eq!(personality(1), errno(EPERM));
    assert_eq!(personality(2), errno(EPERM));
    assert_eq!(personality(3), ALLOW);
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["getpid", "mkdirat"], "action": "SCMP_ACT_ALLOW"},
            // Counts for the largest number even though it is the default.
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO"}
        ]
    }));
    // x86_64: openat is 257, mkdirat 258.
    assert_eq!(run64(&f, GETPID), ALLOW);
    assert_eq!(run64(&f, MKDIRAT), ALLOW);
    assert_eq!(run64(&f, 257), errno(EPERM));
    assert_eq!(run64(&f, 100), errno(EPERM));
    assert_eq!(run64(&f, 259), errno(ENOSYS));
    assert_eq!(run64(&f, 450), errno(ENOSYS));
    // i386: mkdirat 296, openat 295, getpid 20.
    assert_eq!(run(&f, AUDIT_ARCH_I386, I386_GETPID, [0; 6]), ALLOW);
    assert_eq!(run(&f, AUDIT_ARCH_I386, 296, [0; 6]), ALLOW);
    assert_eq!(run(&f, AUDIT_ARCH_I386, 280, [0; 6]), errno(EPERM));
    assert_eq!(run(&f, AUDIT_ARCH_I386, 297, [0; 6]), errno(ENOSYS));
    // x32 shares numbers with x86_64 below 512 but has its own maximum.
    assert_eq!(run64(&f, GETPID | X32_SYSCALL_BIT), ALLOW);
    assert_eq!(run64(&f, 258 | X32_SYSCALL_BIT), ALLOW);
    assert_eq!(run64(&f, 200 | X32_SYSCALL_BIT), errno(EPERM));
    assert_eq!(run64(&f, 259 | X32_SYSCALL_BIT), errno(ENOSYS));
}

#[test]
fn kill_default_gets_the_stub_too() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(run64(&f, GETPID), ALLOW);
    assert_eq!(run64(&f, 0), 0x8000_0000);
    assert_eq!(run64(&f, GETPID + 1), errno(ENOSYS));
}

#[test]
fn architectures_not_in_the_profile_get_kill_thread() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(run(&f, AUDIT_ARCH_I386, I386_GETPID, [0; 6]), KILL_THREAD);
    assert_eq!(run(&f, AUDIT_ARCH_AARCH64, 172, [0; 6]), KILL_THREAD);
    // Without x32 in the profile, x32 syscalls are a bad architecture too,
    // except -1 (a tracer skipping a syscall).
    assert_eq!(run64(&f, GETPID | X32_SYSCALL_BIT), KILL_THREAD);
    assert_eq!(run64(&f, u32::MAX), ALLOW);
}

#[test]
fn x32_rules_apply_to_x32_numbers_only() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X32"],
        "syscalls": [{"names": ["readv"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}]
    }));
    assert_eq!(run64(&f, 19), errno(3), "x86_64 readv");
    assert_eq!(run64(&f, 515 | X32_SYSCALL_BIT), errno(3), "x32 readv");
    assert_eq!(
        run64(&f, 19 | X32_SYSCALL_BIT),
        ALLOW,
        "x32 has no readv at 19"
    );
}

#[test]
fn a_big_profile_needs_long_jumps_and_still_decides_right() {
    // One rule per syscall, each with its own errno: every syscall is its
    // own range, so the shared returns lie far from the search tree.
    let names: Vec<(&str, u32)> = crate::syscall_table::X86_64.to_vec();
    let syscalls: Vec<serde_json::Value> = names
        .iter()
        .map(|(name, nr)| json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": nr + 1}))
        .collect();
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}));
    assert!(f.instructions().len() > 256);
    for (_, nr) in names {
        assert_eq!(run64(&f, nr), errno(nr + 1));
    }
}

#[test]
fn flags_are_passed_through() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert_eq!(
        f.flags(),
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
        "runc's default without a flags field"
    );
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": []}));
    assert_eq!(f.flags(), 0);
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let want = libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_LOG
        | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    assert_eq!(f.flags(), want as u32);
}

/// A tiny deterministic generator, so that the differential test below
/// needs no dependency and fails the same way every time.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// The semantics of `src/profile.rs`, written as plainly as possible, for
/// one x86_64 call: runc's stub, then the rules.
fn reference(profile: &serde_json::Value, names: &[(&str, u32)], nr: u32, args: [u64; 6]) -> u32 {
    let encode = |action: &serde_json::Value, errno_ret: Option<&serde_json::Value>| -> u32 {
        match action.as_str().unwrap() {
            "SCMP_ACT_ALLOW" => ALLOW,
            "SCMP_ACT_ERRNO" => errno(errno_ret.and_then(|v| v.as_u64()).unwrap_or(1) as u32),
            "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
            "SCMP_ACT_TRAP" => 0x0003_0000,
            other => panic!("{other}"),
        }
    };
    let action = |rule: &serde_json::Value| encode(&rule["action"], rule.get("errnoRet"));
    let default = encode(&profile["defaultAction"], profile.get("defaultErrnoRet"));
    let nr_of = |name: &str| names.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr);
    let rules = profile["syscalls"].as_array().unwrap();
    let max = rules
        .iter()
        .flat_map(|r| r["names"].as_array().unwrap())
        .filter_map(|n| nr_of(n.as_str().unwrap()))
        .max();
    if default != ALLOW && default != errno(ENOSYS) && max.is_some_and(|m| nr > m) {
        return errno(ENOSYS);
    }
    let applies = |r: &&serde_json::Value| {
        r["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| nr_of(n.as_str().unwrap()) == Some(nr))
            && action(r) != default
    };
    let candidates: Vec<&serde_json::Value> = rules.iter().filter(applies).collect();
    if let Some(r) = candidates.iter().find(|r| r.get("args").is_none()) {
        return action(r);
    }
    for r in candidates {
        let conds = r["args"].as_array().unwrap();
        let cond_holds = |c: &serde_json::Value| {
            let arg = args[c["index"].as_u64().unwrap() as usize];
            holds(
                c["op"].as_str().unwrap(),
                arg,
                c["value"].as_u64().unwrap(),
                c["valueTwo"].as_u64().unwrap(),
            )
        };
        let mut indexes: Vec<u64> = conds.iter().map(|c| c["index"].as_u64().unwrap()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        let matched = if repeated {
            conds.iter().any(cond_holds)
        } else {
            conds.iter().all(cond_holds)
        };
        if matched {
            return action(r);
        }
    }
    default
}

#[test]
fn random_profiles_agree_with_the_reference_semantics() {
    let names: Vec<(&str, u32)> = crate::syscall_table::X86_64
        .iter()
        .copied()
        .filter(|(_, nr)| *nr < 40)
        .collect();
    let actions = [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ];
    let values = [
        0u64,
        1,
        2,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        u64::MAX,
    ];
    let mut rng = Lcg(0x5eed);
    for round in 0..300 {
        let mut syscalls = Vec::new();
        for _ in 0..(1 + rng.next() % 12) {
            let mut rule = json!({
                "names": (0..1 + rng.next() % 3).map(|_| rng.pick(&names).0).collect::<Vec<_>>(),
                "action": rng.pick(&actions),
            });
            if rule["action"] == "SCMP_ACT_ERRNO" && rng.next() & 1 == 0 {
                rule["errnoRet"] = json!(rng.next() % 4);
            }
            if rng.next() % 3 < 2 {
                let args: Vec<serde_json::Value> = (0..1 + rng.next() % 3)
                    .map(|_| json!({"index": rng.next() % 3, "op": rng.pick(&OPS), "value": rng.pick(&values), "valueTwo": rng.pick(&values)}))
                    .collect();
                rule["args"] = json!(args);
            }
            syscalls.push(rule);
        }
        let profile = json!({
            "defaultAction": rng.pick(&actions),
            "syscalls": syscalls,
        });
        let f = filter(profile.clone());
        for _ in 0..60 {
            let nr = (rng.next() % 45) as u32;
            let args = [
                *rng.pick(&values),
                *rng.pick(&values),
                *rng.pick(&values),
                0,
                0,
                0,
            ];
            let want = reference(&profile, &names, nr, args);
            let got = run(&f, AUDIT_ARCH_X86_64, nr, args);
            assert_eq!(
                got, want,
                "round {round}, nr {nr}, args {args:x?}, profile {profile}"
            );
        }
    }
}

/// podman 4's default capability set (containers.conf).
pub(crate) const PODMAN_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

#[test]
fn podmans_default_profile_compiles_small_and_decides_right() {
    let Ok(json) = std::fs::read("/usr/share/containers/seccomp.json") else {
        eprintln!("skipped: /usr/share/containers/seccomp.json missing (apt-get install golang-github-containers-common)");
        return;
    };
    let spec = crate::from_containers_json(&json, PODMAN_DEFAULT_CAPS).unwrap();
    let f = compile(&spec).unwrap();
    eprintln!(
        "podman default profile: {} instructions",
        f.instructions().len()
    );
    assert!(f.instructions().len() < 1000);
    let personality = |a0: u64| run(&f, AUDIT_ARCH_X86_64, PERSONALITY, [a0, 0, 0, 0, 0, 0]);
    assert_eq!(personality(0xffff_ffff), ALLOW);
    assert_eq!(personality(0x8), ALLOW);
    assert_eq!(
        personality(0x4),
        errno(ENOSYS),
        "podman's default errno is ENOSYS"
    );
    assert_eq!(run64(&f, 246), errno(EPERM), "kexec_load");
    assert_eq!(run64(&f, 0), ALLOW, "read");
    assert_eq!(
        run64(&f, 161),
        ALLOW,
        "chroot: CAP_SYS_CHROOT is a default cap"
    );
    assert_eq!(run64(&f, 321), errno(EPERM), "bpf without CAP_SYS_ADMIN");
    assert_eq!(run(&f, AUDIT_ARCH_I386, I386_GETPID, [0; 6]), ALLOW);
    assert_eq!(run64(&f, GETPID | X32_SYSCALL_BIT), ALLOW);
}

/// Our program against libseccomp's for the same profile, on every syscall
/// number of every ABI and a spread of arguments. Needs the program
/// libseccomp exports (bench/libseccomp_compile.c):
///   cargo run --release -p cove-seccomp --example compile_bench -- --libseccomp-rules /tmp/podman.rules
///   cc -O2 -o /tmp/libseccomp_compile crates/seccomp/bench/libseccomp_compile.c -lseccomp
///   /tmp/libseccomp_compile /tmp/podman.rules 1 /tmp/podman.libseccomp.bpf
///   COVE_SECCOMP_LIBSECCOMP_BPF=/tmp/podman.libseccomp.bpf cargo test -p cove-seccomp -- --ignored agrees_with_libseccomp
/// Where we say ENOSYS and libseccomp the default action, that is runc's
/// ENOSYS stub, which libseccomp's program lacks; those calls are skipped.
#[test]
#[ignore = "needs libseccomp's program for the profile, see the comment"]
fn agrees_with_libseccomp() {
    let bpf = std::env::var("COVE_SECCOMP_LIBSECCOMP_BPF").expect("COVE_SECCOMP_LIBSECCOMP_BPF");
    let raw = std::fs::read(&bpf).unwrap();
    let theirs: Vec<libc::sock_filter> = raw
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    // COVE_SECCOMP_OCI_PROFILE: a linux.seccomp object instead of podman's.
    let spec = match std::env::var("COVE_SECCOMP_OCI_PROFILE") {
        Ok(path) => from_json(&std::fs::read(path).unwrap()).unwrap(),
        Err(_) => crate::from_containers_json(
            &std::fs::read("/usr/share/containers/seccomp.json").unwrap(),
            PODMAN_DEFAULT_CAPS,
        )
        .unwrap(),
    };
    let default = spec.default_action().as_u32(spec.default_errno_ret());
    let ours = compile(&spec).unwrap();

    let values = [
        0u64,
        1,
        2,
        8,
        9,
        16,
        0x800,
        0x20000,
        0x20008,
        0x7e02_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_ffff_ffff,
        0x2_0000_0000,
        0x2_0000_0008,
        u64::MAX,
    ];
    let mut numbers: Vec<u32> = (0..700).collect();
    numbers.extend((0..700).map(|n| n | X32_SYSCALL_BIT));
    numbers.extend([0x8000_0000, 0xc000_0001, u32::MAX - 1, u32::MAX]);
    let mut compared = 0;
    for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64] {
        for &nr in &numbers {
            for &a0 in &values {
                for &a2 in &values {
                    let args = [a0, a2, a2, a0, 0, 0];
                    let data = libc::seccomp_data {
                        nr: nr as i32,
                        arch,
                        instruction_pointer: 0,
                        args,
                    };
                    let (o, t) = (
                        bpf::run(ours.instructions(), &data),
                        bpf::run(&theirs, &data),
                    );
                    if o == errno(ENOSYS) && t == default {
                        // runc's stub, which libseccomp's program lacks.
                        continue;
                    }
                    assert_eq!(
                        o, t,
                        "arch {arch:#x} nr {nr:#x} args {args:x?}: ours {o:#x}, libseccomp {t:#x}"
                    );
                    compared += 1;
                }
            }
        }
    }
    eprintln!("{compared} calls decided alike");
}
