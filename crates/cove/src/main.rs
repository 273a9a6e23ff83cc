//! The `cove` binary: parses the command line, runs the command, prints an
//! error as one line and exits with its documented code.

use clap::Parser;

fn main() {
    // Rust starts with SIGPIPE ignored, and an ignored signal stays ignored
    // across execve: the CT's init and every process it starts would
    // inherit that. Restore the default, which also makes `cove list | head`
    // end quietly like any other tool.
    // SAFETY: setting a standard disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // One malloc arena: a CT's monitor is a `cove` process for the CT's
    // whole life, and any thread that allocates would leave an arena of
    // its own behind that malloc_trim cannot give back (some 50 KiB
    // resident). cove's threads are few and short.
    // SAFETY: a malloc tunable, set before any thread or allocation of ours.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = match cove::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            // clap's first line ends in ':' when the next one names the
            // argument ("...were not provided:\n  <CTID>"): keep both.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ")
                .to_string();
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first = format!("{first} {next}");
                }
            }
            eprintln!("cove: {first} (see cove --help)");
            std::process::exit(cove::error::exit::BAD_INPUT);
        }
    };
    match cove::commands::run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cove: {}", e.one_line());
            std::process::exit(e.exit_code());
        }
    }
}
