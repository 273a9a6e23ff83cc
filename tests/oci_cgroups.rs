//! Device access, `update`/`pause`/`resume`, `events --stats` and the OOM
//! event of the `events` stream on whatever cgroups this host has:
//! the v1 devices controller on a hybrid host (host lane), the eBPF device
//! program on a pure v2 host (VM lane, where crun is a second reference).
//! Each is compared with runc on the same bundle.

mod support;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// One test at a time: the update test keeps a CPU busy, which would slow
/// the others' commands past their timeouts in the emulated VM lane.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `update` in the VM lane takes 10-20 s (a debug build under software
/// emulation on a busy host; 10-20 ms on this host), more with a CPU kept
/// busy by the container.
const SLOW_COMMAND: Duration = Duration::from_secs(90);

/// Makes device nodes with mknod and opens them: /dev/null and /dev/zero
/// (default rules) work; c 1:1 (/dev/mem) and b 7:0 are refused; c 42:0,
/// allowed for reading by the spec, opens as far as the (absent) driver
/// and stays closed for writing.
const DEVICE_PROBE: &str = "exec 2>&1; \
     mknod /dev/t-null c 1 3 && echo mknod null ok; \
     echo hi >/dev/t-null && echo write null ok; \
     dd if=/dev/zero bs=4 count=1 2>/dev/null | wc -c; \
     mknod /dev/t-mem c 1 1 && echo mknod mem ok; \
     cat /dev/t-mem; \
     mknod /dev/t-42 c 42 0 && echo mknod 42 ok; \
     cat /dev/t-42; \
     (echo x >/dev/t-42); \
     mknod /dev/t-loop b 7 0 && echo mknod loop ok; \
     cat /dev/t-loop; \
     true";

fn device_rules(ct: &mut Ct) {
    ct.add_capabilities(&["CAP_MKNOD"]);
    ct.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 42, "minor": 0, "access": "r"}
    ]);
}

/// Same answers as runc (and, on v2, as crun): allowed devices open,
/// others EPERM, mknod allowed for all (runc's defaults).
#[test]
fn device_rules_allow_null_and_zero_and_refuse_others_as_runc() {
    let _serial = serial();
    let test = "device_rules_allow_null_and_zero_and_refuse_others_as_runc";
    let Some(seen) = compare_run_with_runc(test, DEVICE_PROBE, device_rules) else {
        return;
    };
    for want in [
        "mknod null ok\nwrite null ok\n4\n",
        "cat: can't open '/dev/t-mem': Operation not permitted",
        "cat: can't open '/dev/t-42': No such device or address",
        "can't create /dev/t-42: Operation not permitted",
        "cat: can't open '/dev/t-loop': Operation not permitted",
    ] {
        assert!(seen.contains(want), "{want:?} missing from:\n{seen}");
    }
    if !is_pure_cgroup_v2() {
        return;
    }
    // crun as a second opinion on v2.
    let Some(crun) = needs_crun(test) else {
        return;
    };
    let env = prerequisites(test).expect("checked above");
    let mut ct = Ct::with_bin(&env, test, &crun);
    ct.sh(DEVICE_PROBE);
    device_rules(&mut ct);
    let crun_out = ct.run();
    assert_same_as_runc(
        test,
        &observed(&crun_out),
        &format!("{seen}exit code: 0\n"),
        "(runc's place taken by crun)",
    );
}

// ---------------------------------------------------------------- update

/// The device programs attached to a v2 cgroup directory (BPF_PROG_QUERY).
fn device_program_ids(dir: &Path) -> Vec<u32> {
    #[repr(C)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let file = std::fs::File::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: file.as_raw_fd() as u32,
        attach_type: 6, // BPF_CGROUP_DEVICE
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
    };
    // SAFETY: bpf(BPF_PROG_QUERY) with an attr we own, pointing to `ids`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            16, // BPF_PROG_QUERY
            &mut attr as *mut QueryAttr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_QUERY on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    ids[..attr.prog_cnt as usize].to_vec()
}

/// Where the device rules of `ct` live: the v1 devices directory, or the
/// v2 cgroup directory.
fn device_cgroup(ct: &Ct) -> PathBuf {
    let inner = ct.cgroups_path.trim_start_matches('/');
    if is_pure_cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(inner)
    } else {
        Path::new("/sys/fs/cgroup/devices").join(inner)
    }
}

/// What the cgroup holds: devices.list on v1, the attached program ids on v2.
fn device_state(ct: &Ct) -> String {
    let dir = device_cgroup(ct);
    if is_pure_cgroup_v2() {
        format!("{:?}", device_program_ids(&dir))
    } else {
        std::fs::read_to_string(dir.join("devices.list"))
            .unwrap_or_else(|e| panic!("read {}/devices.list: {e}", dir.display()))
    }
}

/// A detached container of `bin` running `script` (then waiting for
/// SIGTERM), with CAP_MKNOD when `mknod` is set: the set-up of the device
/// and update tests.
fn detached(env: &Env, test: &str, bin: &Path, mknod: bool, script: &str) -> Ct {
    let mut ct = Ct::with_bin(env, test, bin);
    if mknod {
        ct.add_capabilities(&["CAP_MKNOD"]);
    }
    ct.sh(&format!("{script}trap 'exit 0' TERM; sleep 1000 & wait"));
    ct.run_detached().assert_ok();
    ct
}

/// `exec CT sh -c SCRIPT`, checked, with the slow lane's timeout.
fn exec_sh(ct: &Ct, script: &str) -> Out {
    let out = ct.cmd_timeout(&["exec", &ct.id, "sh", "-c", script], SLOW_COMMAND);
    out.assert_ok();
    out
}

/// `update --resources FILE` with `devices` as the file's only field.
fn update_devices(ct: &Ct, dir: &TempDir, name: &str, devices: Value) {
    let file = dir.join(name);
    write_file(&file, &json!({ "devices": devices }).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let file = file.display().to_string();
    ct.cmd_timeout(&["update", "--resources", &file, &ct.id], SLOW_COMMAND)
        .assert_ok();
}

/// `update` of other limits leaves the device cgroup as it is, as runc
/// 1.1 does (its `update` never touches devices): on v2 the same program
/// stays attached, on v1 devices.list does not change. Returns the device
/// state after create and after two updates.
fn device_state_through_updates(env: &Env, test: &str, bin: &Path) -> (String, String) {
    let ct = detached(env, test, bin, false, "");
    let before = device_state(&ct);
    for limit in ["50", "60"] {
        ct.cmd_timeout(&["update", "--pids-limit", limit, &ct.id], SLOW_COMMAND)
            .assert_ok();
    }
    let after = device_state(&ct);
    assert!(ct.kill("KILL").ok());
    (before, after)
}

#[test]
fn update_of_other_limits_leaves_device_rules_alone_as_runc() {
    let _serial = serial();
    let test = "update_of_other_limits_leaves_device_rules_alone_as_runc";
    let Some(((runc_before, runc_after), (before, after))) =
        play_under_runc_then_test(test, |env, bin| {
            device_state_through_updates(env, test, bin)
        })
    else {
        return;
    };
    assert_eq!(
        runc_before, runc_after,
        "the probe is broken: runc's update changed the device cgroup"
    );
    assert_eq!(before, after, "update changed the device cgroup");
    if is_pure_cgroup_v2() {
        assert!(
            before.starts_with('[') && before.matches(',').count() == 0 && before != "[]",
            "one device program expected after create, found {before}"
        );
    } else {
        assert_same_as_runc(test, &runc_before, &before, "devices.list after create");
    }
}

/// Updates while the loop runs: fewer in the VM lane, where each takes
/// seconds.
fn updates() -> u32 {
    if in_vm_lane() {
        4
    } else {
        20
    }
}

/// A container opens /dev/null in a tight loop (with `true`: a failed
/// redirection of the special builtin `:` would end the shell) and counts
/// failures in /dev/fails while `update --resources` switches its device
/// rules back and forth (c 42:0 rw in, then out). /dev/null must never
/// fail: on v1 only the difference is written (never "deny all" first), on
/// v2 the new program is attached before the old one goes. At the end one
/// program is attached on v2, a new one.
#[test]
fn device_rule_updates_never_close_dev_null_meanwhile() {
    let _serial = serial();
    let test = "device_rule_updates_never_close_dev_null_meanwhile";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let ct = detached(
        &env,
        test,
        &env.bin,
        false,
        "(while :; do true </dev/null || echo x >>/dev/fails; done) 2>/dev/null & ",
    );
    // Let the loop get going.
    std::thread::sleep(Duration::from_millis(300));
    let first = device_state(&ct);
    let dir = TempDir::new(test);
    let deny_all = json!({"allow": false, "access": "rwm"});
    let allow_42 = json!({"allow": true, "type": "c", "major": 42, "minor": 0, "access": "rw"});
    let mut last = String::new();
    for i in 0..updates() {
        let started = std::time::Instant::now();
        if i % 2 == 0 {
            update_devices(&ct, &dir, "with-42.json", json!([deny_all, allow_42]));
        } else {
            update_devices(&ct, &dir, "without-42.json", json!([deny_all]));
        }
        if in_vm_lane() {
            eprintln!("{test}: update {i}: {:?}", started.elapsed());
        }
        last = device_state(&ct);
        if !is_pure_cgroup_v2() {
            assert_eq!(
                last.contains("c 42:0 rw"),
                i % 2 == 0,
                "devices.list after update {i}:\n{last}"
            );
        }
    }
    let fails = exec_sh(&ct, "cat /dev/fails 2>/dev/null | wc -l");
    assert_eq!(
        fails.stdout.trim(),
        "0",
        "/dev/null failed to open while the device rules were updated"
    );
    if is_pure_cgroup_v2() {
        assert_ne!(first, last, "the device program was not replaced");
        assert_eq!(last.matches(',').count(), 0, "one program expected: {last}");
    }
    assert!(ct.kill("KILL").ok());
}

/// `update --resources` with a new device rule (cove-oci takes devices
/// from the resources JSON; runc 1.1 ignores them there): c 42:0 goes
/// from EPERM to the driver's ENXIO for writing, and on v2 the attached
/// program is a new one.
#[test]
fn update_with_a_new_device_rule_opens_that_device() {
    let _serial = serial();
    let test = "update_with_a_new_device_rule_opens_that_device";
    let Some(env) = prerequisites(test) else {
        return;
    };
    let ct = detached(&env, test, &env.bin, true, "mknod /dev/t-42 c 42 0; ");
    let write = |ct: &Ct| exec_sh(ct, "(echo x >/dev/t-42) 2>&1; true").stdout;
    let before_state = device_state(&ct);
    let before = write(&ct);
    assert!(before.contains("Operation not permitted"), "{before}");

    let dir = TempDir::new(test);
    update_devices(
        &ct,
        &dir,
        "resources.json",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 42, "minor": 0, "access": "rw"}
        ]),
    );
    let after = write(&ct);
    assert!(
        after.contains("No such device or address"),
        "after update c 42:0 should reach its (absent) driver:\n{after}"
    );
    let after_state = device_state(&ct);
    assert_ne!(
        before_state, after_state,
        "the device cgroup did not change"
    );
    if !is_pure_cgroup_v2() {
        assert!(after_state.contains("c 42:0 rw"), "{after_state}");
    }
    // /dev/null still works after the update.
    let null = exec_sh(&ct, "echo x >/dev/null && echo ok");
    assert_eq!(null.stdout.trim(), "ok", "{null}");
    assert!(ct.kill("KILL").ok());
}

// ---------------------------------------------------------------- events

/// Go's omitempty fields of runc's types.Stats: absent when zero, so their
/// presence may differ between two containers without a shape difference.
const OMITEMPTY: &[&str] = &[
    "total",
    "percpu",
    "percpu_kernel",
    "percpu_user",
    "periods",
    "throttledPeriods",
    "throttledTime",
    "cpus",
    "mems",
    "cache",
    "usage",
    "max",
    "raw",
    "current",
    "limit",
    "ioServiceBytesRecursive",
    "ioServicedRecursive",
    "ioQueueRecursive",
    "ioServiceTimeRecursive",
    "ioWaitTimeRecursive",
    "ioMergedRecursive",
    "ioTimeRecursive",
    "sectorsRecursive",
    "major",
    "minor",
    "op",
    "value",
];

/// Lists and maps whose members come and go with the figures (empty lists
/// are omitted; memory.stat keys are the kernel's).
const OPTIONAL_CONTAINERS: &[&str] = &[
    "percpu",
    "percpu_kernel",
    "percpu_user",
    "cpus",
    "mems",
    "raw",
    "ioServiceBytesRecursive",
    "ioServicedRecursive",
    "ioQueueRecursive",
    "ioServiceTimeRecursive",
    "ioWaitTimeRecursive",
    "ioMergedRecursive",
    "ioTimeRecursive",
    "sectorsRecursive",
];

/// Whether `path` may be present in one output and not in the other
/// without a difference of shape: an omitempty leaf, or inside a list or
/// map that omitempty drops when empty.
fn optional(path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').map(|p| p.trim_end_matches("[]")).collect();
    let leaf = parts.last().copied().unwrap_or("");
    OMITEMPTY.contains(&leaf) || parts.iter().any(|p| OPTIONAL_CONTAINERS.contains(p))
}

/// path -> JSON type, array elements folded into `[]`.
fn shape(value: &Value, path: String, out: &mut BTreeMap<String, &'static str>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() && n.as_i64().unwrap_or(0) < 0 => "int",
        Value::Number(n) if n.is_u64() || n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(items) => {
            for item in items {
                shape(item, format!("{path}[]"), out);
            }
            "array"
        }
        Value::Object(map) => {
            for (key, item) in map {
                // memory.stat keys are the kernel's, not a shape.
                if path.ends_with(".raw") {
                    out.insert(format!("{path}.*"), "int");
                    continue;
                }
                shape(item, format!("{path}.{key}"), out);
            }
            "object"
        }
    };
    out.insert(path, kind);
}

fn stats_of(env: &Env, test: &str, bin: &Path) -> Value {
    let mut ct = Ct::with_bin(env, test, bin);
    // A few processes, then some cpu under a quota (throttling).
    ct.sh("sleep 1000 & sleep 1000 & \
         i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done; \
         trap 'exit 0' TERM; wait");
    ct.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    ct.config["linux"]["resources"]["pids"] = json!({"limit": 20});
    ct.config["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    ct.run_detached().assert_ok();
    std::thread::sleep(Duration::from_millis(600));
    let out = ct.cmd(&["events", "--stats", &ct.id]);
    out.assert_ok();
    assert!(ct.kill("KILL").ok());
    out.stdout_json()
        .unwrap_or_else(|e| panic!("events --stats: {e}"))
}

#[test]
fn events_stats_has_runcs_fields_and_types() {
    let _serial = serial();
    let test = "events_stats_has_runcs_fields_and_types";
    let Some((runc_stats, stats)) =
        play_under_runc_then_test(test, |env, bin| stats_of(env, test, bin))
    else {
        return;
    };
    let (mut want, mut got) = (BTreeMap::new(), BTreeMap::new());
    shape(&runc_stats, String::new(), &mut want);
    shape(&stats, String::new(), &mut got);
    let mut problems = Vec::new();
    for (path, kind) in &want {
        match got.get(path) {
            Some(k) if k == kind => {}
            Some(k) => problems.push(format!("{path}: runc {kind}, under test {k}")),
            None if optional(path) => {}
            None => problems.push(format!("{path}: missing (runc has {kind})")),
        }
    }
    for (path, kind) in &got {
        if !want.contains_key(path) && !optional(path) {
            problems.push(format!("{path}: {kind} only under test"));
        }
    }
    assert!(
        problems.is_empty(),
        "{test}: events --stats differs from runc's shape:\n{}\n===== runc =====\n{runc_stats:#}\n===== under test =====\n{stats:#}",
        problems.join("\n")
    );
    // Values that must hold whatever the host.
    let data = &stats["data"];
    assert_eq!(stats["type"], "stats");
    assert_eq!(data["pids"]["limit"], 20, "{data:#}");
    assert!(
        data["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{data:#}"
    );
    assert_eq!(data["memory"]["usage"]["limit"], 67108864u64, "{data:#}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{data:#}"
    );
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "{data:#}"
    );
    assert!(
        data["cpu"]["throttling"]["periods"].as_u64().unwrap_or(0) > 0,
        "{data:#}"
    );
}

// ------------------------------------------- update, pause, resume, oom

/// A cgroup file of `ct` on the host: the v2 name on a pure v2 host, the
/// v1 controller's file otherwise ("memory" + "memory.limit_in_bytes").
fn limit_file(ct: &Ct, v1: (&str, &str), v2: &str) -> PathBuf {
    let inner = ct.cgroups_path.trim_start_matches('/');
    if is_pure_cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(inner).join(v2)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(v1.0)
            .join(inner)
            .join(v1.1)
    }
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("{}: {e}", path.display()))
}

/// The counter the container's loop writes, read through its root.
fn counter(pid: i32) -> String {
    read_trimmed(&PathBuf::from(format!("/proc/{pid}/root/dev/shm/c")))
}

/// What a user sees of `update`, `pause`, `resume` and `events --stats`
/// on a running container of `bin`, one line each.
fn controls_seen(env: &Env, test: &str, bin: &Path) -> String {
    let ct = detached(
        env,
        test,
        bin,
        false,
        "i=0; while :; do i=$((i+1)); echo $i >/dev/shm/c; done & ",
    );
    let pid = ct.init_pid();
    let mut seen = String::new();
    let mem = limit_file(&ct, ("memory", "memory.limit_in_bytes"), "memory.max");
    let pids = limit_file(&ct, ("pids", "pids.max"), "pids.max");
    ct.cmd_timeout(
        &["update", "--memory", "64m", "--pids-limit", "30", &ct.id],
        SLOW_COMMAND,
    )
    .assert_ok();
    seen += &format!(
        "after update: memory {} pids {}\n",
        read_trimmed(&mem),
        read_trimmed(&pids)
    );
    let inside = if is_pure_cgroup_v2() {
        "cat /sys/fs/cgroup/memory.max"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    seen += &format!("inside: {}", exec_sh(&ct, inside).stdout);
    ct.cmd_timeout(&["pause", &ct.id], SLOW_COMMAND).assert_ok();
    let a = counter(pid);
    std::thread::sleep(Duration::from_millis(300));
    let b = counter(pid);
    seen += &format!(
        "paused: status {:?}, counter still {}\n",
        ct.status(),
        a == b
    );
    ct.cmd_timeout(&["resume", &ct.id], SLOW_COMMAND)
        .assert_ok();
    // A loaded host may not run the loop at once: up to 5 s.
    let moved = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        counter(pid) != b
    });
    seen += &format!("resumed: status {:?}, counter moves {moved}\n", ct.status());
    let stats = ct.cmd_timeout(&["events", "--stats", &ct.id], SLOW_COMMAND);
    stats.assert_ok();
    let v: Value = serde_json::from_str(stats.stdout.trim()).unwrap_or(Value::Null);
    let data = &v["data"];
    seen += &format!(
        "events --stats: type {} memory {} cpu {} pids {} blkio {}; pids.current > 0: {}\n",
        v["type"],
        data["memory"].is_object(),
        data["cpu"].is_object(),
        data["pids"].is_object(),
        data["blkio"].is_object(),
        data["pids"]["current"].as_u64().unwrap_or(0) > 0
    );
    assert!(ct.kill("KILL").ok());
    seen
}

/// `update` changes the limits live (host file and inside), `pause`
/// freezes (state paused, a busy loop stops), `resume` thaws, `events
/// --stats` reports memory, cpu, pids and blkio: as under runc.
#[test]
fn update_pause_resume_and_stats_as_runc() {
    let _serial = serial();
    let test = "update_pause_resume_and_stats_as_runc";
    let Some((runc_seen, seen)) =
        play_under_runc_then_test(test, |env, bin| controls_seen(env, test, bin))
    else {
        return;
    };
    for want in [
        "after update: memory 67108864 pids 30\n",
        "inside: 67108864\n",
        "paused: status Some(\"paused\"), counter still true\n",
        "resumed: status Some(\"running\"), counter moves true\n",
        "memory true cpu true pids true blkio true; pids.current > 0: true",
    ] {
        assert!(seen.contains(want), "{want:?} missing from:\n{seen}");
    }
    assert_same_as_runc(
        test,
        &runc_seen,
        &seen,
        "update, pause, resume, events --stats",
    );
}

/// A process that outgrows memory.limit is OOM-killed, and the `events`
/// stream reports {"type": "oom"} as runc's does.
fn oom_events(env: &Env, test: &str, bin: &Path) -> Out {
    let mut ct = Ct::with_bin(env, test, bin);
    ct.config["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    ct.sh("sleep 1; tail /dev/zero; trap 'exit 0' TERM; sleep 1000 & wait");
    ct.run_detached().assert_ok();
    let events = ct.cmd_timeout(
        &["events", "--interval", "100ms", &ct.id],
        if in_vm_lane() {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(5)
        },
    );
    assert!(ct.kill("KILL").ok());
    events
}

#[test]
fn oom_kill_appears_in_the_event_stream_as_runc() {
    let _serial = serial();
    let test = "oom_kill_appears_in_the_event_stream_as_runc";
    let oom = |out: &Out| {
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["type"] == "oom")
    };
    let Some((runc_out, out)) =
        play_under_runc_then_test(test, |env, bin| oom_events(env, test, bin))
    else {
        return;
    };
    assert!(
        oom(&runc_out),
        "the probe is broken: runc saw no oom event:\n{runc_out}"
    );
    assert!(
        oom(&out),
        "no {{\"type\": \"oom\"}} in the event stream:\n{out}"
    );
}
