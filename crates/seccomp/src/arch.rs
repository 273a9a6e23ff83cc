//! The syscall ABIs a filter tells apart, and their syscall numbers.
//!
//! On an x86_64 kernel a process can enter the kernel through three ABIs:
//! the native one, the i386 compat one (`int 0x80`, arch AUDIT_ARCH_I386)
//! and x32, which the kernel reports as AUDIT_ARCH_X86_64 with
//! `__X32_SYSCALL_BIT` set in the syscall number. libseccomp (and so runc)
//! treats i386 and x32 as 32-bit architectures: an argument comparison there
//! looks at the low 32 bits only.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use oci_spec::runtime::Arch;

use crate::syscall_table;

/// `AUDIT_ARCH_X86_64` (linux/audit.h: EM_X86_64 | 64BIT | LE).
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (EM_386 | LE).
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abi {
    X86_64,
    I386,
    X32,
}

impl Abi {
    /// The syscall number `name` has on this ABI, as the filter sees it.
    pub(crate) fn syscall_nr(self, name: &str) -> Option<u32> {
        let nr = *syscall_index().get(name)?.get(self as usize)?;
        if nr == NONE {
            return None;
        }
        Some(if self == Abi::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }

    /// Whether argument comparisons see only the low 32 bits (libseccomp's
    /// ARCH_SIZE_32).
    pub(crate) fn has_32bit_args(self) -> bool {
        self != Abi::X86_64
    }
}

/// No syscall of this name on that ABI.
const NONE: u32 = u32::MAX;

/// FNV-1a: syscall names are short, and SipHash's set-up would cost more
/// than the hashing itself. Nothing here is attacker-chosen in a way that
/// matters: the table is fixed and a profile only looks names up.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type Index = HashMap<&'static str, [u32; 3], BuildHasherDefault<Fnv>>;

/// Name -> number on each ABI (indexed by `Abi as usize`), built once per
/// process. A profile such as podman's names over 400 syscalls for three
/// ABIs; one hash probe per name and ABI replaces three binary searches of
/// string compares, which were most of the compile time.
fn syscall_index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index::with_capacity_and_hasher(
            syscall_table::X86_64.len() + 64,
            BuildHasherDefault::default(),
        );
        for (abi, table) in [
            (Abi::X86_64, syscall_table::X86_64),
            (Abi::I386, syscall_table::I386),
            (Abi::X32, syscall_table::X32),
        ] {
            for &(name, nr) in table {
                index.entry(name).or_insert([NONE; 3])[abi as usize] = nr;
            }
        }
        index
    })
}

/// What an OCI architecture name means on the host this was built for.
pub(crate) enum HostArch {
    /// A filter section for this ABI.
    Abi(Abi),
    /// A valid architecture that can never make a syscall on this host (an
    /// arm64 entry in a profile loaded on x86_64): libseccomp adds a section
    /// that never runs, we add none.
    Foreign,
}

/// The ABI the runtime itself (and so a native container process) uses.
pub(crate) fn native() -> Option<Abi> {
    if cfg!(target_arch = "x86_64") {
        Some(Abi::X86_64)
    } else {
        None
    }
}

pub(crate) fn host_arch(arch: Arch) -> Option<HostArch> {
    let abi = match arch {
        Arch::ScmpArchNative => return native().map(HostArch::Abi),
        Arch::ScmpArchX86_64 => Abi::X86_64,
        Arch::ScmpArchX86 => Abi::I386,
        Arch::ScmpArchX32 => Abi::X32,
        _ => return Some(HostArch::Foreign),
    };
    // i386 and x32 processes run on an x86_64 kernel only.
    match native() {
        Some(Abi::X86_64) => Some(HostArch::Abi(abi)),
        _ => Some(HostArch::Foreign),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_tables_are_sorted_for_binary_search() {
        for table in [
            syscall_table::X86_64,
            syscall_table::I386,
            syscall_table::X32,
        ] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn syscall_numbers_per_abi() {
        assert_eq!(Abi::X86_64.syscall_nr("getpid"), Some(39));
        assert_eq!(Abi::I386.syscall_nr("getpid"), Some(20));
        assert_eq!(Abi::X32.syscall_nr("getpid"), Some(39 | X32_SYSCALL_BIT));
        // x32 has its own entries where the 64-bit ABI's take pointers to
        // structures with longs.
        assert_eq!(Abi::X32.syscall_nr("readv"), Some(515 | X32_SYSCALL_BIT));
        assert_eq!(Abi::I386.syscall_nr("socketcall"), Some(102));
        assert_eq!(Abi::X86_64.syscall_nr("socketcall"), None);
        // Newer than the headers the table was generated from.
        assert_eq!(Abi::X86_64.syscall_nr("fchmodat2"), Some(452));
        assert_eq!(Abi::X86_64.syscall_nr("no_such_syscall"), None);
    }
}
