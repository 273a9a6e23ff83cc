//! `checkpoint` and `restore`: runc's flags turned into cove-checkpoint's
//! options. CRIU itself is driven by cove-checkpoint over its RPC.

use std::os::fd::AsFd;
use std::path::PathBuf;

use cove_checkpoint::{CheckpointOptions, RestoreOptions};

use crate::cli::{CheckpointArgs, Cli, CriuArgs, RestoreArgs};
use crate::commands::absolute;

type Res = Result<i32, String>;

/// runc's default: `checkpoint` in the current directory.
fn image_path(a: &CriuArgs) -> PathBuf {
    absolute(&a.image_path).unwrap_or_else(|| {
        std::env::current_dir()
            .unwrap_or_default()
            .join("checkpoint")
    })
}

/// CLONE_NEW* bits for --empty-ns; the network namespace is always in, as
/// with runc (it does not manage network devices).
fn empty_ns(a: &CriuArgs) -> Result<u32, String> {
    let mut mask = libc::CLONE_NEWNET as u32;
    for ns in &a.empty_ns {
        match ns.as_str() {
            "network" => mask |= libc::CLONE_NEWNET as u32,
            other => {
                return Err(format!(
                    "namespace {other:?} is not supported by --empty-ns (only network)"
                ))
            }
        }
    }
    Ok(mask)
}

fn page_server(s: &str) -> Result<(String, i32), String> {
    let bad = || "use --page-server ADDRESS:PORT to name a page server".to_string();
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    if addr.is_empty() {
        return Err(bad());
    }
    let port = port
        .parse()
        .map_err(|_| format!("invalid port number in --page-server {s}"))?;
    Ok((addr.to_string(), port))
}

pub fn checkpoint(cli: &Cli, a: &CheckpointArgs) -> Res {
    let o = CheckpointOptions {
        criu: cli.criu.clone(),
        image_path: image_path(&a.criu),
        work_path: absolute(&a.criu.work_path),
        parent_path: a.parent_path.clone(),
        leave_running: a.leave_running,
        tcp_established: a.criu.tcp_established,
        tcp_skip_in_flight: a.tcp_skip_in_flight,
        link_remap: a.link_remap,
        ext_unix_sk: a.criu.ext_unix_sk,
        shell_job: a.criu.shell_job,
        file_locks: a.criu.file_locks,
        pre_dump: a.pre_dump,
        manage_cgroups_mode: a.criu.manage_cgroups_mode.clone(),
        empty_ns: empty_ns(&a.criu)?,
        auto_dedup: a.criu.auto_dedup,
        lazy_pages: a.criu.lazy_pages,
        page_server: a.page_server.as_deref().map(page_server).transpose()?,
        page_server_fd: None,
        status_fd: (a.status_fd >= 0).then_some(a.status_fd),
        // runc sends neither.
        enable_fs: Vec::new(),
        irmap_scan_paths: Vec::new(),
        cgroup_tree: false,
    };
    let done = cove_checkpoint::checkpoint(&cli.root, &a.id, &o).map_err(|e| e.to_string())?;
    if let Some(s) = done.stats {
        tracing::debug!(
            "checkpoint of {}: frozen {} us, {} pages written",
            a.id,
            s.frozen_time_us,
            s.pages_written
        );
    }
    Ok(0)
}

pub fn restore(cli: &Cli, a: &RestoreArgs) -> Res {
    let o = RestoreOptions {
        criu: cli.criu.clone(),
        create: cove_engine::container::CreateOptions {
            id: a.id.clone(),
            bundle: a.bundle.clone(),
            root: cli.root.clone(),
            console_socket: absolute(&a.console_socket),
            pid_file: absolute(&a.pid_file),
            no_pivot: a.no_pivot,
            systemd_cgroup: cli.systemd_cgroup,
            ..Default::default()
        },
        image_path: image_path(&a.criu),
        work_path: absolute(&a.criu.work_path),
        tcp_established: a.criu.tcp_established,
        ext_unix_sk: a.criu.ext_unix_sk,
        shell_job: a.criu.shell_job,
        file_locks: a.criu.file_locks,
        manage_cgroups_mode: a.criu.manage_cgroups_mode.clone(),
        empty_ns: empty_ns(&a.criu)?,
        auto_dedup: a.criu.auto_dedup,
        lazy_pages: a.criu.lazy_pages,
        external: Vec::new(),
        cgroup_tree: false,
    };
    if !a.detach && !a.no_subreaper {
        // Orphans of the container come to us, as with runc.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    // Signals that arrive from here on go to the restored init.
    let mut sfd = if a.detach {
        None
    } else {
        Some(cove_engine::foreground::block_signals().map_err(|e| e.to_string())?)
    };
    let restored = cove_checkpoint::restore(&o).map_err(|e| e.to_string())?;
    let Some(sfd) = sfd.as_mut() else {
        return Ok(0);
    };
    let pidfd = cove_engine::sys::pidfd_open(restored.pid)
        .map_err(|e| format!("pidfd_open {}: {e}", restored.pid))?;
    cove_engine::foreground::wait_forwarding(pidfd.as_fd(), sfd).map_err(|e| e.to_string())
}
