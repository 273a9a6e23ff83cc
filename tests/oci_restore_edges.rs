//! Restore's edges, as a user of runc's command line sees them (where
//! CRIU works: the VM lane): a prestart hook run at restore, while CRIU
//! runs, gets none of the fds the runtime hands CRIU (image and work
//! directories, namespaces); a bind mount inside another bind mount comes
//! back though its mount point is gone from the outer mount's source (as
//! on a host the dump was moved to; runc issue 2748).

mod support;

use std::fs;

use serde_json::json;
use support::criu::*;
use support::*;

#[test]
fn restore_hooks_get_no_criu_fds_and_nested_binds_come_back() {
    let test = "restore_hooks_get_no_criu_fds_and_nested_binds_come_back";
    let Some(env) = prerequisites(test) else {
        return;
    };
    if !needs_criu(test) {
        return;
    }
    let images = Images::new(test);
    let mut ct = counter(&env, test, &env.bin);
    // /outer is a bind mount, /outer/inner another one inside it.
    let outer = TempDir::new(&format!("{test}-outer"));
    let inner = TempDir::new(&format!("{test}-inner"));
    fs::write(inner.join("hello"), "nested\n").expect("write");
    let mounts = ct.config["mounts"].as_array_mut().expect("mounts");
    for (dest, src) in [("/outer", &outer), ("/outer/inner", &inner)] {
        mounts.push(json!({
            "destination": dest, "type": "bind",
            "source": src.path.display().to_string(), "options": ["rbind", "rw"]
        }));
    }
    // A prestart hook (run again at restore, while CRIU runs) lists its fds.
    let fds_file = ct.bundle.join("hook-fds");
    ct.config["hooks"] = json!({"prestart": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("ls -l /proc/$$/fd > {}", fds_file.display())]
    }]});
    run_detached(&ct, &[]).assert_ok();
    wait_counts(&ct, 2);
    let img = images.join("nested");
    checkpoint(&ct, &img, &[]).assert_ok();
    report_frozen(
        test,
        "dump with nested bind mounts",
        &runtime_name(&ct),
        &img,
    );
    // As on a host the dump was moved to: the inner mount point, made in
    // the outer source at create, is not there.
    fs::remove_dir(outer.join("inner")).expect("rmdir the inner mount point");
    let _ = fs::remove_file(&fds_file);
    restore(&ct, &img, &[]).assert_ok();
    let fds = fs::read_to_string(&fds_file).expect("the prestart hook ran at restore");
    // Whatever else the hook inherits comes from the test's own
    // environment (the VM's serial ports), not from the runtime.
    assert!(
        !fds.contains(&img) && !fds.contains("net:[") && !fds.contains("socket:["),
        "the restore-time hook inherited the fds the runtime hands CRIU:\n{fds}"
    );
    let hello = ct.cmd_timeout(&["exec", &ct.id, "cat", "/outer/inner/hello"], CRIU_TIMEOUT);
    hello.assert_ok();
    assert_eq!(hello.stdout.trim(), "nested", "{hello}");
    let c = counts(&ct);
    assert_one_unbroken_count(&wait_counts(&ct, c.len() + 2), "after restore");
}
