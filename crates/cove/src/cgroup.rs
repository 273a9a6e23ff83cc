//! A CT's cgroups: two levels, so that a CT can manage its own subtree
//! (systemd inside needs to) without reaching its own limits.
//!
//! ```text
//! <parent>/<CTID>            the CT's limits (memory, cpu, pids), written by cove
//! <parent>/<CTID>/payload    the engine's container cgroup: the CT's init, its
//!                            device rules, the root of the CT's cgroup namespace,
//!                            and a copy of the limits (what the CT sees of them)
//! ```
//!
//! Inside the CT, `/sys/fs/cgroup` shows the payload cgroup as its root.
//! On a pure cgroup v2 host it is mounted read-write: systemd moves itself
//! into `init.scope`, enables controllers and makes its slices below it.
//! The payload's own limit files are writable too, but the kernel enforces
//! the outer cgroup's limits on everything below it, so a CT can only
//! tighten what cove gave it (LXC's `lxc.cgroup.dir.container.inner` and
//! systemd-nspawn's `payload` sub-cgroup do the same). On hybrid and v1
//! hosts the controller hierarchies stay read-only and only the
//! controller-less `name=systemd` hierarchy is bound read-write (systemd
//! mounts the cgroup2 tree at `/sys/fs/cgroup/unified` itself, in the CT's
//! cgroup namespace).

use std::path::PathBuf;

use cove_cgroups::{CgroupManager, CgroupSpec, HostMode};

use crate::config::Resources;
use crate::ctid::Ctid;
use crate::error::Result;
use crate::paths::CtPaths;
use crate::spec;

/// The name of the inner cgroup the CT's processes live in.
pub const PAYLOAD: &str = "payload";

/// `cgroupsPath` of the CT's container: the payload below the CT's cgroup.
pub fn payload_path(ct: &CtPaths) -> String {
    format!("{}/{PAYLOAD}", ct.cgroups_path)
}

/// The manager of the CT's outer cgroup (where its limits are).
pub fn outer(ct: &CtPaths, ctid: &Ctid) -> Result<Box<dyn CgroupManager>> {
    Ok(cove_cgroups::manager(&CgroupSpec {
        path: Some(ct.cgroups_path.clone()),
        id: ctid.to_string(),
        systemd: false,
    })?)
}

/// Creates the CT's outer cgroup with its limits, before the engine
/// creates the payload below it. Devices are the engine's (on the payload).
/// A CT that was given no limit gets none on either level. Returns a note
/// for a setting this kernel cannot apply (the CT starts without it).
pub fn prepare(ct: &CtPaths, ctid: &Ctid, limits: &Resources) -> Result<Option<String>> {
    let cg = outer(ct, ctid)?;
    cg.create()?;
    let mut res = spec::resources(limits)?;
    res.set_devices(None);
    let applied = cg.apply(&res).map_err(Into::into).and_then(|()| {
        limits
            .ioweight
            .map_or(Ok(None), |w| apply_ioweight(cg.as_ref(), ctid, w))
    });
    if applied.is_err() {
        let _ = cg.destroy();
    }
    applied
}

/// Sets the CT's I/O weight on its outer cgroup, where siblings compete.
/// Only the outer level gets it: the payload has no sibling to share with.
/// A kernel without proportional I/O control (no BFQ, no io.cost) has no
/// file to write it to: the weight is kept in the config and a note says
/// it is not in force.
pub fn apply_ioweight(cg: &dyn CgroupManager, ctid: &Ctid, weight: u16) -> Result<Option<String>> {
    if cove_cgroups::io_weight_file(&cg.paths()).is_none() {
        return Ok(Some(format!(
            "CT {ctid}: ioweight {weight} is saved but not in force: this kernel has no \
             proportional I/O control (no BFQ scheduler, no cgroup v2 io.cost)"
        )));
    }
    let mut res = oci_spec::runtime::LinuxResources::default();
    let mut blkio = oci_spec::runtime::LinuxBlockIo::default();
    blkio.set_weight(Some(weight));
    res.set_block_io(Some(blkio));
    cg.apply(&res)?;
    Ok(None)
}

/// Removes the CT's cgroups, whatever is left below the outer one (the
/// payload and what the CT's systemd made in it). Fine if already gone.
pub fn remove(ct: &CtPaths, ctid: &Ctid) -> Result<()> {
    Ok(outer(ct, ctid)?.destroy()?)
}

/// How `/sys/fs/cgroup` is shown inside the CT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupView {
    /// The cgroup mount read-write (pure v2: the payload is the root of the
    /// CT's cgroup2 mount).
    pub writable: bool,
    /// On hybrid and v1 hosts, the host directory of the payload in the
    /// `name=systemd` hierarchy, bound read-write over the engine's
    /// read-only one at /sys/fs/cgroup/systemd.
    pub named_systemd: Option<PathBuf>,
}

/// What this host calls for; the payload's directories need not exist yet.
pub fn view(ct: &CtPaths, ctid: &Ctid) -> Result<CgroupView> {
    if cove_cgroups::host_mode() == HostMode::Unified {
        return Ok(CgroupView {
            writable: true,
            named_systemd: None,
        });
    }
    let payload = cove_cgroups::manager(&CgroupSpec {
        path: Some(payload_path(ct)),
        id: ctid.to_string(),
        systemd: false,
    })?;
    Ok(CgroupView {
        writable: false,
        named_systemd: payload
            .paths()
            .into_iter()
            .find(|(name, _)| name == "name=systemd")
            .map(|(_, dir)| dir),
    })
}
