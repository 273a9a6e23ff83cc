//! The receiving half of `cove migrate`: `cove migrate-recv ACTION`, run
//! on DEST by the source's `cove migrate` over ssh, one action a step.
//! Hidden from `cove --help`; not meant to be typed.
//!
//! ```text
//! <data>/migrate-in/<CTID>/              a CT being received (ct.toml, private/)
//! <data>/migrate-in/template-<NAME>/     a template being received
//! <data>/ct/<CTID>/migrate-in.json       the CT came by migration and its
//!                                        source has not confirmed it yet
//! <data>/migrate-failed/<CTID>-restore.log
//!                                        CRIU's log of the last restore of
//!                                        CTID that failed here (the CT
//!                                        itself went)
//! ```
//!
//! A CT only appears under `<data>/ct` at `start`, by a rename of its
//! staging directory; until the source says `confirm`, `abort` removes it
//! again (stopping it if it runs), so a migration rolled back or given up
//! leaves DEST as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::config::{self, CtConfig};
use crate::ctid::Ctid;
use crate::error::{Error, Result};
use crate::lifecycle::{self, StopHow};
use crate::paths::Paths;

/// The marker of a CT received but not yet confirmed by its source.
pub const MARKER: &str = "migrate-in.json";

#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(subcommand)]
    pub action: RecvAction,
}

#[derive(Debug, Subcommand)]
pub enum RecvAction {
    /// Print this host's side of the pre-flight check as JSON
    Check {
        ctid: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        template: String,
        #[arg(long)]
        bridge: Option<String>,
        /// The CT has a veth: the name of its host end must be free here
        #[arg(long)]
        veth: bool,
        /// The routed CT's uplink: it must exist here
        #[arg(long)]
        uplink: Option<String>,
        /// One of the CT's addresses: nothing here may hold it (repeatable)
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        #[arg(long)]
        online: bool,
        /// The CT starts at boot: say whether cove's units are installed
        #[arg(long)]
        onboot: bool,
    },
    /// Receive a template as a tar stream on stdin
    Template { name: String },
    /// Receive a CT's config and private area as a tar stream on stdin
    Receive {
        ctid: String,
        /// Add to what was received (pre-dumps, the final dump)
        #[arg(long)]
        more: bool,
    },
    /// Run CRIU's page server for one dump of CTID, on this session's
    /// stdin and stdout (the source's CRIU at their other end)
    Pages {
        ctid: String,
        /// The pre-copy round N (into dump/pre-N); without it the final dump
        #[arg(long, value_name = "N")]
        round: Option<u32>,
        /// The round whose pages this dump builds on
        #[arg(long, value_name = "N")]
        parent_round: Option<u32>,
    },
    /// Put the received CT in place (and start it with --run, or resume
    /// it from its received dump with --restore)
    Start {
        ctid: String,
        #[arg(long)]
        run: bool,
        #[arg(long, conflicts_with = "run")]
        restore: bool,
    },
    /// The source took the CT as moved: it stays here for good (and
    /// starts at boot here if it did there)
    Confirm { ctid: String },
    /// Print where CRIU's log of CTID's failed restore is kept, and its
    /// last lines (JSON; nothing when there is none)
    FailedLog {
        ctid: String,
        #[arg(long, default_value_t = 40)]
        lines: usize,
    },
    /// Remove what a migration of CTID left here, unless confirmed
    Abort {
        ctid: String,
        /// A template this migration sent: removed too if no CT uses it
        #[arg(long)]
        template: Option<String>,
    },
}

/// What one host says of itself in the pre-flight check.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Facts {
    pub version: String,
    pub kernel: String,
    pub cgroup_mode: String,
    /// `criu check`'s verdict: "ok" or its error (only asked when online).
    #[serde(default)]
    pub criu: Option<String>,
    pub template_present: bool,
    /// Whether the CT's bridge exists (asked only for a bridged CT).
    #[serde(default)]
    pub bridge_present: Option<bool>,
    pub free_bytes: u64,
    /// The CT (by CTID or name) this host has already, if any.
    #[serde(default)]
    pub existing_ct: Option<String>,
    /// A migration of this CTID was received and not finished.
    #[serde(default)]
    pub pending: bool,
    /// Whether cove's systemd units are installed (asked only for a CT
    /// that starts at boot: DEST enables its instance).
    #[serde(default)]
    pub units_installed: Option<bool>,
    /// Whether an interface has the name of the CT's veth end already
    /// (asked only for a CT with a veth: its start or restore makes one).
    #[serde(default)]
    pub veth_present: Option<bool>,
    /// Whether the routed CT's uplink exists (asked only for one with an
    /// uplink: its proxy entries go there).
    #[serde(default)]
    pub uplink_present: Option<bool>,
    /// The CT's addresses something here holds, with what holds each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses_in_use: Vec<(std::net::IpAddr, String)>,
}

/// Where CRIU's log of a CT's failed restore here is, and its end.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailedLog {
    pub path: PathBuf,
    pub last_lines: Vec<String>,
}

/// Where CRIU's log of the last failed restore of `ctid` here is kept:
/// outside the CT's directory, which goes with the CT.
pub fn restore_failed_log(paths: &Paths, ctid: &Ctid) -> PathBuf {
    paths
        .data
        .join("migrate-failed")
        .join(format!("{ctid}-restore.log"))
}

fn staging(paths: &Paths, ctid: &Ctid) -> PathBuf {
    paths.data.join("migrate-in").join(ctid.as_str())
}

fn template_staging(paths: &Paths, name: &str) -> PathBuf {
    paths
        .data
        .join("migrate-in")
        .join(format!("template-{name}"))
}

pub fn run(paths: &Paths, args: &RecvArgs) -> Result<i32> {
    match &args.action {
        RecvAction::Check {
            ctid,
            name,
            template,
            bridge,
            veth,
            uplink,
            ips,
            online,
            onboot,
        } => {
            let ctid = Ctid::parse(ctid)?;
            let mut f = facts(
                paths,
                Some(&ctid),
                name.as_deref(),
                template,
                bridge.as_deref(),
                *online,
            )?;
            if *onboot {
                f.units_installed = Some(crate::systemd::check_installed().is_ok());
            }
            if *veth {
                f.veth_present = Some(crate::net::link_exists(&crate::net::host_ifname(&ctid))?);
            }
            if let Some(up) = uplink {
                f.uplink_present = Some(crate::net::link_exists(up)?);
            }
            f.addresses_in_use = crate::net::addresses_in_use(paths, &ctid, ips)?;
            println!(
                "{}",
                serde_json::to_string(&f).map_err(|e| Error::Tool(e.to_string()))?
            );
            Ok(0)
        }
        RecvAction::Template { name } => {
            receive_template(paths, name)?;
            Ok(0)
        }
        RecvAction::Receive { ctid, more } => {
            receive_ct(paths, &Ctid::parse(ctid)?, *more)?;
            Ok(0)
        }
        RecvAction::Pages {
            ctid,
            round,
            parent_round,
        } => {
            page_server(paths, &Ctid::parse(ctid)?, *round, *parent_round)?;
            Ok(0)
        }
        RecvAction::Start { ctid, run, restore } => {
            start(paths, &Ctid::parse(ctid)?, *run, *restore)?;
            Ok(0)
        }
        RecvAction::Confirm { ctid } => {
            confirm(paths, &Ctid::parse(ctid)?)?;
            Ok(0)
        }
        RecvAction::FailedLog { ctid, lines } => {
            let log = restore_failed_log(paths, &Ctid::parse(ctid)?);
            if let Ok(bytes) = std::fs::read(&log) {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                let from = all.len().saturating_sub(*lines);
                let answer = FailedLog {
                    path: log,
                    last_lines: all[from..].iter().map(|l| l.to_string()).collect(),
                };
                println!(
                    "{}",
                    serde_json::to_string(&answer).map_err(|e| Error::Tool(e.to_string()))?
                );
            }
            Ok(0)
        }
        RecvAction::Abort { ctid, template } => {
            for note in abort(paths, &Ctid::parse(ctid)?, template.as_deref())? {
                println!("{note}");
            }
            Ok(0)
        }
    }
}

/// This host's facts for a migration of `ctid` (None: the source asking
/// itself).
pub fn facts(
    paths: &Paths,
    ctid: Option<&Ctid>,
    name: Option<&str>,
    template: &str,
    bridge: Option<&str>,
    online: bool,
) -> Result<Facts> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup_mode = match cove_cgroups::host_mode() {
        cove_cgroups::HostMode::Unified => "v2",
        cove_cgroups::HostMode::Hybrid => "hybrid",
        cove_cgroups::HostMode::Legacy => "v1",
    }
    .to_string();
    let criu = online.then(criu_check);
    let existing_ct = match ctid {
        None => None,
        Some(id) => {
            let mut found = None;
            for probe in std::iter::once(id.as_str()).chain(name) {
                if let Ok(have) = config::resolve(paths, probe) {
                    found = Some(if have.as_str() == probe {
                        format!("CT {have}")
                    } else {
                        format!("CT {have} (named {probe})")
                    });
                    break;
                }
            }
            found
        }
    };
    let pending = ctid
        .is_some_and(|id| staging(paths, id).exists() || paths.ct(id).dir.join(MARKER).exists());
    Ok(Facts {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kernel,
        cgroup_mode,
        criu,
        template_present: paths.template(template).join("rootfs").is_dir(),
        bridge_present: match bridge {
            None => None,
            Some(b) => Some(crate::net::link_exists(b)?),
        },
        free_bytes: free_bytes(&paths.data),
        existing_ct,
        pending,
        units_installed: None,
        ..Default::default()
    })
}

fn criu_check() -> String {
    match Command::new("criu")
        .arg("check")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => "ok".into(),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).to_string()
                + &String::from_utf8_lossy(&o.stdout);
            let last = text
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("failed")
                .to_string();
            format!("criu check failed: {last}")
        }
        Err(e) => format!("criu: {e}"),
    }
}

/// Free bytes for root on the file system of `dir` (or of its nearest
/// existing parent: the data directory may not exist yet).
fn free_bytes(dir: &Path) -> u64 {
    let mut d = dir.to_path_buf();
    loop {
        if let Ok(s) = nix::sys::statvfs::statvfs(&d) {
            return s.blocks_free() * s.fragment_size();
        }
        if !d.pop() {
            return 0;
        }
    }
}

/// `tar -x` of stdin into a fresh `dir`; the directory goes again if the
/// stream is cut or bad.
fn untar_stdin(dir: &Path, more: bool) -> Result<()> {
    if more && !dir.is_dir() {
        return Err(Error::BadInput(format!(
            "{}: nothing received yet to add to",
            dir.display()
        )));
    }
    if !more {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
    }
    crate::paths::private_dir(dir.parent().unwrap_or(dir))?;
    crate::paths::private_dir(dir)?;
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args([
            "-xpf",
            "-",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let fail = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "receiving into {}: tar: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("tar: {e}")),
    };
    match fail {
        None => Ok(()),
        Some(msg) => {
            let _ = std::fs::remove_dir_all(dir);
            Err(Error::Tool(msg))
        }
    }
}

fn receive_template(paths: &Paths, name: &str) -> Result<()> {
    crate::ctid::validate_template_name(name)?;
    let dest = paths.template(name);
    if dest.exists() {
        return Err(Error::TemplateExists(name.to_string()));
    }
    let stage = template_staging(paths, name);
    untar_stdin(&stage, false)?;
    if !stage.join("rootfs").is_dir() {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(Error::Tool(format!(
            "template {name} arrived without its rootfs"
        )));
    }
    crate::paths::private_dir(&paths.templates())?;
    std::fs::rename(&stage, &dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&stage);
        Error::io("rename", &dest, e)
    })
}

fn receive_ct(paths: &Paths, ctid: &Ctid, more: bool) -> Result<()> {
    if paths.ct(ctid).dir.exists() {
        return Err(Error::CtExists(ctid.to_string()));
    }
    let stage = staging(paths, ctid);
    untar_stdin(&stage, more)?;
    if let Err(e) = CtConfig::load(&stage.join("ct.toml"), ctid) {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(e);
    }
    Ok(())
}

/// `criu page-server` writing one dump's pages into the staged CT's dump
/// directory (dump/pre-N for round N, dump itself for the final dump),
/// fed from this session: stdin and stdout are the source CRIU's
/// connection, relayed over a socketpair (CRIU receives with recv(2) and
/// splice(2), which pipes from sshd do not take). Its log stays in the
/// staging directory only if it fails.
fn page_server(paths: &Paths, ctid: &Ctid, round: Option<u32>, parent: Option<u32>) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::process::CommandExt;

    let stage = staging(paths, ctid);
    if !stage.join("ct.toml").exists() {
        return Err(Error::BadInput(format!(
            "no CT {ctid} is being received here (see cove migrate)"
        )));
    }
    let dump = stage.join("dump");
    let (dir, parent, name) = match round {
        Some(n) => (
            dump.join(format!("pre-{n}")),
            parent.map(|m| format!("../pre-{m}")),
            format!("pre-{n}"),
        ),
        None => (
            dump.clone(),
            parent.map(|m| format!("pre-{m}")),
            "final".into(),
        ),
    };
    crate::paths::private_dir(&dump)?;
    crate::paths::private_dir(&dir)?;
    let log = stage.join(format!("page-server-{name}.log"));
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new("criu");
    cmd.arg("page-server")
        .arg("--images-dir")
        .arg(&dir)
        .args(["--ps-socket", &fd.to_string(), "-v4", "--log-file"])
        .arg(&log);
    if let Some(p) = &parent {
        cmd.arg("--prev-images-dir").arg(p);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut criu = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Tool("criu is not installed here (apt-get install criu)".into())
        } else {
            Error::Tool(format!("cannot start criu page-server: {e}"))
        }
    })?;
    drop(theirs);
    let to_criu = ours
        .try_clone()
        .map_err(|e| Error::Tool(format!("dup of the page-server socket: {e}")))?;
    // The source's side of the session into CRIU; never joined: it ends
    // with this process if the source keeps its end open.
    std::thread::spawn(move || {
        let mut from = match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => std::fs::File::from(fd),
            Err(_) => return,
        };
        let mut to = std::fs::File::from(to_criu);
        let _ = pump(&mut from, &mut to);
        let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    });
    // CRIU's answers back, until it closes its end (it exits), after one
    // byte that tells the source the session is up: it freezes its CT
    // only then, so ssh's and CRIU's start-up stay out of the freeze.
    if let Ok(out) = std::io::stdout().as_fd().try_clone_to_owned() {
        let mut out = std::fs::File::from(out);
        if std::io::Write::write_all(&mut out, &[PAGES_READY]).is_ok() {
            let _ = pump(&mut std::fs::File::from(ours), &mut out);
        }
    }
    let status = criu
        .wait()
        .map_err(|e| Error::Tool(format!("criu page-server: {e}")))?;
    if status.success() {
        let _ = std::fs::remove_file(&log);
        return Ok(());
    }
    Err(Error::Tool(format!(
        "criu page-server ({status}) for CT {ctid}: {} (log: {})",
        cove_checkpoint::swrk::first_error(&log).unwrap_or_else(|| "no error in its log".into()),
        log.display()
    )))
}

/// What `migrate-recv pages` writes first on its stdout, before CRIU's
/// stream: its page server is up.
pub const PAGES_READY: u8 = 0x06;

/// Copies `from` to `to` until end of file with read(2) and write(2).
/// Not std::io::copy: between a pipe and a socket it splices, and a
/// splice(2) from a socket into sshd's pipe holds the pipe's lock while it
/// waits for more from the socket, so sshd cannot take out what CRIU's
/// answer already put in (seen: CRIU's dump waiting for the answer to its
/// first request, sshd in D state in pipe_read).
fn pump(from: &mut std::fs::File, to: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// The staged CT moves under `<data>/ct` with its marker; with `run` it
/// starts. A failed start removes it again: DEST stays as it was.
fn start(paths: &Paths, ctid: &Ctid, run: bool, restore: bool) -> Result<()> {
    let stage = staging(paths, ctid);
    let ct = paths.ct(ctid);
    if !stage.join("ct.toml").exists() {
        return Err(Error::BadInput(format!(
            "no CT {ctid} was received here (see cove migrate)"
        )));
    }
    if ct.dir.exists() {
        return Err(Error::CtExists(ctid.to_string()));
    }
    crate::paths::private_dir(&paths.cts())?;
    std::fs::rename(&stage, &ct.dir).map_err(|e| Error::io("rename", &ct.dir, e))?;
    let marker = ct.dir.join(MARKER);
    if let Err(e) = std::fs::write(&marker, b"{}\n") {
        let _ = std::fs::rename(&ct.dir, &stage);
        return Err(Error::io("write", marker, e));
    }
    let kept = restore_failed_log(paths, ctid);
    let started = if restore {
        // A log of an earlier failed restore is stale from here.
        let _ = std::fs::remove_file(&kept);
        resume_received(paths, ctid).map_err(|e| keep_restore_log(paths, ctid, &kept, e))
    } else if run {
        lifecycle::start(paths, ctid.as_str(), false).map(|_| ())
    } else {
        Ok(())
    };
    if let Err(e) = started {
        let _ = lifecycle::destroy(paths, ctid.as_str(), true);
        return Err(e);
    }
    Ok(())
}

/// CRIU's log of the failed restore (in the received dump directory,
/// which goes with the CT) kept as `kept`, and `e` naming it there.
fn keep_restore_log(paths: &Paths, ctid: &Ctid, kept: &Path, e: Error) -> Error {
    let log = crate::migrate_online::dump_dir(&paths.ct(ctid)).join("restore.log");
    if !log.is_file()
        || kept
            .parent()
            .is_none_or(|d| crate::paths::private_dir(d).is_err())
    {
        return e;
    }
    crate::suspend::keep_log(&log, kept, e)
}

/// The received dump recorded as this host's suspend of the CT, then
/// resumed (which removes the record and the dump).
fn resume_received(paths: &Paths, ctid: &Ctid) -> Result<()> {
    let ct = paths.ct(ctid);
    let dump = crate::migrate_online::dump_dir(&ct);
    if !dump.join("inventory.img").exists() {
        return Err(Error::BadInput(format!(
            "no dump of CT {ctid} was received here"
        )));
    }
    let rec = crate::suspend::Suspended {
        ctid: ctid.to_string(),
        dump_dir: dump,
        frozen_time_us: 0,
        pages_written: 0,
        pre_dumps: Vec::new(),
        made_dump_dir: true,
    };
    let rec_path = ct.dir.join(crate::suspend::RECORD);
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Tool(e.to_string()))?;
    cove_engine::state::write_atomic(&rec_path, &json)?;
    crate::suspend::resume(paths, ctid.as_str())
}

/// The CT is this host's for good: its marker goes, and a CT that
/// starts at boot gets its unit enabled here (in its boot order).
fn confirm(paths: &Paths, ctid: &Ctid) -> Result<()> {
    let ct = paths.ct(ctid);
    let marker = ct.dir.join(MARKER);
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", marker, e)),
    }
    let cfg = CtConfig::load(&ct.config, ctid)?;
    if cfg.onboot == Some(true) {
        crate::systemd::sync_onboot(paths)?;
    }
    Ok(())
}

/// Removes a staged or unconfirmed CT of `ctid` (and `template` if this
/// migration brought it and no CT uses it). Returns what it did.
pub fn abort(paths: &Paths, ctid: &Ctid, template: Option<&str>) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let stage = staging(paths, ctid);
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| Error::io("remove", &stage, e))?;
        notes.push(format!("removed the CT {ctid} being received"));
    }
    let ct = paths.ct(ctid);
    if ct.dir.join(MARKER).exists() {
        // Stopped at once: its source runs (or will run) the same CT.
        if crate::runstate::status(&ct, ctid).running() {
            let _ = lifecycle::stop(
                paths,
                ctid.as_str(),
                StopHow {
                    timeout: Duration::ZERO,
                    fast: true,
                },
            );
        }
        lifecycle::destroy(paths, ctid.as_str(), true)?;
        notes.push(format!("removed the unconfirmed CT {ctid}"));
    }
    if let Some(t) = template {
        let st = template_staging(paths, t);
        if st.exists() {
            let _ = std::fs::remove_dir_all(&st);
        }
        // Only one this migration sent: the source says so.
        if paths.template(t).exists()
            && crate::template::users(paths, t).is_ok_and(|u| u.is_empty())
            && crate::template::remove(paths, t).is_ok()
        {
            notes.push(format!("removed template {t}"));
        }
    }
    let dir = paths.data.join("migrate-in");
    let _ = std::fs::remove_dir(&dir);
    Ok(notes)
}
