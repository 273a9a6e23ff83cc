//! The same bundle (runc's `runc spec` default, process changed) run under
//! runc and under the runtime under test: what the container sees must be
//! identical, per-instance values (mount ids, anonymous device numbers)
//! aside. Each comparison is one test and prints a diff on mismatch.

mod support;

use serde_json::{json, Value};
use support::*;

/// What one container run printed, normalised, plus its exit code.
fn observe(ct: &Ct, normalise: fn(&str) -> String) -> (String, Out) {
    let out = ct.run();
    let text = format!("{}exit code: {}\n", normalise(&out.stdout), out.code);
    (text, out)
}

/// Runs `script` under runc, then the same bundle under the runtime under
/// test, and panics with a diff unless both saw the same thing. runc's own
/// exit code must be `runc_code`, which proves the probe itself works.
fn compare(
    test: &str,
    script: &str,
    runc_code: i32,
    tweak: impl FnOnce(&mut Value),
    normalise: fn(&str) -> String,
) {
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    let Some(runc) = env.runc.clone() else { return };
    let mut reference = Ct::with_bin(&env, test, &runc);
    reference.sh(script);
    tweak(&mut reference.config);
    reference.save_config();
    let under_test = reference.twin(&env.bin);

    let (expected, runc_out) = observe(&reference, normalise);
    assert_eq!(
        runc_out.code, runc_code,
        "the probe is broken: runc itself did not exit {runc_code}:\n{runc_out}"
    );
    let (actual, cove_out) = observe(&under_test, normalise);
    if std::env::var_os("COVE_TEST_SHOW").is_some() {
        eprintln!(
            "===== {test}: runc saw =====\n{expected}===== {test}: under test saw =====\n{actual}"
        );
    }
    if let Some(diff) = diff_lines(
        "runc",
        &expected,
        &under_test.bin.display().to_string(),
        &actual,
    ) {
        panic!(
            "{test}: the container saw something else than under runc\n{diff}\n\
             ===== runc run =====\n{runc_out}\n===== run under test =====\n{cove_out}"
        );
    }
}

fn verbatim(s: &str) -> String {
    s.to_string()
}

fn no_tweak(_: &mut Value) {}

// ---------------------------------------------------------------- identity

#[test]
fn id_matches_runc() {
    compare("id_matches_runc", "id", 0, no_tweak, verbatim);
}

#[test]
fn user_1000_with_additional_gids_matches_runc() {
    compare(
        "user_1000_with_additional_gids_matches_runc",
        "id; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
        0,
        |c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [100, 2000]}),
        verbatim,
    );
}

// ---------------------------------------------------------------- privileges

const STATUS_PRIVILEGES: &str = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status";

#[test]
fn capabilities_nonewprivs_and_seccomp_match_runc() {
    compare(
        "capabilities_nonewprivs_and_seccomp_match_runc",
        STATUS_PRIVILEGES,
        0,
        no_tweak,
        verbatim,
    );
}

#[test]
fn capabilities_of_user_1000_match_runc() {
    compare(
        "capabilities_of_user_1000_match_runc",
        STATUS_PRIVILEGES,
        0,
        |c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}),
        verbatim,
    );
}

#[test]
fn capabilities_without_no_new_privileges_match_runc() {
    compare(
        "capabilities_without_no_new_privileges_match_runc",
        STATUS_PRIVILEGES,
        0,
        |c| c["process"]["noNewPrivileges"] = json!(false),
        verbatim,
    );
}

// ---------------------------------------------------------------- names

#[test]
fn hostname_matches_runc() {
    compare(
        "hostname_matches_runc",
        "hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname",
        0,
        no_tweak,
        verbatim,
    );
}

// ---------------------------------------------------------------- mounts

/// mountinfo fields: id parent major:minor root mount-point options
/// [optional...] - fstype source super-options.
fn mountinfo_fields(line: &str) -> Option<(&str, &str, &str, &str, &str, &str)> {
    let f: Vec<&str> = line.split(' ').collect();
    let dash = f.iter().position(|x| *x == "-")?;
    Some((
        f.get(4)?,
        f.get(dash + 1)?,
        f.get(3)?,
        f.get(5)?,
        f.get(dash + 2)?,
        f.get(dash + 3)?,
    ))
}

/// Mounts sorted by mount point; mounts stacked on one point keep their order.
fn sorted_mounts(s: &str, line: fn(&str) -> Option<String>) -> String {
    let mut rows: Vec<(String, String)> = s
        .lines()
        .filter_map(|l| Some((mountinfo_fields(l)?.0.to_string(), line(l)?)))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, l)| l + "\n").collect()
}

fn mount_points_and_types(s: &str) -> String {
    sorted_mounts(s, |l| {
        let (point, fstype, ..) = mountinfo_fields(l)?;
        Some(format!("{point} {fstype}"))
    })
}

fn mount_options(s: &str) -> String {
    sorted_mounts(s, |l| {
        let (point, fstype, root, opts, source, super_opts) = mountinfo_fields(l)?;
        Some(format!(
            "{point} {fstype} root={root} opts={opts} source={source} super={super_opts}"
        ))
    })
}

#[test]
fn mount_points_and_types_match_runc() {
    compare(
        "mount_points_and_types_match_runc",
        "cat /proc/self/mountinfo",
        0,
        no_tweak,
        mount_points_and_types,
    );
}

#[test]
fn mount_options_match_runc() {
    compare(
        "mount_options_match_runc",
        "cat /proc/self/mountinfo",
        0,
        no_tweak,
        mount_options,
    );
}

// ---------------------------------------------------------------- /dev

/// Name, type, mode, links, owner, device numbers and symlink target of
/// each entry: `ls -la` without sizes and times.
const DEV_LISTING: &str = r#"
for d in /dev /dev/pts /dev/shm /dev/mqueue; do
  echo "== $d"
  cd $d && for f in .* *; do [ -e "$f" ] || [ -L "$f" ] || continue; stat -c '%A %h %U:%G %t:%T %N' "$f"; done
done"#;

#[test]
fn dev_listing_matches_runc() {
    compare(
        "dev_listing_matches_runc",
        DEV_LISTING,
        0,
        no_tweak,
        verbatim,
    );
}

#[test]
fn mount_point_modes_and_owners_match_runc() {
    compare(
        "mount_point_modes_and_owners_match_runc",
        "stat -c '%n %A %U:%G' / /proc /dev /dev/pts /dev/shm /dev/mqueue /sys /sys/fs/cgroup /sys/fs/cgroup/* /tmp",
        0,
        no_tweak,
        verbatim,
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn proc_self_limits_match_runc() {
    compare(
        "proc_self_limits_match_runc",
        "cat /proc/self/limits",
        0,
        no_tweak,
        verbatim,
    );
}

// ---------------------------------------------------------------- readonly and masked paths

/// A shell function that tries to open a path for writing without writing
/// a byte (`: >>` opens O_APPEND and closes), so even a mistakenly writable
/// /proc/sysrq-trigger is not triggered; for a directory it tries to create
/// an entry. busybox's `[ -w ]` cannot be used: it is always true for root.
const WRITE_PROBE: &str = r#"
probe() {
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then echo "$1 absent"; return; fi
  t="$1"; [ -d "$1" ] && t="$1/.cove-probe"
  if err=$( { : >> "$t"; } 2>&1 ); then echo "$1 opened for writing"; [ -d "$1" ] && rm -f "$t"
  else echo "$1 refused: ${err##*: }"; fi
}
"#;

const READONLY_PROBE: &str = r#"
for p in /proc/bus /proc/fs /proc/irq /proc/irq/default_smp_affinity /proc/sys /proc/sys/kernel/core_pattern /proc/sys/vm/overcommit_memory /proc/sysrq-trigger /sys /sys/kernel /sys/fs/cgroup /sys/fs/cgroup/memory /; do
  probe $p
done
cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname 2>/dev/null && echo "hostname write ok" || echo "hostname write refused"
"#;

#[test]
fn readonly_paths_match_runc() {
    compare(
        "readonly_paths_match_runc",
        &format!("{WRITE_PROBE}{READONLY_PROBE}"),
        0,
        no_tweak,
        verbatim,
    );
}

const MASKED_PROBE: &str = r#"
for p in /proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list /proc/timer_stats /proc/sched_debug /sys/firmware /proc/scsi; do
  if [ ! -e $p ]; then echo "$p absent"
  elif [ -d $p ]; then echo "$p dir entries=$(ls -A $p | wc -l)"
  else echo "$p file size=$(wc -c < $p) type=$(stat -c %F $p)"
  fi
  probe $p
done
echo secret > /proc/keys 2>/dev/null; echo "after write /proc/keys size=$(wc -c < /proc/keys)"
"#;

#[test]
fn masked_paths_match_runc() {
    compare(
        "masked_paths_match_runc",
        &format!("{WRITE_PROBE}{MASKED_PROBE}"),
        0,
        no_tweak,
        verbatim,
    );
}

// ---------------------------------------------------------------- process

#[test]
fn environment_matches_runc() {
    compare(
        "environment_matches_runc",
        "env | sort",
        0,
        no_tweak,
        verbatim,
    );
}

#[test]
fn environment_with_home_and_extra_variables_matches_runc() {
    compare(
        "environment_with_home_and_extra_variables_matches_runc",
        "env | sort",
        0,
        |c| {
            c["process"]["env"] =
                json!(["PATH=/bin:/usr/bin", "HOME=/tmp", "FOO=bar baz", "EMPTY="]);
        },
        verbatim,
    );
}

#[test]
fn environment_of_user_1000_matches_runc() {
    compare(
        "environment_of_user_1000_matches_runc",
        "env | sort",
        0,
        |c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}),
        verbatim,
    );
}

#[test]
fn shell_is_pid_1_as_under_runc() {
    compare(
        "shell_is_pid_1_as_under_runc",
        "echo $$; cat /proc/1/comm; tr '\\0' ' ' < /proc/1/cmdline | cut -c1-30",
        0,
        no_tweak,
        verbatim,
    );
}

#[test]
fn open_fd_count_matches_runc() {
    compare(
        "open_fd_count_matches_runc",
        "ls /proc/self/fd | wc -l; ls /proc/$$/fd",
        0,
        no_tweak,
        verbatim,
    );
}

#[test]
fn cwd_matches_runc() {
    compare("cwd_matches_runc", "pwd", 0, no_tweak, verbatim);
}

#[test]
fn cwd_tmp_matches_runc() {
    compare(
        "cwd_tmp_matches_runc",
        "pwd",
        0,
        |c| c["process"]["cwd"] = json!("/tmp"),
        verbatim,
    );
}

/// A relative args[0] is looked up from the process's cwd, as runc does.
#[test]
fn relative_executable_is_found_from_cwd_as_runc() {
    compare(
        "relative_executable_is_found_from_cwd_as_runc",
        "unused",
        0,
        |c| {
            c["process"]["cwd"] = json!("/bin");
            c["process"]["args"] = json!(["./echo", "found from cwd"]);
        },
        verbatim,
    );
}

#[test]
fn umask_default_matches_runc() {
    compare("umask_default_matches_runc", "umask", 0, no_tweak, verbatim);
}

#[test]
fn umask_0077_matches_runc() {
    compare(
        "umask_0077_matches_runc",
        "umask",
        0,
        |c| c["process"]["user"]["umask"] = json!(0o077),
        verbatim,
    );
}

#[test]
fn exit_code_matches_runc() {
    compare(
        "exit_code_matches_runc",
        "echo bye; exit 3",
        3,
        no_tweak,
        verbatim,
    );
}

/// A container process starts with nothing blocked and no signal ignored,
/// although the runtime (Rust) ignores SIGPIPE and blocks signals to
/// forward them.
#[test]
fn signal_mask_and_ignored_signals_match_runc() {
    compare(
        "signal_mask_and_ignored_signals_match_runc",
        "grep -E '^Sig(Blk|Ign)' /proc/self/status",
        0,
        no_tweak,
        verbatim,
    );
}

/// With a cgroup namespace the container sees its own cgroups as the root
/// in every hierarchy (on hybrid hosts the namespace must be made after the
/// init joined its cgroups).
#[test]
fn cgroup_namespace_root_matches_runc() {
    compare(
        "cgroup_namespace_root_matches_runc",
        "cat /proc/self/cgroup",
        0,
        |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            // runc spec already has one on a pure cgroup v2 host.
            if !ns.iter().any(|n| n["type"] == "cgroup") {
                ns.push(json!({"type": "cgroup"}));
            }
        },
        verbatim,
    );
}

/// A process that cannot be started fails with runc's words (Go's
/// `exec.LookPath`) after the runtime's own prefix: podman and docker pick
/// their exit code (127 not found, 126 permission denied) from those words.
#[test]
fn missing_or_unexecutable_process_fails_with_runcs_words() {
    let test = "missing_or_unexecutable_process_fails_with_runcs_words";
    let Some(env) = prerequisites_with_runc(test) else {
        return;
    };
    let Some(runc) = env.runc.clone() else { return };
    for (arg0, words) in [
        (
            "/nonexistent",
            "exec: \"/nonexistent\": stat /nonexistent: no such file or directory",
        ),
        ("/etc/passwd", "exec: \"/etc/passwd\": permission denied"),
        ("/etc", "exec: \"/etc\": permission denied"),
        (
            "nonexistent",
            "exec: \"nonexistent\": executable file not found in $PATH",
        ),
    ] {
        let mut reference = Ct::with_bin(&env, test, &runc);
        reference.args(&[arg0]);
        reference.save_config();
        let under_test = reference.twin(&env.bin);
        for (label, ct) in [("runc", &reference), ("under test", &under_test)] {
            let out = ct.run();
            assert_ne!(out.code, 0, "{label}: {arg0} started:\n{out}");
            // The text log format quotes the message: \" stands for ".
            assert!(
                out.stderr.replace("\\\"", "\"").contains(words),
                "{label}: {arg0}: expected {words:?} in stderr:\n{out}"
            );
            let _ = ct.delete_force();
        }
    }
}
