//! Shared helpers for the integration tests: prerequisites (root, runtime
//! binary, runc, a busybox rootfs), per-test bundles and state roots, a
//! runtime wrapper that drives the binary under test through its command
//! line exactly as a shim drives runc, and a guard that leaves nothing behind.
//!
//! The binary under test is `$COVE_OCI_BIN`, else
//! `<workspace>/target/debug/cove-oci`. Every test can be validated against
//! runc itself with `COVE_OCI_BIN=/usr/sbin/runc`.
#![allow(dead_code)]

pub mod criu;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Parent of every container cgroup the tests create. Absolute, so that no
/// runtime resolves it against the caller's own cgroup (the test process sits
/// in the machine supervisor's memory cgroup, which must never be touched).
pub const CGROUP_PARENT: &str = "cove-test";
/// All per-test bundles and state roots live below this directory.
pub const TEST_TMP: &str = "/tmp/cove-tests";
/// How long one runtime command may take before the test gives up on it:
/// generous, since it only bounds a hang; a loaded CI host has been seen
/// taking over 10 s for a `run` of a debug build.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// COMMAND_TIMEOUT, or a minute in the VM lane: there a debug build runs
/// under software emulation on a shared host, and a `run` or `update` has
/// been seen taking 10-20 s when the host was busy.
pub fn command_timeout() -> Duration {
    if in_vm_lane() {
        Duration::from_secs(60)
    } else {
        COMMAND_TIMEOUT
    }
}

// ---------------------------------------------------------------- locations

pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The runtime under test. A relative `COVE_OCI_BIN` is taken from the
/// workspace root (cargo runs tests from the package directory).
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("COVE_OCI_BIN") {
        Some(bin) if !bin.is_empty() => workspace_root().join(bin),
        _ => workspace_root().join("target/debug/cove-oci"),
    }
}

/// The reference runtime, if installed.
pub fn runc_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("COVE_RUNC_BIN") {
        let bin = PathBuf::from(bin);
        return is_executable(&bin).then_some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("runc"))
        .find(|candidate| is_executable(candidate))
}

/// True when the binary under test is runc itself (validation runs): tests
/// that prove cove is stricter than runc say so instead of failing silently.
pub fn under_test_is_runc() -> bool {
    runtime_bin()
        .file_name()
        .map(|n| n.to_string_lossy().contains("runc"))
        .unwrap_or(false)
}

/// Says, when the runtime under test is runc, why a failure that follows is
/// expected (cove is meant to be stricter or safer than runc 1.1.5 there).
pub fn note_if_runc(why: &str) {
    if under_test_is_runc() {
        eprintln!("NOTE: expected to fail under runc 1.1.5: {why}");
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------- skipping

pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What a test needs from the machine, checked once per test.
pub struct Env {
    /// The runtime under test.
    pub bin: PathBuf,
    /// runc, when the test asked for it.
    pub runc: Option<PathBuf>,
    /// The shared busybox rootfs (mounted read-only by every container).
    pub rootfs: PathBuf,
}

/// Checks root, the runtime under test and the rootfs; prints `SKIP` and
/// returns None when one is missing, so a test never passes in silence.
pub fn prerequisites(test: &str) -> Option<Env> {
    let bin = runtime_bin();
    root_and_binary(test, "runtime under test", &bin, "set COVE_OCI_BIN")?;
    let rootfs = match shared_rootfs() {
        Ok(rootfs) => rootfs.clone(),
        Err(why) => {
            skip(test, &format!("no busybox rootfs: {why}"));
            return None;
        }
    };
    Some(Env {
        bin,
        runc: runc_bin(),
        rootfs,
    })
}

/// Root and the binary `bin` (`what`, installed as `how`), or a SKIP line
/// and None.
fn root_and_binary(test: &str, what: &str, bin: &Path, how: &str) -> Option<()> {
    if !is_root() {
        skip(test, "needs root");
        return None;
    }
    if !is_executable(bin) {
        skip(
            test,
            &format!("{what} {} is missing ({how})", bin.display()),
        );
        return None;
    }
    Some(())
}

/// Like [`prerequisites`], and runc must be installed too.
pub fn prerequisites_with_runc(test: &str) -> Option<Env> {
    let env = prerequisites(test)?;
    if env.runc.is_none() {
        skip(test, "needs runc (apt-get install runc)");
        return None;
    }
    Some(env)
}

// ---------------------------------------------------------------- rootfs

/// The busybox rootfs shared (read-only) by all tests: `$COVE_TEST_ROOTFS`,
/// else built once into `target/test-rootfs/busybox`.
pub fn shared_rootfs() -> &'static Result<PathBuf, String> {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("COVE_TEST_ROOTFS") {
            let dir = PathBuf::from(dir);
            return if dir.join("bin/sh").exists() {
                Ok(dir)
            } else {
                Err(format!("COVE_TEST_ROOTFS={} has no bin/sh", dir.display()))
            };
        }
        let dir = workspace_root().join("target/test-rootfs/busybox");
        if dir.join("bin/sh").exists() {
            return Ok(dir);
        }
        build_shared_rootfs(&dir).map(|()| dir)
    })
}

fn build_shared_rootfs(dir: &Path) -> Result<(), String> {
    let parent = dir.parent().ok_or("rootfs path has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    // Build beside the final place and rename: a concurrent test binary
    // either sees no rootfs or a complete one.
    let scratch = parent.join(format!(".busybox-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let script = workspace_root().join("rootfs-templates/busybox/build");
    let mut built = false;
    if is_executable(&script) {
        let status = Command::new(&script)
            .arg(&scratch)
            .stdin(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() && scratch.join("bin/sh").exists() => built = true,
            other => {
                eprintln!(
                    "WARNING {} {} failed ({other:?}); using a minimal busybox rootfs",
                    script.display(),
                    scratch.display()
                );
                let _ = fs::remove_dir_all(&scratch);
            }
        }
    }
    if !built {
        minimal_busybox_rootfs(&scratch)?;
    }
    match fs::rename(&scratch, dir) {
        Ok(()) => Ok(()),
        // Another test binary won the race; its rootfs is as good as ours.
        Err(_) if dir.join("bin/sh").exists() => {
            let _ = fs::remove_dir_all(&scratch);
            Ok(())
        }
        Err(e) => Err(format!(
            "rename {} -> {}: {e}",
            scratch.display(),
            dir.display()
        )),
    }
}

fn host_busybox() -> Result<PathBuf, String> {
    ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
        .ok_or_else(|| "no busybox on the host (apt-get install busybox-static)".to_string())
}

/// A small rootfs from the host's static busybox: the binary, one symlink
/// per applet, the directories runtimes mount on, and passwd/group.
pub fn minimal_busybox_rootfs(dir: &Path) -> Result<(), String> {
    let busybox = host_busybox()?;
    let mkdir = |rel: &str| {
        let p = dir.join(rel);
        fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))
    };
    for rel in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home",
        "run", "var",
    ] {
        mkdir(rel)?;
    }
    let target = dir.join("bin/busybox");
    fs::copy(&busybox, &target)
        .map_err(|e| format!("copy {} -> {}: {e}", busybox.display(), target.display()))?;
    let list = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("{} --list-full: {e}", busybox.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join(applet.trim_start_matches('/'));
        if applet.is_empty() || link.symlink_metadata().is_ok() {
            continue;
        }
        symlink("/bin/busybox", &link).map_err(|e| format!("symlink {}: {e}", link.display()))?;
    }
    write_file(
        &dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    write_file(
        &dir.join("etc/group"),
        "root:x:0:\nusers:x:100:\nuser:x:1000:\nnogroup:x:65534:\n",
    )?;
    // The runtime-spec lets tmp be a plain directory; make it sticky like a real one.
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    Ok(())
}

pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

// ---------------------------------------------------------------- names

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `ct-<test>-<pid>-<n>`: unique across threads of this process and across
/// concurrently running test binaries.
pub fn unique_name(test: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let short: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("ct-{short}-{}-{n}", std::process::id())
}

/// A directory removed (with its contents) when the guard drops.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// A fresh `/tmp/cove-tests/<unique name for test>`.
    pub fn new(test: &str) -> TempDir {
        TempDir {
            path: fresh_dir(&format!("{}.tmp", unique_name(test))),
        }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A fresh, empty directory `/tmp/cove-tests/<name>`.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(TEST_TMP).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------- commands

/// What one runtime command did.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmdline: String,
    /// Exit code, 128+N when killed by signal N, -1 on timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole command and its output unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed:\n{self}");
        self
    }

    pub fn stdout_json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.stdout).map_err(|e| format!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\nexit code: {}", self.cmdline, self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs a command with stdin from /dev/null and stdout/stderr sent to files
/// (never pipes: a detached container inherits the runtime's stdio, and a
/// pipe would then stay open until the container exits).
pub fn run_command(program: &Path, args: &[String], io_dir: &Path, timeout: Duration) -> Out {
    let mut command = Command::new(program);
    command.args(args);
    run_prepared(command, program, args, io_dir, timeout)
}

/// Waits up to `limit` for our child (a foreground monitor the test
/// started) to end; after that kills it by its pid, reaps it and returns
/// None.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one place that spawns a command for a test: `command` has its
/// program, args and extras set; stdio, timeout and collection are here.
fn run_prepared(
    mut command: Command,
    program: &Path,
    args: &[String],
    io_dir: &Path,
    timeout: Duration,
) -> Out {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = io_dir.join(format!("cmd-{n}.out"));
    let err_path = io_dir.join(format!("cmd-{n}.err"));
    let cmdline = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let create =
        |p: &Path| File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    let child = command
        .stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Out {
                cmdline,
                code: -1,
                stdout: String::new(),
                stderr: format!("spawn failed: {e}"),
            };
        }
    };
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break exit_code(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // Our own child: kill it by pid.
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            Err(e) => panic!("wait for {cmdline}: {e}"),
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let mut stderr = read(&err_path);
    if code == -1 {
        stderr.push_str(&format!(
            "\n[test harness: TIMEOUT after {timeout:?}, command killed]"
        ));
    }
    let out = Out {
        cmdline,
        code,
        stdout: read(&out_path),
        stderr,
    };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    out
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------- container

/// One container: its bundle, its runtime state root, its cgroup, and the
/// guard that removes all three when the test ends (pass or fail).
pub struct Ct {
    pub test: String,
    /// Container id, also the last element of the cgroup path.
    pub id: String,
    pub bin: PathBuf,
    pub bundle: PathBuf,
    pub state_root: PathBuf,
    /// Absolute cgroupsPath written into config.json.
    pub cgroups_path: String,
    /// config.json as it will be written before create/run.
    pub config: Value,
    /// When set, config.json was written raw and must not be regenerated.
    raw_config: bool,
    owns_bundle: bool,
    _cgroup_lock: CgroupParentLock,
}

impl Ct {
    /// A container for `env.bin` with runc's default spec (`runc spec`),
    /// edited so it runs `true` without a terminal from the shared rootfs.
    pub fn new(env: &Env, test: &str) -> Ct {
        Ct::with_bin(env, test, &env.bin)
    }

    pub fn with_bin(env: &Env, test: &str, bin: &Path) -> Ct {
        let id = unique_name(test);
        let bundle = fresh_dir(&id);
        let state_root = fresh_dir(&format!("{id}.state"));
        let cgroups_path = format!("/{CGROUP_PARENT}/{id}");
        let config = default_spec(env, &bundle, &cgroups_path);
        Ct {
            test: test.to_string(),
            id,
            bin: bin.to_path_buf(),
            bundle,
            state_root,
            cgroups_path,
            config,
            raw_config: false,
            owns_bundle: true,
            _cgroup_lock: CgroupParentLock::shared(),
        }
    }

    /// The same bundle, id and cgroup path driven by another runtime with
    /// its own state root: for running one config under runc and cove-oci.
    /// Run the two one after the other, never at the same time.
    pub fn twin(&self, bin: &Path) -> Ct {
        let state_root = fresh_dir(&format!(
            "{}.state-{}",
            self.id,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        Ct {
            test: self.test.clone(),
            id: self.id.clone(),
            bin: bin.to_path_buf(),
            bundle: self.bundle.clone(),
            state_root,
            cgroups_path: self.cgroups_path.clone(),
            config: self.config.clone(),
            raw_config: self.raw_config,
            owns_bundle: false,
            _cgroup_lock: CgroupParentLock::shared(),
        }
    }

    /// Sets process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Sets process.args to `sh -c SCRIPT`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Writes config.json from `self.config` (done by create/run too).
    pub fn save_config(&self) {
        if self.raw_config {
            return;
        }
        let path = self.bundle.join("config.json");
        let text = serde_json::to_string_pretty(&self.config)
            .unwrap_or_else(|e| panic!("serialise config: {e}"));
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Writes config.json verbatim (for malformed input tests).
    pub fn write_raw_config(&mut self, text: &str) {
        let path = self.bundle.join("config.json");
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.raw_config = true;
    }

    /// `<bin> --root <state root> ARGS...`
    pub fn cmd(&self, args: &[&str]) -> Out {
        self.cmd_timeout(args, command_timeout())
    }

    pub fn cmd_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let mut full = vec!["--root".to_string(), self.state_root.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        run_command(&self.bin, &full, &self.bundle, timeout)
    }

    fn bundle_arg(&self) -> String {
        self.bundle.display().to_string()
    }

    pub fn create(&self) -> Out {
        self.save_config();
        let bundle = self.bundle_arg();
        self.cmd(&["create", "--bundle", &bundle, &self.id])
    }

    pub fn start(&self) -> Out {
        self.cmd(&["start", &self.id])
    }

    /// Foreground `run`: returns when the container exits.
    pub fn run(&self) -> Out {
        self.save_config();
        let bundle = self.bundle_arg();
        self.cmd(&["run", "--bundle", &bundle, &self.id])
    }

    pub fn run_detached(&self) -> Out {
        self.save_config();
        let bundle = self.bundle_arg();
        self.cmd(&["run", "-d", "--bundle", &bundle, &self.id])
    }

    pub fn state(&self) -> Out {
        self.cmd(&["state", &self.id])
    }

    /// `state` parsed; Err carries the whole command output.
    pub fn state_json(&self) -> Result<Value, String> {
        let out = self.state();
        if !out.ok() {
            return Err(out.to_string());
        }
        out.stdout_json()
    }

    pub fn status(&self) -> Option<String> {
        self.state_json()
            .ok()
            .and_then(|s| s["status"].as_str().map(str::to_string))
    }

    /// Polls `state` until the status is `want`; false after `timeout`.
    pub fn wait_status(&self, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status().as_deref() == Some(want) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&self, signal: &str) -> Out {
        self.cmd(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Out {
        self.cmd(&["delete", &self.id])
    }

    pub fn delete_force(&self) -> Out {
        self.cmd(&["delete", "--force", &self.id])
    }

    /// `exec [FLAGS...] ID ARGS...`
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> Out {
        let mut full = vec!["exec"];
        full.extend_from_slice(flags);
        full.push(&self.id);
        full.extend_from_slice(args);
        self.cmd(&full)
    }

    pub fn list(&self, flags: &[&str]) -> Out {
        let mut full = vec!["list"];
        full.extend_from_slice(flags);
        self.cmd(&full)
    }

    pub fn ps(&self, flags: &[&str]) -> Out {
        let mut full = vec!["ps"];
        full.extend_from_slice(flags);
        full.push(&self.id);
        self.cmd(&full)
    }

    /// Entries left in the state root (a clean failure leaves none).
    pub fn state_root_entries(&self) -> Vec<String> {
        fs::read_dir(&self.state_root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This container's cgroup directories that exist on the host.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_for(&self.cgroups_path)
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        let _ = self.cmd_timeout(&["delete", "--force", &self.id], command_timeout());
        // Whatever a broken runtime left running in our cgroup was started
        // by this test: kill it by pid so the cgroup can go.
        remove_cgroup(&self.cgroups_path);
        let _ = fs::remove_dir_all(&self.state_root);
        if self.owns_bundle {
            let _ = fs::remove_dir_all(&self.bundle);
        }
    }
}

/// runc's default spec (from `runc spec`, or the runtime under test's own
/// `spec` when runc is absent), edited for tests.
fn default_spec(env: &Env, bundle: &Path, cgroups_path: &str) -> Value {
    let generator = env.runc.clone().unwrap_or_else(|| env.bin.clone());
    let spec_dir = bundle.join(".spec");
    fs::create_dir_all(&spec_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", spec_dir.display()));
    let out = run_command(
        &generator,
        &[
            "spec".into(),
            "--bundle".into(),
            spec_dir.display().to_string(),
        ],
        bundle,
        command_timeout(),
    );
    assert!(out.ok(), "cannot generate a default spec:\n{out}");
    let path = spec_dir.join("config.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let _ = fs::remove_dir_all(&spec_dir);
    let mut config: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    config["root"]["path"] = json!(env.rootfs.display().to_string());
    config["root"]["readonly"] = json!(true);
    config["linux"]["cgroupsPath"] = json!(cgroups_path);
    config
}

// ---------------------------------------------------------------- cgroups

/// Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers, the
/// named systemd one, the unified v2 tree in hybrid mode, or the v2 root).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists() && !p.is_symlink())
                .collect()
        })
        .unwrap_or_default()
}

pub fn cgroup_dirs_for(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|p| p.exists())
        .collect()
}

fn remove_cgroup(cgroups_path: &str) {
    let dirs = cgroup_dirs_for(cgroups_path);
    if dirs.is_empty() {
        return;
    }
    for attempt in 0..100 {
        let mut left = false;
        for dir in cgroup_dirs_for(cgroups_path) {
            for pid in cgroup_pids(&dir) {
                // SAFETY: kill(2) on a pid read from our own test cgroup;
                // a stale pid only yields ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            remove_cgroup_tree(&dir);
            left |= dir.exists();
        }
        if !left {
            return;
        }
        if attempt == 99 {
            eprintln!("WARNING: could not remove cgroup {cgroups_path}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// rmdir children first (a runtime may have made sub-cgroups).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.filter_map(|e| e.ok()) {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Every live container holds a shared flock; the last one to finish takes
/// it exclusively and removes the common parent `/cove-test` from each
/// hierarchy, so no test removes the parent while a runtime creates a
/// child cgroup in it.
struct CgroupParentLock {
    file: Option<File>,
}

impl CgroupParentLock {
    fn lock_path() -> PathBuf {
        Path::new(TEST_TMP).join(".cgroup-parent.lock")
    }

    fn open() -> Option<File> {
        let _ = fs::create_dir_all(TEST_TMP);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::lock_path())
            .ok()
    }

    fn shared() -> Self {
        let file = Self::open();
        if let Some(f) = &file {
            // SAFETY: flock on an fd we own; failure only means no locking.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) };
        }
        CgroupParentLock { file }
    }
}

impl Drop for CgroupParentLock {
    fn drop(&mut self) {
        // Closing the file drops our shared lock.
        drop(self.file.take());
        let Some(f) = Self::open() else { return };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            for hierarchy in cgroup_hierarchies() {
                let _ = fs::remove_dir(hierarchy.join(CGROUP_PARENT));
            }
        }
    }
}

// ---------------------------------------------------------------- console socket

/// The caller's end of `--console-socket`: the runtime connects, sends the
/// pty master with SCM_RIGHTS (one message, as runc does) and closes.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> ConsoleSocket {
        let _ = fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("bind console socket {}: {e}", path.display()));
        ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        }
    }

    /// The pty master the runtime sent; call after `create` returned (the
    /// runtime's message waits in the socket buffer).
    pub fn receive_master(&self, timeout: Duration) -> Result<std::os::fd::OwnedFd, String> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| format!("console socket: {e}"))?;
        let deadline = Instant::now() + timeout;
        let conn = loop {
            match self.listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(format!("accept on {}: {e}", self.path.display())),
            }
        };
        conn.set_nonblocking(false)
            .map_err(|e| format!("console socket: {e}"))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| format!("console socket: {e}"))?;
        let (data, fd) =
            recv_with_fd(&conn, 4096).map_err(|e| format!("{}: {e}", self.path.display()))?;
        fd.ok_or_else(|| {
            format!(
                "no fd in the console socket message ({} bytes of data)",
                data.len()
            )
        })
    }
}

/// One message and the fd that came with it (SCM_RIGHTS), from a unix
/// stream socket.
pub fn recv_with_fd(
    conn: &std::os::unix::net::UnixStream,
    max: usize,
) -> Result<(Vec<u8>, Option<std::os::fd::OwnedFd>), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut data = vec![0u8; max];
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below point
    // into buffers that outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg on a connected socket we own, msg set up above.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!("recvmsg: {}", std::io::Error::last_os_error()));
    }
    data.truncate(n as usize);
    let mut fd = None;
    // SAFETY: msg was filled by a successful recvmsg; CMSG_* walk the
    // control buffer within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((data, fd))
}

/// Everything the container writes to its terminal until it closes it (or
/// `timeout` passes), with the pty's `\r\n` turned into `\n`.
pub fn read_pty(master: &std::os::fd::OwnedFd, timeout: Duration) -> String {
    use std::os::fd::AsRawFd as _;
    let deadline = Instant::now() + timeout;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
        if ready <= 0 {
            continue;
        }
        // SAFETY: read into a buffer we own, within its length.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // EIO (n < 0) is how a pty master says every slave fd was closed.
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&text).replace("\r\n", "\n")
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------- host view

/// This process's mount table, one normalised line per mount:
/// `mount-point fstype source root` (ids left out, they are per instance).
pub fn host_mounts() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            let fstype = f.get(dash + 1).copied().unwrap_or("?");
            let source = f.get(dash + 2).copied().unwrap_or("?");
            format!(
                "{} {} {} {}",
                f.get(4).unwrap_or(&"?"),
                fstype,
                source,
                f.get(3).unwrap_or(&"?")
            )
        })
        .collect()
}

/// Mounts present in `after` but not in `before`, but for those another
/// test process made meanwhile (see [`mount_of_another_test_process`]).
pub fn new_mounts(before: &[String], after: &[String]) -> Vec<String> {
    let mut remaining = before.to_vec();
    let mut added = Vec::new();
    for m in after {
        if let Some(i) = remaining.iter().position(|b| b == m) {
            remaining.swap_remove(i);
        } else if !mount_of_another_test_process(m) {
            added.push(m.clone());
        }
    }
    added
}

/// Whether the mount (a [`host_mounts`] line) is one that another test
/// binary running at the same time made for itself: a CT's root below its
/// [`CoveEnv`] (`/tmp/cove-tests/cv-PID-N/`) or its [`HostNetns`]
/// (`/run/netns/cvt-PID-N`), PID not ours. Such a mount says nothing of
/// what this process's runtime left behind.
pub fn mount_of_another_test_process(mount: &str) -> bool {
    let point = mount.split(' ').next().unwrap_or("");
    let ours = std::process::id();
    [format!("{TEST_TMP}/cv-"), "/run/netns/cvt-".to_string()]
        .iter()
        .filter_map(|prefix| point.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_once('-'))
        .any(|(pid, _)| pid.parse::<u32>().is_ok_and(|pid| pid != ours))
}

pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        // No sha256sum: fall back to the bytes themselves.
        _ => format!(
            "{:?}",
            fs::read(path)
                .ok()
                .map(|b| (b.len(), b.iter().map(|x| *x as u64).sum::<u64>()))
        ),
    }
}

pub fn append_file(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------- diffs

/// A line diff (`-` only in `a`, `+` only in `b`), or None when equal.
pub fn diff_lines(a_label: &str, a: &str, b_label: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Longest common subsequence table; outputs here are a few hundred
    // lines at most.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut text = format!("--- {a_label}\n+++ {b_label}\n");
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            text.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            text.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            text.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    if a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y) {
        text.push_str("(outputs differ only in a trailing newline)\n");
    }
    Some(text)
}

// ---------------------------------------------------------------- preserved fds, config edits, refusals

/// Like [`run_command`], with `fds` placed at 3, 4, ... in the runtime (for
/// `--preserve-fds`). Every other descriptor of the test process is
/// close-on-exec (std opens everything with O_CLOEXEC), so the runtime
/// starts with stdio plus exactly these.
pub fn run_command_with_fds(
    program: &Path,
    args: &[String],
    io_dir: &Path,
    timeout: Duration,
    fds: &[std::os::fd::RawFd],
) -> Out {
    use std::os::unix::process::CommandExt;
    const MAX_FDS: usize = 8;
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} preserved fds");
    let mut sources = [-1; MAX_FDS];
    sources[..fds.len()].copy_from_slice(fds);
    let count = fds.len();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: the closure runs between fork and exec and only calls fcntl
    // and dup2 (async-signal-safe) on a copied array; no allocation.
    unsafe {
        command.pre_exec(move || {
            // Copy every source above the targets first, so a source that
            // already sits on a target number is not overwritten.
            let mut high = [-1; MAX_FDS];
            for i in 0..count {
                high[i] = libc::fcntl(sources[i], libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate().take(count) {
                // dup2 leaves the new descriptor without FD_CLOEXEC.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    run_prepared(command, program, args, io_dir, timeout)
}

impl Ct {
    /// `<bin> --root <state root> ARGS...` with `fds` at 3, 4, ...
    pub fn cmd_with_fds(&self, args: &[&str], fds: &[std::os::fd::RawFd]) -> Out {
        let mut full = vec!["--root".to_string(), self.state_root.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        run_command_with_fds(&self.bin, &full, &self.bundle, command_timeout(), fds)
    }

    /// Appends one entry to `mounts`.
    pub fn add_mount(&mut self, mount: Value) -> &mut Self {
        match self.config["mounts"].as_array_mut() {
            Some(mounts) => mounts.push(mount),
            None => self.config["mounts"] = json!([mount]),
        }
        self
    }

    /// Adds `{"type": kind}` (or with a path) to linux.namespaces, replacing
    /// an entry of the same type.
    pub fn set_namespace(&mut self, kind: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(kind);
        let entry = match path {
            Some(p) => json!({"type": kind, "path": p}),
            None => json!({"type": kind}),
        };
        match self.config["linux"]["namespaces"].as_array_mut() {
            Some(list) => list.push(entry),
            None => self.config["linux"]["namespaces"] = json!([entry]),
        }
        self
    }

    /// Drops every linux.namespaces entry of type `kind`.
    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        if let Some(list) = self.config["linux"]["namespaces"].as_array_mut() {
            list.retain(|ns| ns["type"] != kind);
        }
        self
    }

    /// The container init's host pid from `state`.
    #[track_caller]
    pub fn init_pid(&self) -> i32 {
        let state = self.state_json().unwrap_or_else(|e| panic!("{e}"));
        state["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("state has no pid: {state}"))
    }
}

/// A refusal as bad input must look: exit code 1, one non-empty line on
/// stderr, no state directory and no cgroup left.
#[track_caller]
pub fn assert_refused_cleanly(ct: &Ct, out: &Out) {
    assert_eq!(out.code, 1, "expected exit code 1:\n{out}");
    one_error_line(out);
    assert_nothing_left(ct, out);
}

/// The line a refused command printed on stderr, asserted to be its only
/// line and not blank: what every refusal must look like.
#[track_caller]
pub fn one_error_line(out: &Out) -> &str {
    let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr:\n{out}"
    );
    assert!(
        !lines[0].trim().is_empty(),
        "the error line is empty:\n{out}"
    );
    lines[0]
}

/// No state directory and no cgroup of `ct` exist any more.
#[track_caller]
pub fn assert_nothing_left(ct: &Ct, out: &Out) {
    let left = ct.state_root_entries();
    assert!(
        left.is_empty(),
        "state left in {}: {left:?}\n{out}",
        ct.state_root.display()
    );
    let cgroups = ct.cgroup_dirs();
    assert!(
        cgroups.is_empty(),
        "cgroups left behind: {cgroups:?}\n{out}"
    );
}

/// Panics with a line diff unless the runtime under test saw what runc saw.
#[track_caller]
pub fn assert_same_as_runc(test: &str, runc_saw: &str, under_test_saw: &str, context: &str) {
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("===== {test}: runc saw =====\n{runc_saw}===== {test}: under test saw =====\n{under_test_saw}");
    }
    if let Some(diff) = diff_lines("runc", runc_saw, "under test", under_test_saw) {
        panic!("{test}: the container saw something else than under runc\n{diff}\n{context}");
    }
}

// ---------------------------------------------------------------- runc comparisons

/// What one foreground run printed, with its exit code appended.
pub fn observed(out: &Out) -> String {
    format!("{}exit code: {}\n", out.stdout, out.code)
}

/// Runs `script` in one bundle prepared by `prepare` (config edits, extra
/// files), under runc and then under the runtime under test, and panics
/// with a diff unless both containers printed the same thing. runc must
/// exit 0, which proves the probe works. Returns what the runtime under
/// test printed, or None when the test was skipped.
pub fn compare_run_with_runc(
    test: &str,
    script: &str,
    prepare: impl FnOnce(&mut Ct),
) -> Option<String> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.sh(script);
    prepare(&mut reference);
    reference.save_config();
    let under_test = reference.twin(&env.bin);
    let runc_out = reference.run();
    assert_eq!(
        runc_out.code, 0,
        "the probe is broken: runc itself failed:\n{runc_out}"
    );
    let out = under_test.run();
    assert_same_as_runc(
        test,
        &observed(&runc_out),
        &observed(&out),
        &format!("===== runc run =====\n{runc_out}\n===== run under test =====\n{out}"),
    );
    Some(out.stdout)
}

/// Plays `scenario` (which builds its own containers for the runtime it is
/// given and returns what it observed, free of per-run values) with runc,
/// then with the runtime under test, and panics with a diff unless both
/// observed the same. Returns the observation under test.
pub fn compare_scenario_with_runc(
    test: &str,
    scenario: impl Fn(&Env, &Path) -> String,
) -> Option<String> {
    let (expected, actual) = play_under_runc_then_test(test, scenario)?;
    assert_same_as_runc(test, &expected, &actual, "");
    Some(actual)
}

/// Plays `scenario` (given the environment and the runtime binary) with
/// runc, then with the runtime under test, and returns both results in
/// that order for the test to compare; None (after a SKIP line) without
/// root, the rootfs or runc.
pub fn play_under_runc_then_test<T>(
    test: &str,
    scenario: impl Fn(&Env, &Path) -> T,
) -> Option<(T, T)> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let with_runc = scenario(&env, &runc);
    let under_test = scenario(&env, &env.bin);
    Some((with_runc, under_test))
}

/// Creates a container (`sleep 100`) prepared by `prepare` under runc and
/// under the runtime under test: both must refuse with the same exit
/// code, and the runtime under test with one line and nothing left
/// behind. Returns its refusal, or None when the test was skipped.
pub fn create_refused_like_runc(test: &str, prepare: impl FnOnce(&mut Ct)) -> Option<Out> {
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.sh("sleep 100");
    prepare(&mut reference);
    let runc_out = reference.create();
    assert_ne!(
        runc_out.code, 0,
        "probe: runc accepted the config:\n{runc_out}"
    );
    let under_test = reference.twin(&env.bin);
    let out = under_test.create();
    assert_refused_cleanly(&under_test, &out);
    assert_eq!(
        out.code, runc_out.code,
        "exit code differs from runc's:\n{runc_out}\n{out}"
    );
    Some(out)
}

// ---------------------------------------------------------------- host needs (cgroup v2, hybrid, CRIU, crun)

/// `statfs` f_type of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// True inside the VM lane (`scripts/vmtest` sets COVE_VM_LANE=1). The lane
/// promises a pure cgroup v2 host, a working CRIU and crun, so there a
/// missing one is a failure of the lane, never a skip.
pub fn in_vm_lane() -> bool {
    std::env::var_os("COVE_VM_LANE").is_some_and(|v| v == "1")
}

/// Skips (returns false) with `why`, or panics inside the VM lane, which
/// promised the need.
fn need_promised_by_vm_lane(test: &str, why: &str) -> bool {
    assert!(
        !in_vm_lane(),
        "{test}: {why}, yet the VM lane (COVE_VM_LANE=1) promises it: the lane is broken"
    );
    skip(test, why);
    false
}

fn statfs_type(path: &str) -> Option<i64> {
    let c_path = std::ffi::CString::new(path).ok()?;
    // SAFETY: an all-zero statfs is a valid out-buffer for statfs(2).
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs on a NUL-terminated path into a buffer we own.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    (rc == 0).then_some(buf.f_type as i64)
}

/// /sys/fs/cgroup itself is a cgroup2 mount: one unified hierarchy with the
/// controllers, no v1 hierarchy beside it.
pub fn is_pure_cgroup_v2() -> bool {
    statfs_type("/sys/fs/cgroup") == Some(CGROUP2_SUPER_MAGIC)
}

/// v1 controller hierarchies under /sys/fs/cgroup (a tmpfs) with a cgroup2
/// tree beside them at /sys/fs/cgroup/unified, as systemd's hybrid mode and
/// this project's development machines have it.
pub fn is_hybrid_cgroups() -> bool {
    !is_pure_cgroup_v2() && statfs_type("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC)
}

/// True on a pure cgroup v2 host; otherwise prints
/// `SKIP <test>: needs a pure cgroup v2 host (run in the VM lane)`.
pub fn needs_cgroup_v2(test: &str) -> bool {
    is_pure_cgroup_v2()
        || need_promised_by_vm_lane(test, "needs a pure cgroup v2 host (run in the VM lane)")
}

/// True on a hybrid-cgroup host; otherwise prints a SKIP line (the VM lane
/// is pure v2, so these tests run in the host lane only).
pub fn needs_hybrid_cgroups(test: &str) -> bool {
    if is_hybrid_cgroups() {
        return true;
    }
    skip(
        test,
        "needs a hybrid cgroup host (v1 controllers plus /sys/fs/cgroup/unified; run in the host lane)",
    );
    false
}

/// CRIU's binary, if installed (`$COVE_CRIU_BIN`, else on PATH or in sbin).
pub fn criu_bin() -> Option<PathBuf> {
    find_tool("criu", "COVE_CRIU_BIN")
}

/// crun's binary, if installed (`$COVE_CRUN_BIN`, else on PATH or in sbin).
pub fn crun_bin() -> Option<PathBuf> {
    find_tool("crun", "COVE_CRUN_BIN")
}

fn find_tool(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(env_var) {
        let bin = PathBuf::from(bin);
        return is_executable(&bin).then_some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `criu check` exit status and output, run once per test binary.
fn criu_check() -> &'static Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK.get_or_init(|| {
        let criu = criu_bin().ok_or("criu is not installed (apt-get install criu)")?;
        let out = Command::new(&criu)
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{} check: {e}", criu.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let last = text.trim_end().lines().last().unwrap_or("").to_string();
        Err(format!(
            "`criu check` fails on this kernel ({last}); run in the VM lane"
        ))
    })
}

/// True when CRIU works here (`criu check` passes); otherwise prints a SKIP
/// line with CRIU's own complaint, or fails inside the VM lane.
pub fn needs_criu(test: &str) -> bool {
    match criu_check() {
        Ok(()) => true,
        Err(why) => need_promised_by_vm_lane(test, &format!("needs CRIU: {why}")),
    }
}

/// crun's path when installed; otherwise prints a SKIP line, or fails
/// inside the VM lane. (crun 1.8 refuses hybrid hosts, so comparisons with
/// it belong to pure v2 tests.)
pub fn needs_crun(test: &str) -> Option<PathBuf> {
    match crun_bin() {
        Some(bin) => Some(bin),
        None => {
            need_promised_by_vm_lane(test, "needs crun (apt-get install crun)");
            None
        }
    }
}

/// strace's path when installed; otherwise prints a SKIP line, or fails
/// inside the VM lane (scripts/vmtest installs it).
pub fn needs_strace(test: &str) -> Option<PathBuf> {
    match find_tool("strace", "COVE_STRACE_BIN") {
        Some(bin) => Some(bin),
        None => {
            need_promised_by_vm_lane(test, "needs strace (apt-get install strace)");
            None
        }
    }
}

// ---------------------------------------------------------------- cove (system containers)

/// The `cove` binary under test: `$COVE_BIN`, else `<workspace>/target/debug/cove`.
pub fn cove_bin() -> PathBuf {
    match std::env::var_os("COVE_BIN") {
        Some(bin) if !bin.is_empty() => workspace_root().join(bin),
        _ => workspace_root().join("target/debug/cove"),
    }
}

/// How long one `cove` command may take (stop waits for the CT's init).
pub const COVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One test's own cove: data and run directories, a cgroup parent under
/// `/cove-test`, and a guard that destroys every CT it made and checks
/// nothing is left mounted or in a cgroup.
pub struct CoveEnv {
    pub test: String,
    pub bin: PathBuf,
    pub root: PathBuf,
    pub data: PathBuf,
    pub run: PathBuf,
    /// Absolute cgroup parent of this test's CTs (`COVE_CGROUP_PARENT`).
    pub cgroup_parent: String,
    /// The network namespace every cove command of this test runs in
    /// (the test's "host"), when it has one. Dropped after the CTs are
    /// destroyed: fields drop after `Drop::drop` has run.
    pub netns: Option<HostNetns>,
    counter: AtomicUsize,
    _cgroup_lock: CgroupParentLock,
}

impl CoveEnv {
    /// Root and the cove binary, or a SKIP line and None.
    pub fn new(test: &str) -> Option<CoveEnv> {
        let bin = cove_bin();
        root_and_binary(
            test,
            "cove binary",
            &bin,
            "cargo build -p cove, or set COVE_BIN",
        )?;
        // Short: the CT's console socket lives below it, and a unix
        // socket path has 107 bytes at most.
        let name = format!(
            "cv-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = fresh_dir(&name);
        let data = root.join("data");
        let run = root.join("run");
        Some(CoveEnv {
            test: test.to_string(),
            bin,
            root,
            data,
            run,
            cgroup_parent: format!("/{CGROUP_PARENT}/{name}"),
            netns: None,
            counter: AtomicUsize::new(1),
            _cgroup_lock: CgroupParentLock::shared(),
        })
    }

    /// Like [`CoveEnv::new`], with the busybox template in the store.
    pub fn with_busybox(test: &str) -> Option<CoveEnv> {
        let env = CoveEnv::new(test)?;
        match busybox_template(&env.bin) {
            Ok(built) => {
                let dest = env.data.join("templates");
                fs::create_dir_all(&dest)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
                let out = Command::new("cp")
                    .arg("-a")
                    .arg(built)
                    .arg(dest.join("busybox"))
                    .output()
                    .unwrap_or_else(|e| panic!("cp: {e}"));
                assert!(
                    out.status.success(),
                    "cp -a {} failed: {}",
                    built.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(env)
            }
            Err(why) => panic!("cannot build the busybox template with cove: {why}"),
        }
    }

    /// A CTID no other test uses: `<pid><nn>`.
    pub fn new_ctid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:02}", std::process::id())
    }

    /// `cove ARGS...` with this test's directories.
    pub fn cmd(&self, args: &[&str]) -> Out {
        self.cmd_timeout(args, COVE_TIMEOUT)
    }

    pub fn cmd_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match &self.netns {
            None => run_command_env(&self.bin, &args, &self.envs(), &self.root, timeout),
            Some(ns) => {
                let mut command = Command::new(&self.bin);
                command.args(&args).envs(self.envs());
                ns.enter_on_spawn(&mut command);
                run_prepared(command, &self.bin, &args, &self.root, timeout)
            }
        }
    }

    /// The environment every cove command of this test gets.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("COVE_DATA".into(), self.data.display().to_string()),
            ("COVE_RUN".into(), self.run.display().to_string()),
            ("COVE_CGROUP_PARENT".into(), self.cgroup_parent.clone()),
            (
                "COVE_TEMPLATES_DIR".into(),
                workspace_root()
                    .join("rootfs-templates")
                    .display()
                    .to_string(),
            ),
        ]
    }

    /// A `cove` command ready to spawn (for foreground monitors and races).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).envs(self.envs()).stdin(Stdio::null());
        if let Some(ns) = &self.netns {
            ns.enter_on_spawn(&mut c);
        }
        c
    }

    /// `cove create CTID --template busybox EXTRA...`, asserted to work.
    #[track_caller]
    pub fn create_busybox(&self, extra: &[&str]) -> String {
        let ctid = self.new_ctid();
        let mut args = vec!["create", ctid.as_str(), "--template", "busybox"];
        args.extend_from_slice(extra);
        self.cmd(&args).assert_ok();
        ctid
    }

    /// `cove status CTID --json`.
    #[track_caller]
    /// The CT's init pid from `cove status --json`.
    pub fn ct_init_pid(&self, ctid: &str) -> i32 {
        let st = self.status_json(ctid);
        st["init_pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no init pid: {st}"))
    }

    /// What [`CT_START_COUNTER`] wrote so far in CT `ctid`, read through its
    /// init's root.
    pub fn ct_counts(&self, ctid: &str) -> Vec<u64> {
        numbers_in(self.ct_init_pid(ctid), "/root/count")
    }

    /// Waits until the CT's counter has written at least `n` numbers.
    pub fn wait_ct_counts(&self, ctid: &str, n: usize) -> Vec<u64> {
        wait_numbers(n, || self.ct_counts(ctid))
    }

    pub fn status_json(&self, ctid: &str) -> Value {
        let out = self.cmd(&["status", ctid, "--json"]);
        out.assert_ok();
        out.stdout_json().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn ct_dir(&self, ctid: &str) -> PathBuf {
        self.data.join("ct").join(ctid)
    }

    /// Adds the top-level setting `line` (`init = "/sbin/x"`) to the CT's
    /// ct.toml, as a user editing the file would: before its `hostname =`
    /// line, so that it stays out of any table below.
    #[track_caller]
    pub fn add_to_ct_toml(&self, ctid: &str, line: &str) {
        let path = self.ct_dir(ctid).join("ct.toml");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            text.contains("hostname = "),
            "no hostname line to add {line:?} before in {}:\n{text}",
            path.display()
        );
        let text = text.replacen("hostname = ", &format!("{line}\nhostname = "), 1);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub fn ct_run_dir(&self, ctid: &str) -> PathBuf {
        self.run.join("ct").join(ctid)
    }

    /// The CT's cgroup directories that exist on the host.
    pub fn cgroup_dirs(&self, ctid: &str) -> Vec<PathBuf> {
        cgroup_dirs_for(&format!("{}/{ctid}", self.cgroup_parent))
    }

    /// This process's mounts below this test's directory.
    pub fn our_mounts(&self) -> Vec<String> {
        // With the slash: the root of test 1 is a prefix of test 16's.
        let root = format!("{}/", self.root.display());
        host_mounts()
            .into_iter()
            .filter(|m| m.contains(&root))
            .collect()
    }

    /// The monitor's pid from its record, if there is one.
    pub fn monitor_pid(&self, ctid: &str) -> Option<i32> {
        let text = fs::read_to_string(self.ct_run_dir(ctid).join("monitor.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
    }

    /// Asserts that the CT left nothing at run time: no mount, no cgroup,
    /// no engine state, no bundle, no monitor.
    #[track_caller]
    pub fn assert_ct_cleaned_up(&self, ctid: &str) {
        let mounts = self.our_mounts();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let cgroups = self.cgroup_dirs(ctid);
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        let engine = self.run.join("oci").join(ctid);
        assert!(!engine.exists(), "engine state left: {}", engine.display());
        let bundle = self.ct_run_dir(ctid).join("bundle");
        assert!(!bundle.exists(), "bundle left: {}", bundle.display());
        let monitor = self.ct_run_dir(ctid).join("monitor.json");
        assert!(
            !monitor.exists(),
            "monitor record left: {}",
            monitor.display()
        );
    }

    /// Like [`CoveEnv::new`], with the debian-12 template (systemd) in the
    /// store, or a SKIP line and None. The template comes from the tarball
    /// `$COVE_TEST_DEBIAN_TARBALL` (the VM lane's, built on the host) through
    /// `cove template import`, else, with `COVE_TEST_DEBIAN=1`, from one
    /// `cove template build debian-12` per machine (it fetches packages from
    /// the machine's apt mirror), kept in target/test-rootfs.
    pub fn with_debian(test: &str) -> Option<CoveEnv> {
        let tarball = std::env::var_os("COVE_TEST_DEBIAN_TARBALL").filter(|t| !t.is_empty());
        let asked = std::env::var_os("COVE_TEST_DEBIAN").is_some_and(|v| v == "1");
        if tarball.is_none() && !asked {
            let declined = std::env::var_os("COVE_TEST_DEBIAN").is_some_and(|v| v == "0");
            assert!(
                !in_vm_lane() || declined,
                "{test}: the VM lane gives no COVE_TEST_DEBIAN_TARBALL: the lane is broken"
            );
            skip(
                test,
                "set COVE_TEST_DEBIAN=1 to build the debian-12 template (scripts/test does unless COVE_TEST_DEBIAN=0)",
            );
            return None;
        }
        let env = CoveEnv::new(test)?;
        if let Some(tarball) = tarball {
            let tarball = tarball.to_string_lossy().into_owned();
            let out = env.cmd_timeout(
                &["template", "import", &tarball, "debian-12"],
                Duration::from_secs(900),
            );
            out.assert_ok();
            return Some(env);
        }
        let built = match cached_template(&env.bin, "debian-12", "rootfs/sbin/init") {
            Ok(dir) => dir,
            Err(why) => panic!("cannot build the debian-12 template with cove: {why}"),
        };
        let dest = env.data.join("templates");
        fs::create_dir_all(&dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
        let out = Command::new("cp")
            .arg("-a")
            .arg(&built)
            .arg(dest.join("debian-12"))
            .output()
            .unwrap_or_else(|e| panic!("cp: {e}"));
        assert!(
            out.status.success(),
            "cp -a {} failed: {}",
            built.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(env)
    }
}

impl Drop for CoveEnv {
    fn drop(&mut self) {
        let cts = fs::read_dir(self.data.join("ct"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_else(|_| Vec::new());
        for ctid in &cts {
            let _ = self.cmd_timeout(&["destroy", "--force", ctid], Duration::from_secs(20));
        }
        // Whatever a broken cove left: our mounts, then our cgroups (killing
        // what is in them, all started by this test).
        let mut mounts: Vec<String> = self
            .our_mounts()
            .into_iter()
            .filter_map(|m| m.split(' ').next().map(String::from))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 on a path below this test's own directory.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        remove_cgroup(&self.cgroup_parent);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// `cove console CTID` attached from a test: what the console shows is
/// gathered by a thread; `type_in` writes to it; `detach` sends Ctrl-].
pub struct ConsoleClient {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stdin: std::process::ChildStdin,
    stderr: std::process::ChildStderr,
    /// What the client printed on stderr once connected ("Connected ...").
    pub banner: Vec<u8>,
}

impl ConsoleClient {
    /// Spawns `cove console CTID` and waits for its banner.
    pub fn attach(env: &CoveEnv, ctid: &str) -> ConsoleClient {
        use std::io::Read;
        let mut child = env
            .command(&["console", ctid])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cove console");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = std::sync::Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        // The client prints this once it is connected.
        let mut banner = vec![0u8; 20];
        stderr.read_exact(&mut banner).expect("console banner");
        let stdin = child.stdin.take().expect("stdin");
        ConsoleClient {
            child,
            seen,
            reader: Some(reader),
            stdin,
            stderr,
            banner,
        }
    }

    /// Everything the console showed so far.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Whether `what` shows within `timeout`.
    pub fn shows(&self, what: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.shown().contains(what))
    }

    pub fn type_in(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("type on the console");
    }

    /// Ctrl-], then waits for the client: its exit status and the rest of
    /// its stderr.
    pub fn detach(self) -> (std::process::ExitStatus, String) {
        self.detach_with(&[&[0x1d]])
    }

    /// Types `keys` (one write each, 100 ms apart), then waits for the
    /// client as [`ConsoleClient::detach`] does.
    pub fn detach_with(mut self, keys: &[&[u8]]) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            self.type_in(k);
        }
        let status = self.child.wait().expect("wait for cove console");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        (status, rest)
    }
}

/// Polls `f` every 20 ms until it holds or `timeout` passes; its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The value of a cgroup file of CT `ctid` (its outer cgroup, where cove
/// writes its limits), from whichever hierarchy has it.
pub fn cgroup_value(env: &CoveEnv, ctid: &str, files: &[&str]) -> Option<String> {
    for dir in env.cgroup_dirs(ctid) {
        for f in files {
            if let Ok(v) = fs::read_to_string(dir.join(f)) {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

/// Template NAME built once per machine by `cove template build` into
/// target/test-rootfs/cove-NAME (`marker` is a path that proves it built).
/// The key of recipe rootfs-templates/NAME: `sha256sum` of each of its
/// files (relative names, sorted), as scripts/vmtest computes it for the
/// same cache. A cached template whose key differs is built again.
pub const RECIPE_KEY_FILE: &str = "recipe.sha256";

/// The key of the recipe in directory `recipe`.
pub fn recipe_key(recipe: &Path) -> Result<String, String> {
    let out = Command::new("sh")
        .args([
            "-c",
            "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum --",
        ])
        .current_dir(recipe)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("sha256sum of {}: {e}", recipe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.is_empty() {
        return Err(format!(
            "sha256sum of {}: {}",
            recipe.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

/// Whether `dir` holds a template built (marker present) from the recipe
/// whose key is `key`.
fn cache_fresh(dir: &Path, marker: &str, key: &str) -> bool {
    dir.join(marker).symlink_metadata().is_ok()
        && fs::read_to_string(dir.join(RECIPE_KEY_FILE)).is_ok_and(|k| k == key)
}

/// Template `name` built by `cove template build` from its recipe in
/// rootfs-templates, kept in target/test-rootfs/cove-NAME with the
/// recipe's key: a changed recipe is built again.
fn cached_template(bin: &Path, name: &str, marker: &str) -> Result<PathBuf, String> {
    cached_template_in(
        bin,
        &workspace_root().join("rootfs-templates"),
        &workspace_root().join(format!("target/test-rootfs/cove-{name}")),
        name,
        marker,
    )
}

/// Template `name` built from its recipe in `recipes` into `dir` (a
/// template directory: rootfs/, manifest.toml and the recipe's key), or
/// `dir` as it is when it holds `marker` and the key of today's recipe.
pub fn cached_template_in(
    bin: &Path,
    recipes: &Path,
    dir: &Path,
    name: &str,
    marker: &str,
) -> Result<PathBuf, String> {
    // One build at a time in this process: the scratch store is named by
    // the pid, so two tests of one binary building at once would share it
    // (and one would remove it under the other's feet).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = dir.to_path_buf();
    let key = recipe_key(&recipes.join(name))?;
    if cache_fresh(&dir, marker, &key) {
        return Ok(dir);
    }
    let parent = dir.parent().ok_or("no parent")?.to_path_buf();
    if dir.symlink_metadata().is_ok() {
        // Built from another recipe: out of the way first (a rename, so a
        // test binary copying from it meanwhile keeps its files), then gone.
        let stale = parent.join(format!(".stale-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&stale);
        if fs::rename(&dir, &stale).is_ok() {
            let _ = fs::remove_dir_all(&stale);
        }
    }
    let scratch = parent.join(format!(".cove-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let out = Command::new(bin)
        .args(["template", "build", name])
        .env("COVE_DATA", &scratch)
        .env("COVE_RUN", scratch.join("run"))
        .env("COVE_TEMPLATES_DIR", recipes)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&scratch);
        return Err(format!(
            "cove template build {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let built = scratch.join("templates").join(name);
    if let Err(e) = fs::write(built.join(RECIPE_KEY_FILE), &key) {
        let _ = fs::remove_dir_all(&scratch);
        return Err(format!(
            "write {}: {e}",
            built.join(RECIPE_KEY_FILE).display()
        ));
    }
    let result = match fs::rename(&built, &dir) {
        Ok(()) => Ok(dir.clone()),
        // Another test binary won the race; its template is as good.
        Err(_) if cache_fresh(&dir, marker, &key) => Ok(dir.clone()),
        Err(e) => Err(format!(
            "rename {} -> {}: {e}",
            built.display(),
            dir.display()
        )),
    };
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// The busybox template built once per test binary by `cove template build`
/// (from rootfs-templates/busybox), kept in target/test-rootfs.
fn busybox_template(bin: &Path) -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = workspace_root().join("target/test-rootfs/cove-busybox");
            if dir.join("rootfs/bin/sh").exists() {
                return Ok(dir);
            }
            let parent = dir.parent().ok_or("no parent")?.to_path_buf();
            let scratch = parent.join(format!(".cove-store-{}", std::process::id()));
            let _ = fs::remove_dir_all(&scratch);
            let out = Command::new(bin)
                .args(["template", "build", "busybox"])
                .env("COVE_DATA", &scratch)
                .env("COVE_RUN", scratch.join("run"))
                .env(
                    "COVE_TEMPLATES_DIR",
                    workspace_root().join("rootfs-templates"),
                )
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{}: {e}", bin.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "cove template build busybox: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let built = scratch.join("templates/busybox");
            let result = match fs::rename(&built, &dir) {
                Ok(()) => Ok(dir.clone()),
                // Another test binary won the race; its template is as good.
                Err(_) if dir.join("rootfs/bin/sh").exists() => Ok(dir.clone()),
                Err(e) => Err(format!(
                    "rename {} -> {}: {e}",
                    built.display(),
                    dir.display()
                )),
            };
            let _ = fs::remove_dir_all(&scratch);
            result
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Like [`run_command`], with extra environment variables.
pub fn run_command_env(
    program: &Path,
    args: &[String],
    envs: &[(String, String)],
    io_dir: &Path,
    timeout: Duration,
) -> Out {
    let mut command = Command::new(program);
    command.args(args).envs(envs.iter().map(|(k, v)| (k, v)));
    run_prepared(command, program, args, io_dir, timeout)
}

/// A refusal as bad input must look for cove: the exit code, exactly one
/// non-empty line on stderr.
#[track_caller]
pub fn assert_cove_refused(out: &Out, code: i32) {
    assert_eq!(out.code, code, "expected exit code {code}:\n{out}");
    let line = one_error_line(out);
    assert!(
        line.starts_with("cove: ") && line.len() > 6,
        "not a cove error line:\n{out}"
    );
}

// ---------------------------------------------------------------- seccomp probe (tests/seccomp-probe.c)

/// The directory the probe's directory is bind-mounted on, read-only, in a
/// test container: it exists (empty) in the busybox rootfs, so no runtime
/// has to create a mount point in the shared rootfs.
pub const PROBE_DIR_IN_CT: &str = "/run";
/// The probe's path inside a test container.
pub const PROBE_IN_CT: &str = "/run/seccomp-probe";

/// `tests/seccomp-probe.c` built once per test binary with
/// `cc -static -O2` into `target/test-probes/seccomp-probe/` (rebuilt when
/// the source is newer). Err says what is missing (a C compiler, libc.a).
pub fn seccomp_probe() -> &'static Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE.get_or_init(|| static_probe("seccomp-probe"))
}

/// `tests/sd-notify.c` built static: `sd-notify LINE...` sends the lines as
/// one datagram to `$NOTIFY_SOCKET`, as sd_notify(3) (busybox has no
/// AF_UNIX datagram client). Each probe sits alone in its directory, so
/// that the directory can be bound into a container.
pub fn notify_probe() -> &'static Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE.get_or_init(|| static_probe("sd-notify"))
}

/// The [`notify_probe`], or a SKIP line and None when it cannot be built.
pub fn needs_notify_probe(test: &str) -> Option<PathBuf> {
    match notify_probe() {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            skip(test, &format!("cannot build tests/sd-notify.c: {why}"));
            None
        }
    }
}

/// `tests/NAME.c` built static into `target/test-probes/NAME/NAME`, once.
fn static_probe(name: &str) -> Result<PathBuf, String> {
    let source = workspace_root().join(format!("tests/{name}.c"));
    let dir = workspace_root().join(format!("target/test-probes/{name}"));
    let bin = dir.join(name);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(src)) = (mtime(&bin), mtime(&source)) {
        if built >= src {
            return Ok(bin);
        }
    }
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    // Built beside the final name and renamed: a concurrent test binary
    // sees the old probe or the new one, never half of one.
    let scratch = dir.join(format!(".{name}.{}", std::process::id()));
    let out = Command::new("cc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&scratch)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cc: {e} (apt-get install build-essential)"))?;
    if !out.status.success() {
        let _ = fs::remove_file(&scratch);
        return Err(format!(
            "cc -static {} failed (needs libc6-dev for libc.a):\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::rename(&scratch, &bin)
        .map_err(|e| format!("rename {} -> {}: {e}", scratch.display(), bin.display()))?;
    Ok(bin)
}

/// The probe's host path, or a SKIP line and None when it cannot be built.
pub fn needs_seccomp_probe(test: &str) -> Option<PathBuf> {
    match seccomp_probe() {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            skip(test, &format!("cannot build the seccomp probe: {why}"));
            None
        }
    }
}

impl Ct {
    /// Bind-mounts the probe's directory (read-only) on [`PROBE_DIR_IN_CT`].
    pub fn mount_seccomp_probe(&mut self, probe: &Path) -> &mut Self {
        let dir = probe.parent().unwrap_or(probe).display().to_string();
        self.add_mount(json!({
            "destination": PROBE_DIR_IN_CT,
            "type": "bind",
            "source": dir,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        }))
    }

    /// Adds `caps` (`"CAP_SYS_ADMIN"`, ...) to every capability set the
    /// config lists.
    pub fn add_capabilities(&mut self, caps: &[&str]) -> &mut Self {
        if let Some(sets) = self.config["process"]["capabilities"].as_object_mut() {
            for set in sets.values_mut() {
                if let Some(list) = set.as_array_mut() {
                    for cap in caps {
                        if !list.iter().any(|c| c == cap) {
                            list.push(json!(cap));
                        }
                    }
                }
            }
        }
        self
    }
}

// ---------------------------------------------------------------- notify sockets

/// Every datagram that reaches `sock` within `wait`, each with the time it
/// came; with `until`, the reading ends early after a datagram that has
/// that line (READY=1, STOPPING=1).
pub fn datagrams(
    sock: &std::os::unix::net::UnixDatagram,
    wait: Duration,
    until: Option<&str>,
) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        sock.set_read_timeout(Some(left)).expect("set_read_timeout");
        let Ok(n) = sock.recv(&mut buf) else {
            return got;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = until.is_some_and(|until| msg.lines().any(|l| l == until));
        got.push((Instant::now(), msg));
        if done {
            return got;
        }
    }
}

/// The text of every datagram on `sock` until one has the line `until` or
/// `timeout` passes.
pub fn receive_until(
    sock: &std::os::unix::net::UnixDatagram,
    timeout: Duration,
    until: &str,
) -> Vec<String> {
    datagrams(sock, timeout, Some(until))
        .into_iter()
        .map(|(_, msg)| msg)
        .collect()
}

// ---------------------------------------------------------------- cgroup parents for other tools

/// A cgroup path under the tests' parent (`/cove-test/<unique>`) for a
/// tool that makes cgroups of its own below it (podman's
/// `--cgroup-parent`). On drop every cgroup below it is removed, deepest
/// first, after killing by pid what is left in it (started by this test).
pub struct TestCgroupParent {
    /// Absolute cgroup path.
    pub path: String,
    _lock: CgroupParentLock,
}

impl TestCgroupParent {
    pub fn new(test: &str) -> TestCgroupParent {
        TestCgroupParent {
            path: format!("/{CGROUP_PARENT}/{}", unique_name(test)),
            _lock: CgroupParentLock::shared(),
        }
    }

    /// Every cgroup directory at or below this path, in every hierarchy,
    /// deepest first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = fs::read_dir(dir) {
                for entry in rd.filter_map(|e| e.ok()) {
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        walk(&entry.path(), out);
                    }
                }
            }
            out.push(dir.to_path_buf());
        }
        let mut out = Vec::new();
        for top in cgroup_dirs_for(&self.path) {
            walk(&top, &mut out);
        }
        out
    }
}

impl Drop for TestCgroupParent {
    fn drop(&mut self) {
        for attempt in 0..100 {
            let dirs = self.dirs();
            if dirs.is_empty() {
                return;
            }
            for dir in &dirs {
                for pid in cgroup_pids(dir) {
                    // SAFETY: kill(2) on a pid read from this test's own
                    // cgroup; a stale pid only yields ESRCH.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = fs::remove_dir(dir);
            }
            if attempt == 99 {
                eprintln!("WARNING: could not remove cgroup {}", self.path);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------- namespace holders

/// `unshare FLAGS --propagation private -- sh -c SETUP` (under `set -e`),
/// then `sleep` to hold the new namespaces for the test's daemons and
/// clients to enter (`nsenter --target PID`). Returns once `setup` has
/// run; the caller kills the child by its pid. A failed set-up panics,
/// naming `what` ("the mount namespace for podman"), with unshare's and
/// the shell's errors on the test's stderr.
pub fn spawn_namespace_holder(flags: &[&str], setup: &str, what: &str) -> Child {
    use std::io::{BufRead, BufReader};
    let script = format!("set -e\n{}\necho ready\nexec sleep 3600", setup.trim_end());
    let mut child = Command::new("unshare")
        .args(flags)
        .args(["--propagation", "private", "--", "sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} could not be set up (see stderr)");
    }
    child
}

// ---------------------------------------------------------------- a network namespace as the host

/// A network namespace (`ip netns add`) that plays the host for a test:
/// cove runs in it, bridges, routes and nftables are made in it, and it
/// goes (with all of that) when the guard drops. The machine's own network
/// namespace is never configured.
pub struct HostNetns {
    pub name: String,
    pub path: PathBuf,
    io_dir: TempDir,
}

impl HostNetns {
    /// A fresh namespace with its loopback up, or a SKIP line and None.
    pub fn new(test: &str) -> Option<HostNetns> {
        let name = format!(
            "cvt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let io_dir = TempDir::new(test);
        let ns = HostNetns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
            io_dir,
        };
        let add = ns.run("ip", &["netns", "add", &ns.name]);
        if !add.ok() {
            skip(test, &format!("cannot make a network namespace:\n{add}"));
            return None;
        }
        ns.ip(&["link", "set", "lo", "up"]).assert_ok();
        Some(ns)
    }

    fn run(&self, program: &str, args: &[&str]) -> Out {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // Generous: the VM lane runs emulated on a shared machine.
        run_command(
            Path::new(program),
            &args,
            &self.io_dir.path,
            Duration::from_secs(60),
        )
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Out {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.run("ip", &all)
    }

    /// `ip netns exec NAME ARGS...`: a program in the namespace.
    pub fn exec(&self, args: &[&str]) -> Out {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        self.run("ip", &all)
    }

    /// Makes `command` enter this namespace (network only: the mounts stay
    /// the test's, so cove's overlay mounts are where the test looks).
    pub fn enter_on_spawn(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let ns =
            File::open(&self.path).unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        // SAFETY: setns on a descriptor the closure owns, between fork and
        // exec; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for HostNetns {
    fn drop(&mut self) {
        let del = self.run("ip", &["netns", "del", &self.name]);
        if !del.ok() {
            eprintln!(
                "WARNING: could not remove network namespace {}:\n{del}",
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------- what a checkpointed container shows

/// The numbers in a file inside the container, one a line, read from the
/// host through its init's root (no exec: exec is slow under emulation).
/// A counter daemonised inside a `cove` CT (`sh -c` it with `cove exec`):
/// its parent exits, so the CT's init adopts it (CRIU dumps the tree below
/// the init); 1, 2, 3... into /root/count every 0.2 s.
pub const CT_START_COUNTER: &str = "(setsid sh -c 'exec </dev/null >/dev/null 2>&1; i=0; \
    while :; do i=$((i+1)); echo $i >> /root/count; sleep 0.2; done' &) ; true";

pub fn numbers_in(pid: i32, path: &str) -> Vec<u64> {
    fs::read_to_string(format!("/proc/{pid}/root{path}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `pid (comm) ppid` of pid 1 and its children, as the container's own
/// /proc shows them (read from the host through the init's root).
pub fn tree_of(pid: i32) -> String {
    let dir = format!("/proc/{pid}/root/proc");
    let mut rows: Vec<(u64, String)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n: u64 = e.file_name().to_str()?.parse().ok()?;
                    let stat = fs::read_to_string(e.path().join("stat")).ok()?;
                    let (head, rest) = stat.rsplit_once(')')?;
                    let comm = head.split_once('(')?.1;
                    let ppid: u64 = rest.split_whitespace().nth(1)?.parse().ok()?;
                    (n == 1 || ppid == 1).then(|| (n, format!("{n} ({comm}) {ppid}\n")))
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    rows.into_iter().map(|(_, l)| l).collect()
}

/// What `read` returns once it holds at least `n` numbers (a counter in a
/// container), or after two minutes whatever it holds then.
pub fn wait_numbers(n: usize, read: impl Fn() -> Vec<u64>) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = read();
        if c.len() >= n || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `systemctl is-system-running` in CT `ctid` until it is no longer
/// starting up (or `timeout`); its last answer and how long it took.
pub fn wait_system_settled(env: &CoveEnv, ctid: &str, timeout: Duration) -> (String, Duration) {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < timeout {
        let out = env.cmd(&["exec", ctid, "systemctl", "is-system-running"]);
        last = out.stdout.trim().to_string();
        if !matches!(last.as_str(), "initializing" | "starting" | "") {
            return (last, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (last, t.elapsed())
}

// ---------------------------------------------------------------- a TCP peer in a namespace

/// A TCP connection made from a thread of this test that entered `ns`
/// (setns on that thread only: the socket belongs to the namespace it was
/// made in), with retries while the server comes up.
pub fn tcp_connect_in(ns: &HostNetns, addr: &str) -> std::net::TcpStream {
    let path = ns.path.clone();
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    std::thread::spawn(move || {
        let f = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: setns on an fd we own; it changes this thread's network
        // namespace only, and the thread ends right after.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                Ok(s) => return s,
                Err(e) if Instant::now() >= deadline => panic!("connect to {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    })
    .join()
    .expect("the connecting thread")
}

/// Sends a line on `s` and reads the line that comes back (an echo
/// server); panics on a reset, an early end or `timeout` without one.
#[track_caller]
pub fn tcp_echo(s: &mut std::net::TcpStream, line: &str, timeout: Duration) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\n") {
        match s.read(&mut buf) {
            Ok(0) => panic!("the connection ended before the answer to {line:?} (got {got:?})"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to {line:?} (got {got:?}): {e}"),
        }
    }
    String::from_utf8_lossy(&got).trim_end().to_string()
}
