//! Root tests against the real cgroup hierarchies of this host (hybrid on
//! the development machines, unified in the VM lane). Each test owns
//! /cove-test/cgtest-<pid>[-<name>] and removes it, whatever happens.
//! Without root they print why and pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cove_cgroups::{host_mode, manager, CgroupManager, CgroupSpec, HostMode};
use oci_spec::runtime::LinuxResources;

const MIB: u64 = 1024 * 1024;

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("{test}: skipped, needs root to create cgroups");
    true
}

/// Kills what the test started and removes its cgroup even when an
/// assertion fails half-way.
struct Cleanup {
    cgroup: Box<dyn CgroupManager>,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroup.thaw();
        let _ = self.cgroup.kill_all(libc::SIGKILL);
        let _ = self.cgroup.destroy();
    }
}

fn test_cgroup(suffix: &str) -> Cleanup {
    let path = format!("/cove-test/cgtest-{}{suffix}", std::process::id());
    let spec = CgroupSpec {
        path: Some(path),
        id: "cgtest".into(),
        systemd: false,
    };
    let cgroup = manager(&spec).expect("manager for an absolute cgroupsPath");
    Cleanup {
        cgroup,
        children: Vec::new(),
    }
}

fn dir_of(paths: &[(String, PathBuf)], controller: &str) -> Option<PathBuf> {
    paths
        .iter()
        .find(|(name, _)| name == controller)
        .map(|(_, dir)| dir.clone())
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10));
    }
}

#[test]
fn container_cgroup_lifecycle_on_this_host() {
    if skip_unless_root("container_cgroup_lifecycle_on_this_host") {
        return;
    }
    let mode = host_mode();
    let mut t = test_cgroup("");
    let paths = t.cgroup.paths();
    let leaf = format!("/cove-test/cgtest-{}", std::process::id());

    t.cgroup.create().expect("create");
    t.cgroup.create().expect("create again is a no-op");
    for (_, dir) in &paths {
        assert!(dir.is_dir(), "{} was not created", dir.display());
        assert!(dir.ends_with(leaf.trim_start_matches('/')));
    }
    match mode {
        HostMode::Hybrid => {
            assert!(dir_of(&paths, "").is_some(), "hybrid has a unified leaf");
            assert!(dir_of(&paths, "memory").is_some());
        }
        HostMode::Legacy => assert!(dir_of(&paths, "").is_none()),
        HostMode::Unified => assert_eq!(paths.len(), 1),
    }
    if let Some(cpuset) = dir_of(&paths, "cpuset") {
        // Inherited from the parent, or no task could join.
        assert!(!read(&cpuset, "cpuset.cpus").is_empty());
        assert!(!read(&cpuset, "cpuset.mems").is_empty());
    }

    let res: LinuxResources =
        serde_json::from_str(r#"{"memory": {"limit": 67108864}, "pids": {"limit": 20}}"#)
            .expect("resources JSON");
    t.cgroup.apply(&res).expect("apply memory and pids limits");
    match mode {
        HostMode::Unified => {
            let dir = dir_of(&paths, "").expect("unified leaf");
            assert_eq!(read(&dir, "memory.max"), (64 * MIB).to_string());
            assert_eq!(read(&dir, "pids.max"), "20");
        }
        _ => {
            let memory = dir_of(&paths, "memory").expect("memory hierarchy");
            assert_eq!(
                read(&memory, "memory.limit_in_bytes"),
                (64 * MIB).to_string()
            );
            let pids = dir_of(&paths, "pids").expect("pids hierarchy");
            assert_eq!(read(&pids, "pids.max"), "20");
        }
    }

    let child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    t.children.push(child);
    t.cgroup.add_task(pid).expect("add_task");
    assert_eq!(t.cgroup.pids().expect("pids"), [pid]);
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    for line in proc_cgroup.lines() {
        let controllers = line.split(':').nth(1).unwrap_or("");
        let in_leaf = line.ends_with(&leaf);
        match controllers {
            "" if mode != HostMode::Legacy => assert!(in_leaf, "v2: {line}"),
            "memory" | "pids" | "freezer" | "cpuset" | "name=systemd" => {
                assert!(in_leaf, "v1: {line}")
            }
            _ => {}
        }
    }

    let stats = t.cgroup.stats().expect("stats");
    let memory = stats.memory.expect("memory stats");
    assert_eq!(memory.limit, Some(64 * MIB));
    // No usage check: v1 leaves a moved task's pages charged to its old
    // cgroup (memory.move_charge_at_immigrate is 0), so usage may be 0.
    let pids = stats.pids.expect("pids stats");
    assert_eq!((pids.current, pids.limit), (1, Some(20)));
    assert!(stats.cpu.is_some());

    t.cgroup.freeze().expect("freeze");
    assert!(t.cgroup.is_frozen().expect("is_frozen"));
    if let Some(freezer) = dir_of(&paths, "freezer") {
        assert_eq!(read(&freezer, "freezer.state"), "FROZEN");
    }
    t.cgroup.thaw().expect("thaw");
    assert!(!t.cgroup.is_frozen().expect("is_frozen"));

    t.cgroup.kill_all(libc::SIGKILL).expect("kill_all");
    let mut child = t.children.pop().expect("the sleep child");
    let status = child.wait().expect("wait for sleep");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(t.cgroup.pids().expect("pids").is_empty());

    t.cgroup.destroy().expect("destroy");
    for (_, dir) in &paths {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    t.cgroup
        .destroy()
        .expect("destroy of a removed cgroup is fine");
}

#[test]
fn kill_all_with_sigterm_reaches_every_process_of_the_tree() {
    if skip_unless_root("kill_all_with_sigterm_reaches_every_process_of_the_tree") {
        return;
    }
    let mut t = test_cgroup("-term");
    t.cgroup.create().expect("create");
    // A shell with two children of its own: they join the cgroup by fork.
    let mut shell = Command::new("sh")
        .args(["-c", "read _; sleep 30 & sleep 30 & wait"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = shell.id() as i32;
    t.cgroup.add_task(pid).expect("add_task");
    // Let the shell fork only once it is inside.
    drop(shell.stdin.take());
    t.children.push(shell);
    wait_until("three processes in the cgroup", || {
        t.cgroup.pids().map(|p| p.len() == 3).unwrap_or(false)
    });

    t.cgroup.kill_all(libc::SIGTERM).expect("kill_all SIGTERM");
    assert!(
        !t.cgroup.is_frozen().expect("is_frozen"),
        "kill_all leaves the cgroup thawed"
    );
    wait_until("the cgroup to empty", || {
        t.cgroup.pids().map(|p| p.is_empty()).unwrap_or(false)
    });
    t.cgroup.destroy().expect("destroy");
    for (_, dir) in t.cgroup.paths() {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[test]
fn destroy_removes_cgroups_the_container_nested_inside() {
    if skip_unless_root("destroy_removes_cgroups_the_container_nested_inside") {
        return;
    }
    let t = test_cgroup("-nested");
    t.cgroup.create().expect("create");
    for (_, dir) in t.cgroup.paths() {
        let inner = dir.join("init.scope").join("deeper");
        std::fs::create_dir_all(&inner).expect("nested cgroup");
    }
    t.cgroup.destroy().expect("destroy");
    for (_, dir) in t.cgroup.paths() {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources JSON")
}

#[test]
fn v1_limits_land_in_runcs_files_and_update_in_place() {
    if skip_unless_root("v1_limits_land_in_runcs_files_and_update_in_place") {
        return;
    }
    if host_mode() == HostMode::Unified {
        eprintln!("v1_limits_land_in_runcs_files_and_update_in_place: skipped, no v1 here");
        return;
    }
    let t = test_cgroup("-limits");
    t.cgroup.create().expect("create");
    let paths = t.cgroup.paths();
    let memory = dir_of(&paths, "memory").expect("memory hierarchy");
    let cpu = dir_of(&paths, "cpu").expect("cpu hierarchy");
    let cpuset = dir_of(&paths, "cpuset").expect("cpuset hierarchy");
    let devices = dir_of(&paths, "devices").expect("devices hierarchy");
    let has_memsw = memory.join("memory.memsw.limit_in_bytes").exists();

    t.cgroup
        .apply(&resources(
            r#"{"memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432,
                           "swappiness": 20},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
                "pids": {"limit": -1},
                "devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 136, "access": "rw"}]}"#,
        ))
        .expect("apply");
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
    if has_memsw {
        assert_eq!(
            read(&memory, "memory.memsw.limit_in_bytes"),
            (128 * MIB).to_string()
        );
    }
    assert_eq!(
        read(&memory, "memory.soft_limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(read(&memory, "memory.swappiness"), "20");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    assert_eq!(read(&devices, "devices.list"), "c 1:3 rwm\nc 136:* rw");
    if let Some(pids) = dir_of(&paths, "pids") {
        assert_eq!(read(&pids, "pids.max"), "max");
    }

    // Raising both past the old memory+swap only works memsw first; the
    // kernel refuses the other order with EINVAL.
    t.cgroup
        .apply(&resources(
            r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#,
        ))
        .expect("raise memory and swap");
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (256 * MIB).to_string()
    );
    // And lowering only works memory first.
    t.cgroup
        .apply(&resources(
            r#"{"memory": {"limit": 33554432, "swap": 67108864}}"#,
        ))
        .expect("lower memory and swap");
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    if has_memsw {
        assert_eq!(
            read(&memory, "memory.memsw.limit_in_bytes"),
            (64 * MIB).to_string()
        );
    }
    // Shares outside the kernel's range are an error, not a silent clamp.
    assert!(t
        .cgroup
        .apply(&resources(r#"{"cpu": {"shares": 1}}"#))
        .is_err());

    t.cgroup.destroy().expect("destroy");
    for (_, dir) in &paths {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

/// The v2 manager on a real cgroup2 tree: the whole hierarchy on a unified
/// host, /sys/fs/cgroup/unified on a hybrid one. The leaf is made by hand
/// so the test never changes controller delegation of the host's tree.
#[test]
fn v2_leaf_freezes_kills_and_gives_a_cgroup_fd() {
    if skip_unless_root("v2_leaf_freezes_kills_and_gives_a_cgroup_fd") {
        return;
    }
    let mount = match host_mode() {
        HostMode::Unified => PathBuf::from("/sys/fs/cgroup"),
        HostMode::Hybrid => PathBuf::from("/sys/fs/cgroup/unified"),
        HostMode::Legacy => {
            eprintln!("v2_leaf_freezes_kills_and_gives_a_cgroup_fd: skipped, no cgroup2 here");
            return;
        }
    };
    let leaf = mount.join(format!("cove-test/cgtest-{}-v2", std::process::id()));
    std::fs::create_dir_all(&leaf).expect("mkdir v2 leaf");
    let mut t = Cleanup {
        cgroup: cove_cgroups::manager_from_paths(&[(String::new(), leaf.clone())]),
        children: Vec::new(),
    };
    assert_eq!(t.cgroup.paths(), [(String::new(), leaf.clone())]);

    let fd = t.cgroup.dir_fd().expect("a v2 leaf has a directory fd");
    let dir = std::fs::File::from(fd).metadata().expect("fstat");
    assert!(dir.is_dir());

    let mut shell = Command::new("sh")
        .args(["-c", "read _; sleep 30 & wait"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    t.cgroup.add_task(shell.id() as i32).expect("add_task");
    drop(shell.stdin.take());
    t.children.push(shell);
    wait_until("two processes in the v2 leaf", || {
        t.cgroup.pids().map(|p| p.len() == 2).unwrap_or(false)
    });

    t.cgroup.freeze().expect("freeze");
    assert!(t.cgroup.is_frozen().expect("is_frozen"));
    assert_eq!(read(&leaf, "cgroup.freeze"), "1");
    t.cgroup.thaw().expect("thaw");
    assert!(!t.cgroup.is_frozen().expect("is_frozen"));

    // Frozen, then killed: cgroup.kill reaches frozen tasks too.
    t.cgroup.freeze().expect("freeze before kill");
    t.cgroup.kill_all(libc::SIGKILL).expect("kill_all");
    wait_until("the v2 leaf to empty", || {
        t.cgroup.pids().map(|p| p.is_empty()).unwrap_or(false)
    });
    let mut shell = t.children.pop().expect("the shell");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(shell.wait().expect("wait").signal(), Some(libc::SIGKILL));

    t.cgroup.destroy().expect("destroy");
    assert!(!leaf.exists(), "{} is left behind", leaf.display());
}

/// The v2 device program on a real cgroup2 tree (the unified tree of a
/// hybrid host works too: the kernel runs cgroup2 device programs before
/// the v1 device controller). A shell in the leaf may read /dev/null and
/// /dev/zero, gets EPERM on a node it made for c 1:1 (/dev/mem), and an
/// update swaps the one attached program for a new one that allows c 1:1
/// for reading.
#[test]
fn v2_device_program_allows_listed_devices_and_is_replaced_on_update() {
    let test = "v2_device_program_allows_listed_devices_and_is_replaced_on_update";
    if skip_unless_root(test) {
        return;
    }
    let mount = match host_mode() {
        HostMode::Unified => PathBuf::from("/sys/fs/cgroup"),
        HostMode::Hybrid => PathBuf::from("/sys/fs/cgroup/unified"),
        HostMode::Legacy => {
            eprintln!("{test}: skipped, no cgroup2 here");
            return;
        }
    };
    let leaf = mount.join(format!("cove-test/cgtest-{}-dev", std::process::id()));
    std::fs::create_dir_all(&leaf).expect("mkdir v2 leaf");
    let mut t = Cleanup {
        cgroup: cove_cgroups::manager_from_paths(&[(String::new(), leaf.clone())]),
        children: Vec::new(),
    };
    let nodes = std::env::temp_dir().join(format!("cove-cgtest-{}-dev", std::process::id()));
    let _ = std::fs::remove_dir_all(&nodes);
    std::fs::create_dir_all(&nodes).expect("mkdir nodes dir");
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _nodes_guard = RemoveDir(nodes.clone());

    let rules = |extra: &str| {
        resources(&format!(
            r#"{{"devices": [{{"allow": false, "access": "rwm"}},
                {{"allow": true, "type": "c", "access": "m"}},
                {{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}},
                {{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}}{extra}]}}"#
        ))
    };
    t.cgroup.apply(&rules("")).expect("apply device rules");
    let first = cove_cgroups::device_program_ids(&leaf).expect("query");
    assert_eq!(first.len(), 1, "one program attached: {first:?}");

    // The shell joins the leaf before it reads its script from stdin.
    let probe = |t: &mut Cleanup| -> String {
        let script = format!(
            "cd {dir}; read _; \
             cat /dev/null && echo null ok; \
             head -c 3 /dev/zero | wc -c; \
             mknod mem c 1 1 && echo mknod ok; \
             head -c 1 mem >/dev/null 2>err; echo read mem $?: $(cat err); \
             (echo x >mem) 2>err; echo write mem $?: $(cat err); rm -f mem err",
            dir = nodes.display()
        );
        let mut shell = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        t.cgroup.add_task(shell.id() as i32).expect("add_task");
        drop(shell.stdin.take());
        let out = shell.wait_with_output().expect("wait for sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let seen = probe(&mut t);
    assert!(seen.contains("null ok\n3\nmknod ok\n"), "{seen}");
    let line = |seen: &str, what: &str| {
        seen.lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line(&seen, "read mem").contains("Operation not permitted")
            && line(&seen, "write mem").contains("Operation not permitted"),
        "c 1:1 must be refused:\n{seen}"
    );

    // Update: c 1:1 readable (not writable). The old program goes.
    t.cgroup
        .apply(&rules(
            r#", {"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"}"#,
        ))
        .expect("apply new device rules");
    let second = cove_cgroups::device_program_ids(&leaf).expect("query");
    assert_eq!(second.len(), 1, "still one program: {second:?}");
    assert_ne!(first, second, "the program was not replaced");
    let seen = probe(&mut t);
    // Allowed, the open reaches the driver (which may have nothing to
    // give: ENXIO without /dev/mem support); writing is still refused.
    assert!(
        !line(&seen, "read mem").contains("Operation not permitted")
            && line(&seen, "write mem").contains("Operation not permitted"),
        "c 1:1 must be readable, not writable:\n{seen}"
    );
    t.cgroup.destroy().expect("destroy");
}
