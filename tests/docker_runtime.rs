//! docker drives cove-oci unmodified: dockerd with `--add-runtime
//! cove=<cove-oci>` or daemon.json's "runtimes" (the runc v2 shim of the containerd that dockerd runs,
//! with BinaryName cove-oci), an image from `docker load` of a
//! docker-archive tarball of the busybox rootfs, then `docker run
//! --runtime cove` (in the foreground, -d, -t), `docker exec` (also -t),
//! `stats --no-stream`, `stop`, and starts that fail, whose error text and
//! exit code come from the runtime's JSON log. Every scenario is played
//! with `--runtime runc` first, on the same dockerd, and must look the
//! same.
//!
//! Each test starts its own dockerd (client_world): data root, exec root,
//! pidfile, socket and config file of its own, inside a mount and network
//! namespace of its own, with no bridge and no iptables rules
//! (`--bridge=none --iptables=false --ip6tables=false`); containers run
//! with `--network none`, their cgroups below the test's /cove-test parent
//! (`--cgroup-parent`, cgroupfs driver).

mod client_world;
mod support;

use std::path::PathBuf;

use client_world::*;
use support::*;

/// This host's hard limits are what dockerd inherits: docker's defaults
/// (no default-ulimits) work; these are the values podman needs, checked
/// here too.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

struct Docker {
    world: World,
    docker: PathBuf,
    host: String,
}

impl Docker {
    /// Root, runc, cove-oci, dockerd and its docker client; dockerd started
    /// with cove-oci as runtime "cove" and the image loaded. Or a SKIP line
    /// and None.
    fn new(test: &str) -> Option<Docker> {
        Docker::start(test, RuntimeFrom::Flag)
    }

    fn start(test: &str, runtime_from: RuntimeFrom) -> Option<Docker> {
        // Seen in the VM lane's guest: its kernel has AppArmor enabled and
        // the guest has no apparmor_parser, so dockerd refuses every
        // container, runc's too; the host lane covers docker. The client is
        // docker.io's own (/usr/local/bin may hold another one).
        let (env, [dockerd, docker, _containerd]) = daemon_prerequisites(
            test,
            "dockerd cannot start containers in the VM guest (AppArmor enabled, no apparmor_parser)",
            [
                &["/usr/sbin/dockerd", "/usr/bin/dockerd"],
                &["/usr/bin/docker"],
                &["/usr/bin/containerd"],
            ],
            "needs dockerd, its docker client and containerd (apt-get install docker.io)",
        )?;
        let mut world = World::new(test);
        let socket = world.tmp.join("docker.sock");
        let config = world.tmp.join("daemon.json");
        let daemon_json = match runtime_from {
            RuntimeFrom::Flag => serde_json::json!({}),
            RuntimeFrom::DaemonJson => serde_json::json!({
                "runtimes": {"cove": {"path": env.bin.display().to_string()}}
            }),
        };
        write_file(&config, &format!("{daemon_json:#}\n")).expect("write daemon.json");
        let args: Vec<String> = [
            "--config-file".to_string(),
            config.display().to_string(),
            "--data-root".into(),
            world.dir("data"),
            // The world's own /run: unix socket paths below a long temp
            // directory would pass the 108-byte limit.
            "--exec-root".into(),
            "/run/docker".into(),
            "--pidfile".into(),
            world.dir("dockerd.pid"),
            "--host".into(),
            format!("unix://{}", socket.display()),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip6tables=false".into(),
            "--ip-masq=false".into(),
            "--userland-proxy=false".into(),
            "--storage-driver".into(),
            "vfs".into(),
            "--exec-opt".into(),
            "native.cgroupdriver=cgroupfs".into(),
            "--cgroup-parent".into(),
            world.cgroup.path.clone(),
        ]
        .into();
        let mut args = args;
        if let RuntimeFrom::Flag = runtime_from {
            args.extend([
                "--add-runtime".into(),
                format!("cove={}", env.bin.display()),
            ]);
        }
        let log = world.tmp.join("dockerd.log");
        world.start_daemon(&dockerd.display().to_string(), &args, &log, &socket);
        let this = Docker {
            host: format!("unix://{}", socket.display()),
            world,
            docker,
        };
        let image = busybox_image_tar(&this.world.tmp.path, &env.rootfs);
        this.docker(&["load", "--input", &image.display().to_string()])
            .assert_ok();
        Some(this)
    }

    /// `docker --config DIR --host SOCKET ARGS...`
    fn docker(&self, args: &[&str]) -> Out {
        let config = self.world.dir("client");
        let mut full = vec!["--config", config.as_str(), "--host", self.host.as_str()];
        full.extend_from_slice(args);
        self.world.run(&self.docker.display().to_string(), &full)
    }

    /// `docker run --runtime RUNTIME --network none FLAGS IMAGE COMMAND...`
    fn run(&self, runtime: &str, flags: &[&str], command: &[&str]) -> Out {
        let mut args = vec!["run", "--runtime", runtime, "--network", "none"];
        args.extend_from_slice(flags);
        args.push(IMAGE_TAG);
        args.extend_from_slice(command);
        self.docker(&args)
    }

    /// Container cgroups (named by a 64-hex id) left below the test's
    /// parent, in any hierarchy.
    fn container_cgroups_left(&self) -> usize {
        self.world
            .cgroup
            .dirs()
            .into_iter()
            .filter(|d| {
                d.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit())
                })
            })
            .count()
    }
}

/// Where dockerd learns of the runtime "cove".
enum RuntimeFrom {
    /// `--add-runtime cove=PATH`
    Flag,
    /// `"runtimes": {"cove": {"path": PATH}}` in daemon.json
    DaemonJson,
}

const RUNTIMES: [&str; 2] = ["runc", "cove"];

/// A 64-hex container id in a cgroup path, made comparable.
fn without_ids(text: &str, parent: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix(parent) {
            Some(rest) if rest.len() == 65 && rest[1..].chars().all(|c| c.is_ascii_hexdigit()) => {
                "<parent>/<id>".to_string()
            }
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect()
}

#[test]
fn docker_run_in_the_foreground_sees_what_it_sees_under_runc() {
    let test = "docker_run_in_the_foreground_sees_what_it_sees_under_runc";
    let Some(docker) = Docker::new(test) else {
        return;
    };
    let script = "echo hello; id; cut -d: -f3 /proc/self/cgroup | sort -u; \
                  echo nofile $(ulimit -Sn):$(ulimit -Hn) nproc $(ulimit -Su):$(ulimit -Hu); \
                  grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                  cut -d' ' -f2,3 /proc/self/mounts; ls /; hostname | wc -c; exit 3";
    let mut seen = Vec::new();
    for runtime in RUNTIMES {
        let out = docker.run(
            runtime,
            &[&["--rm"][..], &ULIMITS[..]].concat(),
            &["sh", "-c", script],
        );
        let mut s = without_ids(&observed(&out), &docker.world.cgroup.path);
        // docker's defaults: no --ulimit.
        let out = docker.run(runtime, &["--rm"], &["sh", "-c", "echo default limits ok"]);
        s.push_str(&observed(&out));
        let left = docker.docker(&["ps", "--all", "--quiet"]);
        s.push_str(&format!(
            "containers left: {}\ncgroups left: {}\n",
            left.stdout.lines().count(),
            docker.container_cgroups_left()
        ));
        seen.push(s);
    }
    let ours = same_as_runc(test, &seen[0], &seen[1]);
    for want in [
        "hello\n",
        "uid=0(root) gid=0(root)",
        // On a pure cgroup v2 host docker gives a container a cgroup
        // namespace of its own.
        if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "\n/\n"
        } else {
            "\n<parent>/<id>\n"
        },
        "nofile 1024:1024 nproc 1024:1024\n",
        // docker's default seccomp profile, applied by the runtime.
        "Seccomp:\t2\n",
        "exit code: 3\n",
        "default limits ok\nexit code: 0\n",
        "containers left: 0\ncgroups left: 0\n",
    ] {
        assert!(ours.contains(want), "no {want:?} in:\n{ours}");
    }
}

#[test]
fn docker_detached_exec_stats_stop_as_under_runc() {
    let test = "docker_detached_exec_stats_stop_as_under_runc";
    let Some(docker) = Docker::new(test) else {
        return;
    };
    // sh as PID 1 only gets the signals it handles: the trap makes `docker
    // stop` (SIGTERM through the runtime's `kill`) end it with status 7.
    let main = "trap 'exit 7' TERM; sleep 60 & wait";
    let mut seen = Vec::new();
    for runtime in RUNTIMES {
        let name = format!("bg-{runtime}");
        let mut s = String::new();
        let flags = [&["-d", "--name", name.as_str()][..], &ULIMITS[..]].concat();
        let run = docker.run(runtime, &flags, &["sh", "-c", main]);
        s.push_str(&format!("run -d exit code: {}\n", run.code));
        let status = docker.docker(&["inspect", "--format", "{{.State.Status}}", &name]);
        s.push_str(&format!("status: {}", status.stdout));
        let exec = docker.docker(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo pid1 $(cat /proc/1/comm); echo exec ok; exit 4",
        ]);
        s.push_str(&format!("exec:\n{}", observed(&exec)));
        let missing = docker.docker(&["exec", &name, "/no/such"]);
        s.push_str(&format!("exec of a missing binary: {}\n", missing.code));
        let stats = docker.docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}} {{.MemUsage}}",
            &name,
        ]);
        let fields: Vec<String> = stats
            .stdout
            .split_whitespace()
            .map(str::to_string)
            .collect();
        s.push_str(&format!(
            "stats exit code {}: names it {} pids {} memory used: {}\n",
            stats.code,
            fields.first() == Some(&name),
            fields.get(1).map(String::as_str).unwrap_or("?"),
            fields
                .get(2)
                .is_some_and(|m| !m.starts_with("0B")
                    && m.chars().next().is_some_and(|c| c.is_ascii_digit()))
        ));
        s.push_str(&format!(
            "processes outside the test cgroup: {:?}\n",
            docker.world.processes_outside_the_test_cgroup()
        ));
        let pause = docker.docker(&["pause", &name]);
        let status = docker.docker(&["inspect", "--format", "{{.State.Status}}", &name]);
        s.push_str(&format!(
            "pause exit code {}: {}",
            pause.code, status.stdout
        ));
        let unpause = docker.docker(&["unpause", &name]);
        let status = docker.docker(&["inspect", "--format", "{{.State.Status}}", &name]);
        s.push_str(&format!(
            "unpause exit code {}: {}",
            unpause.code, status.stdout
        ));
        let top = docker.docker(&["top", &name]);
        s.push_str(&format!(
            "top: {} processes\n",
            top.stdout.lines().skip(1).count()
        ));
        let stop = docker.docker(&["stop", "--time", "10", &name]);
        s.push_str(&format!("stop exit code: {}\n", stop.code));
        let exited = docker.docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ]);
        s.push_str(&format!("after stop: {}", exited.stdout));
        let start = docker.docker(&["start", &name]);
        s.push_str(&format!("start again exit code: {}\n", start.code));
        let kill = docker.docker(&["kill", &name]);
        s.push_str(&format!("kill exit code: {}\n", kill.code));
        let rm = docker.docker(&["rm", "--force", &name]);
        s.push_str(&format!("rm exit code: {}\n", rm.code));
        s.push_str(&format!(
            "cgroups left: {}\n",
            docker.container_cgroups_left()
        ));
        seen.push(s);
    }
    let ours = same_as_runc(test, &seen[0], &seen[1]);
    assert_eq!(
        ours,
        "run -d exit code: 0\n\
         status: running\n\
         exec:\npid1 sh\nexec ok\nexit code: 4\n\
         exec of a missing binary: 126\n\
         stats exit code 0: names it true pids 2 memory used: true\n\
         processes outside the test cgroup: []\n\
         pause exit code 0: paused\n\
         unpause exit code 0: running\n\
         top: 2 processes\n\
         stop exit code: 0\n\
         after stop: exited 7\n\
         start again exit code: 0\n\
         kill exit code: 0\n\
         rm exit code: 0\n\
         cgroups left: 0\n"
    );
}

#[test]
fn docker_tty_run_and_exec_go_through_the_console_socket_as_under_runc() {
    let test = "docker_tty_run_and_exec_go_through_the_console_socket_as_under_runc";
    let Some(docker) = Docker::new(test) else {
        return;
    };
    let probe = "tty; test -t 0 && echo stdin is a terminal; \
                 test -t 1 && echo stdout is a terminal; exit 5";
    let mut seen = Vec::new();
    for runtime in RUNTIMES {
        let name = format!("tty-{runtime}");
        let mut s = String::new();
        let out = docker.run(runtime, &["--rm", "-t"], &["sh", "-c", probe]);
        s.push_str(&format!("run -t:\n{}", observed(&out).replace('\r', "")));
        let run = docker.run(runtime, &["-d", "-t", "--name", &name], &["sleep", "60"]);
        s.push_str(&format!("run -d -t exit code: {}\n", run.code));
        let out = docker.docker(&["exec", "-t", &name, "sh", "-c", probe]);
        s.push_str(&format!("exec -t:\n{}", observed(&out).replace('\r', "")));
        let out = docker.docker(&["exec", &name, "sh", "-c", probe]);
        s.push_str(&format!("exec without -t:\n{}", observed(&out)));
        let rm = docker.docker(&["rm", "--force", &name]);
        s.push_str(&format!("rm exit code: {}\n", rm.code));
        s.push_str(&format!(
            "cgroups left: {}\n",
            docker.container_cgroups_left()
        ));
        seen.push(s);
    }
    let ours = same_as_runc(test, &seen[0], &seen[1]);
    assert_eq!(
        ours,
        "run -t:\n/dev/pts/0\nstdin is a terminal\nstdout is a terminal\nexit code: 5\n\
         run -d -t exit code: 0\n\
         exec -t:\n/dev/pts/1\nstdin is a terminal\nstdout is a terminal\nexit code: 5\n\
         exec without -t:\nnot a tty\nexit code: 5\n\
         rm exit code: 0\n\
         cgroups left: 0\n"
    );
}

#[test]
fn docker_failing_starts_show_the_runtime_error_text_and_exit_codes_as_under_runc() {
    let test = "docker_failing_starts_show_the_runtime_error_text_and_exit_codes_as_under_runc";
    // This dockerd has cove from daemon.json (the others from the flag).
    let Some(docker) = Docker::start(test, RuntimeFrom::DaemonJson) else {
        return;
    };
    // docker reads the runtime's JSON log through the shim and turns the
    // words into exit codes: 127 for a missing file, 126 for one that
    // cannot be executed.
    let cases: [(&str, &str); 2] = [
        (
            "/no/such/binary",
            r#"exec: "/no/such/binary": stat /no/such/binary: no such file or directory"#,
        ),
        ("/etc/passwd", r#"exec: "/etc/passwd": permission denied"#),
    ];
    let mut seen = Vec::new();
    let mut ours_text = String::new();
    for runtime in RUNTIMES {
        let mut s = String::new();
        for (command, words) in cases {
            let out = docker.run(runtime, &["--rm"], &[command]);
            s.push_str(&format!(
                "{command}: exit code {}, OCI runtime create failed: {}, names the error: {}\n",
                out.code,
                out.stderr.contains("OCI runtime create failed"),
                out.stderr.contains(words)
            ));
            if runtime == "cove" {
                ours_text.push_str(&out.stderr);
            }
        }
        let left = docker.docker(&["ps", "--all", "--quiet"]);
        s.push_str(&format!(
            "containers left: {}\ncgroups left: {}\n",
            left.stdout.lines().count(),
            docker.container_cgroups_left()
        ));
        seen.push(s);
    }
    let ours = same_as_runc(test, &seen[0], &seen[1]);
    assert_eq!(
        ours,
        "/no/such/binary: exit code 127, OCI runtime create failed: true, names the error: true\n\
         /etc/passwd: exit code 126, OCI runtime create failed: true, names the error: true\n\
         containers left: 0\ncgroups left: 0\n",
        "docker showed:\n{ours_text}"
    );
    // cove-oci's own words, not a generic shim message.
    assert!(ours_text.contains("container init failed"), "{ours_text}");
}
