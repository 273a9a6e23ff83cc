//! How long compiling podman's default profile takes.
//!
//!   cargo run --release -p cove-seccomp --example compile_bench [--oci] [PROFILE.json]
//!       [--libseccomp-rules FILE] [--bpf-out FILE] [--oci-out FILE] [--rounds N]
//!
//! PROFILE defaults to /usr/share/containers/seccomp.json (containers-common),
//! converted to the OCI form podman writes into config.json; with `--oci` it
//! is a `linux.seccomp` object already. Reports the
//! time to parse that `linux.seccomp` object and the time to compile it.
//! `--libseccomp-rules` also writes the profile, rewritten the way runc
//! rewrites it, for `bench/libseccomp_compile.c`, which times libseccomp
//! doing the same work; `--bpf-out` writes the program (raw sock_filter);
//! `--oci-out` writes the `linux.seccomp` object (what podman puts in
//! config.json), which scripts/bench runs containers with.

use std::time::{Duration, Instant};

const PODMAN_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dump = option(&mut args, "--libseccomp-rules")?;
    let bpf_out = option(&mut args, "--bpf-out")?;
    let oci_out = option(&mut args, "--oci-out")?;
    let rounds = match option(&mut args, "--rounds")? {
        None => 2000,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("--rounds {n}: need a positive number"))?,
    };
    let oci = match args.iter().position(|a| a == "--oci") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/usr/share/containers/seccomp.json".into());
    let raw = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let spec = if oci {
        cove_seccomp::from_json(&raw)?
    } else {
        cove_seccomp::from_containers_json(&raw, PODMAN_DEFAULT_CAPS)?
    };
    let oci_json = serde_json::to_vec(&spec)?;
    let rules: usize = spec
        .syscalls()
        .iter()
        .flatten()
        .map(|s| s.names().len())
        .sum();

    // A runtime process compiles once: the first compile pays for any
    // one-time set-up (the syscall name index), so it is reported apart.
    let t = Instant::now();
    std::hint::black_box(cove_seccomp::compile(&spec)?);
    let first = t.elapsed();

    let parse = measure(rounds, || {
        std::hint::black_box(cove_seccomp::from_json(&oci_json).map(|_| ()))
    })?;
    let compile = measure(rounds, || {
        std::hint::black_box(cove_seccomp::compile(&spec).map(|_| ()))
    })?;
    let filter = cove_seccomp::compile(&spec)?;

    println!(
        "profile: {path} ({rules} syscall names, {} bytes as OCI JSON)",
        oci_json.len()
    );
    println!(
        "program: {} instructions, flags {:#x}",
        filter.instructions().len(),
        filter.flags()
    );
    report("parse linux.seccomp", &parse);
    report("compile", &compile);
    println!(
        "{:>20}: {:7.1} µs (the first in this process, as in `create`)",
        "first compile",
        first.as_secs_f64() * 1e6
    );
    if let Some(file) = dump {
        std::fs::write(&file, libseccomp_rules(&spec)).map_err(|e| format!("{file}: {e}"))?;
        println!("libseccomp rules written to {file}");
    }
    if let Some(file) = oci_out {
        std::fs::write(&file, &oci_json).map_err(|e| format!("{file}: {e}"))?;
        println!("linux.seccomp written to {file}");
    }
    if let Some(file) = bpf_out {
        let bytes: Vec<u8> = filter
            .instructions()
            .iter()
            .flat_map(|i| {
                [
                    &i.code.to_ne_bytes()[..],
                    &[i.jt, i.jf],
                    &i.k.to_ne_bytes()[..],
                ]
                .concat()
            })
            .collect();
        std::fs::write(&file, bytes).map_err(|e| format!("{file}: {e}"))?;
        println!("program written to {file}");
    }
    Ok(())
}

/// Removes `--name VALUE` from `args`.
fn option(args: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        Some(i) if i + 1 < args.len() => {
            let value = args.remove(i + 1);
            args.remove(i);
            Ok(Some(value))
        }
        Some(_) => Err(format!("{name} needs a file")),
        None => Ok(None),
    }
}

/// The profile as runc hands it to libseccomp: one rule per name, rules
/// with the default action dropped, a repeated argument index split into
/// one rule per condition.
fn libseccomp_rules(spec: &oci_spec::runtime::LinuxSeccomp) -> String {
    use std::fmt::Write;
    let default = spec.default_action().as_u32(spec.default_errno_ret());
    let mut out = format!("default {default}\n");
    for arch in spec.architectures().iter().flatten() {
        let name = match arch.to_string().as_str() {
            "SCMP_ARCH_X86_64" => "x86_64".to_string(),
            "SCMP_ARCH_X86" => "x86".to_string(),
            "SCMP_ARCH_X32" => "x32".to_string(),
            other => other.trim_start_matches("SCMP_ARCH_").to_lowercase(),
        };
        let _ = writeln!(out, "arch {name}");
    }
    for rule in spec.syscalls().iter().flatten() {
        let action = rule.action().as_u32(rule.errno_ret());
        if action == default {
            continue;
        }
        let args = rule.args().clone().unwrap_or_default();
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let sets: Vec<Vec<_>> = if indexes.windows(2).any(|w| w[0] == w[1]) {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args]
        };
        for name in rule.names() {
            for set in &sets {
                let _ = write!(out, "rule {action} {name} {}", set.len());
                for a in set {
                    let _ = write!(
                        out,
                        " {} {} {} {}",
                        a.index(),
                        a.op() as u32,
                        a.value(),
                        a.value_two().unwrap_or(0)
                    );
                }
                out.push('\n');
            }
        }
    }
    out
}

fn measure(
    rounds: usize,
    mut f: impl FnMut() -> Result<(), cove_seccomp::Error>,
) -> Result<Vec<Duration>, cove_seccomp::Error> {
    f()?; // warm up
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times)
}

fn report(what: &str, sorted: &[Duration]) {
    let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
    let pct = |p: usize| sorted[(sorted.len() - 1) * p / 100];
    println!(
        "{what:>20}: mean {:>7.1} µs, min {:>7.1} µs, median {:>7.1} µs, p99 {:>7.1} µs ({} rounds)",
        us(mean),
        us(sorted[0]),
        us(pct(50)),
        us(pct(99)),
        sorted.len()
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
