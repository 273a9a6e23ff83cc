//! `cove migrate --online`: the CT moves with its processes and memory.
//!
//! ```text
//! precopy N   CRIU pre-dumps while the CT runs, into dump/pre-N, each on top
//!             of the last (soft-dirty tracking); stops when a round writes no
//!             fewer pages than the one before, or after --precopy-rounds
//! dump        the CT's veth is muted (what it sends is dropped at the host
//!             end), its cgroup frozen, and the final dump made on top of the
//!             last pre-dump; the CT's processes stay here, frozen and mute
//! transfer    the private area and the dump's other images (tar over ssh)
//! restore     DEST puts the CT in place and resumes it from the dump
//! ```
//!
//! Memory travels as `--transport` says. `page-server` (the default): each
//! dump's pages go straight to a `criu page-server` on DEST through an ssh
//! session of their own (`cove migrate-recv pages`), written there into
//! the staged dump directory while CRIU reads them here, never to this
//! host's disk. `tar`: each dump is written here, then sent as a tar.
//!
//! Because the source copy stays, frozen, until DEST has confirmed, a
//! rollback is a thaw and an unmute (no restore here, and no need for the
//! pages to be here); once DEST runs the CT, the frozen copy is killed
//! still muted, so its kernel resets none of the connections that moved. The layout of the dump directory is `cove
//! suspend --pre-dumps`'s, so DEST's restore reads it as a suspend. What a
//! client sees as downtime runs from the final dump's start to the end of
//! DEST's restore.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::config::CtConfig;
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::migrate::{human, write_journal, Journal, MigrateArgs, Progress, Remote};
use crate::net;
use crate::paths::CtPaths;
use crate::suspend::{self, DumpRequest, PreDump};

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
    /// How memory travelled.
    pub transport: Transport,
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

/// How memory travels (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// CRIU's page server on DEST, over ssh
    PageServer,
    /// Each dump written here, then sent as a tar over ssh
    Tar,
}

/// One dump (pre-dump `round`, or the final one) of the CT, its pages
/// sent as `transport` says; `before` runs right before CRIU does (the
/// final dump freezes the CT there: after the page server is up). Returns
/// CRIU's figures and the bytes sent.
#[allow(clippy::too_many_arguments)]
fn dump_and_send(
    remote: &Remote,
    ctid: &Ctid,
    ct: &CtPaths,
    cfg: &CtConfig,
    transport: Transport,
    round: Option<u32>,
    parent: Option<u32>,
    before: &mut dyn FnMut() -> Result<()>,
) -> Result<(PreDump, u64)> {
    let dump = dump_dir(ct);
    let dir = match round {
        Some(n) => dump.join(format!("pre-{n}")),
        None => dump.clone(),
    };
    // Relative to the image directory (CRIU's rule).
    let parent_path = parent.map(|m| match round {
        Some(_) => PathBuf::from(format!("../pre-{m}")),
        None => PathBuf::from(format!("pre-{m}")),
    });
    let req = |fd| DumpRequest {
        dir: &dir,
        parent: parent_path.as_deref(),
        pre_dump: round.is_some(),
        page_server_fd: fd,
        leave_frozen: round.is_none(),
    };
    match transport {
        Transport::PageServer => {
            let mut args = vec!["pages".to_string(), ctid.to_string()];
            if let Some(n) = round {
                args.extend(["--round".into(), n.to_string()]);
            }
            if let Some(m) = parent {
                args.extend(["--parent-round".into(), m.to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let session = remote.page_server(&args)?;
            let dumped =
                before().and_then(|()| suspend::dump(ct, ctid, cfg, &req(Some(session.fd()))));
            let sent = session.finish(remote);
            match (dumped, sent) {
                (Ok(st), Ok(())) => {
                    // Pages and their maps went to DEST; what CRIU counted.
                    let bytes = st.pages_written * 4096;
                    Ok((st, bytes))
                }
                (Ok(_), Err(e)) => Err(e),
                (Err(e), Ok(())) => Err(e),
                (Err(e), Err(s)) => Err(Error::Tool(format!(
                    "{} (DEST's page server: {})",
                    e.one_line(),
                    s.one_line()
                ))),
            }
        }
        Transport::Tar => {
            before()?;
            let st = suspend::dump(ct, ctid, cfg, &req(None))?;
            let bytes = match round {
                Some(n) => remote.send_tar(
                    &ct.dir,
                    &[&format!("./dump/pre-{n}")],
                    &[],
                    &["receive", ctid.as_str(), "--more"],
                )?,
                // The final dump goes with the private area.
                None => 0,
            };
            Ok((st, bytes))
        }
    }
}

/// Mutes the running CT's veth and freezes it, for the final dump.
/// Recorded in the journal first: a rollback (or `--abort` after a crash)
/// undoes it with [`thaw_here`].
fn freeze_here(ct: &CtPaths, ctid: &Ctid, journal: &mut Journal) -> Result<()> {
    journal.frozen_here = true;
    write_journal(ct, journal)?;
    net::mute(ct, ctid, true)?;
    let c = cove_engine::container::load(&ct.oci_root, ctid.as_str())
        .map_err(|e| Error::Tool(format!("CT {ctid}: {e}")))?;
    cove_cgroups::manager_from_paths(&c.saved.cgroup_paths)
        .freeze()
        .map_err(|e| Error::Tool(format!("freeze CT {ctid}: {e}")))
}

/// The frozen source copy back: thawed (if it still runs), then its veth
/// unmuted.
pub(crate) fn thaw_here(ct: &CtPaths, ctid: &Ctid) -> Result<()> {
    if let Ok(c) = cove_engine::container::load(&ct.oci_root, ctid.as_str()) {
        if c.status != cove_engine::state::Status::Stopped {
            cove_cgroups::manager_from_paths(&c.saved.cgroup_paths)
                .thaw()
                .map_err(|e| Error::Tool(format!("thaw CT {ctid}: {e}")))?;
        }
    }
    net::mute(ct, ctid, false)
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
    if dump.join("inventory.img").exists() || ct.dir.join(suspend::RECORD).exists() {
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
    let transport = args.transport;

    let mut rounds = Vec::new();
    let mut pre = Vec::new();
    let mut parent: Option<u32> = None;
    for i in 1..=args.precopy_rounds {
        let t = Instant::now();
        let (st, n) = dump_and_send(
            remote,
            ctid,
            ct,
            cfg,
            transport,
            Some(i),
            parent,
            &mut || Ok(()),
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
        parent = Some(i);
        // The dirty set stopped shrinking: more rounds would not shorten
        // the freeze.
        if !shrank {
            break;
        }
    }

    // The final dump: the CT stays here, frozen and mute.
    // Downtime and the dump phase start at the freeze, once the page
    // server is up.
    let mut frozen_at = Instant::now();
    // With a veth, the dump notes its host end (cove-net.json): DEST's
    // restore makes it there and puts it on DEST's bridge.
    let (st, n) = dump_and_send(remote, ctid, ct, cfg, transport, None, parent, &mut || {
        frozen_at = Instant::now();
        freeze_here(ct, ctid, journal)
    })?;
    let t = frozen_at;
    *down = t;
    bytes += n;
    let dump_seconds = t.elapsed().as_secs_f64();
    progress.done(
        "dump",
        t,
        format!(
            "CT {ctid} dumped: frozen {:.1} ms, {} pages{}",
            st.frozen_time_us as f64 / 1000.0,
            st.pages_written,
            match transport {
                Transport::PageServer => format!(" sent to DEST's page server ({})", human(n)),
                Transport::Tar => String::new(),
            }
        ),
    );

    let t = Instant::now();
    // With the page server, the pre-dumps' own small images (inventory,
    // stats) go now; their pages are on DEST already.
    let excludes: &[&str] = match transport {
        Transport::PageServer => &["./private/work/*"],
        Transport::Tar => &["./private/work/*", "./dump/pre-*"],
    };
    let n = remote.send_tar(
        &ct.dir,
        &["./private", "./dump"],
        excludes,
        &["receive", ctid.as_str(), "--more"],
    )?;
    bytes += n;
    let transfer_seconds = t.elapsed().as_secs_f64();
    progress.done(
        "transfer",
        t,
        format!("private area and dump images sent ({})", human(n)),
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
            transport,
            precopy: rounds,
            frozen_ms: st.frozen_time_us as f64 / 1000.0,
            final_pages_written: st.pages_written,
            dump_seconds,
            transfer_seconds,
            restore_seconds,
        },
    ))
}
