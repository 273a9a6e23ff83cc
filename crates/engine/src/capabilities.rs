//! The five capability sets of runtime-spec `process.capabilities`.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

fn to_caps(set: &Option<Capabilities>) -> HashSet<Capability> {
    set.iter()
        .flatten()
        .filter_map(|c| {
            let name = c.to_string();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            match Capability::from_str(&name) {
                Ok(c) => Some(c),
                Err(_) => {
                    tracing::debug!("capability {name} unknown to this build, skipped");
                    None
                }
            }
        })
        .collect()
}

/// Drops from the bounding set everything not listed. Runs before the uid
/// change, while we still hold CAP_SETPCAP.
pub fn drop_bounding(spec: Option<&LinuxCapabilities>) -> Result<()> {
    let keep = spec.map(|c| to_caps(c.bounding())).unwrap_or_default();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                // A capability newer than this kernel is simply absent.
                Err(_) if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {}
                Err(e) => return Err(Error::Other(format!("drop {cap} from bounding set: {e}"))),
            }
        }
    }
    Ok(())
}

/// Sets inheritable, permitted, effective and ambient, in the order the
/// kernel accepts: effective must stay within permitted at every step, so it shrinks first.
pub fn apply(spec: Option<&LinuxCapabilities>) -> Result<()> {
    let (inh, perm, eff, amb) = match spec {
        Some(c) => (
            to_caps(c.inheritable()),
            to_caps(c.permitted()),
            to_caps(c.effective()),
            to_caps(c.ambient()),
        ),
        None => Default::default(),
    };
    let set = |which: CapSet, v: &HashSet<Capability>| {
        caps::set(None, which, v)
            .map_err(|e| Error::Other(format!("set {which:?} capabilities: {e}")))
    };
    set(CapSet::Effective, &eff)?;
    set(CapSet::Inheritable, &inh)?;
    set(CapSet::Permitted, &perm)?;
    caps::clear(None, CapSet::Ambient).ok();
    for c in amb {
        // The kernel refuses an ambient capability that is not also
        // inheritable; runc skips those silently, and so do we.
        if let Err(e) = caps::raise(None, CapSet::Ambient, c) {
            tracing::debug!("ambient {c} not raised: {e}");
        }
    }
    Ok(())
}
