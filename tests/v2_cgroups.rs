//! cgroup v2 behaviour, checked on a pure cgroup v2 host only (the VM lane,
//! `scripts/vmtest`; elsewhere every test prints a SKIP line): the files a
//! runtime writes for linux.resources, compared with runc and crun on the
//! same bundle; /sys/fs/cgroup as the container sees it, compared with runc;
//! the container's processes sitting in their cgroup before they exec; the
//! limits holding.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Everything these tests need: a pure v2 host, root, the runtime under
/// test, runc and crun.
struct V2 {
    env: Env,
    runc: PathBuf,
    crun: PathBuf,
}

fn v2_prerequisites(test: &str) -> Option<V2> {
    if !needs_cgroup_v2(test) {
        return None;
    }
    let env = prerequisites_with_runc(test)?;
    let runc = env.runc.clone()?;
    let crun = needs_crun(test)?;
    Some(V2 { env, runc, crun })
}

/// The container's cgroup directory on a v2 host.
fn cgroup_dir(ct: &Ct) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(ct.cgroups_path.trim_start_matches('/'))
}

/// Merges `resources` into linux.resources, keeping the spec's device rules.
fn set_resources(config: &mut Value, resources: Value) {
    let Value::Object(entries) = resources else {
        panic!("resources must be a JSON object");
    };
    for (key, value) in entries {
        config["linux"]["resources"][key] = value;
    }
}

fn add_cgroup_namespace(ct: &mut Ct) {
    ct.set_namespace("cgroup", None);
}

// ---------------------------------------------------------------- resource files

/// The files linux.resources maps to on v2 (memory.swap.max holds swap
/// minus limit; cpu.weight the converted shares).
const RESOURCE_FILES: &[&str] = &[
    "cpu.max",
    "cpu.weight",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.high",
    "memory.low",
    "memory.max",
    "memory.oom.group",
    "memory.swap.max",
    "pids.max",
];

/// `file: value` for each of `files` in `dir`, `(missing)` when absent.
fn read_cgroup_files(dir: &Path, files: &[&str]) -> String {
    files
        .iter()
        .map(|file| {
            let value = fs::read_to_string(dir.join(file))
                .map(|v| v.trim_end().to_string())
                .unwrap_or_else(|e| format!("(missing: {})", e.kind()));
            format!("{file}: {value}\n")
        })
        .collect()
}

/// Creates the bundle's container with `bin`, reads the resource files of
/// its cgroup while the init waits for `start`, then deletes it. Returns
/// what was read (or why nothing could be) and the create command's output.
fn resource_files_after_create(reference: &Ct, bin: &Path) -> (String, Out) {
    let ct = reference.twin(bin);
    let out = ct.create();
    let seen = if out.ok() {
        read_cgroup_files(&cgroup_dir(&ct), RESOURCE_FILES)
    } else {
        format!("create failed with exit code {}\n", out.code)
    };
    // Ct's drop deletes the container and removes its cgroup, so the next
    // runtime starts from the same clean parent.
    drop(ct);
    (seen, out)
}

/// Creates the same bundle with runc, crun and the runtime under test and
/// panics with diffs unless the three wrote the same values to the same
/// files.
fn compare_resource_files(test: &str, resources: Value) {
    let Some(v2) = v2_prerequisites(test) else {
        return;
    };
    let mut reference = Ct::with_bin(&v2.env, test, &v2.runc);
    reference.sh("exit 0");
    set_resources(&mut reference.config, resources);
    reference.save_config();

    let (runc_saw, runc_out) = resource_files_after_create(&reference, &v2.runc);
    assert!(
        runc_out.ok(),
        "the probe is broken: runc create failed:\n{runc_out}"
    );
    let (crun_saw, crun_out) = resource_files_after_create(&reference, &v2.crun);
    assert!(
        crun_out.ok(),
        "the probe is broken: crun create failed:\n{crun_out}"
    );
    let (cove_saw, cove_out) = resource_files_after_create(&reference, &v2.env.bin);
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!("===== {test}: runc =====\n{runc_saw}===== crun =====\n{crun_saw}===== under test =====\n{cove_saw}");
    }
    let mut problems = Vec::new();
    if let Some(diff) = diff_lines("runc", &runc_saw, "under test", &cove_saw) {
        problems.push(diff);
    }
    if let Some(diff) = diff_lines("crun", &crun_saw, "under test", &cove_saw) {
        problems.push(diff);
    }
    assert!(
        problems.is_empty(),
        "{test}: the cgroup files differ from runc's or crun's\n{}\n\
         ===== runc and crun agree with each other: {} =====\n===== create under test =====\n{cove_out}",
        problems.join("\n"),
        runc_saw == crun_saw,
    );
}

#[test]
fn v2_limits_are_written_as_runc_and_crun_write_them() {
    compare_resource_files(
        "v2_limits_are_written_as_runc_and_crun_write_them",
        json!({
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
            "pids": {"limit": 64},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}
        }),
    );
}

#[test]
fn v2_unlimited_values_are_written_as_max() {
    compare_resource_files(
        "v2_unlimited_values_are_written_as_max",
        json!({
            "memory": {"limit": -1, "swap": -1},
            "pids": {"limit": -1},
            "cpu": {"quota": -1, "period": 250000}
        }),
    );
}

#[test]
fn v2_unified_entries_land_in_their_files() {
    compare_resource_files(
        "v2_unified_entries_land_in_their_files",
        json!({
            "unified": {
                "memory.high": "50331648",
                "memory.oom.group": "1",
                "pids.max": "32",
                "cpu.weight": "300"
            }
        }),
    );
}

// ---------------------------------------------------------------- the cgroup mount inside

/// Prints the /sys/fs/cgroup line of the container's mountinfo without the
/// per-instance ids (mount id, parent id, device number), its own cgroup,
/// and a value read through the mount (pids.max is the container's own only
/// when the mount's root is the container's cgroup).
const CGROUP_MOUNT_PROBE: &str = "grep ' /sys/fs/cgroup ' /proc/self/mountinfo | cut -d' ' -f4-; \
     echo cgroup: $(cat /proc/self/cgroup); \
     echo pids.max: $(cat /sys/fs/cgroup/pids.max 2>&1)";

/// The probe under runc and under the runtime under test, which must agree;
/// crun's view goes into the failure message as a second opinion.
fn compare_cgroup_mount(test: &str, cgroupns: bool) {
    let Some(v2) = v2_prerequisites(test) else {
        return;
    };
    let mut reference = Ct::with_bin(&v2.env, test, &v2.runc);
    reference.sh(CGROUP_MOUNT_PROBE);
    set_resources(&mut reference.config, json!({"pids": {"limit": 42}}));
    if cgroupns {
        add_cgroup_namespace(&mut reference);
    } else {
        reference.remove_namespace("cgroup");
    }
    reference.save_config();
    let runc_out = reference.run();
    assert_eq!(
        runc_out.code, 0,
        "the probe is broken: runc itself failed:\n{runc_out}"
    );
    let crun_out = reference.twin(&v2.crun).run();
    let out = reference.twin(&v2.env.bin).run();
    assert_same_as_runc(
        test,
        &observed(&runc_out),
        &observed(&out),
        &format!(
            "===== crun saw (for reference) =====\n{}\n===== run under test =====\n{out}",
            observed(&crun_out)
        ),
    );
}

#[test]
fn v2_cgroup_mount_with_cgroupns_is_runcs() {
    compare_cgroup_mount("v2_cgroup_mount_with_cgroupns_is_runcs", true);
}

#[test]
fn v2_cgroup_mount_without_cgroupns_is_runcs() {
    compare_cgroup_mount("v2_cgroup_mount_without_cgroupns_is_runcs", false);
}

// ---------------------------------------------------------------- processes in their cgroup

/// After `create` the init waits for `start` before it execs the user's
/// program: it must already be in the container's cgroup, and, with a
/// cgroup namespace, see that cgroup as its root.
fn init_is_in_its_cgroup_before_exec(test: &str, cgroupns: bool) {
    if !needs_cgroup_v2(test) {
        return;
    }
    let Some(env) = prerequisites(test) else {
        return;
    };
    let mut ct = Ct::new(&env, test);
    if cgroupns {
        add_cgroup_namespace(&mut ct);
    } else {
        ct.remove_namespace("cgroup");
    }
    ct.sh("cat /proc/self/cgroup; trap 'exit 0' TERM; sleep 1000 & wait");
    ct.create().assert_ok();
    let pid = ct.init_pid();
    let host_view = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    assert_eq!(
        host_view.trim_end(),
        format!("0::{}", ct.cgroups_path),
        "the created init (pid {pid}) is not in the container's cgroup before start"
    );
    let procs = fs::read_to_string(cgroup_dir(&ct).join("cgroup.procs")).unwrap_or_default();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "pid {pid} missing from {}/cgroup.procs: {procs:?}",
        cgroup_dir(&ct).display()
    );
    ct.start().assert_ok();
    let inside = if cgroupns {
        "0::/".to_string()
    } else {
        format!("0::{}", ct.cgroups_path)
    };
    let exec = ct.exec(&[], &["cat", "/proc/self/cgroup"]);
    exec.assert_ok();
    assert_eq!(
        exec.stdout.trim_end(),
        inside,
        "an exec'd process sees another cgroup:\n{exec}"
    );
    assert!(ct.kill("TERM").ok());
    assert!(
        ct.wait_status("stopped", Duration::from_secs(10)),
        "the container did not stop after SIGTERM"
    );
}

#[test]
fn v2_init_is_in_its_cgroup_before_exec() {
    init_is_in_its_cgroup_before_exec("v2_init_is_in_its_cgroup_before_exec", false);
}

#[test]
fn v2_init_with_cgroupns_sees_its_cgroup_as_root() {
    init_is_in_its_cgroup_before_exec("v2_init_with_cgroupns_sees_its_cgroup_as_root", true);
}

/// What the container's first process prints about its own cgroup, the
/// same under runc and under the runtime under test: `0::/` with a cgroup
/// namespace, `0::<cgroupsPath>` without.
#[test]
fn v2_proc_self_cgroup_inside_is_runcs() {
    let test = "v2_proc_self_cgroup_inside_is_runcs";
    if !needs_cgroup_v2(test) {
        return;
    }
    for cgroupns in [true, false] {
        let Some(seen) = compare_run_with_runc(test, "cat /proc/self/cgroup", |ct| {
            if cgroupns {
                add_cgroup_namespace(ct);
            } else {
                ct.remove_namespace("cgroup");
            }
        }) else {
            return;
        };
        if cgroupns {
            assert_eq!(seen.trim_end(), "0::/", "with a cgroup namespace");
        } else {
            assert!(
                seen.trim_end()
                    .starts_with(&format!("0::/{CGROUP_PARENT}/")),
                "without a cgroup namespace: {seen:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- limits hold

/// pids.max stops forks, and memory.max OOM-kills a process that grows past
/// it (busybox awk building a 40 MB string under a 16 MiB limit, no swap):
/// the container reports the same under runc and under the runtime under
/// test, counters of its own pids.events and memory.events included.
#[test]
fn v2_pids_and_memory_limits_hold_as_under_runc() {
    let test = "v2_pids_and_memory_limits_hold_as_under_runc";
    if !needs_cgroup_v2(test) {
        return;
    }
    // The inner shell forks sleeps until pids.max refuses one; `kill -9 -1`
    // from the namespace's pid 1 then ends them all.
    let script = "sh -c 'i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i + 1)); done' 2>/dev/null; \
         echo $(grep max /sys/fs/cgroup/pids.events) at pids.current $(cat /sys/fs/cgroup/pids.current); \
         kill -9 -1; \
         awk 'BEGIN { s = sprintf(\"%40000000s\", \"\"); print length(s) }'; echo awk exit $?; \
         grep oom_kill /sys/fs/cgroup/memory.events";
    compare_run_with_runc(test, script, |ct| {
        add_cgroup_namespace(ct);
        set_resources(
            &mut ct.config,
            json!({
                "pids": {"limit": 8},
                "memory": {"limit": 16777216, "swap": 16777216}
            }),
        );
    });
}
