//! The command line, as clap structs. Each command's doc comment is its
//! one-line summary in `cove --help`; the long text its man-page body.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Bytes;
use crate::ct::Limit;

#[derive(Debug, Parser)]
#[command(
    name = "cove",
    version,
    about = "System containers (CTs) from template root filesystems, vzctl-style, on a stock Linux kernel",
    long_about = "cove manages system containers (CTs): long-lived containers with their own init, \
made from read-only template root filesystems. A CT is named by a CTID, a number (101) or a name \
(web); every command also takes the CT's --name in its place.\n\n\
Data lives under /var/lib/cove (--data-dir, COVE_DATA), run-time state under /run/cove \
(--run-dir, COVE_RUN).\n\n\
Exit codes: 0 success; 1 bad input (unknown CT or template, bad value, bad config file); \
3 system error; 9 CT locked by another cove command; 31 CT not running; 32 CT running; \
33 CT did not stop; 44 CT already exists; migrate: 50 pre-flight check failed, 51 DEST unreachable, \
52 failed and rolled back, 53 interrupted (run cove migrate --abort). exec and enter exit with the command's status."
)]
pub struct Cli {
    /// Persistent data: CT configs, private areas, templates [env: COVE_DATA] [default: /var/lib/cove]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run-time state: bundles, console logs, locks [env: COVE_RUN] [default: /run/cove]
    #[arg(long, global = true, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CT from a template: its config and an empty private area
    #[command(
        long_about = "Create CT CTID from template NAME. Nothing of the template is copied: \
the CT's root is an overlay of the template and the CT's own private area, mounted when it starts. \
The hostname defaults to the --name, else ct<CTID>."
    )]
    Create {
        /// A number (101) or a name starting with a letter
        ctid: String,
        /// The template to make the CT from (see `cove template list`)
        #[arg(long, short = 't', value_name = "NAME")]
        template: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// Change a CT's settings; limits and network apply at once to a running CT
    Set {
        ctid: String,
        #[command(flatten)]
        settings: Settings,
        /// Accepted as vzctl takes it: set always saves the config and applies what it can to a running CT
        #[arg(long)]
        save: bool,
    },
    /// Remove a stopped CT: its config, private area and run-time state
    Destroy {
        ctid: String,
        /// Kill the CT first if it runs
        #[arg(long)]
        force: bool,
    },
    /// Start a CT: mount its root, start its init under a monitor
    #[command(
        long_about = "Start CT CTID and return once its init runs. A small monitor process \
stays with the CT: it holds the console (logged to <run>/ct/<CTID>/console.log), reaps the init \
and cleans up when the CT stops. With --foreground the monitor is this process, which exits when \
the CT does (what a service manager runs); SIGTERM then asks the CT to shut down."
    )]
    Start {
        ctid: String,
        /// Stay in the foreground as the CT's monitor, relaying its console to stdout
        #[arg(long)]
        foreground: bool,
    },
    /// Stop a CT: ask its init to shut down, kill it after the timeout
    #[command(
        long_about = "Stop CT CTID: send its init the signal it takes as a shutdown request \
(SIGRTMIN+3 for systemd, SIGUSR2 for busybox init, SIGPWR otherwise, or the CT's or template's \
stop_signal), wait up to --timeout seconds, then kill every process of the CT."
    )]
    Stop {
        ctid: String,
        /// Seconds to wait for a graceful shutdown before killing
        #[arg(long, value_name = "S", default_value_t = 60)]
        timeout: u64,
        /// Kill at once, without asking the init to shut down
        #[arg(long)]
        fast: bool,
    },
    /// Stop a CT if it runs, then start it
    Restart {
        ctid: String,
        /// Seconds to wait for a graceful shutdown before killing
        #[arg(long, value_name = "S", default_value_t = 60)]
        timeout: u64,
    },
    /// Mount a stopped CT's root on the host, to look at or change its files
    #[command(
        long_about = "Mount the root of stopped CT CTID (its template with its private area \
overlaid, as a start does) at <run>/ct/<CTID>/bundle/rootfs and print that path. Changes made \
there land in the CT's private area. `cove start` takes a mounted CT as it is; `cove umount` \
or `cove destroy` unmount it. Exits 32 if the CT runs."
    )]
    Mount { ctid: String },
    /// Unmount a CT's root mounted by `cove mount`
    Umount { ctid: String },
    /// Show whether a CT exists, is mounted and runs
    Status {
        ctid: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List CTs: those running or mounted, or all with -a
    #[command(
        long_about = "List CTs, as vzlist does: those running or mounted, or every CT with -a. \
Fields for -o and -s: ctid, name, status, template, hostname, ip, init_pid, onboot, memory, swap, \
cpus, cpuunits, ioweight, pids (a setting not made shows as -)."
    )]
    List {
        /// List every CT, stopped ones too
        #[arg(short, long)]
        all: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// The fields to show, comma-separated [default: ctid,name,status,template,ip,hostname]
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FIELD,...",
            value_delimiter = ','
        )]
        output: Vec<String>,
        /// Sort by FIELD; -FIELD sorts in reverse [default: ctid]
        #[arg(
            short = 's',
            long = "sort",
            value_name = "FIELD",
            allow_hyphen_values = true
        )]
        sort: Option<String>,
        /// No header line
        #[arg(short = 'H', long = "no-header")]
        no_header: bool,
    },
    /// Run a command inside a running CT; exits with its status
    Exec {
        ctid: String,
        /// The command and its arguments
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Open a login shell inside a running CT (on a terminal if stdin is one)
    Enter { ctid: String },
    /// Install cove's systemd units (cove@.service, cove.slice, cove.target)
    Systemd {
        #[command(subcommand)]
        command: SystemdCommand,
    },
    /// Attach to a running CT's console; Ctrl-] or Esc then . detaches
    #[command(
        long_about = "Attach this terminal to the console of CT CTID (what its init and getty \
write to /dev/console, and what they read from it), through the CT's monitor. Press Ctrl-] (or \
Esc then .) to detach; the CT keeps running. Several terminals may be attached at once. The console's output \
is also logged to <run>/ct/<CTID>/console.log, attached or not. Exits 0 on detach, 31 if the CT \
is not running."
    )]
    Console { ctid: String },
    /// Checkpoint a running CT with CRIU into a dump directory; the CT stops
    #[command(
        long_about = "Freeze CT CTID, write its processes, memory, open files, network namespace \
and console into a dump directory with CRIU (default <data>/ct/<CTID>/dump), and stop it. \
Prints how long the CT was frozen. `cove resume` brings it back."
    )]
    Suspend {
        ctid: String,
        /// Where to write the dump
        #[arg(long, value_name = "DIR")]
        dump_dir: Option<PathBuf>,
        /// Pre-dump memory N times while the CT runs first (a shorter final freeze)
        #[arg(long, value_name = "N", default_value_t = 0)]
        pre_dumps: u32,
        /// Print JSON (dump directory, frozen time)
        #[arg(long)]
        json: bool,
    },
    /// Move a CT to another host over ssh: stop, copy, start there
    #[command(
        long_about = "Move CT CTID to DEST ([user@]host) over OpenSSH, with the caller's keys, \
config and known_hosts; DEST runs the same cove (COVE_REMOTE_BIN names it there, default cove). \
Phases, each printed with its time: preflight (both sides compared: cove version, kernel, cgroup \
mode, template, bridge, free space, CTID free on DEST; mismatches listed, nothing changed), stop \
(if the CT runs), template (sent if DEST lacks it), transfer (config and private area, tar over \
ssh), start (on DEST, if it ran here), cleanup (the CT removed here unless --keep-src). A failure \
before DEST runs the CT rolls back: DEST keeps nothing, the CT runs here again. If cove dies \
half-way, `cove migrate --abort CTID` resolves it. With --online the CT keeps running while \
CRIU pre-dumps its memory (--precopy-rounds), then is frozen, dumped, sent and restored on DEST; \
a failure resumes it here. A CT with a veth keeps its addresses and established TCP connections: \
DEST puts it on its bridge of the same name and announces its addresses (gratuitous ARP, IPv6 neighbour advertisements). \
A CT that starts at boot does so on DEST (which needs cove's units: cove systemd install)."
    )]
    Migrate(crate::migrate::MigrateArgs),
    /// DEST's side of `cove migrate` (run over ssh)
    #[command(hide = true)]
    MigrateRecv(crate::migrate_recv::RecvArgs),
    /// Bring a suspended CT back from its dump
    Resume { ctid: String },
    /// Manage the template store
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List the templates in the store
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Build a template from its recipe in rootfs-templates/NAME
    #[command(
        long_about = "Build template NAME by running rootfs-templates/NAME/build into the \
store. The recipes are found in $COVE_TEMPLATES_DIR, else in a rootfs-templates/ directory above \
the cove executable, else in /usr/share/cove/rootfs-templates."
    )]
    Build {
        name: String,
        /// Replace an existing template of that name (no running CT may use it)
        #[arg(long)]
        force: bool,
    },
    /// Import a root filesystem tarball as a template
    Import {
        tarball: PathBuf,
        name: String,
        /// Replace an existing template of that name (no running CT may use it)
        #[arg(long)]
        force: bool,
    },
    /// Remove a template no CT is made from
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SystemdCommand {
    /// Write the units and reload systemd
    #[command(
        long_about = "Write cove@.service, cove.slice and cove.target into /etc/systemd/system (or \
--dir, or $COVE_SYSTEMD_DIR) with this cove binary's path in the Exec lines, enable cove.target \
(wanted by multi-user.target) and, when systemd runs and reads that directory, reload it. Then \
`systemctl start cove@CTID` runs a CT under systemd and `cove set CTID --onboot yes` starts it at \
boot."
    )]
    Install {
        /// The unit directory [default: /etc/systemd/system]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// The settings `create` and `set` share.
#[derive(Debug, Args)]
pub struct Settings {
    /// A name to address the CT by, besides its CTID
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The CT's hostname
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,
    /// Memory limit: 512M, 2G, ... or unlimited
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<Limit<Bytes>>,
    /// CPU limit as a number of CPUs: 0.5, 1.5, 2 ... or unlimited
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<Limit<f64>>,
    /// Maximum number of processes and threads, or unlimited
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids: Option<Limit<u32>>,
    /// Seccomp profile: default (cove's deny list), unconfined, or a profile file (OCI linux.seccomp JSON, or podman's and docker's format)
    #[arg(long, value_name = "PROFILE")]
    pub seccomp: Option<String>,
    #[command(flatten)]
    pub net: crate::net::NetArgs,
    /// Start the CT at boot: yes enables its cove@CTID.service unit, no disables it
    #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
    pub onboot: Option<bool>,
    /// Boot order among the CTs started at boot: higher starts first, unset last
    #[arg(long, value_name = "N")]
    pub bootorder: Option<u32>,
    /// Swap the CT may use on top of --memory: 0, 256M, 1G ... or unlimited
    #[arg(long, value_name = "SIZE", value_parser = parse_swap)]
    pub swap: Option<Limit<Bytes>>,
    /// Relative CPU weight, as OpenVZ's cpuunits: 8 to 500000, 1000 being the default weight
    #[arg(long, value_name = "N", value_parser = parse_cpuunits)]
    pub cpuunits: Option<u32>,
    /// Relative I/O weight: 10 to 1000, 100 being the kernel's default (needs proportional I/O control: the BFQ scheduler or cgroup v2's io.cost)
    #[arg(long, value_name = "N", value_parser = parse_ioweight)]
    pub ioweight: Option<u16>,
}

fn limit<T>(s: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Limit<T>, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        Ok(Limit::Unlimited)
    } else {
        parse(s).map(Limit::Set)
    }
}

fn parse_memory(s: &str) -> Result<Limit<Bytes>, String> {
    limit(s, |s| {
        let b = Bytes::parse(s)?;
        if b.0 < crate::config::MIN_MEMORY {
            return Err(format!("{s:?} is below the 1M minimum"));
        }
        Ok(b)
    })
}

fn parse_cpus(s: &str) -> Result<Limit<f64>, String> {
    use crate::config::{MAX_CPUS, MIN_CPUS};
    limit(s, |s| match s.trim().parse::<f64>() {
        Ok(c) if (MIN_CPUS..=MAX_CPUS).contains(&c) => Ok(c),
        _ => Err(format!(
            "{s:?} is not a number of CPUs between {MIN_CPUS} and {MAX_CPUS}"
        )),
    })
}

fn parse_swap(s: &str) -> Result<Limit<Bytes>, String> {
    limit(s, Bytes::parse)
}

fn parse_cpuunits(s: &str) -> Result<u32, String> {
    use crate::config::{MAX_CPUUNITS, MIN_CPUUNITS};
    match s.trim().parse::<u32>() {
        Ok(n) if (MIN_CPUUNITS..=MAX_CPUUNITS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a CPU weight between {MIN_CPUUNITS} and {MAX_CPUUNITS}"
        )),
    }
}

fn parse_ioweight(s: &str) -> Result<u16, String> {
    use crate::config::{MAX_IOWEIGHT, MIN_IOWEIGHT};
    match s.trim().parse::<u16>() {
        Ok(n) if (MIN_IOWEIGHT..=MAX_IOWEIGHT).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not an I/O weight between {MIN_IOWEIGHT} and {MAX_IOWEIGHT}"
        )),
    }
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{s:?}: use yes or no")),
    }
}

fn parse_pids(s: &str) -> Result<Limit<u32>, String> {
    limit(s, |s| match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number of processes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_memory("256M").unwrap(), Limit::Set(Bytes(256 << 20)));
        assert_eq!(parse_memory("unlimited").unwrap(), Limit::Unlimited);
        assert!(parse_memory("12").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), Limit::Set(1.5));
        assert!(parse_cpus("0").is_err() && parse_cpus("NaN").is_err());
        assert_eq!(parse_pids("100").unwrap(), Limit::Set(100));
        assert!(parse_pids("-1").is_err());
    }

    #[test]
    fn exec_takes_the_rest_of_the_line() {
        let cli = Cli::try_parse_from(["cove", "exec", "101", "ps", "-ef", "--x"]).unwrap();
        match cli.command {
            Command::Exec { ctid, command } => {
                assert_eq!(ctid, "101");
                assert_eq!(command, ["ps", "-ef", "--x"]);
            }
            c => panic!("{c:?}"),
        }
    }
}
