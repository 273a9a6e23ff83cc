//! A world of its own for a container daemon (containerd, dockerd) that a
//! test starts: a private mount namespace with its own /run, /var/lib, /opt
//! (containerd's opt plugin makes /opt/containerd) and /etc/docker, and a new network namespace with only loopback, held by a
//! `sleep` the test owns. The daemon and every client command run in it
//! (`nsenter`), their state in the test's temp directory; the guard stops
//! the daemon by pid, then ends every process left in the network
//! namespace (all of them started by this test: shims, containers), then
//! the holder, and the cgroup parent guard removes the cgroups.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How long one client command may take (a `docker run` of a fresh image
/// on a busy 2-core host takes a few seconds).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// The image both clients import, and its tag.
pub const IMAGE_TAG: &str = "cove-test/busybox:latest";

pub struct World {
    pub tmp: TempDir,
    holder: Child,
    /// The network namespace's inode (`net:[N]`), to find what is left in it.
    netns: String,
    daemon: Option<Child>,
    pub cgroup: TestCgroupParent,
}

impl World {
    /// The namespaces, a temp directory and a cgroup parent for `test`.
    pub fn new(test: &str) -> World {
        let tmp = TempDir::new(test);
        let etc_docker = tmp.join("etc-docker");
        fs::create_dir_all(&etc_docker).expect("mkdir etc-docker");
        // /etc/docker exists once docker.io is installed; bind only then.
        let setup = format!(
            "mount -t tmpfs -o mode=0755 cove-test-run /run
mount -t tmpfs -o mode=0755 cove-test-varlib /var/lib
mount -t tmpfs -o mode=0755 cove-test-opt /opt
if [ -d /etc/docker ]; then mount --bind {} /etc/docker; fi
ip link set lo up",
            shell_quote(&etc_docker.display().to_string())
        );
        let holder = spawn_namespace_holder(
            &["--mount", "--net"],
            &setup,
            "the namespaces for the daemon",
        );
        let netns = fs::read_link(format!("/proc/{}/ns/net", holder.id()))
            .map(|p| p.display().to_string())
            .expect("read the holder's netns");
        World {
            tmp,
            holder,
            netns,
            daemon: None,
            cgroup: TestCgroupParent::new(test),
        }
    }

    pub fn dir(&self, name: &str) -> String {
        self.tmp.join(name).display().to_string()
    }

    /// nsenter's arguments to run `program` in the world. Without
    /// XDG_RUNTIME_DIR: the world's /run has no /run/user/N, and ctr would
    /// make its temp dirs there.
    fn nsenter_args(&self, program: &str) -> Vec<String> {
        vec![
            "--target".into(),
            self.holder.id().to_string(),
            "--mount".into(),
            "--net".into(),
            "--".into(),
            "env".into(),
            "-u".into(),
            "XDG_RUNTIME_DIR".into(),
            program.into(),
        ]
    }

    /// `PROGRAM ARGS...` in the world, stdin from /dev/null.
    pub fn run(&self, program: &str, args: &[&str]) -> Out {
        let mut full = self.nsenter_args(program);
        full.extend(args.iter().map(|a| a.to_string()));
        run_command(
            Path::new("/usr/bin/nsenter"),
            &full,
            &self.tmp.path,
            CLIENT_TIMEOUT,
        )
    }

    /// `PROGRAM ARGS...` in the world with a terminal on its stdio
    /// (`script`), for clients that insist on one (`ctr run -t`). What the
    /// terminal showed comes back in stdout without CRs and NULs.
    #[allow(dead_code)] // docker needs no terminal for -t
    pub fn run_on_tty(&self, program: &str, args: &[&str]) -> Out {
        let line = std::iter::once(program)
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let mut out = self.run("script", &["-qec", &line, "/dev/null"]);
        out.stdout = out.stdout.replace(['\r', '\0'], "");
        out
    }

    /// Starts the daemon (`PROGRAM ARGS...`, inside the world), its output
    /// in `log`, and waits until `socket` exists.
    ///
    /// The daemon runs in the cgroup [`World::daemon_cgroup`] of every
    /// hierarchy (a shell puts itself there, then execs it), and so do the
    /// shims it starts (neither containerd nor dockerd is told a shim
    /// cgroup): nothing of the world stays in the test process's cgroup.
    pub fn start_daemon(&mut self, program: &str, args: &[String], log: &Path, socket: &Path) {
        let procs = make_cgroup(&self.daemon_cgroup());
        let mut full = self.nsenter_args("sh");
        full.extend([
            "-c".to_string(),
            "for f in $COVE_DAEMON_CGROUPS; do echo $$ > \"$f\" || exit 1; done; exec \"$@\""
                .into(),
            "sh".into(),
            program.into(),
        ]);
        full.extend(args.iter().cloned());
        let log_file = fs::File::create(log).expect("create daemon log");
        let child = Command::new("/usr/bin/nsenter")
            .args(&full)
            .env("COVE_DAEMON_CGROUPS", procs.join(" "))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.exists() {
            let exited = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let text = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                panic!(
                    "{program} did not come up ({}):\n{}",
                    if exited.is_some() {
                        "it exited"
                    } else {
                        "no socket after 60 s"
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's (and its shims') cgroup, below the test's parent.
    pub fn daemon_cgroup(&self) -> String {
        format!("{}/daemon", self.cgroup.path)
    }

    /// The processes of the world (daemon, shims, containers) whose cgroup
    /// in some hierarchy is not below the test's parent, as "PID COMM:
    /// LINE" (none is expected: the supervisor's cgroup must not get them).
    pub fn processes_outside_the_test_cgroup(&self) -> Vec<String> {
        let mut outside = Vec::new();
        for pid in self.processes_in_netns() {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            for line in cgroups.lines() {
                let path = line.splitn(3, ':').nth(2).unwrap_or("");
                if !path.starts_with(&self.cgroup.path) {
                    outside.push(format!("{pid} {}: {line}", comm.trim()));
                }
            }
        }
        outside
    }

    /// Pids of the processes in the world's network namespace but the
    /// holder.
    fn processes_in_netns(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let Ok(rd) = fs::read_dir("/proc") else {
            return pids;
        };
        for entry in rd.filter_map(|e| e.ok()) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid as u32 == self.holder.id() {
                continue;
            }
            let ns = fs::read_link(format!("/proc/{pid}/ns/net"));
            if ns.is_ok_and(|p| p.display().to_string() == self.netns) {
                pids.push(pid);
            }
        }
        pids
    }
}

/// Makes the cgroup `path` in every hierarchy (v1 cpuset levels get their
/// parent's cpus and mems, or no task could join) and returns the
/// cgroup.procs files.
fn make_cgroup(path: &str) -> Vec<String> {
    let mut procs = Vec::new();
    for hierarchy in cgroup_hierarchies() {
        let mut dir = hierarchy.clone();
        for part in path.trim_start_matches('/').split('/') {
            let parent = dir.clone();
            dir = dir.join(part);
            // Another test may make the shared levels (/cove-test) at the
            // same moment: already there is fine.
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("mkdir {}: {e}", dir.display()),
            }
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let Ok(mine) = fs::read_to_string(dir.join(file)) else {
                    continue;
                };
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(file)).unwrap_or_default();
                    let _ = fs::write(dir.join(file), theirs.trim());
                }
            }
        }
        procs.push(dir.join("cgroup.procs").display().to_string());
    }
    procs
}

/// SIGTERM to a child of ours, SIGKILL after `grace`.
fn stop_child(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            stop_child(&mut daemon, Duration::from_secs(15));
        }
        // Shims and containers the daemon left: all were started in this
        // world's network namespace, which only this test made.
        for round in 0..50 {
            let pids = self.processes_in_netns();
            if pids.is_empty() {
                break;
            }
            let signal = if round < 10 {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            };
            for pid in pids {
                // SAFETY: kill(2) on a pid seen in our own network namespace.
                unsafe { libc::kill(pid, signal) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // Image layers may hold read-only directories; root removes them.
        let _ = fs::remove_dir_all(&self.tmp.path);
    }
}

/// What a client test needs before it starts its daemon: root, runc,
/// cove-oci and the rootfs, and each of `programs` (the first of its
/// candidates that exists, in that order). Or a SKIP line and None: in the
/// VM lane, saying `not_in_vm_lane`, or when a program is missing, saying
/// `needs`.
pub fn daemon_prerequisites<const N: usize>(
    test: &str,
    not_in_vm_lane: &str,
    programs: [&[&str]; N],
    needs: &str,
) -> Option<(Env, [PathBuf; N])> {
    let env = prerequisites_with_runc(test)?;
    if in_vm_lane() {
        skip(test, not_in_vm_lane);
        return None;
    }
    let found = programs.map(find_bin);
    if found.iter().any(Option::is_none) {
        skip(test, needs);
        return None;
    }
    Some((env, found.map(|p| p.expect("checked above"))))
}

/// A docker-archive tarball (`docker save` format, which `ctr image
/// import` and `docker load` both read) of `rootfs` as one layer, tagged
/// [`IMAGE_TAG`], written to `dir/image.tar`.
pub fn busybox_image_tar(dir: &Path, rootfs: &Path) -> PathBuf {
    let work = dir.join("image");
    fs::create_dir_all(&work).expect("mkdir image");
    let layer = work.join("layer.tar");
    let tar = |args: &[&str]| {
        let ok = Command::new("tar")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "tar {args:?} failed");
    };
    let layer_s = layer.display().to_string();
    let rootfs_s = rootfs.display().to_string();
    tar(&["--numeric-owner", "-C", &rootfs_s, "-cf", &layer_s, "."]);
    let layer_sum = sha256_of(&layer);
    fs::create_dir_all(work.join(&layer_sum)).expect("mkdir layer dir");
    fs::rename(&layer, work.join(&layer_sum).join("layer.tar")).expect("move layer");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sum}")]},
    });
    let config_path = work.join("config.json");
    fs::write(&config_path, config.to_string()).expect("write config");
    let config_sum = sha256_of(&config_path);
    fs::rename(&config_path, work.join(format!("{config_sum}.json"))).expect("move config");
    let manifest = serde_json::json!([{
        "Config": format!("{config_sum}.json"),
        "RepoTags": [IMAGE_TAG],
        "Layers": [format!("{layer_sum}/layer.tar")],
    }]);
    fs::write(work.join("manifest.json"), manifest.to_string()).expect("write manifest");
    let image = dir.join("image.tar");
    let image_s = image.display().to_string();
    let work_s = work.display().to_string();
    tar(&["-C", &work_s, "-cf", &image_s, "."]);
    let _ = fs::remove_dir_all(&work);
    image
}

/// The first of `candidates` that exists.
pub fn find_bin(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Compares what each runtime showed, runc first, and returns cove-oci's.
#[track_caller]
pub fn same_as_runc(test: &str, runc_seen: &str, ours: &str) -> String {
    assert_same_as_runc(test, runc_seen, ours, "");
    ours.to_string()
}
