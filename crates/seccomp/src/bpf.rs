//! Classic BPF as seccomp uses it, and a tiny assembler with labels.
//!
//! Seccomp runs a classic BPF program over `struct seccomp_data`; the
//! kernel allows only forward jumps, and a conditional jump reaches at most
//! 255 instructions ahead (`jt`/`jf` are bytes). The assembler lets the code
//! generator name its targets and, where a target lies too far, routes the
//! conditional jump through an unconditional `ja` (whose offset is 32 bits).

use crate::Error;

/// One instruction, laid out as the kernel's `struct sock_filter`.
pub(crate) type Insn = libc::sock_filter;

/// The kernel refuses longer programs (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

// Opcodes (linux/filter.h, linux/bpf_common.h).
pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
pub(crate) const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
pub(crate) const JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `struct seccomp_data` offsets: the program reads 32-bit words.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
pub(crate) const OFF_ARGS: u32 = 16;

/// The comparison of a conditional jump (always against the constant `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Gt,
    Ge,
}

impl Cmp {
    fn opcode(self) -> u16 {
        match self {
            Cmp::Eq => JMP_JEQ_K,
            Cmp::Gt => JMP_JGT_K,
            Cmp::Ge => JMP_JGE_K,
        }
    }
}

/// A position in the program, bound once with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Label(usize);

/// Where a conditional jump goes on one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The instruction right after the jump.
    Next,
    To(Label),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Load(u32),
    And(u32),
    Jump {
        cmp: Cmp,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Goto(Label),
    Ret(u32),
    Bind(Label),
}

/// Collects instructions with symbolic jump targets; [`Asm::finish`] lays
/// them out.
#[derive(Default)]
pub(crate) struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    pub(crate) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub(crate) fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// `A = seccomp_data[offset]` (a 32-bit word).
    pub(crate) fn load(&mut self, offset: u32) {
        self.ops.push(Op::Load(offset));
    }

    /// `A &= k`.
    pub(crate) fn and(&mut self, k: u32) {
        self.ops.push(Op::And(k));
    }

    /// `if A <cmp> k goto jt else goto jf`.
    pub(crate) fn jump(&mut self, cmp: Cmp, k: u32, jt: Target, jf: Target) {
        self.ops.push(Op::Jump { cmp, k, jt, jf });
    }

    pub(crate) fn goto(&mut self, label: Label) {
        self.ops.push(Op::Goto(label));
    }

    pub(crate) fn ret(&mut self, value: u32) {
        self.ops.push(Op::Ret(value));
    }

    /// Lays the program out. A conditional jump whose target lies more than
    /// 255 instructions ahead gets a trampoline (`ja`) right after it; as a
    /// trampoline only lengthens the program, marking jumps "long" until none
    /// changes terminates.
    pub(crate) fn finish(self) -> Result<Vec<Insn>, Error> {
        let mut long: Vec<(bool, bool)> = vec![(false, false); self.ops.len()];
        let mut at = vec![usize::MAX; self.labels];
        loop {
            // Positions for this round.
            let mut pos = 0;
            for (i, op) in self.ops.iter().enumerate() {
                match op {
                    Op::Bind(label) => at[label.0] = pos,
                    Op::Jump { .. } => pos += 1 + long[i].0 as usize + long[i].1 as usize,
                    _ => pos += 1,
                }
            }
            let mut changed = false;
            let mut pos = 0;
            for (i, op) in self.ops.iter().enumerate() {
                match op {
                    Op::Bind(_) => continue,
                    Op::Jump { jt, jf, .. } => {
                        // Sizes as `at` was computed with, not as marked now.
                        let size = 1 + long[i].0 as usize + long[i].1 as usize;
                        let entry = &mut long[i];
                        for (target, is_long) in [(jt, &mut entry.0), (jf, &mut entry.1)] {
                            if let Target::To(label) = target {
                                let distance = forward(&at, *label, pos)?;
                                if distance > u8::MAX as usize && !*is_long {
                                    *is_long = true;
                                    changed = true;
                                }
                            }
                        }
                        pos += size;
                    }
                    _ => pos += 1,
                }
            }
            if !changed {
                break;
            }
        }

        let mut out: Vec<Insn> = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let pos = out.len();
            match *op {
                Op::Bind(_) => {}
                Op::Load(offset) => out.push(insn(LD_W_ABS, 0, 0, offset)),
                Op::And(k) => out.push(insn(ALU_AND_K, 0, 0, k)),
                Op::Ret(value) => out.push(insn(RET_K, 0, 0, value)),
                Op::Goto(label) => {
                    let distance = forward(&at, label, pos)?;
                    out.push(insn(JMP_JA, 0, 0, to_u32(distance)?));
                }
                Op::Jump { cmp, k, jt, jf } => {
                    let (jt_long, jf_long) = long[i];
                    // Trampolines follow the jump: the true one first.
                    let jt_tramp = 0;
                    let jf_tramp = jt_long as usize;
                    let short =
                        |target: Target, tramp: usize, is_long: bool| -> Result<u8, Error> {
                            match target {
                                Target::Next => Ok((jt_long as u8) + (jf_long as u8)),
                                Target::To(_) if is_long => Ok(tramp as u8),
                                Target::To(label) => {
                                    let d = forward(&at, label, pos)?;
                                    u8::try_from(d).map_err(|_| internal("short jump out of range"))
                                }
                            }
                        };
                    let t = short(jt, jt_tramp, jt_long)?;
                    let f = short(jf, jf_tramp, jf_long)?;
                    out.push(insn(cmp.opcode(), t, f, k));
                    for (target, is_long) in [(jt, jt_long), (jf, jf_long)] {
                        if let (Target::To(label), true) = (target, is_long) {
                            let here = out.len();
                            let distance = forward(&at, label, here)?;
                            out.push(insn(JMP_JA, 0, 0, to_u32(distance)?));
                        }
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(Error::ProgramTooLarge { len: out.len() });
        }
        Ok(out)
    }
}

/// How many instructions a jump at `pos` skips to reach `label`.
fn forward(at: &[usize], label: Label, pos: usize) -> Result<usize, Error> {
    let target = at[label.0];
    if target == usize::MAX {
        return Err(internal("jump to an unbound label"));
    }
    if target <= pos {
        return Err(internal("backward jump"));
    }
    Ok(target - pos - 1)
}

fn to_u32(v: usize) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| internal("jump out of range"))
}

fn internal(what: &'static str) -> Error {
    Error::Internal(what)
}

pub(crate) fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// A userspace interpreter of the subset the generator emits, for tests: it
/// checks what the kernel's verifier checks (forward jumps inside the
/// program, a return at the end of every path).
#[cfg(test)]
pub(crate) fn run(program: &[Insn], data: &libc::seccomp_data) -> u32 {
    let mut words = [0u32; 16];
    words[0] = data.nr as u32;
    words[1] = data.arch;
    words[2] = data.instruction_pointer as u32;
    words[3] = (data.instruction_pointer >> 32) as u32;
    for (i, arg) in data.args.iter().enumerate() {
        words[4 + 2 * i] = *arg as u32;
        words[5 + 2 * i] = (*arg >> 32) as u32;
    }
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        pc += 1;
        let k = i.k;
        match i.code {
            LD_W_ABS => {
                assert!(k & 3 == 0 && k < 64, "load outside seccomp_data");
                a = words[(k / 4) as usize];
            }
            ALU_AND_K => a &= k,
            JMP_JA => pc += k as usize,
            RET_K => return k,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let taken = match i.code {
                    JMP_JEQ_K => a == k,
                    JMP_JGT_K => a > k,
                    _ => a >= k,
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
            other => panic!("opcode {other:#x} not expected"),
        }
        assert!(pc < program.len(), "jump past the end of the program");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(nr: u32) -> libc::seccomp_data {
        libc::seccomp_data {
            nr: nr as i32,
            arch: 0,
            instruction_pointer: 0,
            args: [0; 6],
        }
    }

    #[test]
    fn short_jumps_need_no_trampoline() {
        let mut asm = Asm::default();
        let yes = asm.label();
        asm.load(OFF_NR);
        asm.jump(Cmp::Eq, 7, Target::To(yes), Target::Next);
        asm.ret(1);
        asm.bind(yes);
        asm.ret(2);
        let prog = asm.finish().unwrap();
        assert_eq!(prog.len(), 4);
        assert_eq!(run(&prog, &data(7)), 2);
        assert_eq!(run(&prog, &data(8)), 1);
    }

    #[test]
    fn far_targets_go_through_trampolines() {
        for (jt_far, jf_far) in [(true, false), (false, true), (true, true)] {
            let mut asm = Asm::default();
            let far_t = asm.label();
            let far_f = asm.label();
            let near = asm.label();
            asm.load(OFF_NR);
            let jt = if jt_far {
                Target::To(far_t)
            } else {
                Target::To(near)
            };
            let jf = if jf_far {
                Target::To(far_f)
            } else {
                Target::To(near)
            };
            asm.jump(Cmp::Ge, 10, jt, jf);
            asm.bind(near);
            asm.ret(100);
            for _ in 0..300 {
                asm.ret(0);
            }
            asm.bind(far_t);
            asm.ret(1);
            asm.bind(far_f);
            asm.ret(2);
            let prog = asm.finish().unwrap();
            let want_t = if jt_far { 1 } else { 100 };
            let want_f = if jf_far { 2 } else { 100 };
            assert_eq!(run(&prog, &data(10)), want_t);
            assert_eq!(run(&prog, &data(9)), want_f);
        }
    }

    #[test]
    fn backward_and_unbound_jumps_are_internal_errors() {
        let mut asm = Asm::default();
        let l = asm.label();
        asm.bind(l);
        asm.goto(l);
        assert!(matches!(asm.finish(), Err(Error::Internal(_))));

        let mut asm = Asm::default();
        let l = asm.label();
        asm.goto(l);
        assert!(matches!(asm.finish(), Err(Error::Internal(_))));
    }

    #[test]
    fn too_long_program_is_refused() {
        let mut asm = Asm::default();
        for _ in 0..=MAX_INSNS {
            asm.ret(0);
        }
        assert!(
            matches!(asm.finish(), Err(Error::ProgramTooLarge { len }) if len == MAX_INSNS + 1)
        );
    }
}
