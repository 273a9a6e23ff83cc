//! `cove migrate --online`: the CT moves with its processes and memory.
//!
//! ```text
//! precopy N   CRIU pre-dumps while the CT runs, into <data>/ct/<CTID>/dump/pre-N,
//!             each on top of the last (soft-dirty tracking), each sent to DEST
//!             as it is made; stops when a round writes no fewer pages than the
//!             one before, or after --precopy-rounds
//! dump        the final dump, the CT frozen, on top of the last pre-dump; the
//!             CT's processes end here, and the dump is recorded as a suspend
//!             (<data>/ct/<CTID>/suspended.json), so a rollback is `resume`
//! transfer    the config, private area and final dump (tar over ssh)
//! restore     DEST puts the CT in place and resumes it from the dump
//! ```
//!
//! The layout of the dump directory is `cove suspend --pre-dumps`'s, so the
//! source's own `resume` (the rollback) and DEST's both read it as theirs.
//! What a client sees as downtime runs from the final dump's start to the
//! end of DEST's restore.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::CtConfig;
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::migrate::{human, write_journal, Journal, MigrateArgs, Progress, Remote};
use crate::paths::CtPaths;
use crate::runstate::MonitorRecord;
use crate::suspend::{self, DumpRequest, Suspended};

/// suspend.rs's record of a suspended CT (its `RECORD`).
pub(crate) const SUSPENDED: &str = "suspended.json";

/// One pre-copy round.
#[derive(Debug, Serialize)]
pub struct Round {
    pub pages_written: u64,
    pub frozen_ms: f64,
    pub bytes_sent: u64,
    pub seconds: f64,
}

/// The online part of the `--json` report.
#[derive(Debug, Serialize)]
pub struct OnlineReport {
    pub precopy: Vec<Round>,
    /// CRIU's frozen time of the final dump.
    pub frozen_ms: f64,
    pub final_pages_written: u64,
    pub dump_seconds: f64,
    pub transfer_seconds: f64,
    pub restore_seconds: f64,
}

pub(crate) fn dump_dir(ct: &CtPaths) -> PathBuf {
    ct.dir.join("dump")
}

/// Pre-copy, final dump, transfer, restore on DEST. Returns the bytes
/// sent and the figures.
#[allow(clippy::too_many_arguments)]
pub(crate) fn move_online(
    remote: &Remote,
    ctid: &Ctid,
    ct: &CtPaths,
    cfg: &CtConfig,
    args: &MigrateArgs,
    journal: &mut Journal,
    progress: &mut Progress,
    lock: crate::lock::Lock,
    mut bytes: u64,
    down: &mut Instant,
) -> Result<(u64, OnlineReport)> {
    let dump = dump_dir(ct);
    if dump.join("inventory.img").exists() || ct.dir.join(SUSPENDED).exists() {
        return Err(Error::BadInput(format!(
            "CT {ctid} holds a suspend dump ({}): resume it or remove it first",
            dump.display()
        )));
    }
    match std::fs::remove_dir_all(&dump) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &dump, e)),
    }
    journal.online = true;
    write_journal(ct, journal)?;
    // The config first: it opens DEST's staging directory.
    bytes += remote.send_tar(&ct.dir, &["./ct.toml"], &[], &["receive", ctid.as_str()])?;

    let mut rounds = Vec::new();
    let mut pre = Vec::new();
    let mut parent: Option<String> = None;
    for i in 1..=args.precopy_rounds {
        let t = Instant::now();
        let name = format!("pre-{i}");
        // Each on top of the one before, relative to its own directory
        // (CRIU's rule).
        let st = suspend::dump(
            ct,
            ctid,
            cfg,
            &DumpRequest {
                dir: &dump.join(&name),
                parent: parent.as_ref().map(|p| Path::new("..").join(p)).as_deref(),
                pre_dump: true,
                page_server: None,
            },
        )?;
        let member = format!("./dump/{name}");
        let n = remote.send_tar(
            &ct.dir,
            &[&member],
            &[],
            &["receive", ctid.as_str(), "--more"],
        )?;
        bytes += n;
        let shrank = rounds
            .last()
            .is_none_or(|r: &Round| st.pages_written < r.pages_written);
        let round = Round {
            pages_written: st.pages_written,
            frozen_ms: st.frozen_time_us as f64 / 1000.0,
            bytes_sent: n,
            seconds: t.elapsed().as_secs_f64(),
        };
        progress.done(
            &format!("precopy {i}"),
            t,
            format!(
                "{} pages dumped while running (frozen {:.1} ms), {} sent",
                round.pages_written,
                round.frozen_ms,
                human(n)
            ),
        );
        rounds.push(round);
        pre.push(st);
        parent = Some(name);
        // The dirty set stopped shrinking: more rounds would not shorten
        // the freeze.
        if !shrank {
            break;
        }
    }

    // The final dump: the CT's processes end here.
    let t = Instant::now();
    *down = t;
    let monitor = MonitorRecord::read(&ct.monitor);
    // With a veth, the dump notes its host end (cove-net.json): DEST's
    // restore makes it there and puts it on DEST's bridge.
    let st = suspend::dump(
        ct,
        ctid,
        cfg,
        &DumpRequest {
            dir: &dump,
            parent: parent.as_deref().map(Path::new),
            pre_dump: false,
            page_server: None,
        },
    )?;
    let rec = Suspended {
        ctid: ctid.to_string(),
        dump_dir: dump.clone(),
        frozen_time_us: st.frozen_time_us,
        pages_written: st.pages_written,
        pre_dumps: pre,
        made_dump_dir: true,
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Tool(e.to_string()))?;
    cove_engine::state::write_atomic(&ct.dir.join(SUSPENDED), &json)?;
    // The monitor tears the old run down once it has the lock.
    drop(lock);
    lifecycle::wait_for_monitor(monitor);
    let lock = lifecycle::lock_ct(ct, ctid)?;
    let dump_seconds = t.elapsed().as_secs_f64();
    progress.done(
        "dump",
        t,
        format!(
            "CT {ctid} dumped: frozen {:.1} ms, {} pages",
            st.frozen_time_us as f64 / 1000.0,
            st.pages_written
        ),
    );

    let t = Instant::now();
    let n = remote.send_tar(
        &ct.dir,
        &["./private", "./dump"],
        &["./private/work/*", "./dump/pre-*"],
        &["receive", ctid.as_str(), "--more"],
    )?;
    bytes += n;
    let transfer_seconds = t.elapsed().as_secs_f64();
    progress.done(
        "transfer",
        t,
        format!("private area and final dump sent ({})", human(n)),
    );

    let t = Instant::now();
    remote
        .run(&["start", ctid.as_str(), "--restore"])
        .map_err(|e| crate::migrate::restore_failed(remote, ct, ctid, e))?;
    let restore_seconds = t.elapsed().as_secs_f64();
    progress.done(
        "restore",
        t,
        format!("CT {ctid} resumed on {}", remote.dest),
    );
    drop(lock);
    Ok((
        bytes,
        OnlineReport {
            precopy: rounds,
            frozen_ms: st.frozen_time_us as f64 / 1000.0,
            final_pages_written: st.pages_written,
            dump_seconds,
            transfer_seconds,
            restore_seconds,
        },
    ))
}
