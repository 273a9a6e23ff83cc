//! `cove suspend` and `cove resume`: a running CT checkpointed with CRIU
//! into a dump directory (the CT stops), and brought back from it under a
//! new monitor, with its processes, pids, memory, open files and console.
//!
//! The dump directory defaults to `<data>/ct/<CTID>/dump`; where it is is
//! recorded in `<data>/ct/<CTID>/suspended.json`, which makes the CT
//! "suspended" for `resume`. After a resume the record and the dump go.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cove_checkpoint::{CheckpointOptions, RestoreOptions};
use cove_engine::container::{CreateOptions, Created};

use crate::config::{self, CtConfig};
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::monitor::{self, Launch};
use crate::paths::{CtPaths, Paths};
use crate::runstate::{self, MonitorRecord};
use crate::template;

const RECORD: &str = "suspended.json";

/// What `suspend` prints (`--json`) and records.
#[derive(Debug, Serialize, Deserialize)]
pub struct Suspended {
    pub ctid: String,
    pub dump_dir: PathBuf,
    /// How long CRIU kept the CT's processes frozen, in microseconds.
    pub frozen_time_us: u64,
    pub pages_written: u64,
    /// The pre-dumps before the final dump (`--pre-dumps N`), in order:
    /// memory copied while the CT ran, so the final freeze copies less.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_dumps: Vec<PreDump>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PreDump {
    pub frozen_time_us: u64,
    pub pages_written: u64,
}

fn record_path(ct: &CtPaths) -> PathBuf {
    ct.dir.join(RECORD)
}

fn from_checkpoint(e: cove_checkpoint::Error) -> Error {
    match e {
        cove_checkpoint::Error::Invalid(m) => Error::BadInput(m),
        cove_checkpoint::Error::Engine(e) => Error::Engine(e),
        e => Error::Tool(e.to_string()),
    }
}

/// A system CT keeps what a whole machine keeps across a suspend: its
/// network namespace (addresses, routes, established TCP connections) and
/// its file locks.
fn checkpoint_options(dump_dir: &Path) -> CheckpointOptions {
    CheckpointOptions {
        criu: "criu".into(),
        image_path: dump_dir.to_path_buf(),
        tcp_established: true,
        file_locks: true,
        ..Default::default()
    }
}

/// `cove suspend CTID [--dump-dir D]`.
pub fn suspend(
    paths: &Paths,
    arg: &str,
    dump_dir: Option<&Path>,
    pre_dumps: u32,
) -> Result<Suspended> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let lock = lifecycle::lock_ct(&ct, &ctid)?;
    if !runstate::status(&ct, &ctid).running() {
        return Err(Error::NotRunning(ctid.to_string()));
    }
    // The veth, its host routes and published ports are not carried over
    // a dump yet: refused before anything is frozen.
    let cfg = crate::config::CtConfig::load(&ct.config, &ctid)?;
    if cfg.net.enabled() {
        return Err(Error::BadInput(format!(
            "CT {ctid} has a network interface: suspend of a networked CT is not supported yet; stop it instead"
        )));
    }
    let dir = match dump_dir {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => std::env::current_dir()
            .map_err(|e| Error::io("getcwd", ".", e))?
            .join(d),
        None => ct.dir.join("dump"),
    };
    if dir.join("inventory.img").exists() {
        return Err(Error::BadInput(format!(
            "{} holds a dump already: resume from it or remove it",
            dir.display()
        )));
    }
    let monitor = MonitorRecord::read(&ct.monitor);
    // Iterative migration's first half: pre-dumps into dir/pre-1..N, each
    // on top of the one before (CRIU's soft-dirty tracking), the final
    // dump into dir on top of the last.
    let mut pre = Vec::new();
    let mut parent: Option<String> = None;
    for i in 1..=pre_dumps {
        let name = format!("pre-{i}");
        let mut o = checkpoint_options(&dir.join(&name));
        o.pre_dump = true;
        o.parent_path = parent.as_ref().map(|p| PathBuf::from(format!("../{p}")));
        let done = cove_checkpoint::checkpoint(&ct.oci_root, ctid.as_str(), &o)
            .map_err(from_checkpoint)?;
        let st = done.stats.unwrap_or_default();
        pre.push(PreDump {
            frozen_time_us: st.frozen_time_us,
            pages_written: st.pages_written,
        });
        parent = Some(name);
    }
    let mut o = checkpoint_options(&dir);
    o.parent_path = parent.map(PathBuf::from);
    let done =
        cove_checkpoint::checkpoint(&ct.oci_root, ctid.as_str(), &o).map_err(from_checkpoint)?;
    let stats = done.stats.unwrap_or_default();
    let rec = Suspended {
        ctid: ctid.to_string(),
        dump_dir: dir,
        frozen_time_us: stats.frozen_time_us,
        pages_written: stats.pages_written,
        pre_dumps: pre,
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Tool(e.to_string()))?;
    cove_engine::state::write_atomic(&record_path(&ct), &json)?;
    // The monitor saw the init go and tears down the mount and cgroup once
    // it has the lock.
    drop(lock);
    lifecycle::wait_for_monitor(monitor);
    Ok(rec)
}

/// `cove resume CTID`: a new monitor restores the CT from its dump.
pub fn resume(paths: &Paths, arg: &str) -> Result<()> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    let template = template::open(paths, &cfg.template)?;
    let lock = lifecycle::lock_ct(&ct, &ctid)?;
    if runstate::status(&ct, &ctid).running() {
        return Err(Error::AlreadyRunning(ctid.to_string()));
    }
    let rec_path = record_path(&ct);
    let rec: Suspended = match std::fs::read(&rec_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::BadConfig {
            path: rec_path.clone(),
            msg: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::BadInput(format!(
                "CT {ctid} is not suspended (see cove suspend)"
            )))
        }
        Err(e) => return Err(Error::io("read", &rec_path, e)),
    };
    // What the suspended run left (its monitor may not have finished).
    lifecycle::teardown(&ct, &ctid)?;
    let launch = Launch {
        paths,
        ctid: &ctid,
        cfg: &cfg,
        template: &template,
        restore_from: Some(&rec.dump_dir),
    };
    monitor::spawn(&launch, lock)?;
    let _ = std::fs::remove_file(&rec_path);
    let _ = std::fs::remove_dir_all(&rec.dump_dir);
    Ok(())
}

/// In the monitor: the CT's processes back from `images`, as children of
/// the monitor (CRIU restores them as its siblings).
pub fn restore_in_monitor(options: CreateOptions, images: &Path) -> Result<Created> {
    let r = cove_checkpoint::restore(&RestoreOptions {
        criu: "criu".into(),
        create: options,
        image_path: images.to_path_buf(),
        tcp_established: true,
        file_locks: true,
        ..Default::default()
    })
    .map_err(from_checkpoint)?;
    let pidfd = cove_engine::sys::pidfd_open(r.pid)
        .map_err(|e| Error::sys(format!("pidfd_open {}", r.pid), e))?;
    Ok(Created { pid: r.pid, pidfd })
}
