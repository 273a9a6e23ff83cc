//! What the checkpoint tests of cove-oci share: CRIU's time under
//! emulation, image directories, the counting container, the runtime's
//! checkpoint/restore commands, and CRIU's `crit` on the images.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// CRIU under software emulation takes seconds per dump or restore.
pub const CRIU_TIMEOUT: Duration = Duration::from_secs(180);

/// The counting container: stdio off the runtime's files (CRIU cannot dump
/// fds on host files outside the container), pid 1 a long sleep, pid 2 a
/// shell appending 1, 2, 3... to /dev/shm/count (a tmpfs CRIU dumps with
/// its content) every 0.2 s.
pub const COUNTER: &str = "exec </dev/null >/dev/null 2>&1; \
    (i=0; while :; do i=$((i+1)); echo $i >> /dev/shm/count; sleep 0.2; done) & \
    exec sleep 100000";

/// A tmpfs directory for images in the VM lane (`COVE_CRIU_IMAGES`), else
/// a temp dir; removed at the end.
pub struct Images(pub PathBuf);

impl Images {
    pub fn new(test: &str) -> Images {
        let base = std::env::var_os("COVE_CRIU_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(TEST_TMP));
        let dir = base.join(format!("{}.img", unique_name(test)));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Images(dir)
    }

    pub fn join(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn counter(env: &Env, test: &str, bin: &Path) -> Ct {
    let mut ct = Ct::with_bin(env, test, bin);
    ct.sh(COUNTER);
    // Limits that must be back after a restore.
    ct.config["linux"]["resources"]["pids"] = json!({"limit": 64});
    ct.config["linux"]["resources"]["memory"] = json!({"limit": 268435456});
    ct
}

/// The numbers the counter wrote so far.
pub fn counts(ct: &Ct) -> Vec<u64> {
    numbers_in(init_pid(ct), "/dev/shm/count")
}

/// A runtime command with the time an emulated VM busy with CRIU needs.
pub fn rt(ct: &Ct, args: &[&str]) -> Out {
    ct.cmd_timeout(args, CRIU_TIMEOUT)
}

/// `run -d --bundle BUNDLE FLAGS... ID` (saves the config first).
pub fn run_detached(ct: &Ct, flags: &[&str]) -> Out {
    ct.save_config();
    let bundle = ct.bundle.display().to_string();
    let mut args = vec!["run", "-d", "--bundle", &bundle];
    args.extend_from_slice(flags);
    args.push(&ct.id);
    rt(ct, &args)
}

/// `checkpoint --image-path IMG FLAGS... ID`.
pub fn checkpoint(ct: &Ct, img: &str, flags: &[&str]) -> Out {
    let mut args = vec!["checkpoint", "--image-path", img];
    args.extend_from_slice(flags);
    args.push(&ct.id);
    rt(ct, &args)
}

/// `restore -d --bundle BUNDLE --image-path IMG FLAGS... ID`.
pub fn restore(ct: &Ct, img: &str, flags: &[&str]) -> Out {
    let bundle = ct.bundle.display().to_string();
    let mut args = vec!["restore", "-d", "--bundle", &bundle, "--image-path", img];
    args.extend_from_slice(flags);
    args.push(&ct.id);
    rt(ct, &args)
}

pub fn status(ct: &Ct) -> Option<String> {
    rt(ct, &["state", &ct.id])
        .stdout_json()
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_string))
}

/// The init's pid from `state`, given the time an emulated VM under load
/// may need.
pub fn init_pid(ct: &Ct) -> i32 {
    let out = ct.cmd_timeout(&["state", &ct.id], CRIU_TIMEOUT);
    out.assert_ok();
    let v = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    v["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("state has no pid: {v}"))
}

/// Waits until the counter has written at least `n` numbers.
pub fn wait_counts(ct: &Ct, n: usize) -> Vec<u64> {
    wait_numbers(n, || counts(ct))
}

/// 1, 2, 3, ... without a gap, a repeat or a restart.
#[track_caller]
pub fn assert_one_unbroken_count(c: &[u64], context: &str) {
    for (i, v) in c.iter().enumerate() {
        assert_eq!(
            *v,
            i as u64 + 1,
            "the count restarted or skipped at line {}: {c:?}\n{context}",
            i + 1
        );
    }
}

/// `crit show DIR/stats-dump`: CRIU's own reader of its images; the frozen
/// time and pages written it reports.
pub fn crit_stats(dir: &str) -> (u64, u64) {
    let dump = crit_dump_stats(dir);
    let frozen = dump["frozen_time"]
        .as_u64()
        .unwrap_or_else(|| panic!("no frozen_time in {dir}/stats-dump: {dump}"));
    (frozen, dump["pages_written"].as_u64().unwrap_or(0))
}

/// The dump entry of `crit show DIR/stats-dump`, whole (freezing, frozen,
/// memdump, memwrite and irmap times in microseconds, page counts).
pub fn crit_dump_stats(dir: &str) -> Value {
    let crit = std::env::var_os("COVE_CRIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/crit"));
    let path = format!("{dir}/stats-dump");
    let out = run_command(
        &crit,
        &["show".into(), path.clone()],
        Path::new(TEST_TMP),
        CRIU_TIMEOUT,
    );
    assert!(out.ok(), "crit cannot read {path}:\n{out}");
    let v: Value = out
        .stdout_json()
        .unwrap_or_else(|e| panic!("crit show {path}: {e}"));
    v["entries"][0]["dump"].clone()
}

/// Also decodes the inventory and the process tree with crit.
pub fn assert_crit_reads(dir: &str) {
    for img in ["inventory.img", "pstree.img"] {
        let path = format!("{dir}/{img}");
        let out = run_command(
            Path::new("/usr/bin/crit"),
            &["show".into(), path.clone()],
            Path::new(TEST_TMP),
            CRIU_TIMEOUT,
        );
        assert!(out.ok(), "crit cannot read {path}:\n{out}");
        out.stdout_json()
            .unwrap_or_else(|e| panic!("crit show {path}: {e}"));
    }
}

pub fn report_frozen(test: &str, case: &str, runtime: &str, dir: &str) -> u64 {
    let (frozen, pages) = crit_stats(dir);
    println!("FROZEN {test} {case} ({runtime}): frozen_time {frozen} us, pages_written {pages}");
    pages
}

pub fn runtime_name(ct: &Ct) -> String {
    ct.bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Total size of CRIU's page images in a directory.
pub fn pages_bytes(dir: &str) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn cgroup_file(ct: &Ct, name: &str) -> String {
    ct.cgroup_dirs()
        .iter()
        .find_map(|d| fs::read_to_string(d.join(name)).ok())
        .unwrap_or_default()
        .trim()
        .to_string()
}
