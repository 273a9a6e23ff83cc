//! The template store through `cove template`: build from a recipe, list,
//! import a tarball, remove; refusals leave no half-made template.
//! The debian-12 recipe is built only when COVE_TEST_DEBIAN=1 (it fetches
//! a few hundred packages from the machine's apt mirror).

mod support;

use std::fs;
use std::process::Command;
use std::time::Instant;

use support::*;

/// Entries of the store that are not templates (staging or removal leftovers).
fn hidden_entries(env: &CoveEnv) -> Vec<String> {
    fs::read_dir(env.data.join("templates"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn template_names(env: &CoveEnv) -> Vec<String> {
    let out = env.cmd(&["template", "list", "--json"]);
    out.assert_ok();
    let v = out.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn build_list_import_remove() {
    let Some(env) = CoveEnv::new("build_list_import_remove") else {
        return;
    };
    let t = Instant::now();
    // Generous: under the VM lane's software emulation this takes tens of seconds.
    let out = env.cmd_timeout(
        &["template", "build", "busybox"],
        std::time::Duration::from_secs(300),
    );
    out.assert_ok();
    eprintln!("MEASURE cove template build busybox: {:?}", t.elapsed());
    let rootfs = env.data.join("templates/busybox/rootfs");
    assert!(
        rootfs.join("bin/busybox").is_file() && rootfs.join("sbin/init").symlink_metadata().is_ok(),
        "{out}"
    );
    assert!(env.data.join("templates/busybox/manifest.toml").is_file());
    assert_eq!(template_names(&env), ["busybox"]);

    // Building over an existing template needs --force.
    assert_cove_refused(&env.cmd(&["template", "build", "busybox"]), 1);

    // Import: the busybox rootfs as a tarball, under another name.
    let tarball = env.root.join("bb.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let tb = tarball.display().to_string();
    env.cmd(&["template", "import", &tb, "bb2"]).assert_ok();
    assert_eq!(template_names(&env), ["bb2", "busybox"]);
    assert_cove_refused(&env.cmd(&["template", "import", &tb, "bb2"]), 1);
    env.cmd(&["template", "import", &tb, "bb2", "--force"])
        .assert_ok();

    // A CT made from it runs, and pins it.
    let ctid = env.new_ctid();
    env.cmd(&["create", &ctid, "--template", "bb2"]).assert_ok();
    env.cmd(&["start", &ctid]).assert_ok();
    let out = env.cmd(&["exec", &ctid, "cat", "/proc/1/comm"]);
    assert_eq!(out.stdout.trim(), "init", "{out}");
    let refused = env.cmd(&["template", "remove", "bb2"]);
    assert_cove_refused(&refused, 1);
    assert!(refused.stderr.contains(&ctid), "{refused}");
    // Not even --force replaces a template under a running CT.
    assert_cove_refused(&env.cmd(&["template", "import", &tb, "bb2", "--force"]), 1);
    env.cmd(&["destroy", "--force", &ctid]).assert_ok();
    env.cmd(&["template", "remove", "bb2"]).assert_ok();
    assert_eq!(template_names(&env), ["busybox"]);
    assert!(
        hidden_entries(&env).is_empty(),
        "leftovers: {:?}",
        hidden_entries(&env)
    );
}

/// The tests' template cache (target/test-rootfs, here a scratch copy of
/// it) follows its recipe: kept while the recipe is the same, built again
/// once any file of the recipe changes.
#[test]
fn template_cache_is_rebuilt_when_its_recipe_changes() {
    let test = "template_cache_is_rebuilt_when_its_recipe_changes";
    let Some(env) = CoveEnv::new(test) else {
        return;
    };
    let tmp = TempDir::new(test);
    let recipes = tmp.join("recipes");
    let recipe = recipes.join("tiny");
    fs::create_dir_all(&recipe).unwrap();
    fs::write(
        recipe.join("manifest.toml"),
        "name = \"tiny\"\nbuild = \"build\"\n",
    )
    .unwrap();
    // Each build leaves a stamp of its own in the rootfs.
    let script = recipe.join("build");
    fs::write(
        &script,
        "#!/bin/sh\nset -e\nmkdir -p \"$1/sbin\"\n: >\"$1/sbin/init\"\ncat /proc/sys/kernel/random/uuid >\"$1/stamp\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tmp.join("cache/cove-tiny");
    let build = || {
        let dir = cached_template_in(&env.bin, &recipes, &cache, "tiny", "rootfs/stamp")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dir, cache);
        fs::read_to_string(dir.join("rootfs/stamp")).unwrap()
    };
    let first = build();
    assert_eq!(build(), first, "the same recipe was built again");
    // A changed manifest is a changed recipe, like a changed script.
    fs::write(
        recipe.join("manifest.toml"),
        "name = \"tiny\"\nbuild = \"build\"\ndescription = \"changed\"\n",
    )
    .unwrap();
    let second = build();
    assert_ne!(second, first, "a changed recipe was not built again");
    assert_eq!(build(), second, "the changed recipe was built twice");
    let leftovers: Vec<_> = fs::read_dir(tmp.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cove-tiny")
        .collect();
    assert!(leftovers.is_empty(), "left in the cache: {leftovers:?}");
}

#[test]
fn bad_templates_are_refused_without_leftovers() {
    let Some(env) = CoveEnv::new("bad_templates") else {
        return;
    };
    // A tarball that is no root filesystem.
    let empty = env.root.join("empty");
    fs::create_dir_all(&empty).expect("mkdir");
    fs::write(empty.join("README"), "not a rootfs\n").expect("write");
    let tarball = env.root.join("empty.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&empty)
        .arg(".")
        .output()
        .expect("tar");
    assert!(tar.status.success());
    let tb = tarball.display().to_string();
    let out = env.cmd(&["template", "import", &tb, "junk"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("root filesystem"), "{out}");
    // Not a tarball at all.
    let notar = env.root.join("notar.tar");
    fs::write(&notar, "this is not a tar archive\n").expect("write");
    assert_cove_refused(
        &env.cmd(&["template", "import", &notar.display().to_string(), "junk"]),
        3,
    );
    assert_cove_refused(
        &env.cmd(&["template", "import", "/nonexistent.tar", "junk"]),
        1,
    );
    assert_cove_refused(&env.cmd(&["template", "build", "no-such-recipe"]), 1);
    assert_cove_refused(&env.cmd(&["template", "build", "Bad/Name"]), 1);
    assert_cove_refused(&env.cmd(&["template", "remove", "junk"]), 1);
    assert!(template_names(&env).is_empty());
    assert!(
        hidden_entries(&env).is_empty(),
        "leftovers: {:?}",
        hidden_entries(&env)
    );
}

/// The debian-12 recipe (slow: fetches packages), and create time for it
/// next to busybox's: a CT is created without copying its template.
#[test]
fn debian_template_creates_as_fast_as_busybox() {
    if std::env::var_os("COVE_TEST_DEBIAN").is_none() {
        skip(
            "debian_template_creates_as_fast_as_busybox",
            "set COVE_TEST_DEBIAN=1 to build the debian-12 template",
        );
        return;
    }
    let Some(env) = CoveEnv::with_busybox("debian_template") else {
        return;
    };
    let t = Instant::now();
    let out = env.cmd_timeout(
        &["template", "build", "debian-12"],
        std::time::Duration::from_secs(1800),
    );
    out.assert_ok();
    eprintln!("MEASURE cove template build debian-12: {:?}", t.elapsed());
    let mut row = Vec::new();
    for template in ["busybox", "debian-12"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let ctid = env.new_ctid();
            let mut create = env.command(&["create", &ctid, "--template", template]);
            create.stdout(std::process::Stdio::null());
            let t = Instant::now();
            let status = create.status().expect("spawn cove create");
            times.push(t.elapsed());
            assert!(
                status.success(),
                "cove create {ctid} --template {template}: {status}"
            );
        }
        times.sort();
        row.push(format!("{template} {:?}", times[times.len() / 2]));
    }
    eprintln!("MEASURE cove create, median of 5: {}", row.join(", "));
}
