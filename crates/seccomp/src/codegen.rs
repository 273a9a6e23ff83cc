//! The BPF program for a lowered [`Profile`].
//!
//! Layout:
//! ```text
//!   A = arch
//!   arch == X86_64 -> x86_64 section      (x32 lives in it: nr has bit 30)
//!   arch == I386   -> i386 section        (when the profile lists x86)
//!   return KILL_THREAD                     (libseccomp's bad-arch action)
//! section:
//!   A = nr
//!   binary search over ranges of syscall numbers -> return, or a rule block
//! rule blocks:
//!   per conditional rule: argument comparisons, return its action
//!   return the default action
//! shared returns
//! ```
//! The search works on ranges, not syscalls: the generator first computes
//! the decision for every syscall number (the rules, runc's ENOSYS stub,
//! libseccomp's x32 handling) as a list of ranges with one decision each,
//! merges neighbours with the same decision, and then emits a balanced tree
//! of `jge` over the range starts. An allow-list profile of 400 syscalls
//! becomes some tens of ranges, so a syscall costs a handful of
//! instructions and the program stays far below the kernel's 4096.

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxSeccompOperator as Op;

use crate::arch::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::bpf::{Asm, Cmp, Insn, Label, Target, OFF_ARCH, OFF_ARGS, OFF_NR};
use crate::profile::{Cond, Profile, RET_BADARCH, RET_ENOSYS};
use crate::Error;

/// What happens to one syscall number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Ret(u32),
    /// Argument rules decide: the block for this syscall.
    Rules(Abi, u32),
}

pub(crate) fn generate(profile: &Profile) -> Result<Vec<Insn>, Error> {
    let mut gen = Gen {
        p: profile,
        asm: Asm::default(),
        rets: BTreeMap::new(),
        blocks: BTreeMap::new(),
    };
    let asm = &mut gen.asm;

    let x86_64 = asm.label();
    let i386 = asm.label();
    asm.load(OFF_ARCH);
    asm.jump(Cmp::Eq, AUDIT_ARCH_X86_64, Target::To(x86_64), Target::Next);
    if profile.has(Abi::I386) {
        asm.jump(Cmp::Eq, AUDIT_ARCH_I386, Target::To(i386), Target::Next);
    }
    asm.ret(RET_BADARCH);

    gen.asm.bind(x86_64);
    let ranges = gen.ranges(&[Abi::X86_64, Abi::X32], decide_x86_64);
    gen.section(&ranges);

    if profile.has(Abi::I386) {
        gen.asm.bind(i386);
        let ranges = gen.ranges(&[Abi::I386], decide_i386);
        gen.section(&ranges);
    }

    let blocks = std::mem::take(&mut gen.blocks);
    for ((abi, nr), label) in blocks {
        gen.asm.bind(label);
        gen.block(abi, nr);
    }
    let rets = std::mem::take(&mut gen.rets);
    for (value, label) in rets {
        gen.asm.bind(label);
        gen.asm.ret(value);
    }
    gen.asm.finish()
}

/// The AUDIT_ARCH_X86_64 section serves x86_64 and, when listed, x32.
fn decide_x86_64(p: &Profile, nr: u32) -> Decision {
    let x32 = p.has(Abi::X32);
    // runc's stub looks at bit 30 to tell x32 from x86_64 ...
    if p.enosys_stub {
        let abi = if nr & X32_SYSCALL_BIT == 0 {
            Some(Abi::X86_64)
        } else if x32 {
            Some(Abi::X32)
        } else {
            None
        };
        if let Some(max) = abi.and_then(|abi| p.max_nr.get(&abi)) {
            if nr > *max {
                return Decision::Ret(RET_ENOSYS);
            }
        }
    }
    // ... and libseccomp's x86_64-only filter sends everything from bit 30
    // up to the bad-arch action, except -1, which a tracer uses to skip a
    // syscall and which must not kill (seccomp(2), since Linux 4.8).
    if !x32 && nr >= X32_SYSCALL_BIT {
        return if nr == u32::MAX {
            Decision::Ret(p.default_action)
        } else {
            Decision::Ret(RET_BADARCH)
        };
    }
    let abi = if nr & X32_SYSCALL_BIT != 0 {
        Abi::X32
    } else {
        Abi::X86_64
    };
    lookup(p, abi, nr)
}

fn decide_i386(p: &Profile, nr: u32) -> Decision {
    if p.enosys_stub {
        if let Some(max) = p.max_nr.get(&Abi::I386) {
            if nr > *max {
                return Decision::Ret(RET_ENOSYS);
            }
        }
    }
    lookup(p, Abi::I386, nr)
}

fn lookup(p: &Profile, abi: Abi, nr: u32) -> Decision {
    match p.syscalls.get(&(abi, nr)) {
        None => Decision::Ret(p.default_action),
        Some(rules) => match rules.unconditional {
            Some(action) => Decision::Ret(action),
            None if rules.conditional.is_empty() => Decision::Ret(p.default_action),
            None => Decision::Rules(abi, nr),
        },
    }
}

struct Gen<'a> {
    p: &'a Profile,
    asm: Asm,
    rets: BTreeMap<u32, Label>,
    blocks: BTreeMap<(Abi, u32), Label>,
}

impl Gen<'_> {
    /// The decision function as ranges `(first nr, decision)`, sorted, with
    /// equal neighbours merged. Every number where a decision can change is
    /// a breakpoint, so the decision is constant between two of them.
    fn ranges(
        &self,
        abis: &[Abi],
        decide: impl Fn(&Profile, u32) -> Decision,
    ) -> Vec<(u32, Decision)> {
        let mut points: Vec<u64> = vec![
            0,
            X32_SYSCALL_BIT as u64,
            0x8000_0000,
            0xc000_0000,
            u32::MAX as u64,
        ];
        for &abi in abis {
            if let Some(&max) = self.p.max_nr.get(&abi) {
                points.push(max as u64 + 1);
            }
            for &(a, nr) in self.p.syscalls.keys() {
                if a == abi {
                    points.extend([nr as u64, nr as u64 + 1]);
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        let mut ranges: Vec<(u32, Decision)> = Vec::with_capacity(points.len());
        for point in points {
            let Ok(nr) = u32::try_from(point) else {
                continue;
            };
            let decision = decide(self.p, nr);
            if ranges.last().map(|(_, d)| *d) != Some(decision) {
                ranges.push((nr, decision));
            }
        }
        ranges
    }

    fn target(&mut self, decision: Decision) -> Label {
        match decision {
            Decision::Ret(value) => *self.rets.entry(value).or_insert_with(|| self.asm.label()),
            Decision::Rules(abi, nr) => *self
                .blocks
                .entry((abi, nr))
                .or_insert_with(|| self.asm.label()),
        }
    }

    fn section(&mut self, ranges: &[(u32, Decision)]) {
        match ranges {
            [] => self.asm.ret(self.p.default_action),
            [(_, Decision::Ret(value))] => self.asm.ret(*value),
            [(_, decision)] => {
                let label = self.target(*decision);
                self.asm.goto(label);
            }
            _ => {
                self.asm.load(OFF_NR);
                self.search(ranges);
            }
        }
    }

    /// A balanced binary search over at least two ranges; the left half
    /// follows right away, so only `jt` jumps far.
    fn search(&mut self, ranges: &[(u32, Decision)]) {
        let (left, right) = ranges.split_at(ranges.len() / 2);
        let right_label = match right {
            [(_, d)] => self.target(*d),
            _ => self.asm.label(),
        };
        let jf = match left {
            [(_, d)] => Target::To(self.target(*d)),
            _ => Target::Next,
        };
        self.asm
            .jump(Cmp::Ge, right[0].0, Target::To(right_label), jf);
        if left.len() > 1 {
            self.search(left);
        }
        if right.len() > 1 {
            self.asm.bind(right_label);
            self.search(right);
        }
    }

    /// The conditional rules of one syscall, first match wins.
    fn block(&mut self, abi: Abi, nr: u32) {
        let p = self.p;
        if let Some(rules) = p.syscalls.get(&(abi, nr)) {
            for rule in &rules.conditional {
                let next = self.asm.label();
                for cond in &rule.conds {
                    self.cond(abi, cond, next);
                }
                self.asm.ret(rule.action);
                self.asm.bind(next);
            }
        }
        self.asm.ret(p.default_action);
    }

    /// Falls through when the condition holds, jumps to `fail` otherwise.
    fn cond(&mut self, abi: Abi, c: &Cond, fail: Label) {
        let asm = &mut self.asm;
        let fail = Target::To(fail);
        let next = Target::Next;
        // Arguments are 64-bit words in seccomp_data, low half first (x86 is
        // little-endian).
        let lo_off = OFF_ARGS + 8 * c.index;
        let hi_off = lo_off + 4;
        let (vh, vl) = split(c.value);

        if abi.has_32bit_args() {
            let v = vl;
            if c.op == Op::ScmpCmpMaskedEq {
                let (_, mask) = split(c.value);
                let (_, datum) = split(c.value_two);
                masked(asm, lo_off, mask, datum, fail);
                return;
            }
            asm.load(lo_off);
            match c.op {
                Op::ScmpCmpEq => asm.jump(Cmp::Eq, v, next, fail),
                Op::ScmpCmpNe => asm.jump(Cmp::Eq, v, fail, next),
                Op::ScmpCmpGt => asm.jump(Cmp::Gt, v, next, fail),
                Op::ScmpCmpGe => asm.jump(Cmp::Ge, v, next, fail),
                Op::ScmpCmpLt => asm.jump(Cmp::Ge, v, fail, next),
                Op::ScmpCmpLe => asm.jump(Cmp::Gt, v, fail, next),
                Op::ScmpCmpMaskedEq => {}
            }
            return;
        }

        match c.op {
            Op::ScmpCmpEq => {
                asm.load(hi_off);
                asm.jump(Cmp::Eq, vh, next, fail);
                asm.load(lo_off);
                asm.jump(Cmp::Eq, vl, next, fail);
            }
            Op::ScmpCmpNe => {
                let pass = asm.label();
                asm.load(hi_off);
                asm.jump(Cmp::Eq, vh, next, Target::To(pass));
                asm.load(lo_off);
                asm.jump(Cmp::Eq, vl, fail, next);
                asm.bind(pass);
            }
            Op::ScmpCmpGt | Op::ScmpCmpGe => {
                // hi > vh, or hi == vh and lo > (>=) vl.
                let pass = asm.label();
                asm.load(hi_off);
                asm.jump(Cmp::Gt, vh, Target::To(pass), next);
                asm.jump(Cmp::Eq, vh, next, fail);
                asm.load(lo_off);
                let cmp = if c.op == Op::ScmpCmpGt {
                    Cmp::Gt
                } else {
                    Cmp::Ge
                };
                asm.jump(cmp, vl, next, fail);
                asm.bind(pass);
            }
            Op::ScmpCmpLt | Op::ScmpCmpLe => {
                // hi < vh, or hi == vh and lo < (<=) vl.
                let pass = asm.label();
                asm.load(hi_off);
                asm.jump(Cmp::Ge, vh, next, Target::To(pass));
                asm.jump(Cmp::Eq, vh, next, fail);
                asm.load(lo_off);
                let cmp = if c.op == Op::ScmpCmpLt {
                    Cmp::Ge
                } else {
                    Cmp::Gt
                };
                asm.jump(cmp, vl, fail, next);
                asm.bind(pass);
            }
            Op::ScmpCmpMaskedEq => {
                let (mh, ml) = split(c.value);
                let (dh, dl) = split(c.value_two);
                masked(asm, hi_off, mh, dh, fail);
                masked(asm, lo_off, ml, dl, fail);
            }
        }
    }
}

/// `(word & mask) == (datum & mask)`; nothing to test when the mask is 0.
fn masked(asm: &mut Asm, off: u32, mask: u32, datum: u32, fail: Target) {
    if mask == 0 {
        return;
    }
    asm.load(off);
    if mask != u32::MAX {
        asm.and(mask);
    }
    asm.jump(Cmp::Eq, datum & mask, Target::Next, fail);
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}
