//! The handful of eBPF instructions the device program needs, encoded as
//! the kernel's `struct bpf_insn` (include/uapi/linux/bpf.h): an opcode,
//! destination and source registers in one byte, a 16-bit jump offset and a
//! 32-bit immediate. Jump offsets count instructions from the one after the
//! jump.

/// Registers by number: r0 holds the verdict, r1 the context pointer.
pub(crate) const R0: u8 = 0;
pub(crate) const R1: u8 = 1;
pub(crate) const R2: u8 = 2;
pub(crate) const R3: u8 = 3;
pub(crate) const R4: u8 = 4;
pub(crate) const R5: u8 = 5;

// Instruction classes, operations and sources (bpf_common.h, bpf.h).
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU32: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const SIZE_W: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const OP_AND: u8 = 0x50;
const OP_RSH: u8 = 0x70;
const OP_MOV: u8 = 0xb0;
const OP_JNE: u8 = 0x50;
const OP_EXIT: u8 = 0x90;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;

/// One instruction, as the kernel lays it out (8 bytes, little-endian
/// register nibbles: dst in the low four bits).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`
    pub(crate) const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(CLASS_LDX | SIZE_W | MODE_MEM, dst, src, off, 0)
    }

    /// `dst = (u32)(dst & imm)`
    pub(crate) const fn and32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU32 | OP_AND | SRC_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)dst >> imm`
    pub(crate) const fn rsh32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU32 | OP_RSH | SRC_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)src`
    pub(crate) const fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(CLASS_ALU32 | OP_MOV | SRC_X, dst, src, 0, 0)
    }

    /// `dst = (u32)imm`
    pub(crate) const fn mov32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU32 | OP_MOV | SRC_K, dst, 0, 0, imm)
    }

    /// `if dst != imm goto +off`
    pub(crate) const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JNE | SRC_K, dst, 0, off, imm)
    }

    /// `if dst != src goto +off`
    pub(crate) const fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JNE | SRC_X, dst, src, off, 0)
    }

    /// `return r0`
    pub(crate) const fn exit() -> Insn {
        Insn::new(CLASS_JMP | OP_EXIT, 0, 0, 0, 0)
    }

    pub(crate) fn is_jump(&self) -> bool {
        self.code & 0x07 == CLASS_JMP && self.code & 0xf0 != OP_EXIT
    }

    /// The 8 bytes the kernel reads (what the repr(C) layout holds).
    #[cfg(test)]
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_le_bytes());
        out[4..8].copy_from_slice(&self.imm.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernels_opcodes() {
        // Values as the kernel's own tools (bpftool, llvm-objdump) print them.
        assert_eq!(
            Insn::load_u32(R2, R1, 4).to_bytes(),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Insn::and32_imm(R2, 0xffff).to_bytes(),
            [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0]
        );
        assert_eq!(
            Insn::rsh32_imm(R3, 16).to_bytes(),
            [0x74, 0x03, 0, 0, 16, 0, 0, 0]
        );
        assert_eq!(
            Insn::mov32_reg(R1, R3).to_bytes(),
            [0xbc, 0x31, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Insn::mov32_imm(R0, 1).to_bytes(),
            [0xb4, 0x00, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            Insn::jne_imm(R4, 136, 3).to_bytes(),
            [0x55, 0x04, 3, 0, 136, 0, 0, 0]
        );
        assert_eq!(
            Insn::jne_reg(R1, R3, -1).to_bytes(),
            [0x5d, 0x31, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn only_conditional_jumps_count_as_jumps() {
        assert!(Insn::jne_imm(R2, 1, 0).is_jump());
        assert!(Insn::jne_reg(R1, R3, 0).is_jump());
        assert!(!Insn::exit().is_jump());
        assert!(!Insn::mov32_imm(R0, 0).is_jump());
    }
}
