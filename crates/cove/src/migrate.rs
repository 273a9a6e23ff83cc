//! `cove migrate CTID [user@]host`: a CT moved to another host over
//! OpenSSH, the same `cove` binary doing each step on DEST
//! (`cove migrate-recv ...`, see [`crate::migrate_recv`]). No daemon runs
//! on either side; ssh uses the caller's keys, config and known_hosts.
//!
//! Offline migration, phase by phase:
//!
//! ```text
//! preflight   both sides' facts (version, kernel, cgroup mode, template,
//!             bridge or a routed CT's uplink, the veth end's name and the
//!             CT's addresses free on DEST, free space, CTID free on DEST);
//!             a list of what does not match ends it before anything
//!             changes
//! stop        the CT, if it runs
//! template    the CT's template as tar over ssh, if DEST lacks it
//! transfer    the CT's config and private area as tar over ssh, into a
//!             staging directory on DEST
//! start       DEST puts the CT in place (marked unconfirmed) and starts it
//!             if it ran here; a failed start removes it there
//! confirm     DEST drops the mark: the CT is DEST's now
//! cleanup     the CT is destroyed here (kept, stopped, with --keep-src)
//! ```
//!
//! A journal, `<data>/ct/<CTID>/migrate.json`, records how far a migration
//! got. A failure before DEST confirms rolls back: DEST is told to abort
//! (the staged or unconfirmed CT and a template sent for it go) and the
//! CT is started again here if it ran. If `cove` itself dies half-way,
//! `cove migrate --abort CTID` reads the journal and does the same, or,
//! once DEST had started the CT, finishes the migration instead.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::config::{self, CtConfig};
use crate::ctid::Ctid;
use crate::error::{exit, Error, Result};
use crate::lifecycle::{self, StopHow};
use crate::migrate_recv::{self, Facts};
use crate::paths::{CtPaths, Paths};
use crate::runstate;

const JOURNAL: &str = "migrate.json";
/// The end of CRIU's log of a restore that failed on DEST, fetched here.
pub(crate) const RESTORE_FAILED_LOG: &str = "migrate-restore-failed.log";

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The CT to move (CTID or name)
    pub ctid: String,
    /// Where to: [user@]host, as ssh takes it
    #[arg(required_unless_present = "abort")]
    pub dest: Option<String>,
    /// Keep the CT here (stopped) once it runs on DEST
    #[arg(long)]
    pub keep_src: bool,
    /// An ssh option, as `ssh -o` takes it (Port=2222, IdentityFile=...); repeatable
    #[arg(long = "ssh-opt", value_name = "KEY=VALUE")]
    pub ssh_opt: Vec<String>,
    /// Print one JSON object at the end instead of a line per phase
    #[arg(long)]
    pub json: bool,
    /// Resolve a migration of CTID that was interrupted (cove killed, host crashed)
    #[arg(long, conflicts_with_all = ["dest", "keep_src"])]
    pub abort: bool,
    /// Seconds to wait for the CT to shut down before killing it
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
    /// Live: the CT moves with its processes and memory (CRIU on both hosts)
    #[arg(long)]
    pub online: bool,
    /// With --online: at most N pre-copy rounds while the CT runs (0: none)
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub precopy_rounds: u32,
    /// With --online: how memory travels (CRIU's page server on DEST over
    /// ssh, or each dump written here and sent as a tar)
    #[arg(long, value_enum, value_name = "HOW",
          default_value_t = crate::migrate_online::Transport::PageServer)]
    pub transport: crate::migrate_online::Transport,
}

/// How far a migration got, in `<data>/ct/<CTID>/migrate.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    dest: String,
    ssh_opts: Vec<String>,
    remote_bin: String,
    was_running: bool,
    keep_src: bool,
    /// The template sent for this CT (DEST lacked it).
    template_sent: Option<String>,
    phase: Stage,
    /// `--online`: the CT may sit dumped here (suspended.json).
    #[serde(default)]
    pub(crate) online: bool,
    /// `--online`, from the final dump on: the CT's processes are frozen
    /// here and its veth's host end is down, until DEST confirms (then
    /// they are killed) or the migration rolls back (then thawed).
    #[serde(default)]
    pub(crate) frozen_here: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Stage {
    /// Stopping, sending, or DEST starting: rolled back on failure.
    Moving,
    /// DEST started the CT: finished forward.
    Started,
}

/// One phase as printed and in the JSON report.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub phase: String,
    pub seconds: f64,
    pub detail: String,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ctid: String,
    pub dest: String,
    pub mode: &'static str,
    pub was_running: bool,
    pub template_sent: bool,
    pub kept_source: bool,
    pub bytes_sent: u64,
    pub phases: Vec<PhaseReport>,
    /// From the CT's stop here to its start on DEST: what a client sees.
    pub downtime_seconds: f64,
    pub total_seconds: f64,
    pub source: Facts,
    pub destination: Facts,
    /// `--online`: pre-copy rounds, frozen time, dump, transfer, restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<crate::migrate_online::OnlineReport>,
}

/// Prints a line per phase as it ends (unless `--json`).
pub(crate) struct Progress {
    json: bool,
    t0: Instant,
    phases: Vec<PhaseReport>,
}

impl Progress {
    pub(crate) fn done(&mut self, phase: &str, started: Instant, detail: String) {
        let seconds = started.elapsed().as_secs_f64();
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "[{:7.2}s] {phase:<9} {detail} ({:.2} s)",
                self.t0.elapsed().as_secs_f64(),
                seconds
            );
            let _ = out.flush();
        }
        self.phases.push(PhaseReport {
            phase: phase.to_string(),
            seconds,
            detail,
        });
    }
}

/// How `cove migrate-recv` is reached on DEST.
pub(crate) struct Remote {
    pub(crate) dest: String,
    opts: Vec<String>,
    bin: String,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Remote {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
        for o in &self.opts {
            c.arg("-o").arg(o);
        }
        let line: Vec<String> = std::iter::once(self.bin.as_str())
            .chain(std::iter::once("migrate-recv"))
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect();
        c.arg("--").arg(&self.dest).arg(line.join(" "));
        c
    }

    /// The error of a failed ssh run: DEST unreachable, cove missing
    /// there, or what DEST's cove said.
    fn failure(&self, status: std::process::ExitStatus, stderr: &[u8]) -> Error {
        let text = String::from_utf8_lossy(stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let last = lines.last().copied().unwrap_or("").to_string();
        match status.code() {
            Some(255) | None => Error::Migrate {
                code: exit::MIGRATE_UNREACHABLE,
                msg: format!(
                    "cannot reach {} over ssh: {}",
                    self.dest,
                    if last.is_empty() { "ssh failed" } else { &last }
                ),
            },
            Some(127) => Error::Migrate {
                code: exit::MIGRATE_UNREACHABLE,
                msg: format!(
                    "{}: {} not found there (install cove on DEST, or set COVE_REMOTE_BIN)",
                    self.dest, self.bin
                ),
            },
            // cove's own line says what went wrong; without one (a shell
            // or a signal ended it), the exit status and what it printed.
            Some(c) => Error::Migrate {
                code: c,
                msg: if lines.iter().any(|l| l.starts_with("cove: ")) {
                    format!(
                        "{}: {}",
                        self.dest,
                        lines
                            .iter()
                            .map(|l| l.trim_start_matches("cove: "))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                } else {
                    format!(
                        "{}: exit status {c}{}{}",
                        self.dest,
                        if lines.is_empty() { "" } else { ": " },
                        lines.join("; ")
                    )
                },
            },
        }
    }

    /// Runs an action; its stdout.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Tool(format!("ssh: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(out.status, &out.stderr))
        }
    }

    /// `tar -c` of `members` below `dir` into an action's stdin. Returns
    /// the bytes sent.
    pub(crate) fn send_tar(
        &self,
        dir: &Path,
        members: &[&str],
        excludes: &[&str],
        args: &[&str],
    ) -> Result<u64> {
        let mut tar = Command::new("tar");
        tar.arg("-C")
            .arg(dir)
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                "--totals",
            ])
            .args(excludes.iter().map(|e| format!("--exclude={e}")))
            .args(["-cf", "-"])
            .args(members)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut tar = tar.spawn().map_err(|e| Error::Tool(format!("tar: {e}")))?;
        let tar_out = tar.stdout.take().expect("piped");
        let ssh = self
            .command(args)
            .stdin(Stdio::from(tar_out))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let ssh = match ssh {
            Ok(s) => s,
            Err(e) => {
                let _ = tar.kill();
                let _ = tar.wait();
                return Err(Error::Tool(format!("ssh: {e}")));
            }
        };
        let ssh_out = ssh.wait_with_output();
        let tar_out = tar.wait_with_output();
        let ssh_out = ssh_out.map_err(|e| Error::Tool(format!("ssh: {e}")))?;
        let tar_out = tar_out.map_err(|e| Error::Tool(format!("tar: {e}")))?;
        if !ssh_out.status.success() {
            return Err(self.failure(ssh_out.status, &ssh_out.stderr));
        }
        let tar_err = String::from_utf8_lossy(&tar_out.stderr);
        if !tar_out.status.success() {
            return Err(Error::Tool(format!(
                "tar -C {}: {}",
                dir.display(),
                tar_err.trim()
            )));
        }
        // "Total bytes written: N (...)"
        let bytes = tar_err
            .lines()
            .find_map(|l| l.strip_prefix("Total bytes written: "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(bytes)
    }
}

/// One ssh session carrying a CRIU page-server connection: CRIU's dump
/// here writes to [`PageSession::fd`]; ssh takes the other end of that
/// socketpair as its stdin and stdout, and DEST's `cove migrate-recv
/// pages` hands the stream to `criu page-server` there.
pub(crate) struct PageSession {
    fd: Option<OwnedFd>,
    ssh: Option<std::process::Child>,
}

impl PageSession {
    /// For CRIU (it inherits the fd).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Closes our end (once CRIU returned, DEST's page server has
    /// answered its last request) and waits for the session: DEST's
    /// error, if it failed.
    pub(crate) fn finish(mut self, remote: &Remote) -> Result<()> {
        drop(self.fd.take());
        let Some(ssh) = self.ssh.take() else {
            return Ok(());
        };
        let out = ssh
            .wait_with_output()
            .map_err(|e| Error::Tool(format!("ssh: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(remote.failure(out.status, &out.stderr))
        }
    }
}

impl Drop for PageSession {
    fn drop(&mut self) {
        drop(self.fd.take());
        if let Some(mut ssh) = self.ssh.take() {
            let _ = ssh.kill();
            let _ = ssh.wait();
        }
    }
}

impl Remote {
    /// Starts `cove migrate-recv ARGS` on DEST with its stdin and stdout
    /// joined to a socket here, and waits until DEST says its page server
    /// is up (ssh's and both cove's and CRIU's start-up then cost no
    /// frozen time: the caller freezes after).
    pub(crate) fn page_server(&self, args: &[&str]) -> Result<PageSession> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair", e))?;
        let out = theirs
            .try_clone()
            .map_err(|e| Error::Tool(format!("dup: {e}")))?;
        let ssh = self
            .command(args)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::from(out))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Tool(format!("ssh: {e}")))?;
        let session = PageSession {
            fd: Some(ours),
            ssh: Some(ssh),
        };
        let mut byte = [0u8; 1];
        let ready = loop {
            match nix::unistd::read(session.fd(), &mut byte) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(1) => break byte[0] == migrate_recv::PAGES_READY,
                _ => break false,
            }
        };
        if ready {
            return Ok(session);
        }
        // DEST's side ended (ssh failed, cove or CRIU missing there): why.
        session.finish(self)?;
        Err(Error::Tool(format!(
            "{}: its page server did not start (see cove migrate-recv pages there)",
            self.dest
        )))
    }
}

/// `[user@]host`: what ssh takes, and nothing it would read as an option.
fn check_dest(dest: &str) -> Result<()> {
    let (user, host) = match dest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, dest),
    };
    let user_ok = user.is_none_or(|u| {
        !u.is_empty()
            && !u.starts_with('-')
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c));
    if user_ok && host_ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "migrate: {dest:?} is not a destination: use [user@]host"
        )))
    }
}

fn check_ssh_opt(o: &str) -> Result<()> {
    match o.split_once('=') {
        Some((k, _)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()) => Ok(()),
        _ => Err(Error::BadInput(format!(
            "migrate: --ssh-opt {o:?}: use KEY=VALUE, as ssh -o takes it (Port=2222)"
        ))),
    }
}

fn remote_bin() -> String {
    std::env::var("COVE_REMOTE_BIN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "cove".into())
}

/// Refuses to start a CT whose migration was interrupted: DEST may run it.
pub fn check_not_migrating(ct: &CtPaths, ctid: &Ctid) -> Result<()> {
    if journal_path(ct).exists() {
        return Err(Error::Migrate {
            code: exit::MIGRATE_PENDING,
            msg: format!(
                "CT {ctid}: a migration was interrupted: run cove migrate --abort {ctid} first"
            ),
        });
    }
    Ok(())
}

fn journal_path(ct: &CtPaths) -> PathBuf {
    ct.dir.join(JOURNAL)
}

pub(crate) fn write_journal(ct: &CtPaths, j: &Journal) -> Result<()> {
    let json = serde_json::to_vec_pretty(j).map_err(|e| Error::Tool(e.to_string()))?;
    cove_engine::state::write_atomic(&journal_path(ct), &json)?;
    Ok(())
}

fn read_journal(ct: &CtPaths) -> Result<Option<Journal>> {
    let p = journal_path(ct);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::bad_config(&p, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", p, e)),
    }
}

fn remove_journal(ct: &CtPaths) {
    let _ = std::fs::remove_file(journal_path(ct));
}

/// Bytes a directory tree takes on disk (what DEST needs free for it).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

pub(crate) fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (MIB * 1024.0))
    } else if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

/// `cove migrate ...`. Returns the exit code.
pub fn run(paths: &Paths, args: &MigrateArgs) -> Result<i32> {
    if args.abort {
        for note in abort(paths, &args.ctid)? {
            println!("{note}");
        }
        return Ok(0);
    }
    let dest = args.dest.as_deref().unwrap_or_default();
    check_dest(dest)?;
    for o in &args.ssh_opt {
        check_ssh_opt(o)?;
    }
    let report = migrate(paths, args, dest)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Tool(e.to_string()))?
        );
    } else {
        println!(
            "CT {} migrated to {} in {:.2} s (downtime {:.2} s{})",
            report.ctid,
            report.dest,
            report.total_seconds,
            report.downtime_seconds,
            if report.kept_source {
                "; the source copy is kept, stopped"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

fn preflight(
    args_online: bool,
    paths: &Paths,
    remote: &Remote,
    ctid: &Ctid,
    cfg: &CtConfig,
    ct: &CtPaths,
) -> Result<(Facts, Facts, u64)> {
    let bridge = (cfg.net.enabled()
        && matches!(
            cfg.net.netif,
            None | Some(crate::net::config::Netif::Bridged)
        ))
    .then(|| cfg.net.bridge().to_string());
    let online = args_online;
    if !paths.template(&cfg.template).join("rootfs").is_dir() {
        return Err(Error::NoSuchTemplate(cfg.template.clone()));
    }
    let mut check = vec!["check", ctid.as_str(), "--template", &cfg.template];
    if let Some(n) = &cfg.name {
        check.extend(["--name", n]);
    }
    if let Some(b) = &bridge {
        check.extend(["--bridge", b]);
    }
    // A routed CT needs its uplink there; any CT with a veth, its host
    // end's name free and its addresses held by nothing there.
    let routed = cfg.net.enabled() && cfg.net.netif() == crate::net::config::Netif::Routed;
    let uplink = cfg.net.uplink.as_deref().filter(|_| routed);
    let ips: Vec<String> = cfg.net.ip.iter().map(|c| c.addr.to_string()).collect();
    if cfg.net.enabled() {
        check.push("--veth");
        if let Some(u) = uplink {
            check.extend(["--uplink", u]);
        }
        for ip in &ips {
            check.extend(["--ip", ip]);
        }
    }
    if online {
        check.push("--online");
    }
    let onboot = cfg.onboot == Some(true);
    if onboot {
        check.push("--onboot");
    }
    // Both sides at once: `criu check` takes a while where CRIU runs
    // emulated.
    let (here, text) = std::thread::scope(|sc| {
        let local =
            sc.spawn(|| migrate_recv::facts(paths, None, None, &cfg.template, None, online));
        let text = remote.run(&check);
        (local.join(), text)
    });
    let here = here.map_err(|_| Error::Tool("pre-flight check here panicked".into()))??;
    let text = text?;
    let there: Facts = serde_json::from_str(text.trim()).map_err(|e| Error::Migrate {
        code: exit::MIGRATE_PREFLIGHT,
        msg: format!(
            "{}: its cove answered the pre-flight check with something else ({e}): a different cove version?",
            remote.dest
        ),
    })?;
    let mut need = disk_usage(&ct.private) + (1 << 20);
    if !there.template_present {
        need += disk_usage(&paths.template(&cfg.template));
    }
    let mut problems = Vec::new();
    if there.version != here.version {
        problems.push(format!(
            "cove version: {} here, {} on DEST",
            here.version, there.version
        ));
    }
    if let Some(what) = &there.existing_ct {
        problems.push(format!("{what} exists on DEST already"));
    } else if there.pending {
        problems.push(format!(
            "DEST holds an unfinished migration of CT {ctid} (cove migrate --abort {ctid})"
        ));
    }
    if there.bridge_present == Some(false) {
        problems.push(format!(
            "bridge {} (the CT's) does not exist on DEST",
            bridge.as_deref().unwrap_or("?")
        ));
    }
    if there.veth_present == Some(true) {
        problems.push(format!(
            "interface {} (the name of the CT's veth end) exists on DEST already: remove it there",
            crate::net::host_ifname(ctid)
        ));
    }
    if let (Some(up), Some(false)) = (uplink, there.uplink_present) {
        problems.push(format!(
            "uplink {up} (the routed CT's) does not exist on DEST: make it there, or cove set {ctid} --uplink DEV|none here"
        ));
    }
    for (a, by) in &there.addresses_in_use {
        problems.push(format!(
            "address {a} is in use on DEST ({by}): free it there, or give the CT another one (cove set {ctid} --ipdel {a} --ipadd ...)"
        ));
    }
    if onboot && there.units_installed != Some(true) {
        problems.push(format!(
            "CT {ctid} starts at boot, but cove's systemd units are not installed on DEST (run cove systemd install there)"
        ));
    }
    if there.free_bytes < need {
        problems.push(format!(
            "free space on DEST's data directory: {} needed, {} free",
            human(need),
            human(there.free_bytes)
        ));
    }
    if online {
        for (side, f) in [("here", &here), ("on DEST", &there)] {
            if let Some(c) = f.criu.as_deref().filter(|c| *c != "ok") {
                problems.push(format!("CRIU {side}: {c}"));
            }
        }
        if here.cgroup_mode != there.cgroup_mode {
            problems.push(format!(
                "cgroup mode: {} here, {} on DEST (a dump restores only on the same)",
                here.cgroup_mode, there.cgroup_mode
            ));
        }
        if here.kernel != there.kernel {
            problems.push(format!(
                "kernel: {} here, {} on DEST (online migration needs the same kernel)",
                here.kernel, there.kernel
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Migrate {
            code: exit::MIGRATE_PREFLIGHT,
            msg: format!(
                "pre-flight check for CT {ctid} to {} failed: {}",
                remote.dest,
                problems.join("; ")
            ),
        });
    }
    Ok((here, there, need))
}

fn migrate(paths: &Paths, args: &MigrateArgs, dest: &str) -> Result<Report> {
    let ctid = config::resolve(paths, &args.ctid)?;
    let ct = paths.ct(&ctid);
    if let Some(j) = read_journal(&ct)? {
        return Err(Error::Migrate {
            code: exit::MIGRATE_PENDING,
            msg: format!(
                "CT {ctid}: a migration to {} was interrupted: run cove migrate --abort {ctid} first",
                j.dest
            ),
        });
    }
    let cfg = CtConfig::load(&ct.config, &ctid)?;
    // What an earlier migration fetched of DEST's failed restore is stale.
    let _ = std::fs::remove_file(ct.dir.join(RESTORE_FAILED_LOG));
    let remote = Remote {
        dest: dest.to_string(),
        opts: args.ssh_opt.clone(),
        bin: remote_bin(),
    };
    let mut progress = Progress {
        json: args.json,
        t0: Instant::now(),
        phases: Vec::new(),
    };

    let t = Instant::now();
    if args.online && !runstate::status(&ct, &ctid).running() {
        return Err(Error::NotRunning(ctid.to_string()));
    }
    let (here, there, need) = preflight(args.online, paths, &remote, &ctid, &cfg, &ct)?;
    progress.done(
        "preflight",
        t,
        format!(
            "{} ok: cove {}, kernel {}, cgroup {}, {} free, template {}",
            dest,
            there.version,
            there.kernel,
            there.cgroup_mode,
            human(there.free_bytes),
            if there.template_present {
                "present"
            } else {
                "to send"
            }
        ),
    );
    let _ = need;

    // Held from the stop until DEST has the CT: no other cove command
    // starts or changes it meanwhile.
    let lock = lifecycle::lock_ct(&ct, &ctid)?;
    let was_running = runstate::status(&ct, &ctid).running();
    let mut journal = Journal {
        dest: dest.to_string(),
        ssh_opts: args.ssh_opt.clone(),
        remote_bin: remote.bin.clone(),
        was_running,
        keep_src: args.keep_src,
        template_sent: None,
        phase: Stage::Moving,
        online: false,
        frozen_here: false,
    };
    write_journal(&ct, &journal)?;
    let mut down = Instant::now();
    let mut online = None;
    let moved = if args.online {
        send_template(
            paths,
            &remote,
            &cfg,
            &ct,
            &there,
            &mut journal,
            &mut progress,
        )
        .and_then(|n| {
            crate::migrate_online::move_online(
                &remote,
                &ctid,
                &ct,
                &cfg,
                args,
                &mut journal,
                &mut progress,
                lock,
                n,
                &mut down,
            )
            .map(|(b, r)| {
                online = Some(r);
                b
            })
        })
    } else {
        move_ct(
            paths,
            &remote,
            &ctid,
            &ct,
            &cfg,
            &there,
            args,
            &mut journal,
            &mut progress,
            lock,
        )
    };
    let bytes = match moved {
        Ok(b) => b,
        Err(e) => return Err(rollback(paths, &ctid, &journal, e)),
    };
    let downtime = down.elapsed().as_secs_f64();
    journal.phase = Stage::Started;
    write_journal(&ct, &journal)?;

    let t = Instant::now();
    let detail = finish(paths, &remote, &ctid, &journal)?;
    progress.done("cleanup", t, detail);
    Ok(Report {
        ctid: ctid.to_string(),
        dest: dest.to_string(),
        mode: if args.online { "online" } else { "offline" },
        was_running,
        template_sent: journal.template_sent.is_some(),
        kept_source: args.keep_src,
        bytes_sent: bytes,
        downtime_seconds: if was_running { downtime } else { 0.0 },
        total_seconds: progress.t0.elapsed().as_secs_f64(),
        phases: progress.phases,
        source: here,
        destination: there,
        online,
    })
}

/// Stop, send, start on DEST. Returns the bytes sent.
#[allow(clippy::too_many_arguments)]
fn move_ct(
    paths: &Paths,
    remote: &Remote,
    ctid: &Ctid,
    ct: &CtPaths,
    cfg: &CtConfig,
    there: &Facts,
    args: &MigrateArgs,
    journal: &mut Journal,
    progress: &mut Progress,
    lock: crate::lock::Lock,
) -> Result<u64> {
    let mut lock = Some(lock);
    if journal.was_running {
        let t = Instant::now();
        let monitor = lifecycle::stop_locked(
            paths,
            ct,
            ctid,
            StopHow {
                timeout: Duration::from_secs(args.timeout),
                fast: false,
            },
        )?;
        // The monitor tears down once it has the lock.
        drop(lock.take());
        lifecycle::wait_for_monitor(monitor);
        lock = Some(lifecycle::lock_ct(ct, ctid)?);
        progress.done("stop", t, format!("CT {ctid} stopped here"));
    }
    let mut bytes = send_template(paths, remote, cfg, ct, there, journal, progress)?;
    let t = Instant::now();
    let n = remote.send_tar(
        &ct.dir,
        &["./ct.toml", "./private"],
        &["./private/work/*"],
        &["receive", ctid.as_str()],
    )?;
    bytes += n;
    progress.done(
        "transfer",
        t,
        format!("config and private area sent ({})", human(n)),
    );
    // DEST's start runs under our lock: nothing starts the CT here meanwhile.
    let t = Instant::now();
    let mut start = vec!["start", ctid.as_str()];
    if journal.was_running {
        start.push("--run");
    }
    remote.run(&start)?;
    progress.done(
        "start",
        t,
        if journal.was_running {
            format!("CT {ctid} runs on {}", remote.dest)
        } else {
            format!("CT {ctid} in place on {} (stopped, as here)", remote.dest)
        },
    );
    drop(lock);
    Ok(bytes)
}

/// The CT's template, if DEST lacks it. Returns the bytes sent.
fn send_template(
    paths: &Paths,
    remote: &Remote,
    cfg: &CtConfig,
    ct: &CtPaths,
    there: &Facts,
    journal: &mut Journal,
    progress: &mut Progress,
) -> Result<u64> {
    if there.template_present {
        return Ok(0);
    }
    let t = Instant::now();
    journal.template_sent = Some(cfg.template.clone());
    write_journal(ct, journal)?;
    let n = remote.send_tar(
        &paths.template(&cfg.template),
        &["."],
        &[],
        &["template", &cfg.template],
    )?;
    progress.done(
        "template",
        t,
        format!("template {} sent ({})", cfg.template, human(n)),
    );
    Ok(n)
}

/// DEST's restore failed with `e`: DEST kept CRIU's log; its last lines
/// are fetched into `<ct>/migrate-restore-failed.log` here, and the error
/// names both (the log on DEST as `DEST:/path`, as scp takes it). `e` as
/// it was when DEST kept no log.
pub(crate) fn restore_failed(remote: &Remote, ct: &CtPaths, ctid: &Ctid, e: Error) -> Error {
    let Error::Migrate { code, msg } = e else {
        return e;
    };
    if code == exit::MIGRATE_UNREACHABLE {
        // DEST's cove never ran: no log there, and no use asking again.
        return Error::Migrate { code, msg };
    }
    let log = remote
        .run(&["failed-log", ctid.as_str()])
        .ok()
        .and_then(|t| serde_json::from_str::<migrate_recv::FailedLog>(t.trim()).ok());
    let Some(log) = log else {
        return Error::Migrate { code, msg };
    };
    let path = log.path.display().to_string();
    let there = format!("{}:{path}", remote.dest);
    let mut msg = if msg.contains(&path) {
        msg.replace(&path, &there)
    } else {
        format!("{msg} (CRIU's log: {there})")
    };
    let here = ct.dir.join(RESTORE_FAILED_LOG);
    let mut text = format!(
        "# The last {} lines of CRIU's log of the failed restore on {there}\n",
        log.last_lines.len()
    );
    for l in &log.last_lines {
        text.push_str(l);
        text.push('\n');
    }
    if cove_engine::state::write_atomic(&here, text.as_bytes()).is_ok() {
        msg.push_str(&format!("; its last lines: {}", here.display()));
    }
    Error::Migrate { code, msg }
}

/// Removes an online migration's dump here.
fn remove_dump(ct: &CtPaths) {
    let _ = std::fs::remove_dir_all(crate::migrate_online::dump_dir(ct));
}

/// After DEST started the CT: confirm there, remove it here.
fn finish(paths: &Paths, remote: &Remote, ctid: &Ctid, journal: &Journal) -> Result<String> {
    let ct = paths.ct(ctid);
    remote.run(&["confirm", ctid.as_str()])?;
    if journal.frozen_here && runstate::status(&ct, ctid).running() {
        // The frozen copy ends still muted: its kernel's resets of the
        // moved connections reach no one.
        lifecycle::stop(
            paths,
            ctid.as_str(),
            StopHow {
                timeout: Duration::ZERO,
                fast: true,
            },
        )?;
    }
    if journal.keep_src {
        if journal.online {
            remove_dump(&ct);
        }
        // DEST boots it now; the copy kept here must not come up with
        // the same addresses at this host's next boot.
        let mut cfg = CtConfig::load(&ct.config, ctid)?;
        let was_onboot = cfg.onboot == Some(true);
        if was_onboot {
            cfg.onboot = Some(false);
            cfg.save(&ct.config)?;
            crate::systemd::sync_onboot(paths)?;
        }
        remove_journal(&ct);
        Ok(format!(
            "CT {ctid} kept here, stopped (--keep-src){}",
            if was_onboot {
                ", no longer started at boot here"
            } else {
                ""
            }
        ))
    } else {
        lifecycle::destroy(paths, ctid.as_str(), true)?;
        Ok(format!("CT {ctid} removed here"))
    }
}

/// Puts things back after `cause`: DEST aborts, the CT starts again here
/// if it ran. The error says whether that worked.
fn rollback(paths: &Paths, ctid: &Ctid, journal: &Journal, cause: Error) -> Error {
    let ct = paths.ct(ctid);
    let mut left = Vec::new();
    let remote = Remote {
        dest: journal.dest.clone(),
        opts: journal.ssh_opts.clone(),
        bin: journal.remote_bin.clone(),
    };
    let mut abort = vec!["abort", ctid.as_str()];
    if let Some(t) = &journal.template_sent {
        abort.extend(["--template", t]);
    }
    match remote.run(&abort) {
        Ok(_) => {
            // DEST is clean: the CT is ours alone again.
            if journal.online {
                remove_dump(&ct);
            }
            // The final dump left the CT's processes here, frozen and
            // muted: they go on. A thaw that fails keeps the journal, so
            // `--abort` tries again.
            let thawed = if journal.frozen_here {
                crate::migrate_online::thaw_here(&ct, ctid)
                    .map_err(|e| left.push(format!("CT {ctid} not thawed here ({})", e.one_line())))
                    .is_ok()
            } else {
                true
            };
            if thawed {
                remove_journal(&ct);
                // Stopped for the move (offline), or gone meanwhile.
                if journal.was_running && !runstate::status(&ct, ctid).running() {
                    if let Err(e) = lifecycle::start(paths, ctid.as_str(), false) {
                        left.push(format!(
                            "CT {ctid} not started again here ({})",
                            e.one_line()
                        ));
                    }
                }
            }
        }
        // DEST may run the CT: starting it here too could put it twice on
        // the network. The journal stays for --abort.
        Err(e) => left.push(format!(
            "DEST not cleaned ({}), so CT {ctid} is left {} here",
            e.one_line(),
            if journal.frozen_here {
                "frozen"
            } else {
                "stopped"
            }
        )),
    }
    let cause = cause.one_line();
    if left.is_empty() {
        Error::Migrate {
            code: exit::MIGRATE_ROLLED_BACK,
            msg: format!(
                "migration of CT {ctid} failed, rolled back (CT {} here, nothing left on DEST): {cause}",
                if journal.was_running { "running" } else { "stopped" }
            ),
        }
    } else {
        Error::Migrate {
            code: exit::MIGRATE_PENDING,
            msg: format!(
                "migration of CT {ctid} failed: {cause}; rollback incomplete: {}; run cove migrate --abort {ctid}",
                left.join(", ")
            ),
        }
    }
}

/// `cove migrate --abort CTID`: the journal says how far it got.
fn abort(paths: &Paths, arg: &str) -> Result<Vec<String>> {
    let ctid = config::resolve(paths, arg)?;
    let ct = paths.ct(&ctid);
    let Some(journal) = read_journal(&ct)? else {
        return Ok(vec![format!("CT {ctid}: no migration to resolve")]);
    };
    // A live `cove migrate` holds the lock.
    drop(lifecycle::lock_ct(&ct, &ctid)?);
    let remote = Remote {
        dest: journal.dest.clone(),
        opts: journal.ssh_opts.clone(),
        bin: journal.remote_bin.clone(),
    };
    match journal.phase {
        Stage::Started => {
            let done = finish(paths, &remote, &ctid, &journal)?;
            Ok(vec![format!(
                "CT {ctid}: DEST {} had started it: migration finished; {done}",
                journal.dest
            )])
        }
        Stage::Moving => {
            match rollback(paths, &ctid, &journal, Error::Tool("interrupted".into())) {
                Error::Migrate { code, .. } if code == exit::MIGRATE_ROLLED_BACK => {
                    Ok(vec![format!(
                        "CT {ctid}: migration to {} rolled back; CT {} here, nothing left on DEST",
                        journal.dest,
                        if journal.was_running {
                            "running"
                        } else {
                            "stopped"
                        }
                    )])
                }
                e => Err(e),
            }
        }
    }
}
