//! One function per command; each returns the exit code or the one line
//! that tells the user what went wrong.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use cove_engine::container::{self, CreateOptions};
use cove_engine::exec::{self, ExecOptions};
use cove_engine::state::Status;
use oci_spec::runtime::{Capability, Process, User};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs};

type Res = Result<i32, String>;

fn e2s(e: cove_engine::Error) -> String {
    e.to_string()
}

pub fn run(cli: &Cli) -> Res {
    if cli.version {
        println!("cove-oci version {}", env!("CARGO_PKG_VERSION"));
        println!(
            "commit: {}",
            option_env!("COVE_COMMIT").unwrap_or("unknown")
        );
        println!("spec: {}", cove_engine::spec::SPEC_VERSION);
        return Ok(0);
    }
    let Some(cmd) = &cli.command else {
        return Err("no command given (see cove-oci --help)".into());
    };
    let root = cli.root.as_path();
    match cmd {
        Command::Create(a) => {
            container::create(&create_options(cli, a)).map_err(e2s)?;
            Ok(0)
        }
        Command::Start { id } => start(root, id),
        Command::Run {
            create,
            detach,
            keep,
        } => run_container(cli, create, *detach, *keep),
        Command::State { id } => state(root, id),
        Command::List { format, quiet } => list(root, format, *quiet),
        Command::Kill { id, signal, all } => {
            let sig = crate::signals::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            container::kill(root, id, sig, *all).map(|_| 0).map_err(e2s)
        }
        Command::Delete { id, force } => {
            container::delete(root, id, *force).map(|_| 0).map_err(e2s)
        }
        Command::Exec(a) => exec_cmd(cli, a),
        Command::Ps {
            id,
            format,
            ps_args,
        } => ps(root, id, format, ps_args),
        Command::Pause { id } => pause(root, id, true),
        Command::Resume { id } => pause(root, id, false),
        Command::Spec { bundle, rootless } => spec(bundle.as_deref(), *rootless),
        Command::Update(a) => crate::resources::update(root, a),
        Command::Events {
            id,
            stats,
            interval,
        } => crate::resources::events(root, id, *stats, interval),
        Command::Checkpoint(a) => crate::criu::checkpoint(cli, a),
        Command::Restore(a) => crate::criu::restore(cli, a),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features()).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

/// Socket-activation fds passed on, as runc does: only when LISTEN_PID
/// names us, so a stale LISTEN_FDS in the environment leaks nothing.
fn listen_fds() -> u32 {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A relative --pid-file is relative to where cove-oci was called, not to
/// the bundle it changes into.
pub(crate) fn absolute(p: &Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    p.as_ref().map(|p| {
        if p.is_absolute() {
            p.clone()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    })
}

fn create_options(cli: &Cli, a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: cli.root.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: absolute(&a.pid_file),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds + listen_fds(),
        systemd_cgroup: cli.systemd_cgroup,
        notify_socket: crate::notify::host_socket().is_some(),
    }
}

/// `start`; with a NOTIFY_SOCKET, returns once the container's process
/// said READY= (relayed) or ended, as runc.
fn start(root: &Path, id: &str) -> Res {
    let listener = crate::notify::Listener::bind(root, id)?;
    container::start(root, id).map_err(e2s)?;
    if let Some(l) = listener {
        relay_ready(root, id, &l)?;
    }
    Ok(0)
}

fn relay_ready(root: &Path, id: &str, listener: &crate::notify::Listener) -> Result<(), String> {
    let (pid, pidfd) = {
        // The container's lock is held while `loaded` lives: not while we wait.
        let loaded = container::load(root, id).map_err(e2s)?;
        let pidfd = match container::open_init(&loaded.saved) {
            Ok(fd) => fd,
            // Already gone: nothing will say READY=.
            Err(_) => return Ok(()),
        };
        (loaded.saved.pid, pidfd)
    };
    listener.wait_and_relay(&pidfd, pid)
}

fn run_container(cli: &Cli, a: &CreateArgs, detach: bool, keep: bool) -> Res {
    let mut opts = create_options(cli, a);
    let console =
        if !detach && opts.console_socket.is_none() && crate::tty::bundle_wants_tty(&a.bundle) {
            let l = crate::tty::ConsoleListener::bind(&cli.root, &a.id)?;
            opts.console_socket = Some(l.path.clone());
            Some(l)
        } else {
            None
        };
    let created = container::create(&opts).map_err(e2s)?;
    // From here on a failure kills and deletes what was created, as runc's
    // run does (a container whose run said it failed is not left behind).
    match start_and_wait(cli, a, detach, keep, console.as_ref(), &created) {
        Ok(code) => Ok(code),
        Err(e) => {
            let _ = container::delete(&cli.root, &a.id, true);
            Err(e)
        }
    }
}

/// `run` after create: the console, signal forwarding, start, READY=
/// relayed, then (unless `detach`) the wait and the delete.
fn start_and_wait(
    cli: &Cli,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
    console: Option<&crate::tty::ConsoleListener>,
    created: &container::Created,
) -> Res {
    let master = console.map(|l| l.receive_master()).transpose()?;
    // Signals that arrive from here on go to the container.
    let mut sfd = if detach {
        None
    } else {
        Some(cove_engine::foreground::block_signals().map_err(e2s)?)
    };
    let listener = crate::notify::Listener::bind(&cli.root, &a.id)?;
    container::start(&cli.root, &a.id).map_err(e2s)?;
    if let Some(l) = &listener {
        // As runc's run: a READY= the host's socket does not take is
        // logged, and the container runs on (`start` reports it). Failing
        // here would leave a running container whose run said it failed.
        if let Err(e) = l.wait_and_relay(&created.pidfd, created.pid) {
            tracing::warn!("{e}");
        }
    }
    drop(listener);
    let Some(sfd) = sfd.as_mut() else {
        return Ok(0);
    };
    let code = match &master {
        Some(m) => cove_engine::foreground::wait_with_tty(created.pidfd.as_fd(), sfd, m),
        None => cove_engine::foreground::wait_forwarding(created.pidfd.as_fd(), sfd),
    }
    .map_err(e2s)?;
    if !keep {
        if let Err(e) = container::delete(&cli.root, &a.id, true) {
            tracing::warn!("delete after run: {e}");
        }
    }
    Ok(code)
}

fn state(root: &Path, id: &str) -> Res {
    let c = container::load(root, id).map_err(e2s)?;
    let st = c.saved.oci(c.status);
    println!(
        "{}",
        serde_json::to_string_pretty(&st).map_err(|e| e.to_string())?
    );
    Ok(0)
}

/// The name of the user owning a container's state directory. Names are
/// looked up once per uid (`names`): each lookup goes through NSS, which
/// opens /etc/passwd again, and `list` asks it of every container.
fn owner_name(root: &Path, id: &str, names: &mut Vec<(u32, String)>) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(root.join(id))
        .map(|m| m.uid())
        .unwrap_or(0);
    if let Some((_, name)) = names.iter().find(|(u, _)| *u == uid) {
        return name.clone();
    }
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    names.push((uid, name.clone()));
    name
}

fn list(root: &Path, format: &str, quiet: bool) -> Res {
    let all = container::list(root).map_err(e2s)?;
    // One write for the whole listing, not one per line (stdout is line
    // buffered); it is flushed when `out` goes.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    if quiet {
        for c in &all {
            let _ = writeln!(out, "{}", c.saved.id);
        }
        return Ok(0);
    }
    let mut names = Vec::new();
    let owners: Vec<String> = all
        .iter()
        .map(|c| owner_name(root, &c.saved.id, &mut names))
        .collect();
    if format == "json" {
        if all.is_empty() {
            let _ = writeln!(out, "null");
            return Ok(0);
        }
        let v: Vec<_> = all
            .iter()
            .zip(&owners)
            .map(|(c, o)| {
                let mut st = c.saved.oci(c.status);
                st.owner = o;
                st
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&v).map_err(|e| e.to_string())?
        );
        return Ok(0);
    }
    let rows: Vec<[String; 6]> =
        std::iter::once(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from))
            .chain(all.iter().zip(&owners).map(|(c, o)| {
                let pid = if c.status == Status::Stopped {
                    0
                } else {
                    c.saved.pid
                };
                [
                    c.saved.id.clone(),
                    pid.to_string(),
                    c.status.to_string(),
                    c.saved.bundle.display().to_string(),
                    c.saved.created.clone(),
                    o.clone(),
                ]
            }))
            .collect();
    // text/tabwriter with minwidth 12 and padding 3, as runc prints it.
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{line}");
    }
    Ok(0)
}

fn pause(root: &Path, id: &str, freeze: bool) -> Res {
    let c = container::load(root, id).map_err(e2s)?;
    match (freeze, c.status) {
        (true, Status::Running | Status::Created) | (false, Status::Paused) => {}
        (_, Status::Stopped) => return Err("container not running".into()),
        (true, s) => return Err(format!("container {id} is {s}, not running")),
        (false, s) => return Err(format!("container {id} is {s}, not paused")),
    }
    let cg = cove_cgroups::manager_from_paths(&c.saved.cgroup_paths);
    let r = if freeze { cg.freeze() } else { cg.thaw() };
    r.map(|_| 0).map_err(|e| e.to_string())
}

fn ps(root: &Path, id: &str, format: &str, ps_args: &[String]) -> Res {
    let pids = container::pids(root, id).map_err(e2s)?;
    if format == "json" {
        println!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| e.to_string())?
        );
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run ps: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn spec(bundle: Option<&Path>, rootless: bool) -> Res {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err("File config.json exists. Remove it first".into());
    }
    let v = crate::default_spec::default_spec(rootless);
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(0)
}

fn exec_process(cli: &Cli, a: &ExecArgs) -> Result<Process, String> {
    if let Some(p) = &a.process {
        let b = std::fs::read(p).map_err(|e| format!("read process file {}: {e}", p.display()))?;
        return serde_json::from_slice(&b)
            .map_err(|e| format!("process file {}: malformed JSON: {e}", p.display()));
    }
    if a.command.is_empty() {
        return Err("exec: no command given: cove-oci exec ID COMMAND [ARGS...]".into());
    }
    let c = container::load(&cli.root, &a.id).map_err(e2s)?;
    let spec = container::saved_spec(&c.dir).map_err(e2s)?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let mut user = User::default();
        user.set_uid(
            uid.parse()
                .map_err(|_| format!("--user {u:?}: expected UID[:GID] as numbers"))?,
        );
        user.set_gid(
            gid.map(|g| g.parse())
                .transpose()
                .map_err(|_| format!("--user {u:?}: expected UID[:GID] as numbers"))?
                .unwrap_or(0),
        );
        user.set_umask(p.user().umask());
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: Capability = name
                .trim_start_matches("CAP_")
                .parse()
                .or_else(|_| name.parse())
                .map_err(|_| format!("--cap {name}: unknown capability"))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn exec_cmd(cli: &Cli, a: &ExecArgs) -> Res {
    let process = exec_process(cli, a)?;
    let console = if !a.detach && a.console_socket.is_none() && process.terminal().unwrap_or(false)
    {
        Some(crate::tty::ConsoleListener::bind(&cli.root, &a.id)?)
    } else {
        None
    };
    let opts = ExecOptions {
        process,
        console_socket: console
            .as_ref()
            .map(|l| l.path.clone())
            .or_else(|| a.console_socket.clone()),
        pid_file: absolute(&a.pid_file),
        preserve_fds: a.preserve_fds + listen_fds(),
    };
    let mut sfd = if a.detach {
        None
    } else {
        Some(cove_engine::foreground::block_signals().map_err(e2s)?)
    };
    let child = exec::exec(&cli.root, &a.id, &opts).map_err(e2s)?;
    let master = console.as_ref().map(|l| l.receive_master()).transpose()?;
    match (sfd.as_mut(), &master) {
        (None, _) => Ok(0),
        (Some(sfd), Some(m)) => {
            cove_engine::foreground::wait_with_tty(child.pidfd.as_fd(), sfd, m).map_err(e2s)
        }
        (Some(sfd), None) => {
            cove_engine::foreground::wait_forwarding(child.pidfd.as_fd(), sfd).map_err(e2s)
        }
    }
}

fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let opts: Vec<&str> = vec![
        "acl",
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noacl",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "ratime",
        "rbind",
        "rdev",
        "rdiratime",
        "relatime",
        "remount",
        "rexec",
        "ridmap",
        "rnoatime",
        "rnodev",
        "rnodiratime",
        "rnoexec",
        "rnorelatime",
        "rnostrictatime",
        "rnosuid",
        "ro",
        "rprivate",
        "rrelatime",
        "rro",
        "rrw",
        "rshared",
        "rslave",
        "rstrictatime",
        "rsuid",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "tmpcopyup",
        "unbindable",
    ];
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": cove_engine::spec::SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": opts,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {"io.github.cove.version": env!("CARGO_PKG_VERSION")}
    })
}
