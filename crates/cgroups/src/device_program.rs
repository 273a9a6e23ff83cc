//! The cgroup v2 device program: a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! made from a [`DeviceSet`], the way runc and crun make theirs. v2 has no
//! devices.allow/deny files; the kernel runs this program on every open and
//! mknod of a device node by a task of the cgroup (and of its children)
//! and refuses the access (EPERM) when it returns 0.
//!
//! Shape: four loads from `struct bpf_cgroup_dev_ctx` (type in the low 16
//! bits of `access_type`, the access bits in the high 16, then major and
//! minor) into r2..r5, one block per exception (any mismatch jumps to the
//! next block; a match returns the exception's verdict), and the default
//! verdict at the end. The set's exceptions do not overlap in verdict, so
//! their order does not matter; they come in the set's sorted order.
//!
//! Installing follows runc: the new program is attached next to the old
//! ones (`BPF_F_ALLOW_MULTI`, where every program must allow), then the old
//! ones are detached, so an update never leaves the cgroup unguarded nor
//! more open than either rule set.

use std::os::fd::AsFd;
use std::path::Path;

use crate::bpf_insn::{Insn, R0, R1, R2, R3, R4, R5};
use crate::bpf_sys;
use crate::device_rules::{Access, DeviceSet, Kind};
use crate::error::{Error, Result};

/// The license the kernel is told; any string works for a program that
/// calls no GPL-only helper.
pub(crate) const LICENSE: &str = "Apache";

// BPF_DEVCG_DEV_* (include/uapi/linux/bpf.h).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// The program for `set`.
pub(crate) fn program(set: &DeviceSet) -> Vec<Insn> {
    let mut insns = vec![
        Insn::load_u32(R2, R1, 0),
        Insn::and32_imm(R2, 0xffff),
        Insn::load_u32(R3, R1, 0),
        Insn::rsh32_imm(R3, 16),
        Insn::load_u32(R4, R1, 4),
        Insn::load_u32(R5, R1, 8),
    ];
    for (node, access) in &set.exceptions {
        let mut block = vec![Insn::jne_imm(
            R2,
            match node.kind {
                Kind::Block => DEV_BLOCK,
                Kind::Char => DEV_CHAR,
            },
            0,
        )];
        if *access != Access::ALL {
            // Matches only when every bit asked for is in the exception:
            // (asked & granted) == asked.
            block.push(Insn::mov32_reg(R1, R3));
            block.push(Insn::and32_imm(R1, i32::from(access.bits())));
            block.push(Insn::jne_reg(R1, R3, 0));
        }
        if let Some(major) = node.major {
            block.push(Insn::jne_imm(R4, major as i32, 0));
        }
        if let Some(minor) = node.minor {
            block.push(Insn::jne_imm(R5, minor as i32, 0));
        }
        block.push(Insn::mov32_imm(R0, i32::from(!set.default_allow)));
        block.push(Insn::exit());
        // Each jump leaves the block: it lands on the first instruction
        // after the block's exit.
        let len = block.len();
        for (at, insn) in block.iter_mut().enumerate() {
            if insn.is_jump() {
                insn.off = (len - at - 1) as i16;
            }
        }
        insns.extend(block);
    }
    insns.push(Insn::mov32_imm(R0, i32::from(set.default_allow)));
    insns.push(Insn::exit());
    insns
}

/// Loads the program for `set` and makes it the only device program that
/// cove attached to the cgroup directory `dir`.
pub(crate) fn install(dir: &Path, set: &DeviceSet) -> Result<()> {
    let bpf_error = |what: &str, source: std::io::Error| Error::Bpf {
        what: what.to_string(),
        cgroup: dir.to_path_buf(),
        source,
        log: String::new(),
    };
    let cgroup = bpf_sys::open_dir(dir).map_err(|e| bpf_error("open the cgroup", e))?;
    let old = bpf_sys::query_device_programs(cgroup.as_fd())
        .map_err(|e| bpf_error("BPF_PROG_QUERY", e))?;
    let insns = program(set);
    let prog =
        bpf_sys::load_device_program(&insns, LICENSE).map_err(|(source, log)| Error::Bpf {
            what: "BPF_PROG_LOAD".into(),
            cgroup: dir.to_path_buf(),
            source,
            log,
        })?;
    bpf_sys::attach_device_program(cgroup.as_fd(), prog.as_fd())
        .map_err(|e| bpf_error("BPF_PROG_ATTACH", e))?;
    for id in old {
        let old_prog = match bpf_sys::program_by_id(id) {
            Ok(fd) => fd,
            // Gone meanwhile, or hidden from us by an LSM: a program we
            // cannot see was not ours, and one more program can only deny.
            Err(e) => {
                tracing::debug!(id, error = %e, "old device program left alone");
                continue;
            }
        };
        bpf_sys::detach_device_program(cgroup.as_fd(), old_prog.as_fd())
            .map_err(|e| bpf_error("BPF_PROG_DETACH of the old program", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_rules::DeviceSet;

    fn set_of(json: &str) -> DeviceSet {
        DeviceSet::from_spec(&serde_json::from_str::<Vec<_>>(json).unwrap()).unwrap()
    }

    const PROLOGUE: [Insn; 6] = [
        Insn::load_u32(R2, R1, 0),
        Insn::and32_imm(R2, 0xffff),
        Insn::load_u32(R3, R1, 0),
        Insn::rsh32_imm(R3, 16),
        Insn::load_u32(R4, R1, 4),
        Insn::load_u32(R5, R1, 8),
    ];

    /// One allow block as written out in `exact_rwm_rule_checks_type_major_minor_only`:
    /// type, then (when not rwm) the access bits, major, minor, each
    /// mismatch jumping past the block's `return 1`.
    fn block(dev: i32, bits: Option<i32>, major: Option<i32>, minor: Option<i32>) -> Vec<Insn> {
        let mut checks = vec![Insn::jne_imm(R2, dev, 0)];
        if let Some(bits) = bits {
            checks.push(Insn::mov32_reg(R1, R3));
            checks.push(Insn::and32_imm(R1, bits));
            checks.push(Insn::jne_reg(R1, R3, 0));
        }
        checks.extend(major.map(|m| Insn::jne_imm(R4, m, 0)));
        checks.extend(minor.map(|m| Insn::jne_imm(R5, m, 0)));
        let len = checks.len() + 2;
        for (at, insn) in checks.iter_mut().enumerate() {
            if insn.is_jump() {
                insn.off = (len - at - 1) as i16;
            }
        }
        checks.extend([Insn::mov32_imm(R0, 1), Insn::exit()]);
        checks
    }

    #[test]
    fn deny_all_alone_is_the_prologue_and_return_0() {
        let insns = program(&set_of(r#"[{"allow": false, "access": "rwm"}]"#));
        let mut want = PROLOGUE.to_vec();
        want.extend([Insn::mov32_imm(R0, 0), Insn::exit()]);
        assert_eq!(insns, want);
    }

    #[test]
    fn allow_all_returns_1() {
        let insns = program(&set_of(r#"[{"allow": true, "access": "rwm"}]"#));
        assert_eq!(&insns[6..], [Insn::mov32_imm(R0, 1), Insn::exit()]);
    }

    #[test]
    fn exact_rwm_rule_checks_type_major_minor_only() {
        let insns = program(&set_of(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]"#,
        ));
        let mut want = PROLOGUE.to_vec();
        want.extend([
            Insn::jne_imm(R2, DEV_CHAR, 4),
            Insn::jne_imm(R4, 1, 3),
            Insn::jne_imm(R5, 3, 2),
            Insn::mov32_imm(R0, 1),
            Insn::exit(),
            Insn::mov32_imm(R0, 0),
            Insn::exit(),
        ]);
        assert_eq!(insns, want);
    }

    #[test]
    fn partial_access_and_wildcards_as_runc_emits_them() {
        // runc's defaults start with "c *:* m" and "b *:* m", then exact
        // devices and /dev/pts (c 136:*).
        let insns = program(&set_of(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "access": "m"},
                {"allow": true, "type": "b", "access": "m"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#,
        ));
        let mut want = PROLOGUE.to_vec();
        // Wildcards sort first, 'b' before 'c'.
        want.extend(block(DEV_BLOCK, Some(1), None, None));
        want.extend(block(DEV_CHAR, Some(1), None, None));
        want.extend(block(DEV_CHAR, Some(2), Some(1), Some(5)));
        want.extend(block(DEV_CHAR, None, Some(136), None));
        want.extend([Insn::mov32_imm(R0, 0), Insn::exit()]);
        assert_eq!(insns, want);
    }

    #[test]
    fn deny_list_blocks_return_0_and_the_default_1() {
        let insns = program(&set_of(
            r#"[{"allow": true, "access": "rwm"},
                {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "w"}]"#,
        ));
        let tail = &insns[6..];
        assert_eq!(tail[0], Insn::jne_imm(R2, DEV_BLOCK, 7));
        assert_eq!(tail[2], Insn::and32_imm(R1, 4));
        assert_eq!(tail[6], Insn::mov32_imm(R0, 0));
        assert_eq!(tail[tail.len() - 2], Insn::mov32_imm(R0, 1));
    }
}
