//! podman drives cove-oci unmodified: `podman --runtime <cove-oci>` runs a
//! container under podman's default seccomp profile (containers-common's
//! /usr/share/containers/seccomp.json, which podman turns into the OCI form
//! in each config.json), and `run -d`, `exec`, `stop` and `rm` work. Every
//! scenario is played with `--runtime runc` first and must look the same.
//!
//! podman's own world for each test (storage, mount namespace, cgroup
//! parent): tests/support/podman.rs. The client suite (every command and
//! option a user drives) is tests/podman_cli.rs.

#[path = "support/podman.rs"]
mod podman;
mod support;

use std::path::Path;

use podman::*;
use support::*;

#[test]
fn podman_default_seccomp_profile_applies_under_cove_oci_as_under_runc() {
    let test = "podman_default_seccomp_profile_applies_under_cove_oci_as_under_runc";
    let Some(podman) = Podman::new_host_lane(test) else {
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
    let Some(podman) = Podman::new_host_lane(test) else {
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
    let Some(podman) = Podman::new_host_lane(test) else {
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
    let left = podman.container_cgroups_left();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}
