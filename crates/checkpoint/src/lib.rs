//! cove-checkpoint: checkpoint and restore of cove containers with CRIU,
//! driven through CRIU's RPC (`criu swrk`), never through its command line.
//!
//! - [`proto`], [`rpc`]: the protobuf messages of CRIU's rpc.proto, encoded
//!   and decoded by hand (a dozen messages; no protobuf runtime in the
//!   binary).
//! - [`swrk`]: one CRIU service worker and the request/notify/response
//!   conversation.
//! - [`stats`]: CRIU's dump and restore statistics (frozen time, pages).
//! - [`checkpoint()`], [`restore()`]: what runc's libcontainer sends to CRIU
//!   for a container (external bind mounts, masked paths, device nodes,
//!   cgroups, namespaces joined by path, stdio pipes, the console), on the
//!   engine's state, so a restored container is an ordinary one for
//!   `state`, `kill`, `delete` and `list`.
//! - [`check_available`]: CRIU's own verdict on this kernel, asked first,
//!   so that a host where CRIU cannot work gets one clear error and an
//!   untouched container.

mod checkpoint;
pub mod error;
mod layout;
pub mod proto;
mod restore;
pub mod rpc;
pub mod stats;
pub mod swrk;

pub use checkpoint::{checkpoint, CheckpointOptions, Checkpointed};
pub use error::{Error, Result};
pub use restore::{restore, RestoreOptions, Restored};
pub use stats::{DumpStats, RestoreStats};

use rpc::{Opts, ReqType};
use swrk::{Stdio3, Worker};

/// CRIU's version as (major, minor, sublevel).
pub fn version(criu: &str) -> Result<(i32, i32, i32)> {
    let mut w = Worker::spawn(criu, Stdio3::Null, &[])?;
    let resp = w.call(
        ReqType::Version,
        &rpc::request(ReqType::Version, None),
        None,
        &mut |_, _, _| Ok(()),
    )?;
    w.finish(true)?;
    resp.version
        .ok_or_else(|| Error::Protocol("no version in the answer".into()))
}

/// Asks CRIU (a CHECK request) whether it can dump and restore on this
/// kernel. When it cannot, the error names the kernel, CRIU's version and
/// the first error CRIU logged; nothing is left behind.
pub fn check_available(criu: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cove-criu-check.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| Error::io("mkdir", &dir, e))?;
    let result = check_in(criu, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn check_in(criu: &str, dir: &std::path::Path) -> Result<()> {
    let d = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    use std::os::fd::AsRawFd;
    let opts = Opts {
        images_dir_fd: d.as_raw_fd(),
        log_level: Some(2),
        log_file: Some("check.log".into()),
        ..Default::default()
    };
    let mut w = Worker::spawn(criu, Stdio3::Null, &[d.as_raw_fd()])?;
    let r = w.call(
        ReqType::Check,
        &rpc::request(ReqType::Check, Some(&opts)),
        None,
        &mut |_, _, _| Ok(()),
    );
    let _ = w.finish(true);
    match r {
        Ok(_) => Ok(()),
        Err(Error::Criu { .. }) | Err(Error::Protocol(_)) => {
            let kernel = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let ver = version(criu)
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))
                .unwrap_or_else(|_| "?".into());
            let why = swrk::first_error(&dir.join("check.log"))
                .unwrap_or_else(|| "no reason logged".into());
            Err(Error::Unavailable(format!(
                "`criu check` fails with CRIU {ver} on kernel {kernel} ({why}); use a kernel this CRIU supports"
            )))
        }
        Err(e) => Err(e),
    }
}
