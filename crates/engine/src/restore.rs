//! The engine's half of a restore from a checkpoint: the state directory,
//! the cgroup (limits applied) and the saved spec, made as `create` makes
//! them, so that `state`, `kill`, `delete` and `list` treat a restored
//! container like one that was created. CRIU (driven by cove-checkpoint)
//! brings the processes back between [`begin`] and [`Restoring::commit`];
//! dropping a [`Restoring`] that was not committed kills whatever is in the
//! cgroup and removes the cgroup and the state directory again.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::container::{self, Cleanup, CreateOptions};
use crate::error::{Error, Result};
use crate::namespaces::Plan;
use crate::spec as specmod;
use crate::state::{self, Saved, StateDir};

/// A container being restored: everything but its processes exists.
pub struct Restoring {
    dir: StateDir,
    cleanup: Option<Cleanup>,
    saved: Saved,
    spec: Spec,
    pid_file: Option<PathBuf>,
}

/// Checks the bundle as `create` does, then makes the state directory, the
/// cgroup with the spec's limits, and the saved spec.
pub fn begin(opts: &CreateOptions) -> Result<Restoring> {
    specmod::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::InvalidConfig(format!("bundle {}: {e}", opts.bundle.display())))?;
    let spec = specmod::load(&bundle)?;
    let rootfs = specmod::validate(&spec, &bundle)?;
    // Namespaces are checked as for create; CRIU makes or joins them.
    Plan::from_spec(&spec)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(Error::InvalidConfig(
            "process.terminal is set: restore needs --console-socket to hand the restored pty master to"
                .into(),
        ));
    }
    if opts.systemd_cgroup {
        return Err(Error::InvalidConfig(
            "restore with --systemd-cgroup is not supported: restore without it".into(),
        ));
    }
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut cleanup = Cleanup {
        child: None,
        cgroup: None,
        state_dir: Some(dir.path.clone()),
    };
    let cg = cove_cgroups::manager(&container::cgroup_spec(
        &spec,
        &opts.id,
        opts.systemd_cgroup,
    ))?;
    cg.create()?;
    let cg = cleanup.cgroup.insert(cg);
    cg.apply(&container::resources_of(&spec))?;
    let saved = Saved {
        oci_version: specmod::SPEC_VERSION.into(),
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle,
        rootfs,
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: spec.annotations().clone(),
        cgroup_paths: cg.paths(),
        systemd_cgroup: opts.systemd_cgroup,
        stopped: false,
    };
    container::save_spec(&dir, &spec)?;
    Ok(Restoring {
        dir,
        cleanup: Some(cleanup),
        saved,
        spec,
        pid_file: opts.pid_file.clone(),
    })
}

impl Restoring {
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn rootfs(&self) -> &Path {
        &self.saved.rootfs
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir.path
    }

    /// (controller, host directory) of the container's cgroups.
    pub fn cgroup_paths(&self) -> &[(String, PathBuf)] {
        &self.saved.cgroup_paths
    }

    /// Moves `pid` (the restorer) into the container's cgroup: CRIU puts
    /// the restored tasks into the cgroup it runs in.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        cove_cgroups::manager_from_paths(&self.saved.cgroup_paths)
            .add_task(pid)
            .map_err(Error::from)
    }

    /// The state prestart and createRuntime hooks receive on stdin.
    pub fn hook_state(&self, pid: i32) -> Vec<u8> {
        container::hook_state(&self.saved, pid, "creating")
    }

    /// Records `pid` (the restored init) as the container's init: from now
    /// on the container is running, as after `create` and `start`.
    pub fn commit(mut self, pid: i32) -> Result<()> {
        self.saved.pid = pid;
        self.saved.pid_start = state::proc_stat(pid)
            .map(|s| s.1)
            .ok_or_else(|| Error::Other(format!("restored init {pid} is gone")))?;
        self.dir.save(&self.saved)?;
        if let Some(pf) = &self.pid_file {
            container::write_pid_file(pf, pid)?;
        }
        if let Some(c) = self.cleanup.take() {
            c.commit();
        }
        Ok(())
    }
}
