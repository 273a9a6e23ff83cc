//! A compiled [`Filter`] as bytes, so a runtime can keep it (a cache of
//! filters keyed by profile) and load it later without compiling.
//!
//! The layout, all little-endian: `flags: u32`, `uses_notify: u32` (0 or
//! 1), `count: u32`, then `count` instructions of 8 bytes each (`code:
//! u16`, `jt: u8`, `jf: u8`, `k: u32`, the kernel's `struct sock_filter`).
//! Reading checks every field that [`Filter::load`] trusts; the program's
//! instructions themselves are checked again by the kernel at load.

use crate::bpf::{Insn, MAX_INSNS};
use crate::profile::{
    FLAG_LOG, FLAG_NEW_LISTENER, FLAG_SPEC_ALLOW, FLAG_TSYNC, FLAG_TSYNC_ESRCH,
    FLAG_WAIT_KILLABLE_RECV,
};
use crate::Filter;

const HEADER: usize = 12;
const INSN: usize = 8;
const KNOWN_FLAGS: u32 = FLAG_TSYNC
    | FLAG_LOG
    | FLAG_SPEC_ALLOW
    | FLAG_NEW_LISTENER
    | FLAG_TSYNC_ESRCH
    | FLAG_WAIT_KILLABLE_RECV;

impl Filter {
    /// The filter as bytes; [`Filter::from_bytes`] reads them back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + INSN * self.program.len());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&u32::from(self.uses_notify).to_le_bytes());
        out.extend_from_slice(&(self.program.len() as u32).to_le_bytes());
        for i in &self.program {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out
    }

    /// A filter from [`Filter::to_bytes`]' output; None for anything else:
    /// a wrong length, an empty or too long program, unknown flags, or a
    /// notify mark that disagrees with the flags.
    pub fn from_bytes(bytes: &[u8]) -> Option<Filter> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let flags = word(0)?;
        let uses_notify = match word(4)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let count = word(8)? as usize;
        if count == 0
            || count > MAX_INSNS
            || bytes.len() != HEADER + INSN * count
            || flags & !KNOWN_FLAGS != 0
            || uses_notify != (flags & FLAG_NEW_LISTENER != 0)
        {
            return None;
        }
        let program = bytes[HEADER..]
            .chunks_exact(INSN)
            .map(|c| Insn {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Filter {
            program,
            flags,
            uses_notify,
        })
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use crate::{compile, from_json, Filter};

    fn filter(json: &str) -> Filter {
        compile(&from_json(json.as_bytes()).unwrap()).unwrap()
    }

    fn same(a: &Filter, b: &Filter) -> bool {
        a.flags() == b.flags()
            && a.uses_notify() == b.uses_notify()
            && a.instructions().len() == b.instructions().len()
            && a.instructions()
                .iter()
                .zip(b.instructions())
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    #[test]
    fn filters_read_back_as_written() {
        for json in [
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x","flags":["SECCOMP_FILTER_FLAG_TSYNC"],
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ] {
            let f = filter(json);
            let back = Filter::from_bytes(&f.to_bytes()).expect("read back");
            assert!(same(&f, &back), "{f:?} became {back:?}");
        }
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let f = filter(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let good = f.to_bytes();
        assert!(Filter::from_bytes(&good).is_some());
        // Truncated anywhere, or one byte too many.
        for len in [0, 4, 11, 12, good.len() - 1] {
            assert!(Filter::from_bytes(&good[..len]).is_none(), "len {len}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(Filter::from_bytes(&long).is_none());
        // An unknown flag, a notify mark without the listener flag, a count
        // that does not match the length.
        for (at, byte) in [(3, 0x80u8), (4, 1), (4, 2), (8, 0xff)] {
            let mut bad = good.clone();
            bad[at] = byte;
            assert!(Filter::from_bytes(&bad).is_none(), "byte {at} = {byte:#x}");
        }
    }
}
