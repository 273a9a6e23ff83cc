//! cove-oci: a drop-in for runc on cove's engine. This binary only parses
//! the command line, prints, and maps errors to exit codes.

mod cli;
mod commands;
mod criu;
mod default_spec;
mod log;
mod notify;
mod resources;
mod signals;
mod tty;

use clap::Parser;

fn main() {
    // One malloc arena: a thread that allocates (none on the create path
    // today; the seccomp compile ran on one once) would get a second arena
    // mapped for it (a 64 MiB reservation, its pages faulted in fresh)
    // where the main arena has room to spare.
    // SAFETY: a malloc tunable, set before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            match e.kind() {
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    std::process::exit(0)
                }
                _ => {
                    let first = e.to_string();
                    let first = first
                        .lines()
                        .next()
                        .unwrap_or("bad usage")
                        .trim_start_matches("error: ");
                    eprintln!(
                        "{}",
                        log::format_line("error", &format!("{first} (see cove-oci --help)"), false)
                    );
                    std::process::exit(1)
                }
            }
        }
    };
    let logger = match log::Logger::new(cli.log.as_deref(), cli.log_format == "json", cli.debug) {
        Ok(l) => Box::leak(Box::new(l)),
        Err(e) => {
            eprintln!(
                "{}",
                log::format_line("error", &format!("cannot open log file: {e}"), false)
            );
            std::process::exit(1)
        }
    };
    let _ = tracing::subscriber::set_global_default(log::Layer(logger));
    match commands::run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            if logger.has_file() {
                logger.write("error", &msg);
            }
            eprintln!(
                "{}",
                log::format_line(
                    "error",
                    &msg,
                    cli.log_format == "json" && !logger.has_file()
                )
            );
            std::process::exit(1)
        }
    }
}
