//! `cove suspend`/`resume` of a debian-12 CT, systemd as PID 1 (where
//! CRIU works: the VM lane): once resumed it still answers `systemctl
//! is-system-running` with "running", and its journald is the same
//! process. The frozen time is printed.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

const CRIU_TIMEOUT: Duration = Duration::from_secs(180);

/// What a CRIU log in `dir` says about inotify watches (each watch, how
/// its path was found) and its errors, with the lines before the first
/// error: enough to learn from one run in the VM lane.
fn criu_log_digest(dir: &std::path::Path, log: &str) -> String {
    let text = fs::read_to_string(dir.join(log)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![format!("--- {log} ({} lines) ---", lines.len())];
    let keys = [
        "wd: wd",
        "Handle 0x",
        "as path for handle",
        "Scanned ",
        "in cache",
        "Restore with path hint",
        "Irmap cache",
        "Dumping processes",
        "freezing processes",
        "Unfreezing",
        "Writing stats",
        "Dumping finished",
        "Restore finished",
    ];
    for l in &lines {
        if keys.iter().any(|k| l.contains(k)) {
            out.push(l.to_string());
        }
    }
    // Where the time went: every pause of 300 ms or more between two
    // lines, with both lines.
    let at =
        |l: &str| -> Option<f64> { l.strip_prefix('(')?.split(')').next()?.trim().parse().ok() };
    let mut last: Option<(f64, &str)> = None;
    for l in &lines {
        if let Some(t) = at(l) {
            if let Some((t0, l0)) = last {
                if t - t0 >= 0.3 {
                    out.push(format!("GAP {:.2} s after: {l0}\n    before: {l}", t - t0));
                }
            }
            last = Some((t, l));
        }
    }
    if let Some(first) = lines.iter().position(|l| l.contains("Error")) {
        out.push(format!(
            "--- before the first error (line {}) ---",
            first + 1
        ));
        out.extend(
            lines[first.saturating_sub(30)..]
                .iter()
                .take(60)
                .map(|l| l.to_string()),
        );
    }
    out.join("\n")
}

#[test]
fn suspended_debian_ct_answers_systemctl_after_resume() {
    let test = "suspended_debian_ct_answers_systemctl_after_resume";
    // CRIU first: the host lane need not build the template for a skip.
    if !needs_criu(test) {
        return;
    }
    let Some(env) = CoveEnv::with_debian(test) else {
        return;
    };
    let boot = Duration::from_secs(600);
    let ctid = env.new_ctid();
    env.cmd(&[
        "create",
        &ctid,
        "--template",
        "debian-12",
        "--memory",
        "512M",
    ])
    .assert_ok();
    env.cmd_timeout(&["start", &ctid], CRIU_TIMEOUT).assert_ok();
    let (state, waited) = wait_system_settled(&env, &ctid, boot);
    assert_eq!(state, "running", "before suspend, after {waited:?}");
    let journald = |env: &CoveEnv| {
        let out = env.cmd_timeout(
            &[
                "exec",
                &ctid,
                "systemctl",
                "show",
                "-p",
                "MainPID",
                "systemd-journald",
            ],
            CRIU_TIMEOUT,
        );
        out.assert_ok();
        out.stdout.trim().to_string()
    };
    let journald_before = journald(&env);

    let dump = env.ct_dir(&ctid).join("dump");
    let out = env.cmd_timeout(&["suspend", &ctid, "--json"], CRIU_TIMEOUT);
    assert!(
        out.ok(),
        "suspend of a debian-12 CT failed:\n{out}\n{}",
        criu_log_digest(&env.ct_dir(&ctid), "suspend-failed.log")
    );
    println!("{}", criu_log_digest(&dump, "dump.log"));
    let s = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    // CRIU's own reader takes the images, and its statistics are what
    // cove printed; the whole entry shows what the freeze went to.
    let d = dump.display().to_string();
    support::criu::assert_crit_reads(&d);
    let stats = support::criu::crit_dump_stats(&d);
    println!("CRIT {test} stats-dump: {stats}");
    assert_eq!(stats["frozen_time"], s["frozen_time_us"], "{stats}");
    println!(
        "FROZEN {test} cove suspend (debian-12, systemd): frozen_time {} us, pages_written {}",
        s["frozen_time_us"], s["pages_written"]
    );
    let t = Instant::now();
    let out = env.cmd_timeout(&["resume", &ctid], CRIU_TIMEOUT);
    assert!(
        out.ok(),
        "resume of a debian-12 CT failed:\n{out}\n{}",
        criu_log_digest(&dump, "restore.log")
    );
    println!("MEASURE {test}: resume took {:?}", t.elapsed());
    let (state, waited) = wait_system_settled(&env, &ctid, boot);
    assert_eq!(state, "running", "after resume, after {waited:?}");
    assert_eq!(
        journald(&env),
        journald_before,
        "journald is another process after resume"
    );
    env.cmd_timeout(&["stop", &ctid], CRIU_TIMEOUT).assert_ok();
    env.assert_ct_cleaned_up(&ctid);
}
