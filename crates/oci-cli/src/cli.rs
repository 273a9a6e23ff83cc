//! runc's command line as clap structs: the same commands, flags and
//! defaults, so shims and scripts written for runc drive cove-oci unchanged.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cove-oci",
    about = "cove-oci: an OCI runtime with runc's command line",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Enable debug logging
    #[arg(long)]
    pub debug: bool,
    /// Log file (default: stderr)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Root directory for container state
    #[arg(long, default_value = "/run/cove-oci")]
    pub root: PathBuf,
    /// Path to the criu binary (checkpoint/restore)
    #[arg(long, hide = true, default_value = "criu")]
    pub criu: String,
    /// Use systemd cgroups ("slice:prefix:name" cgroupsPath)
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CreateArgs {
    /// Container id
    pub id: String,
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container init's pid to this file
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on a ramdisk)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3 .. 3+N-1) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Output the state of a container
    State { id: String },
    /// List containers
    #[command(alias = "ls")]
    List {
        /// table or json
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Send a signal to the container's init (default SIGTERM)
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process in the container's cgroup
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Delete a container and its resources
    #[command(alias = "rm")]
    Delete {
        id: String,
        /// Kill a running container first
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Run a new process inside a container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps {
        id: String,
        /// table or json
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Arguments for ps(1)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change the resource limits of a running container
    Update(UpdateArgs),
    /// Print usage statistics and events (OOM) of a container
    Events {
        id: String,
        /// Print one stats event and exit
        #[arg(long)]
        stats: bool,
        /// Time between stats events
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Write a default config.json into the bundle
    Spec {
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
        /// A config for running without root
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features this runtime implements (runtime-spec features.json)
    Features,
    /// Checkpoint a running container (CRIU)
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint (CRIU)
    Restore(RestoreArgs),
}

/// The CRIU options checkpoint and restore share, with runc's names.
#[derive(Args, Debug, Default, Clone)]
pub struct CriuArgs {
    /// Path for the CRIU image files (default: ./checkpoint)
    #[arg(long = "image-path", value_name = "PATH")]
    pub image_path: Option<PathBuf>,
    /// Path for CRIU's work files and logs (default: the image path)
    #[arg(long = "work-path", value_name = "PATH")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// cgroups mode: soft, full, strict or ignore (default: soft)
    #[arg(long = "manage-cgroups-mode", default_value = "")]
    pub manage_cgroups_mode: String,
    /// Create a namespace but do not restore its properties (network)
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    /// Deduplicate memory images automatically
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Restore memory pages lazily (userfaultfd)
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

#[derive(Args, Debug, Default)]
pub struct CheckpointArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path of the previous (pre-dump) images, relative to the image path
    #[arg(long = "parent-path", value_name = "PATH")]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after checkpointing
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Skip in-flight TCP connections
    #[arg(long = "tcp-skip-in-flight")]
    pub tcp_skip_in_flight: bool,
    /// Link unlinked files back when possible
    #[arg(long = "link-remap")]
    pub link_remap: bool,
    /// CRIU writes a 0 byte to this fd once lazy pages are ready
    #[arg(long = "status-fd", default_value_t = -1, allow_negative_numbers = true)]
    pub status_fd: i32,
    /// ADDRESS:PORT of a page server
    #[arg(long = "page-server", value_name = "ADDRESS:PORT")]
    pub page_server: Option<String>,
    /// Dump memory only and leave the container running
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
}

#[derive(Args, Debug, Default)]
pub struct RestoreArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the restored pty master
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the restored init's pid to this file
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Do not become a subreaper for the container's orphans
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Do not use pivot_root (accepted: CRIU restores the mount namespace)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// LSM profile (accepted; SELinux and AppArmor are not supported)
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// LSM mount context (accepted; SELinux is not supported)
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct ExecArgs {
    pub id: String,
    /// Command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variables to set (KEY=VALUE)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// UID[:GID]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json with the whole process to run
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Detach from the process
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// SELinux label (accepted; SELinux is not supported)
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile (accepted; AppArmor is not supported)
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Run in a sub-cgroup (accepted for compatibility)
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    pub id: String,
    /// A JSON file with linux.resources to apply, or - for stdin
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp")]
    pub kernel_memory_tcp: Option<String>,
    /// Memory limit (e.g. 512m, 1g, -1 for none)
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
}
