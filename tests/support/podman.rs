//! podman for the tests: `podman --runtime <runc or cove-oci>` (or a
//! runtime named in a containers.conf of the test's), in a world of its own
//! so that a test leaves nothing on the host: its storage in a temp
//! directory (`--root`), its run root and tmpdir on the namespace's own
//! /run (below), the vfs driver (no overlay mounts), cgroupfs (no systemd
//! here) with every cgroup below a `--cgroup-parent` of the test's, a file
//! events backend, no network, and a private mount namespace in which /run,
//! /var/lib and /etc/containers are the test's own: podman keeps a blob
//! cache in /var/lib/containers and netavark's files in /run/containers and
//! /etc/containers/networks whatever its flags say, and the runtimes keep
//! their state in /run/runc and /run/cove-oci (podman does not pass
//! `--root` to them).
//!
//! Included by the podman test files with
//! `#[path = "support/podman.rs"] mod podman;` next to `mod support;`.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::*;

pub const IMAGE: &str = "cove-test-busybox";
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);
/// podman's default ulimits are above this host's hard limits (no
/// CAP_SYS_RESOURCE): runc fails on them too.
pub const ULIMITS: [&str; 4] = [
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

/// How podman is told which runtime to use.
#[derive(Clone, Debug)]
pub enum Runtime {
    /// `--runtime PATH`
    Path(PathBuf),
    /// `CONTAINERS_CONF=FILE` naming the runtime in `[engine] runtime`.
    Conf(PathBuf),
}

/// One test's podman: its directories, the process holding its private
/// mount namespace, its cgroup parent.
pub struct Podman {
    pub bin: PathBuf,
    pub tmp: TempDir,
    /// `unshare --mount ... sleep`: every podman command enters its mount
    /// namespace (conmon, which podman leaves running, lives there too).
    holder: Child,
    pub cgroup: TestCgroupParent,
    pub runc: PathBuf,
    pub cove_oci: PathBuf,
    /// containers.conf files written by the test: the clean-up removes
    /// containers through them too (podman needs a container's runtime by
    /// the name it was made with).
    confs: RefCell<Vec<PathBuf>>,
}

impl Podman {
    /// Root, podman, runc, cove-oci and the busybox rootfs, imported as
    /// [`IMAGE`]; or a SKIP line and None.
    pub fn new(test: &str) -> Option<Podman> {
        let env = prerequisites_with_runc(test)?;
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
        let holder = spawn_podman_namespace(&etc);
        let podman = Podman {
            bin,
            tmp,
            holder,
            cgroup: TestCgroupParent::new(test),
            runc: env.runc.clone()?,
            cove_oci: env.bin.clone(),
            confs: RefCell::new(Vec::new()),
        };
        // The tarball is made out here: the namespace's own /run hides
        // a rootfs kept below /run (the VM lane keeps it there).
        let tarball = podman.tmp.join("rootfs.tar");
        let tarred = Command::new("tar")
            .arg("-C")
            .arg(&env.rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(tarred, "tar of {} failed", env.rootfs.display());
        let tarball = tarball.display().to_string();
        podman
            .podman(&podman.runc, &["import", &tarball, IMAGE])
            .assert_ok();
        let _ = fs::remove_file(&tarball);
        Some(podman)
    }

    /// [`Podman::new`], or a SKIP line in the VM lane. There podman,
    /// conmon and both runtimes run under software emulation at seconds per
    /// podman command (podman_runtime's three tests took 264 s; podman_cli's
    /// detached lifecycle alone did not end within the lane's 600 s per
    /// binary), so the lane runs only podman_cli's limits test (150 s), what
    /// differs most on a pure cgroup v2 host.
    pub fn new_host_lane(test: &str) -> Option<Podman> {
        if in_vm_lane() {
            skip(
                test,
                "podman under the VM lane's emulation takes seconds per command: the lane runs \
                 only podman_cli's limits test, the host lane runs this one",
            );
            return None;
        }
        Podman::new(test)
    }

    pub fn dir(&self, name: &str) -> String {
        self.tmp.join(name).display().to_string()
    }

    /// `podman` and the flags that keep it in this test's directories.
    pub fn global_flags(&self) -> Vec<String> {
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
    pub fn in_namespace(&self, program: &str, args: &[&str]) -> Out {
        run_command(
            Path::new("/usr/bin/nsenter"),
            &self.nsenter_args(program, args),
            &self.tmp.path,
            PODMAN_TIMEOUT,
        )
    }

    /// The arguments of /usr/bin/nsenter that run `PROGRAM ARGS...` inside
    /// the private mount namespace (for a run on another thread).
    pub fn nsenter_args(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut full = vec![
            "--target".to_string(),
            self.holder.id().to_string(),
            "--mount".into(),
            "--".into(),
            program.into(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        full
    }

    /// `podman --runtime RUNTIME ARGS...`
    pub fn podman(&self, runtime: &Path, args: &[&str]) -> Out {
        self.podman_with(&Runtime::Path(runtime.to_path_buf()), args)
    }

    /// `podman ARGS...` with the runtime given as `runtime` says.
    pub fn podman_with(&self, runtime: &Runtime, args: &[&str]) -> Out {
        let flags = self.global_flags();
        let bin = self.bin.display().to_string();
        let mut full: Vec<String> = Vec::new();
        match runtime {
            Runtime::Path(path) => {
                full.push(bin);
                full.extend(flags[1..].iter().cloned());
                full.extend(["--runtime".into(), path.display().to_string()]);
            }
            Runtime::Conf(conf) => {
                full.push(format!("CONTAINERS_CONF={}", conf.display()));
                full.push(bin);
                full.extend(flags[1..].iter().cloned());
            }
        }
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.in_namespace("/usr/bin/env", &full)
    }

    /// Writes a containers.conf (for `CONTAINERS_CONF`) whose default
    /// runtime is `name` at `path`, listed as writing runc's JSON log
    /// (`runtime_supports_json`: podman then passes `--log FILE
    /// --log-format json` and reads the runtime's error from there).
    pub fn write_containers_conf(&self, name: &str, path: &Path) -> PathBuf {
        let conf = self.tmp.join(&format!("containers-{name}.conf"));
        let text = format!(
            "[engine]\n\
             runtime = \"{name}\"\n\
             runtime_supports_json = [\"crun\", \"runc\", \"{name}\"]\n\
             \n\
             [engine.runtimes]\n\
             {name} = [\"{}\"]\n",
            path.display()
        );
        fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        self.confs.borrow_mut().push(conf.clone());
        conf
    }

    /// `podman run` options every container of the test gets.
    pub fn run_options(&self) -> Vec<String> {
        let mut opts = vec![
            "--network".to_string(),
            "none".into(),
            "--cgroup-parent".into(),
            self.cgroup.path.clone(),
        ];
        opts.extend(ULIMITS.iter().map(|s| s.to_string()));
        opts
    }

    /// `podman run FLAGS OPTIONS EXTRA IMAGE COMMAND...` (FLAGS: `--rm`,
    /// `-d`, `--name N`...).
    pub fn run_with(
        &self,
        runtime: &Runtime,
        flags: &[&str],
        extra: &[&str],
        command: &[&str],
    ) -> Out {
        let opts = self.run_options();
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend(opts.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.podman_with(runtime, &args)
    }

    /// `podman run --rm OPTIONS EXTRA IMAGE COMMAND...`
    pub fn run_rm(&self, runtime: &Path, extra: &[&str], command: &[&str]) -> Out {
        self.run_with(
            &Runtime::Path(runtime.to_path_buf()),
            &["--rm"],
            extra,
            command,
        )
    }

    /// The runtimes to compare, reference first.
    pub fn runtimes(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("runc", self.runc.clone()),
            ("cove-oci", self.cove_oci.clone()),
        ]
    }

    /// Plays `scenario` with runc, then with cove-oci (each given a label
    /// and its runtime), and panics with a diff unless both observed the
    /// same. Returns what cove-oci's run observed.
    pub fn compare(&self, test: &str, scenario: impl Fn(&str, &Path) -> String) -> String {
        let seen: Vec<(String, String)> = self
            .runtimes()
            .into_iter()
            .map(|(label, runtime)| (label.to_string(), scenario(label, &runtime)))
            .collect();
        same_under_both(test, &seen)
    }

    /// The container cgroups (`libpod-*`) podman left below the parent.
    pub fn container_cgroups_left(&self) -> Vec<PathBuf> {
        self.cgroup
            .dirs()
            .into_iter()
            .filter(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libpod-"))
            })
            .collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let runc = self.runc.clone();
        for conf in self.confs.borrow().iter() {
            let _ = self.podman_with(
                &Runtime::Conf(conf.clone()),
                &["rm", "--all", "--force", "--time", "0"],
            );
        }
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
fn spawn_podman_namespace(etc_containers: &Path) -> Child {
    let setup = format!(
        "mount -t tmpfs -o mode=0755 cove-test-run /run
mount -t tmpfs -o mode=0755 cove-test-varlib /var/lib
mount --bind {} /etc/containers",
        shell_quote(&etc_containers.display().to_string())
    );
    spawn_namespace_holder(&["--mount"], &setup, "the mount namespace for podman")
}

/// Output and exit code of each runtime, compared line by line with runc's.
pub fn same_under_both(test: &str, seen: &[(String, String)]) -> String {
    let (runc_label, runc_seen) = &seen[0];
    let (_, ours) = &seen[1];
    assert_eq!(runc_label, "runc");
    assert_same_as_runc(test, runc_seen, ours, "");
    ours.clone()
}
