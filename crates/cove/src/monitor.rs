//! The monitor: one small process per running CT, not a daemon.
//!
//! It mounts the CT's root, creates the container through the engine (so
//! the CT's init is its child), holds the console's pty master, logs what
//! the CT writes there and relays it to `cove console` clients (on the CT's
//! console socket, once the init has handed the pty over), reaps the init (it is a child subreaper, so
//! orphans that leave the CT's pid namespace come to it too), records how
//! the init ended, and tears down the container, the cgroup, the mount and
//! the run-time state when the init is gone.
//!
//! `cove start` forks it away (double fork and setsid: it is nobody's
//! child and has no terminal) and returns when it reports the CT running;
//! `cove start --foreground` runs it in place, which is what a service
//! manager runs. A SIGTERM, SIGINT or SIGHUP to the monitor asks the CT to
//! shut down gracefully; if the CT has not ended when the stop timeout
//! passes, or on a second request, it is killed.
//!
//! If the monitor dies the CT runs on; `cove stop` then finds it from the
//! engine's state and does the monitor's last duties itself.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use cove_engine::container::{self, CreateOptions, Created};
use cove_engine::foreground;

use crate::cgroup;
use crate::config::CtConfig;
use crate::console::{self, ConsoleListener, ConsoleLog};
use crate::ctid::Ctid;
use crate::error::{exit, Error, Result};
use crate::lifecycle;
use crate::lock::Lock;
use crate::net;
use crate::overlay;
use crate::paths::{CtPaths, Paths};
use crate::runstate::{ExitRecord, MonitorRecord};
use crate::spec::{self, SpecInput};
use crate::template::{self, Template};

/// How long a CT asked to stop by a signal to its monitor has before it is
/// killed (`cove stop --timeout` chooses its own).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the monitor starts.
pub struct Launch<'a> {
    pub paths: &'a Paths,
    pub ctid: &'a Ctid,
    pub cfg: &'a CtConfig,
    pub template: &'a Template,
    /// Restore the CT from these CRIU images (`cove resume`) instead of
    /// booting it.
    pub restore_from: Option<&'a std::path::Path>,
}

/// How the monitor tells its starter that the CT runs, or why it does not.
enum Readiness {
    /// The write end of a pipe `cove start` reads: `ok`, or
    /// `<exit code>\t<message>`; None once the report is sent.
    Pipe(Option<OwnedFd>),
    Foreground,
}

impl Readiness {
    fn ready(&mut self, ctid: &Ctid) {
        match self {
            // Closing the pipe after the report lets `cove start` return.
            Readiness::Pipe(fd) => {
                if let Some(fd) = fd.take() {
                    write_all(&fd, b"ok");
                }
            }
            Readiness::Foreground => println!("CT {ctid} started"),
        }
    }

    /// Tells a service manager that runs the foreground monitor (systemd's
    /// Type=notify): READY=1 once the CT's init runs.
    fn notify_ready(&self, ctid: &Ctid, init_pid: i32) {
        if self.is_foreground() {
            crate::systemd::notify_ready(ctid, init_pid);
        }
    }

    fn failed(&mut self, e: &Error) {
        if let Readiness::Pipe(fd) = self {
            if let Some(fd) = fd.take() {
                write_all(
                    &fd,
                    format!("{}\t{}", e.exit_code(), e.one_line()).as_bytes(),
                );
            }
        }
    }

    fn is_foreground(&self) -> bool {
        matches!(self, Readiness::Foreground)
    }
}

fn write_all(fd: impl AsFd, mut data: &[u8]) {
    let fd = fd.as_fd();
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
}

/// `cove start`: forks the monitor away and waits for its report. The
/// caller's lock is handed to the monitor, which keeps it until the CT
/// runs.
pub fn spawn(launch: &Launch, lock: Lock) -> Result<()> {
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    // SAFETY: cove is single-threaded, so the child may run any code.
    match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the intermediate child only forks and exits,
            // so the monitor is re-parented away from the caller.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    monitor_main(launch, lock, Readiness::Pipe(Some(write_end)))
                }
                _ => cove_engine::sys::exit_now(0),
            }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            drop(lock);
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            let mut report = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut report);
            parse_report(&report, &launch.paths.ct(launch.ctid))
        }
    }
}

fn parse_report(report: &str, ct: &CtPaths) -> Result<()> {
    if report == "ok" {
        return Ok(());
    }
    if let Some((code, msg)) = report.split_once('\t') {
        return Err(Error::Monitor {
            code: code.parse().unwrap_or(exit::SYSTEM),
            msg: msg.to_string(),
        });
    }
    Err(Error::Monitor {
        code: exit::SYSTEM,
        msg: format!(
            "the CT's monitor ended before the CT started (see {})",
            ct.monitor_log.display()
        ),
    })
}

/// The forked monitor: never returns.
fn monitor_main(launch: &Launch, lock: Lock, mut readiness: Readiness) -> ! {
    let ct = launch.paths.ct(launch.ctid);
    redirect_stdio(&ct);
    let mut keep = vec![lock.raw_fd()];
    if let Readiness::Pipe(Some(fd)) = &readiness {
        keep.push(fd.as_raw_fd());
    }
    close_inherited_fds(&keep);
    let code = match run_rebooting(launch, lock, &mut readiness) {
        Ok(code) => code,
        Err(e) => {
            log(&format!("start failed: {}", e.one_line()));
            readiness.failed(&e);
            e.exit_code()
        }
    };
    cove_engine::sys::exit_now(code)
}

/// `cove start --foreground`: the monitor in this process; returns the
/// exit code for the CT's end.
pub fn run_foreground(launch: &Launch, lock: Lock) -> Result<i32> {
    crate::systemd::notify_status(&format!("Starting CT {}", launch.ctid));
    run_rebooting(launch, lock, &mut Readiness::Foreground).inspect_err(|e| {
        crate::systemd::notify_status(&format!(
            "CT {} did not start: {}",
            launch.ctid,
            e.one_line()
        ));
    })
}

/// More reboots in a row than this, each within QUICK_REBOOT of the CT's
/// start, leave the CT stopped (a broken init would reboot forever).
const MAX_QUICK_REBOOTS: u32 = 5;
const QUICK_REBOOT: Duration = Duration::from_secs(10);

/// How one run of the CT ended.
enum Outcome {
    /// For good: the exit code for whoever waits on the CT.
    Ended(i32),
    /// Its init asked for a reboot after running this long; the CT's lock
    /// is held to start it again.
    Reboot(Lock, Duration),
}

/// Runs the CT, and again each time its init asks for a reboot (as
/// `reboot` inside does: the kernel ends the init of a pid namespace with
/// SIGHUP), with its config read afresh, so settings saved meanwhile apply.
fn run_rebooting(launch: &Launch, lock: Lock, readiness: &mut Readiness) -> Result<i32> {
    let mut outcome = run(launch, lock, readiness)?;
    let mut quick = 0;
    loop {
        let lock = match outcome {
            Outcome::Ended(code) => return Ok(code),
            Outcome::Reboot(lock, up) => {
                quick = if up < QUICK_REBOOT { quick + 1 } else { 0 };
                lock
            }
        };
        // A CT that reboots at once, again and again, is left stopped.
        if quick > MAX_QUICK_REBOOTS {
            log(&format!(
                "CT {} rebooted {quick} times in a row within {} s of starting: left stopped",
                launch.ctid,
                QUICK_REBOOT.as_secs()
            ));
            return Ok(0);
        }
        let ct = launch.paths.ct(launch.ctid);
        let cfg = CtConfig::load(&ct.config, launch.ctid)?;
        let template = template::open(launch.paths, &cfg.template)?;
        log(&format!(
            "CT {} rebooted itself: starting it again",
            launch.ctid
        ));
        let again = Launch {
            paths: launch.paths,
            ctid: launch.ctid,
            cfg: &cfg,
            template: &template,
            // A reboot boots afresh, also after a resume.
            restore_from: None,
        };
        outcome = run(&again, lock, readiness)?;
    }
}

/// stdin and stdout from /dev/null (nobody reads them), stderr to the
/// monitor's log: the init's stdio is its console, not ours.
fn redirect_stdio(ct: &CtPaths) {
    let _ = crate::paths::private_dir(&ct.run);
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&ct.monitor_log);
    if let Ok(null) = &null {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    if let Ok(log) = &log {
        let _ = nix::unistd::dup2(log.as_raw_fd(), 2);
    }
}

/// Closes every descriptor above stdio but `keep`. The monitor outlives
/// its caller: a pipe or file the caller left open without close-on-exec
/// (a shell's, a test harness's) must not stay open for the CT's lifetime.
fn close_inherited_fds(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: nothing in this process owns these descriptors any more
        // (the ones it owns are in `keep`); the directory's own descriptor
        // is already closed, so closing it again only returns EBADF.
        unsafe { libc::close(fd) };
    }
}

fn log(msg: &str) {
    eprintln!(
        "{} cove monitor[{}]: {msg}",
        cove_engine::state::now_rfc3339(),
        std::process::id()
    );
}

/// Undoes a half-started CT unless committed.
struct StartGuard<'a> {
    ct: &'a CtPaths,
    ctid: &'a Ctid,
    armed: bool,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = lifecycle::teardown(self.ct, self.ctid) {
                log(&format!("cleanup after a failed start: {}", e.one_line()));
            }
        }
    }
}

/// Mounts, creates, starts; then watches the CT until its init is gone and
/// tears it down.
fn run(launch: &Launch, lock: Lock, readiness: &mut Readiness) -> Result<Outcome> {
    let ctid = launch.ctid;
    let ct = launch.paths.ct(ctid);
    let foreground = readiness.is_foreground();
    crate::paths::private_dir(&ct.run)?;
    let mut console_log = ConsoleLog::open(&ct.console_log)?;
    // Orphans of processes that left the CT's pid namespace (or of a CT
    // without one) come to us, not to the host's init.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))?;

    let mut guard = StartGuard {
        ct: &ct,
        ctid,
        armed: true,
    };
    if let Some(note) = cgroup::prepare(&ct, ctid, &launch.cfg.resources)? {
        log(&note);
    }
    overlay::mount_rootfs(&launch.template.rootfs, &ct.upper, &ct.work, &ct.rootfs)?;
    net::files::write(&ct.rootfs, &launch.cfg.hostname, &launch.cfg.net)?;
    let init = template::init_of(launch.cfg, &launch.template.manifest, &ct.rootfs);
    // A CT whose init is systemd, run by a unit: ready when its systemd
    // says so, through a notify socket of ours bound into it. Not for a
    // restored CT: its systemd booted (and said READY=1) before the dump.
    let mut ct_notify = if foreground
        && launch.restore_from.is_none()
        && crate::systemd::has_notify_socket()
        && crate::systemd::init_is_systemd(&ct.rootfs, &init.path)
    {
        Some(crate::systemd::CtNotify::bind(&ct.notify_sock)?)
    } else {
        None
    };
    let available = spec::available_capabilities()?;
    let spec = spec::system_spec(&SpecInput {
        ctid,
        cfg: launch.cfg,
        init: &init,
        rootfs: &ct.rootfs,
        cgroups_path: &cgroup::payload_path(&ct),
        cgroup_view: &cgroup::view(&ct, ctid)?,
        available_caps: &available,
        notify_socket: ct_notify.as_ref().map(|n| n.path()),
    })?;
    let config = ct.bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::Tool(format!("serialise the CT's spec: {e}")))?;
    cove_engine::state::write_runtime(&config, &json)?;

    let listener = ConsoleListener::bind(&ct.console_sock)?;
    let options = CreateOptions {
        id: ctid.to_string(),
        bundle: ct.bundle.clone(),
        root: ct.oci_root.clone(),
        console_socket: Some(listener.path.clone()),
        ..Default::default()
    };
    let created = match launch.restore_from {
        None => container::create(&options)?,
        Some(images) => crate::suspend::restore_in_monitor(options, images)?,
    };
    // The engine changed into the bundle; the monitor must not pin it.
    let _ = std::env::set_current_dir("/");
    // The init exists (so does its network namespace) and waits for start;
    // a restored CT's namespace came back whole but for the veth's host end.
    match launch.restore_from {
        None => net::setup(
            &ct,
            ctid,
            &launch.cfg.net,
            created.pid,
            created.pidfd.as_fd(),
        )?,
        Some(_) => {
            if let Some(note) = net::setup_restored(
                &ct,
                ctid,
                &launch.cfg.net,
                created.pid,
                created.pidfd.as_fd(),
            )? {
                log(&note);
            }
        }
    }
    let master = listener.receive_master()?;
    drop(listener);
    // The same path now takes `cove console` clients.
    let mut attach = console::Attach::bind(&ct.console_sock)?;
    let peer = console::open_peer(&master)?;
    // From here every signal waits on the signalfd: the init is created,
    // so it does not inherit the blocked mask.
    let mut sfd = foreground::block_signals()?;
    // Recorded before the CT counts as running, so whoever sees it running
    // also finds its monitor.
    MonitorRecord::of_self(created.pid, foreground, &ct.cgroups_path).write(&ct.monitor)?;
    if launch.restore_from.is_none() {
        container::start(&ct.oci_root, ctid.as_str())?;
    }
    guard.armed = false;
    // Released before the report, so that a command run right after
    // `cove start` returns never finds the CT locked.
    drop(lock);
    readiness.ready(ctid);
    if ct_notify.is_none() {
        readiness.notify_ready(ctid, created.pid);
    } else {
        crate::systemd::notify_status(&format!(
            "CT {ctid} booting, init pid {}: waiting for its systemd to be ready",
            created.pid
        ));
    }
    let running_since = Instant::now();
    log(&format!("CT {ctid} running, init pid {}", created.pid));
    crate::trim::after_start();

    let ended = watch(
        &created,
        &master,
        &mut sfd,
        &mut console_log,
        &mut attach,
        init.stop_signal,
        foreground,
        ct_notify.as_mut(),
        &ct,
        ctid,
    );
    drop(ct_notify);
    drop(peer);
    drop(attach);
    log(&format!("CT {ctid} init ended: {}", ended.how));
    if foreground {
        // Not STOPPING=1 for a reboot: systemd would then count the stop
        // timeout down against a monitor that starts the CT again.
        let status = format!("CT {ctid} init ended: {}", ended.how);
        if ended.how == "reboot" {
            crate::systemd::notify_status(&status);
        } else {
            crate::systemd::notify_stopping(&status);
        }
    }

    let lock = Lock::acquire(&ct.lock)?;
    // Whoever held the lock meanwhile may have torn the CT down already
    // (`cove stop`) and even started it again with a new monitor: the CT is
    // ours to tear down only if the record is still ours.
    // No record: `cove stop` tore the CT down under the lock (the exit is
    // still ours to record). Then the CT stays down even if its init
    // answered the stop signal with a reboot.
    let record = MonitorRecord::read(&ct.monitor);
    let stopped_by_command = record.is_none();
    let mine = record.is_none_or(|m| m.pid == std::process::id() as i32);
    if mine {
        if let Err(e) = lifecycle::teardown(&ct, ctid) {
            log(&format!("teardown: {}", e.one_line()));
        }
        let _ = ended.write(&ct.last_exit);
        if ended.how == "reboot" && !stopped_by_command {
            return Ok(Outcome::Reboot(lock, running_since.elapsed()));
        }
    }
    drop(lock);
    Ok(Outcome::Ended(ended.exit_code()))
}

/// Relays the console to its log and waits for the init to end, asking it
/// to stop when we are asked to.
#[allow(clippy::too_many_arguments)]
fn watch(
    created: &Created,
    master: &OwnedFd,
    sfd: &mut SignalFd,
    console_log: &mut ConsoleLog,
    attach: &mut console::Attach,
    stop_signal: i32,
    foreground: bool,
    mut ct_notify: Option<&mut crate::systemd::CtNotify>,
    ct: &CtPaths,
    ctid: &Ctid,
) -> ExitRecord {
    // Both are drained in loops after poll: a blocking read would hang
    // the monitor once they are empty.
    for fd in [master.as_raw_fd(), sfd.as_raw_fd()] {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
    }
    let mut kill_at: Option<Instant> = None;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(ended) = reap(created.pid) {
            relay_console(master, console_log, attach, foreground, &mut buf);
            return ended;
        }
        let timeout = match kill_at {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as u16;
                PollTimeout::from(ms)
            }
        };
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(attach.listener_fd(), PollFlags::POLLIN),
        ];
        // The CT's notify socket: READY=1 and STATUS= from its systemd.
        let notify_at = fds.len();
        if let Some(n) = ct_notify.as_ref() {
            fds.push(PollFd::new(n.fd(), PollFlags::POLLIN));
        }
        let clients_at = fds.len();
        fds.extend(
            attach
                .client_fds()
                .into_iter()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log(&format!("poll: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let (signalled, output, connecting) = (ready[0], ready[1], ready[2]);
        if clients_at > notify_at && ready[notify_at] {
            if let Some(n) = ct_notify.as_deref_mut() {
                n.relay(ctid, created.pid);
            }
        }
        // Typed on a client's terminal: to the console. From the last, as
        // a client that left is removed from the list.
        for i in (0..ready.len() - clients_at).rev() {
            if ready[i + clients_at] {
                let (n, _) = attach.read_client(i, &mut buf);
                write_all(master.as_fd(), &buf[..n]);
            }
        }
        if connecting {
            attach.accept();
        }
        if signalled {
            while let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGTERM | libc::SIGINT | libc::SIGHUP if kill_at.is_none() => {
                        if foreground {
                            crate::systemd::notify_stopping(&format!("Stopping CT {ctid}"));
                        }
                        log(&format!(
                            "asked to stop: sending {} to the CT's init",
                            crate::signals::name(stop_signal)
                        ));
                        let _ =
                            cove_engine::sys::pidfd_send_signal(created.pidfd.as_fd(), stop_signal);
                        kill_at = Some(Instant::now() + STOP_TIMEOUT);
                    }
                    libc::SIGTERM | libc::SIGINT | libc::SIGHUP => kill_at = Some(Instant::now()),
                    _ => {}
                }
            }
        }
        if output {
            relay_console(master, console_log, attach, foreground, &mut buf);
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            log("the CT did not stop in time: killing it");
            let _ = container::kill(&ct.oci_root, ctid.as_str(), libc::SIGKILL, true);
            let _ = cove_engine::sys::pidfd_send_signal(created.pidfd.as_fd(), libc::SIGKILL);
            kill_at = None;
        }
    }
}

/// Reaps every child that has ended; the init's end, when it is among them.
fn reap(init: i32) -> Option<ExitRecord> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return ended,
            Ok(st) if st.pid() == Some(Pid::from_raw(init)) => {
                ended = Some(ExitRecord::from_wait(st))
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return ended,
        }
    }
}

/// Everything the pty holds now, to the log, to `cove console` clients
/// (and our stdout in the foreground).
fn relay_console(
    master: &OwnedFd,
    console_log: &mut ConsoleLog,
    attach: &mut console::Attach,
    foreground: bool,
    buf: &mut [u8],
) {
    loop {
        match nix::unistd::read(master.as_raw_fd(), buf) {
            Ok(n) if n > 0 => {
                console_log.write(&buf[..n]);
                attach.broadcast(&buf[..n]);
                if foreground {
                    // SAFETY: fd 1 stays open for the life of the process.
                    write_all(unsafe { BorrowedFd::borrow_raw(1) }, &buf[..n]);
                }
            }
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
}
