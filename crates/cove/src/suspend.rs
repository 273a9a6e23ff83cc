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
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::monitor::{self, Launch};
use crate::net;
use crate::paths::{CtPaths, Paths};
use crate::runstate::{self, MonitorRecord};
use crate::template;

/// The record that makes a CT "suspended" (for `resume`).
pub(crate) const RECORD: &str = "suspended.json";

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
    /// cove made dump_dir (it did not exist): resume removes it whole.
    /// Otherwise it was an empty directory of the user's: resume empties
    /// it and leaves it.
    #[serde(default)]
    pub made_dump_dir: bool,
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

/// Where the daemons of a system CT keep inotify watches that CRIU must
/// find a path for, as the CT sees them. The CT's root is an overlay,
/// which cannot open a watch's file handle again, so CRIU looks the inode
/// up by scanning directories ("irmap"): these first, then its own fixed
/// list (/etc, /var/log, /var/spool, /usr/share/dbus-1/system-services,
/// polkit's actions, ...), which misses dbus-daemon's
/// /usr/share/dbus-1/system.d and fails the dump ("fsnotify: Can't dump
/// that handle"). Small directories, scanned while the CT is frozen;
/// the ones a CT lacks are skipped.
pub const IRMAP_SCAN_PATHS: &[&str] = &[
    // systemd: timezone changes.
    "/etc/localtime",
    // dbus-daemon: its configuration and service directories.
    "/usr/share/dbus-1",
    "/etc/dbus-1",
    "/usr/local/share/dbus-1",
    "/usr/lib/dbus-1",
    // polkitd: its rules and actions.
    "/usr/share/polkit-1",
    "/etc/polkit-1",
];

/// A system CT keeps what a whole machine keeps across a suspend: its
/// network namespace (addresses, routes, established TCP connections) and
/// its file locks. For a systemd inside (../shared/CRIU-SYSTEMD.md): the
/// hugetlbfs it mounts, its cgroup subtree with the empty slices it
/// watches, and the paths of the inotify watches of its daemons.
pub(crate) fn checkpoint_options(dump_dir: &Path) -> CheckpointOptions {
    CheckpointOptions {
        criu: "criu".into(),
        image_path: dump_dir.to_path_buf(),
        tcp_established: true,
        file_locks: true,
        enable_fs: vec!["hugetlbfs".into()],
        irmap_scan_paths: IRMAP_SCAN_PATHS.iter().map(|p| p.to_string()).collect(),
        cgroup_tree: true,
        ..Default::default()
    }
}

/// One dump (or pre-dump) of a running CT, for `suspend` and migration.
pub struct DumpRequest<'a> {
    /// The image directory (made if missing).
    pub dir: &'a Path,
    /// An earlier pre-dump's directory, relative to `dir` (CRIU's rule):
    /// only pages changed since then are written.
    pub parent: Option<&'a Path>,
    /// Memory only, and the CT runs on.
    pub pre_dump: bool,
    /// Pages (and their maps) go over this socket to a CRIU page server
    /// at its other end instead of into `dir`.
    pub page_server_fd: Option<std::os::fd::RawFd>,
    /// A final dump of a CT the caller has frozen (its cgroup): the
    /// processes stay, frozen, instead of ending (CRIU puts the freezer
    /// back as it found it). Migration's rollback then only thaws.
    pub leave_frozen: bool,
}

/// The CT's network as a restore must know it, kept in the dump directory
/// (so the directory alone is enough to restore from, here or elsewhere).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DumpNet {
    /// (interface in the CT, its veth peer on the host): CRIU makes the
    /// peer under that name in the restoring process's network namespace.
    pub veth: Vec<(String, String)>,
}

const DUMP_NET: &str = "cove-net.json";

/// Checkpoints CT `ctid` (running, locked by the caller) as `req` says.
/// After a final dump the CT's processes are gone and its monitor tears
/// the rest down (unless `leave_frozen`); after a pre-dump it runs on.
pub fn dump(ct: &CtPaths, ctid: &Ctid, cfg: &CtConfig, req: &DumpRequest) -> Result<PreDump> {
    let mut o = checkpoint_options(req.dir);
    o.pre_dump = req.pre_dump;
    o.parent_path = req.parent.map(Path::to_path_buf);
    o.page_server_fd = req.page_server_fd;
    o.leave_running = req.leave_frozen;
    let done =
        cove_checkpoint::checkpoint(&ct.oci_root, ctid.as_str(), &o).map_err(from_checkpoint)?;
    if !req.pre_dump {
        let note = DumpNet {
            veth: if cfg.net.enabled() {
                vec![(net::CT_IFNAME.to_string(), net::host_ifname(ctid))]
            } else {
                Vec::new()
            },
        };
        let json = serde_json::to_vec(&note).map_err(|e| Error::Tool(e.to_string()))?;
        cove_engine::state::write_atomic(&req.dir.join(DUMP_NET), &json)?;
    }
    let st = done.stats.unwrap_or_default();
    Ok(PreDump {
        frozen_time_us: st.frozen_time_us,
        pages_written: st.pages_written,
    })
}

/// What the dump in `images` needs from a restore besides the images: the
/// host ends of its veths, as CRIU `--external veth[IN]:OUT` keys.
fn restore_externals(images: &Path) -> Result<Vec<String>> {
    let p = images.join(DUMP_NET);
    let note: DumpNet = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::BadConfig {
            path: p.clone(),
            msg: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DumpNet::default(),
        Err(e) => return Err(Error::io("read", &p, e)),
    };
    Ok(note
        .veth
        .iter()
        .map(|(inside, outside)| format!("veth[{inside}]:{outside}"))
        .collect())
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
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    let dir = match dump_dir {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => std::env::current_dir()
            .map_err(|e| Error::io("getcwd", ".", e))?
            .join(d),
        None => ct.dir.join("dump"),
    };
    if dump_dir.is_none() {
        // cove's own place: what is there is left from a dump that failed
        // (the CT runs, so it was never resumed from).
        let _ = std::fs::remove_dir_all(&dir);
    }
    if dir.join("inventory.img").exists() {
        return Err(Error::BadInput(format!(
            "{} holds a dump already: resume from it or remove it",
            dir.display()
        )));
    }
    // resume removes the dump: only from a directory that holds nothing else.
    let made_dump_dir = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io("read", &dir, e)),
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::BadInput(format!(
                    "--dump-dir {} is not empty: give a new or an empty directory (resume removes the dump)",
                    dir.display()
                )));
            }
            false
        }
    };
    let monitor = MonitorRecord::read(&ct.monitor);
    // The log of an earlier failed suspend is stale from here.
    let _ = std::fs::remove_file(ct.dir.join(FAILED_LOG));
    let (pre, stats) = match dump_all(&ct, &ctid, &cfg, &dir, pre_dumps) {
        Ok(done) => done,
        Err(e) => {
            // The CT runs on (CRIU thaws it): what the failed dump wrote
            // goes, but for CRIU's log, kept beside the CT's config.
            let e = keep_failed_log(&ct, &dir, e);
            clear_dump_dir(&dir, made_dump_dir);
            return Err(e);
        }
    };
    let rec = Suspended {
        ctid: ctid.to_string(),
        dump_dir: dir,
        frozen_time_us: stats.frozen_time_us,
        pages_written: stats.pages_written,
        pre_dumps: pre,
        made_dump_dir,
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Tool(e.to_string()))?;
    cove_engine::state::write_atomic(&record_path(&ct), &json)?;
    // The monitor saw the init go and tears down the mount and cgroup once
    // it has the lock.
    drop(lock);
    lifecycle::wait_for_monitor(monitor);
    Ok(rec)
}

/// The pre-dumps and the final dump of `suspend` into `dir`.
fn dump_all(
    ct: &CtPaths,
    ctid: &Ctid,
    cfg: &CtConfig,
    dir: &Path,
    pre_dumps: u32,
) -> Result<(Vec<PreDump>, PreDump)> {
    // Iterative migration's first half: pre-dumps into dir/pre-1..N, each
    // on top of the one before (CRIU's soft-dirty tracking), the final
    // dump into dir on top of the last.
    let mut pre = Vec::new();
    let mut parent: Option<PathBuf> = None;
    for i in 1..=pre_dumps {
        let name = PathBuf::from(format!("pre-{i}"));
        let done = dump(
            ct,
            ctid,
            cfg,
            &DumpRequest {
                dir: &dir.join(&name),
                // Relative to the image directory, as CRIU wants it.
                parent: parent.as_ref().map(|p| Path::new("..").join(p)).as_deref(),
                pre_dump: true,
                page_server_fd: None,
                leave_frozen: false,
            },
        )?;
        pre.push(done);
        parent = Some(name);
    }
    let stats = dump(
        ct,
        ctid,
        cfg,
        &DumpRequest {
            dir,
            parent: parent.as_deref(),
            pre_dump: false,
            page_server_fd: None,
            leave_frozen: false,
        },
    )?;
    Ok((pre, stats))
}

/// Where the CRIU log of a failed suspend is kept.
pub const FAILED_LOG: &str = "suspend-failed.log";

/// CRIU's log of the failed dump in `dir` (the final dump's, else the
/// last pre-dump's) moved to `<ct>/suspend-failed.log`, and `e` pointing
/// there instead.
fn keep_failed_log(ct: &CtPaths, dir: &Path, e: Error) -> Error {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("dump.log"))
        .filter(|p| p.is_file())
        .collect();
    // pre-1 .. pre-N by number: the failed one is the last.
    logs.sort_by_key(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("pre-"))
            .and_then(|n| n.parse::<u32>().ok())
    });
    let Some(log) = Some(dir.join("dump.log"))
        .filter(|p| p.is_file())
        .or_else(|| logs.pop())
    else {
        return e;
    };
    keep_log(&log, &ct.dir.join(FAILED_LOG), e)
}

/// CRIU's log `log` of a failed dump or restore kept as `kept` (moved,
/// else copied), and `e` naming `kept` instead of `log` (or, if it named
/// no log, ending with it). `e` as it was when there is no log to keep.
pub(crate) fn keep_log(log: &Path, kept: &Path, e: Error) -> Error {
    if !log.is_file() {
        return e;
    }
    let moved = std::fs::rename(log, kept).is_ok() || std::fs::copy(log, kept).is_ok();
    if !moved {
        return e;
    }
    let (from, to) = (log.display().to_string(), kept.display().to_string());
    let point = |m: String| {
        if m.contains(&from) {
            m.replace(&from, &to)
        } else {
            format!("{m} (CRIU's log: {to})")
        }
    };
    match e {
        Error::Tool(m) => Error::Tool(point(m)),
        Error::Monitor { code, msg } => Error::Monitor {
            code,
            msg: point(msg),
        },
        e => e,
    }
}

/// Removes what suspend wrote in `dir`: the directory if suspend made it,
/// else only its entries (it was empty before).
fn clear_dump_dir(dir: &Path, made: bool) {
    if made {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
    }
}

/// Removes what suspend wrote (after a resume).
fn remove_dump(rec: &Suspended) {
    clear_dump_dir(&rec.dump_dir, rec.made_dump_dir);
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
    remove_dump(&rec);
    Ok(())
}

/// In the monitor: the CT's processes back from `images`, as children of
/// the monitor (CRIU restores them as its siblings).
/// A CT with a veth gets it back with its host end made by CRIU under
/// its old name; the monitor then puts that end where `net` wants it.
pub fn restore_in_monitor(options: CreateOptions, images: &Path) -> Result<Created> {
    let external = restore_externals(images)?;
    let r = cove_checkpoint::restore(&RestoreOptions {
        external,
        criu: "criu".into(),
        create: options,
        image_path: images.to_path_buf(),
        tcp_established: true,
        file_locks: true,
        cgroup_tree: true,
        ..Default::default()
    })
    .map_err(from_checkpoint)?;
    let pidfd = cove_engine::sys::pidfd_open(r.pid)
        .map_err(|e| Error::sys(format!("pidfd_open {}", r.pid), e))?;
    Ok(Created { pid: r.pid, pidfd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_log_is_named_instead_of_the_lost_one() {
        let dir = std::env::temp_dir().join(format!("cove-keep-log-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dump")).unwrap();
        let log = dir.join("dump/restore.log");
        let kept = dir.join("kept.log");
        std::fs::write(&log, "(00.1) Error (cr-restore.c:1): nope\n").unwrap();
        let e = Error::Monitor {
            code: 3,
            msg: format!("criu restore failed: nope (log: {})", log.display()),
        };
        match keep_log(&log, &kept, e) {
            Error::Monitor { code: 3, msg } => {
                assert_eq!(
                    msg,
                    format!("criu restore failed: nope (log: {})", kept.display())
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!log.exists() && kept.is_file());
        // A message that named no log ends with the kept one; no log, no
        // change.
        std::fs::write(&log, "x\n").unwrap();
        let e = keep_log(&log, &kept, Error::Tool("failed".into()));
        assert_eq!(
            e.to_string(),
            format!("failed (CRIU's log: {})", kept.display())
        );
        let e = keep_log(&log, &kept, Error::Tool("failed".into()));
        assert_eq!(e.to_string(), "failed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
