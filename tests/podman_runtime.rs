//! podman drives cove-oci unmodified: `podman --runtime <cove-oci>` runs a
//! container under podman's default seccomp profile (containers-common's
//! /usr/share/containers/seccomp.json, which podman turns into the OCI form
//! in each config.json), and `run -d`, `exec`, `stop` and `rm` work. Every
//! scenario is played with `--runtime runc` first and must look the same.
//!
//! podman gets a world of its own, so that the test leaves nothing on the
//! host: its storage in a temp directory (`--root`), its run root and
//! tmpdir on the namespace's own /run (below), the vfs driver (no overlay mounts), cgroupfs
//! (no systemd here) with every cgroup below a `--cgroup-parent` of the
//! test's, a file events backend, no network, and a private mount
//! namespace in which /run, /var/lib and /etc/containers are the test's
//! own: podman keeps a blob cache in /var/lib/containers and netavark's
//! files in /run/containers and /etc/containers/networks whatever its
//! flags say, and the runtimes keep their state in /run/runc and
//! /run/cove-oci (podman does not pass `--root` to them).

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const IMAGE: &str = "cove-test-busybox";
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);
/// podman's default ulimits are above this host's hard limits (no
/// CAP_SYS_RESOURCE): runc fails on them too.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn podman_bin() -> Option<PathBuf> {
    ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// One test's podman: its directories, the process holding its private
/// mount namespace, its cgroup parent.
struct Podman {
    bin: PathBuf,
    tmp: TempDir,
    /// `unshare --mount ... sleep`: every podman command enters its mount
    /// namespace (conmon, which podman leaves running, lives there too).
    holder: Child,
    cgroup: TestCgroupParent,
    runc: PathBuf,
    cove_oci: PathBuf,
}

impl Podman {
    /// Root, podman, runc, cove-oci and the busybox rootfs, imported as
    /// [`IMAGE`]; or a SKIP line and None.
    fn new(test: &str) -> Option<Podman> {
        let env = prerequisites_with_runc(test)?;
        if in_vm_lane() {
            // Seen: under the VM lane's emulated pure-v2 guest podman's run
            // exits 127 for both checks; not investigated yet (the host lane
            // covers podman on a hybrid host).
            skip(test, "podman is not exercised in the VM lane yet");
            return None;
        }
        let Some(bin) = podman_bin() else {
            skip(test, "needs podman (apt-get install podman)");
            return None;
        };
        if !Path::new("/etc/containers").is_dir() {
            skip(
                test,
                "podman's /etc/containers is missing (apt-get install golang-github-containers-common)",
            );
            return None;
        }
        let tmp = TempDir::new(test);
        let etc = tmp.join("etc-containers");
        let copied = Command::new("cp")
            .arg("-a")
            .arg("/etc/containers/.")
            .arg(&etc)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(copied, "cp -a /etc/containers {}", etc.display());
        let holder = spawn_namespace_holder(&etc);
        let podman = Podman {
            bin,
            tmp,
            holder,
            cgroup: TestCgroupParent::new(test),
            runc: env.runc.clone()?,
            cove_oci: env.bin.clone(),
        };
        let import = format!(
            "tar -C {} -c . | {} import - {IMAGE}",
            shell_quote(&env.rootfs.display().to_string()),
            podman.global_flags().join(" ")
        );
        podman.in_namespace("sh", &["-c", &import]).assert_ok();
        Some(podman)
    }

    fn dir(&self, name: &str) -> String {
        self.tmp.join(name).display().to_string()
    }

    /// `podman` and the flags that keep it in this test's directories.
    fn global_flags(&self) -> Vec<String> {
        vec![
            shell_quote(&self.bin.display().to_string()),
            "--root".into(),
            self.dir("root"),
            // podman wants a run root under 50 characters; /run is the
            // namespace's own tmpfs, gone with it.
            "--runroot".into(),
            "/run/podman".into(),
            "--tmpdir".into(),
            "/run/libpod".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    /// `PROGRAM ARGS...` inside the private mount namespace.
    fn in_namespace(&self, program: &str, args: &[&str]) -> Out {
        let mut full = vec![
            "--target".to_string(),
            self.holder.id().to_string(),
            "--mount".into(),
            "--".into(),
            program.into(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run_command(
            Path::new("/usr/bin/nsenter"),
            &full,
            &self.tmp.path,
            PODMAN_TIMEOUT,
        )
    }

    /// `podman --runtime RUNTIME ARGS...`
    fn podman(&self, runtime: &Path, args: &[&str]) -> Out {
        let flags = self.global_flags();
        let runtime = runtime.display().to_string();
        let mut full: Vec<&str> = flags[1..].iter().map(String::as_str).collect();
        full.extend(["--runtime", runtime.as_str()]);
        full.extend_from_slice(args);
        let bin = self.bin.display().to_string();
        self.in_namespace(&bin, &full)
    }

    /// `podman run` options every container of the test gets.
    fn run_options(&self) -> Vec<String> {
        let mut opts = vec![
            "--network".to_string(),
            "none".into(),
            "--cgroup-parent".into(),
            self.cgroup.path.clone(),
        ];
        opts.extend(ULIMITS.iter().map(|s| s.to_string()));
        opts
    }

    /// `podman run --rm OPTIONS EXTRA IMAGE COMMAND...`
    fn run_rm(&self, runtime: &Path, extra: &[&str], command: &[&str]) -> Out {
        let opts = self.run_options();
        let mut args = vec!["run", "--rm"];
        args.extend(opts.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.podman(runtime, &args)
    }

    /// The runtimes to compare, reference first.
    fn runtimes(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("runc", self.runc.clone()),
            ("cove-oci", self.cove_oci.clone()),
        ]
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let runc = self.runc.clone();
        let _ = self.podman(&runc, &["rm", "--all", "--force", "--time", "0"]);
        let _ = self.podman(&runc, &["rmi", "--all", "--force"]);
        // Our own child: kill it by pid. Its namespace goes with the last
        // process in it (conmon exits once its container is removed).
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // vfs layers may hold read-only directories; root removes them.
        let _ = fs::remove_dir_all(&self.tmp.path);
    }
}

/// `unshare --mount --propagation private` with the test's own /run,
/// /var/lib and /etc/containers, then `sleep` to hold the namespace.
fn spawn_namespace_holder(etc_containers: &Path) -> Child {
    let script = format!(
        "set -e
mount -t tmpfs -o mode=0755 cove-test-run /run
mount -t tmpfs -o mode=0755 cove-test-varlib /var/lib
mount --bind {} /etc/containers
echo ready
exec sleep 3600",
        shell_quote(&etc_containers.display().to_string())
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
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
        panic!("the mount namespace for podman could not be set up (see stderr)");
    }
    child
}

/// Output and exit code of each runtime, compared line by line with runc's.
fn same_under_both(test: &str, seen: &[(String, String)]) -> String {
    let (runc_label, runc_seen) = &seen[0];
    let (_, ours) = &seen[1];
    assert_eq!(runc_label, "runc");
    assert_same_as_runc(test, runc_seen, ours, "");
    ours.clone()
}

#[test]
fn podman_default_seccomp_profile_applies_under_cove_oci_as_under_runc() {
    let test = "podman_default_seccomp_profile_applies_under_cove_oci_as_under_runc";
    let Some(podman) = Podman::new(test) else {
        return;
    };
    let script = "grep Seccomp /proc/self/status; mkdir /tmp/x && echo ok";
    let seen: Vec<(String, String)> = podman
        .runtimes()
        .into_iter()
        .map(|(label, runtime)| {
            let out = podman.run_rm(&runtime, &[], &["sh", "-c", script]);
            (label.to_string(), observed(&out))
        })
        .collect();
    let ours = same_under_both(test, &seen);
    assert_eq!(
        ours, "Seccomp:\t2\nSeccomp_filters:\t1\nok\nexit code: 0\n",
        "podman's default profile is not applied as expected"
    );
}

#[test]
fn podman_default_profile_gives_the_probe_the_same_answers_as_runc() {
    // What podman's profile lets through and what it refuses, call by
    // call (podman's default capabilities, no CAP_SYS_ADMIN).
    let test = "podman_default_profile_gives_the_probe_the_same_answers_as_runc";
    let Some(probe) = needs_seccomp_probe(test) else {
        return;
    };
    let Some(podman) = Podman::new(test) else {
        return;
    };
    let volume = format!("{}:/probe:ro", probe.parent().unwrap_or(&probe).display());
    let probes = [
        "mkdir",
        "mkdir-i386",
        "chmod:04755",
        "unshare:0x10000000",
        "sethostname",
        "ptrace",
        "personality:0xffffffff",
        "personality:0x10",
        "mount",
        "open_by_handle_at",
        "kexec_load",
    ];
    let seen: Vec<(String, String)> = podman
        .runtimes()
        .into_iter()
        .map(|(label, runtime)| {
            let mut command = vec!["/probe/seccomp-probe"];
            command.extend_from_slice(&probes);
            let out = podman.run_rm(&runtime, &["-v", &volume], &command);
            (label.to_string(), observed(&out))
        })
        .collect();
    let ours = same_under_both(test, &seen);
    // The profile's own answers, not the capabilities': personality
    // outside the values it allows gets its defaultErrnoRet (ENOSYS in
    // containers-common's profile), kexec_load the EPERM of its explicit
    // rule (CAP_SYS_BOOT would not be checked before the filter).
    assert!(ours.contains("personality:0x10: errno ENOSYS\n"), "{ours}");
    assert!(ours.contains("personality:0xffffffff: ok\n"), "{ours}");
    assert!(ours.contains("kexec_load: errno EPERM\n"), "{ours}");
    assert!(ours.contains("mkdir: ok\n"), "{ours}");
    assert!(ours.ends_with("exit code: 0\n"), "{ours}");
}

#[test]
fn podman_run_detached_exec_stop_rm_through_cove_oci_as_runc() {
    let test = "podman_run_detached_exec_stop_rm_through_cove_oci_as_runc";
    let Some(podman) = Podman::new(test) else {
        return;
    };
    // sh as PID 1 only gets the signals it handles: the trap makes `podman
    // stop` (SIGTERM through the runtime's `kill`) end it with status 7.
    let main = "trap 'exit 7' TERM; sleep 60 & wait";
    let scenario = |label: &str, runtime: &Path| -> String {
        let name = format!("{}-{label}", unique_name("pm"));
        let opts = podman.run_options();
        let mut args = vec!["run", "-d", "--name", name.as_str()];
        args.extend(opts.iter().map(String::as_str));
        args.extend([IMAGE, "sh", "-c", main]);
        let mut seen = String::new();
        let run = podman.podman(runtime, &args);
        run.assert_ok();
        let exec = podman.podman(
            runtime,
            &[
                "exec",
                &name,
                "sh",
                "-c",
                "grep '^Seccomp:' /proc/self/status; mkdir /tmp/y && echo exec ok; echo pid1 $(cat /proc/1/comm)",
            ],
        );
        seen.push_str(&format!("exec:\n{}", observed(&exec)));
        let status = podman.podman(
            runtime,
            &["inspect", "--format", "{{.State.Status}}", &name],
        );
        seen.push_str(&format!("status before stop: {}", status.stdout));
        let stop = podman.podman(runtime, &["stop", "--time", "10", &name]);
        seen.push_str(&format!("stop exit code: {}\n", stop.code));
        let exited = podman.podman(
            runtime,
            &[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &name,
            ],
        );
        seen.push_str(&format!("after stop: {}", exited.stdout));
        let rm = podman.podman(runtime, &["rm", &name]);
        seen.push_str(&format!("rm exit code: {}\n", rm.code));
        let left = podman.podman(runtime, &["ps", "--all", "--quiet"]);
        seen.push_str(&format!(
            "containers left: {}\n",
            left.stdout.lines().count()
        ));
        seen
    };
    let seen: Vec<(String, String)> = podman
        .runtimes()
        .into_iter()
        .map(|(label, runtime)| (label.to_string(), scenario(label, &runtime)))
        .collect();
    let ours = same_under_both(test, &seen);
    assert_eq!(
        ours,
        "exec:\nSeccomp:\t2\nexec ok\npid1 sh\nexit code: 0\n\
         status before stop: running\n\
         stop exit code: 0\n\
         after stop: exited 7\n\
         rm exit code: 0\n\
         containers left: 0\n"
    );
    // Everything podman made below our cgroup parent is gone but conmon's
    // own cgroup (podman leaves it; the guard removes it).
    let left: Vec<PathBuf> = podman
        .cgroup
        .dirs()
        .into_iter()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libpod-"))
        })
        .collect();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}

/// Every datagram that reaches `sock` within `wait`, with when it came
/// (since `since`).
fn datagrams(
    sock: &std::os::unix::net::UnixDatagram,
    wait: Duration,
    since: std::time::Instant,
) -> Vec<(Duration, String)> {
    let deadline = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        sock.set_read_timeout(Some(left)).expect("set_read_timeout");
        match sock.recv(&mut buf) {
            Ok(n) => got.push((
                since.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => return got,
        }
    }
}

/// `podman run --sdnotify=container`: the container's process says
/// READY=1 after a while, and podman's manager (the test's socket) hears
/// READY=1 only then, with MAINPID= conmon's pid. Played with runc first;
/// cove-oci must match. podman 4.3 (Debian 12) proxies the socket into the
/// container itself and does not hand NOTIFY_SOCKET to the runtime (the
/// test records whether it did); cove-oci's own relay, for podman versions
/// and managers that do, is tested against runc in tests/oci_lifecycle.rs.
#[test]
fn podman_sdnotify_container_relays_ready_through_cove_oci_as_runc() {
    let test = "podman_sdnotify_container_relays_ready_through_cove_oci_as_runc";
    let Ok(probe) = notify_probe().clone() else {
        skip(
            test,
            &format!("cannot build tests/sd-notify.c: {:?}", notify_probe()),
        );
        return;
    };
    let Some(podman) = Podman::new(test) else {
        return;
    };
    let volume = format!("{}:/probe:ro", probe.parent().unwrap_or(&probe).display());
    let main = "sleep 2; /probe/sd-notify READY=1 STATUS=serving; exec sleep 60";
    let scenario = |label: &str, runtime: &Path| -> String {
        let name = format!("{}-{label}", unique_name("sdn"));
        let sock_path = podman.tmp.join(&format!("notify-{label}.sock"));
        let _ = fs::remove_file(&sock_path);
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
        let opts = podman.run_options();
        let flags = podman.global_flags();
        let runtime = runtime.display().to_string();
        let mut args: Vec<String> = vec![format!("NOTIFY_SOCKET={}", sock_path.display())];
        args.push(podman.bin.display().to_string());
        args.extend(flags[1..].iter().cloned());
        args.extend(["--runtime".to_string(), runtime]);
        args.extend(
            [
                "run",
                "-d",
                "--sdnotify=container",
                "--name",
                &name,
                "-v",
                &volume,
            ]
            .map(String::from),
        );
        args.extend(opts);
        args.extend([IMAGE, "sh", "-c", main].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = std::time::Instant::now();
        let run = podman.in_namespace("env", &args);
        let took = t.elapsed();
        // podman 4.3's `run -d` returns before READY=1; it comes ~2 s
        // after the start.
        let got = datagrams(&sock, Duration::from_secs(4), t);
        let ready_after = got
            .iter()
            .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
            .map(|(at, _)| *at)
            .unwrap_or_default();
        let pids = podman.podman(
            Path::new(&podman.runc),
            &[
                "inspect",
                "--format",
                "{{.State.Pid}} {{.State.ConmonPid}}",
                &name,
            ],
        );
        // Whether podman handed NOTIFY_SOCKET on to the runtime: then the
        // runtime made the notify directory in its state directory.
        let id = podman.podman(
            Path::new(&podman.runc),
            &["inspect", "--format", "{{.Id}}", &name],
        );
        let state_root = if label == "runc" {
            "/run/runc"
        } else {
            "/run/cove-oci"
        };
        let runtime_notify = podman.in_namespace(
            "ls",
            &[&format!("{state_root}/{}/notify", id.stdout.trim())],
        );
        let mut pid_names = std::collections::HashMap::new();
        let mut it = pids.stdout.split_whitespace();
        if let (Some(ctr), Some(conmon)) = (it.next(), it.next()) {
            pid_names.insert(format!("MAINPID={ctr}"), "MAINPID=<the container's pid>");
            pid_names.insert(format!("MAINPID={conmon}"), "MAINPID=<conmon's pid>");
        }
        let mut lines: Vec<String> = got
            .iter()
            .flat_map(|(_, m)| m.lines().map(str::to_string))
            .map(|l| pid_names.get(&l).map(|s| s.to_string()).unwrap_or(l))
            .collect();
        lines.sort();
        lines.dedup();
        let _ = podman.podman(
            Path::new(&podman.runc),
            &["rm", "--force", "--time", "0", &name],
        );
        format!(
            "run exit code: {}\nrun -d waited for READY=1: {}\nthe manager's socket got: {lines:?}\n\
             READY=1 came after the container said it: {}\n\
             the runtime got NOTIFY_SOCKET (made its notify directory): {}\n",
            run.code,
            took >= Duration::from_millis(1800),
            ready_after >= Duration::from_millis(1800),
            runtime_notify.code == 0,
        )
    };
    let seen: Vec<(String, String)> = podman
        .runtimes()
        .into_iter()
        .map(|(label, runtime)| (label.to_string(), scenario(label, &runtime)))
        .collect();
    let ours = same_under_both(test, &seen);
    assert!(ours.contains("run exit code: 0\n"), "{ours}");
    assert!(ours.contains(r#""READY=1""#), "{ours}");
    assert!(
        ours.contains("READY=1 came after the container said it: true"),
        "{ours}"
    );
}
