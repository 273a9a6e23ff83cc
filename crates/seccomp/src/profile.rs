//! An OCI `linux.seccomp` checked and lowered to what the code generator
//! needs: per ABI and syscall number, the rules in the order that decides.
//!
//! The semantics are runc's on top of libseccomp's:
//! - a rule whose action equals the default action is dropped (libseccomp
//!   refuses it; runc skips it silently);
//! - a syscall name this ABI does not have is skipped with a debug line;
//! - the first unconditional rule for a syscall wins over every other rule
//!   for it (libseccomp keeps the "shortest" chain);
//! - conditional rules are ORed: the first one whose conditions all hold
//!   decides (libseccomp builds a tree; it only differs when two rules with
//!   different actions match the same call, which libseccomp refuses when
//!   it notices);
//! - within a rule the conditions are ANDed, except that runc, when one
//!   argument index appears twice, turns each condition into its own rule;
//! - syscalls numbered above the largest one the profile names get ENOSYS
//!   instead of a blocking default action, so a libc newer than the
//!   profile falls back to older syscalls (runc's patchbpf stub).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

use crate::arch::{self, Abi, HostArch};
use crate::Error;

// Return values (linux/seccomp.h).
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
/// What libseccomp returns for an architecture the filter does not list
/// (its default SCMP_FLTATR_ACT_BADARCH is SCMP_ACT_KILL).
pub(crate) const RET_BADARCH: u32 = RET_KILL_THREAD;
pub(crate) const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

// seccomp(2) flags.
pub(crate) const FLAG_TSYNC: u32 = 1 << 0;
pub(crate) const FLAG_LOG: u32 = 1 << 1;
pub(crate) const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub(crate) const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub(crate) const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub(crate) const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// A syscall has six arguments.
const MAX_ARG_INDEX: usize = 5;

/// One argument comparison. For MASKED_EQ, `value` is the mask and
/// `value_two` the expected value (runtime-spec and libseccomp order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub(crate) index: u32,
    pub(crate) op: LinuxSeccompOperator,
    pub(crate) value: u64,
    pub(crate) value_two: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) action: u32,
    pub(crate) conds: Vec<Cond>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyscallRules {
    pub(crate) unconditional: Option<u32>,
    pub(crate) conditional: Vec<Rule>,
}

#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) default_action: u32,
    /// Add runc's ENOSYS stub (the default action blocks).
    pub(crate) enosys_stub: bool,
    /// Sorted, native first.
    pub(crate) abis: Vec<Abi>,
    pub(crate) syscalls: BTreeMap<(Abi, u32), SyscallRules>,
    /// The largest syscall number the profile names, per ABI.
    pub(crate) max_nr: BTreeMap<Abi, u32>,
    pub(crate) flags: u32,
    pub(crate) uses_notify: bool,
}

impl Profile {
    pub(crate) fn has(&self, abi: Abi) -> bool {
        self.abis.contains(&abi)
    }
}

pub(crate) fn lower(spec: &LinuxSeccomp) -> Result<Profile, Error> {
    let default = spec.default_action();
    if default == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::NotifyAsDefault);
    }
    let default_action = encode_action(default, spec.default_errno_ret()).map_err(|e| match e {
        ActionError::ErrnoRetNotAllowed => Error::DefaultErrnoRetWithoutErrno(default.to_string()),
        ActionError::ErrnoOutOfRange(v) => Error::ErrnoOutOfRange(v),
    })?;
    // A "permissive" default lets unknown syscalls through anyway; runc
    // counts TRACE among them because a tracer handles ENOSYS itself.
    let permissive = matches!(
        default,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );

    let mut profile = Profile {
        default_action,
        enosys_stub: !permissive && default_action != RET_ENOSYS,
        abis: abis(spec)?,
        syscalls: BTreeMap::new(),
        max_nr: BTreeMap::new(),
        flags: 0,
        uses_notify: false,
    };
    for rule in spec.syscalls().iter().flatten() {
        profile.add(rule)?;
    }

    if profile.uses_notify && spec.listener_path().is_none() {
        return Err(Error::NotifyWithoutListener);
    }
    profile.flags = flags(spec.flags().as_deref(), profile.uses_notify);
    Ok(profile)
}

impl Profile {
    fn add(&mut self, rule: &LinuxSyscall) -> Result<(), Error> {
        let names = rule.names();
        let action = encode_action(rule.action(), rule.errno_ret()).map_err(|e| match e {
            ActionError::ErrnoRetNotAllowed => Error::ErrnoRetWithoutErrno {
                action: rule.action().to_string(),
                syscalls: names.join(","),
            },
            ActionError::ErrnoOutOfRange(v) => Error::ErrnoOutOfRange(v),
        })?;
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            self.uses_notify = true;
            // After loading, the container's init still has to hand the
            // notify fd to the runtime; runc does it with write(2), so a
            // notified write would wait for an agent that has no fd yet.
            if names.iter().any(|n| n == "write") {
                return Err(Error::NotifyOnWrite);
            }
        }
        let alternatives = conditions(rule.args().as_deref().unwrap_or(&[]), names)?;

        let Profile {
            abis,
            syscalls,
            max_nr,
            default_action,
            ..
        } = self;
        for name in names {
            if name.is_empty() {
                return Err(Error::EmptySyscallName(rule.action().to_string()));
            }
            for &abi in abis.iter() {
                let Some(nr) = abi.syscall_nr(name) else {
                    tracing::debug!(syscall = %name, abi = ?abi, "unknown seccomp syscall ignored");
                    continue;
                };
                let max = max_nr.entry(abi).or_insert(nr);
                *max = (*max).max(nr);
                if action != *default_action {
                    syscalls
                        .entry((abi, nr))
                        .or_default()
                        .add(action, &alternatives);
                }
            }
        }
        Ok(())
    }
}

impl SyscallRules {
    /// libseccomp's precedence: the first unconditional rule replaces the
    /// conditional ones and makes any later rule redundant.
    fn add(&mut self, action: u32, alternatives: &[Vec<Cond>]) {
        if self.unconditional.is_some() {
            return;
        }
        if alternatives.is_empty() {
            self.unconditional = Some(action);
            self.conditional.clear();
            return;
        }
        for conds in alternatives {
            self.conditional.push(Rule {
                action,
                conds: conds.clone(),
            });
        }
    }
}

/// The ABIs the filter has sections for: the native one always (runc adds
/// it even when a profile forgets it), plus the listed ones this host runs.
fn abis(spec: &LinuxSeccomp) -> Result<Vec<Abi>, Error> {
    let native = arch::native().ok_or(Error::UnsupportedHost(std::env::consts::ARCH))?;
    let mut abis = vec![native];
    for &arch in spec.architectures().iter().flatten() {
        match arch::host_arch(arch) {
            Some(HostArch::Abi(abi)) => abis.push(abi),
            Some(HostArch::Foreign) => {
                tracing::debug!(architecture = %arch, "seccomp architecture cannot run on this host; no section for it")
            }
            None => return Err(Error::UnsupportedHost(std::env::consts::ARCH)),
        }
    }
    abis.sort();
    abis.dedup();
    Ok(abis)
}

/// The condition sets of a rule: one set (ANDed), or, when an argument
/// index repeats, one set per condition (runc's compatibility behaviour).
fn conditions(
    args: &[oci_spec::runtime::LinuxSeccompArg],
    names: &[String],
) -> Result<Vec<Vec<Cond>>, Error> {
    let mut conds = Vec::with_capacity(args.len());
    let mut seen = [0u8; MAX_ARG_INDEX + 1];
    for arg in args {
        let index = arg.index();
        if index > MAX_ARG_INDEX {
            return Err(Error::ArgIndexOutOfRange {
                syscalls: names.join(","),
                index,
            });
        }
        seen[index] += 1;
        conds.push(Cond {
            index: index as u32,
            op: arg.op(),
            value: arg.value(),
            value_two: arg.value_two().unwrap_or(0),
        });
    }
    if conds.is_empty() {
        Ok(Vec::new())
    } else if seen.iter().any(|&n| n > 1) {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conds])
    }
}

enum ActionError {
    ErrnoRetNotAllowed,
    ErrnoOutOfRange(u32),
}

fn encode_action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32, ActionError> {
    use LinuxSeccompAction::*;
    // SECCOMP_RET_DATA is 16 bits; the kernel clamps errno to 4095 itself.
    let data = |errno: Option<u32>| match errno {
        None => Ok(libc::EPERM as u32),
        Some(v) if v <= 0xffff => Ok(v),
        Some(v) => Err(ActionError::ErrnoOutOfRange(v)),
    };
    let value = match action {
        ScmpActErrno => return Ok(RET_ERRNO | data(errno_ret)?),
        ScmpActTrace => return Ok(RET_TRACE | data(errno_ret)?),
        ScmpActKill | ScmpActKillThread => RET_KILL_THREAD,
        ScmpActKillProcess => RET_KILL_PROCESS,
        ScmpActTrap => RET_TRAP,
        ScmpActLog => RET_LOG,
        ScmpActAllow => RET_ALLOW,
        ScmpActNotify => RET_USER_NOTIF,
    };
    if errno_ret.is_some() {
        return Err(ActionError::ErrnoRetNotAllowed);
    }
    Ok(value)
}

fn flags(requested: Option<&[LinuxSeccompFilterFlag]>, uses_notify: bool) -> u32 {
    let mut flags = match requested {
        // runc (1.2+) and crun: with no flags field at all, do not force the
        // speculative store bypass mitigation on the container.
        None => FLAG_SPEC_ALLOW,
        Some(list) => list.iter().fold(0, |acc, flag| {
            acc | match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    FLAG_WAIT_KILLABLE_RECV
                }
            }
        }),
    };
    if uses_notify {
        flags |= FLAG_NEW_LISTENER;
        // With both, a failure could be a tid or a listener fd: the kernel
        // wants TSYNC_ESRCH so that a TSYNC failure is -ESRCH instead.
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    } else if flags & FLAG_WAIT_KILLABLE_RECV != 0 {
        // The kernel refuses it (EINVAL) without a listener, and it means
        // nothing without one.
        tracing::debug!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV dropped: no SCMP_ACT_NOTIFY rule");
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower_json(json: serde_json::Value) -> Result<Profile, Error> {
        lower(&serde_json::from_value(json).unwrap())
    }

    #[test]
    fn rules_with_the_default_action_are_dropped_but_count_for_the_stub() {
        let p = lower_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}
            ]
        }))
        .unwrap();
        assert_eq!(p.syscalls.len(), 1);
        assert_eq!(p.max_nr[&Abi::X86_64], 258); // mkdirat
        assert!(p.enosys_stub);
    }

    #[test]
    fn first_unconditional_rule_wins() {
        let p = lower_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
                {"names": ["getpid"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap();
        let r = &p.syscalls[&(Abi::X86_64, 39)];
        assert_eq!(r.unconditional, Some(RET_ERRNO | 5));
        assert!(r.conditional.is_empty());
    }

    #[test]
    fn repeated_argument_index_splits_the_rule_like_runc() {
        let p = lower_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}
                ]},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                    {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(p.syscalls[&(Abi::X86_64, 135)].conditional.len(), 2);
        assert_eq!(p.syscalls[&(Abi::X86_64, 41)].conditional.len(), 1);
        assert_eq!(p.syscalls[&(Abi::X86_64, 41)].conditional[0].conds.len(), 2);
    }

    #[test]
    fn native_abi_is_always_there_and_foreign_ones_are_ignored() {
        let p = lower_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86"]
        }))
        .unwrap();
        assert_eq!(p.abis, vec![Abi::X86_64, Abi::I386, Abi::X32]);
    }

    #[test]
    fn flags_default_to_spec_allow_and_notify_adds_a_listener() {
        assert_eq!(flags(None, false), FLAG_SPEC_ALLOW);
        assert_eq!(flags(Some(&[]), false), 0);
        use LinuxSeccompFilterFlag::*;
        assert_eq!(flags(Some(&[SeccompFilterFlagLog]), false), FLAG_LOG);
        assert_eq!(flags(Some(&[SeccompFilterFlagWaitKillableRecv]), false), 0);
        assert_eq!(
            flags(
                Some(&[SeccompFilterFlagTsync, SeccompFilterFlagWaitKillableRecv]),
                true
            ),
            FLAG_TSYNC | FLAG_TSYNC_ESRCH | FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV
        );
    }

    #[test]
    fn permissive_defaults_and_enosys_defaults_get_no_stub() {
        for (action, errno) in [
            ("SCMP_ACT_ALLOW", None),
            ("SCMP_ACT_LOG", None),
            ("SCMP_ACT_TRACE", None),
            ("SCMP_ACT_ERRNO", Some(38)),
        ] {
            let p =
                lower_json(serde_json::json!({"defaultAction": action, "defaultErrnoRet": errno}))
                    .unwrap();
            assert!(!p.enosys_stub, "{action}");
        }
        for action in [
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_TRAP",
        ] {
            assert!(
                lower_json(serde_json::json!({"defaultAction": action}))
                    .unwrap()
                    .enosys_stub
            );
        }
    }

    #[test]
    fn actions_encode_like_libseccomp() {
        use LinuxSeccompAction::*;
        let enc = |a, e| encode_action(a, e).ok();
        assert_eq!(enc(ScmpActKill, None), Some(0));
        assert_eq!(enc(ScmpActKillThread, None), Some(0));
        assert_eq!(enc(ScmpActKillProcess, None), Some(0x8000_0000));
        assert_eq!(enc(ScmpActTrap, None), Some(0x0003_0000));
        assert_eq!(enc(ScmpActErrno, None), Some(0x0005_0001));
        assert_eq!(enc(ScmpActErrno, Some(0)), Some(0x0005_0000));
        assert_eq!(enc(ScmpActTrace, None), Some(0x7ff0_0001));
        assert_eq!(enc(ScmpActTrace, Some(7)), Some(0x7ff0_0007));
        assert_eq!(enc(ScmpActLog, None), Some(0x7ffc_0000));
        assert_eq!(enc(ScmpActAllow, None), Some(0x7fff_0000));
        assert_eq!(enc(ScmpActNotify, None), Some(0x7fc0_0000));
        assert_eq!(enc(ScmpActAllow, Some(1)), None);
        assert_eq!(enc(ScmpActErrno, Some(0x1_0000)), None);
    }
}
