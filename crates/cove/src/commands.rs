//! One function per command: does it, prints the result, returns the
//! exit code. Errors go back to main, which prints them as one line.

use std::io::Write;
use std::time::Duration;

use crate::cli::{Cli, Command, Settings, SystemdCommand, TemplateCommand};
use crate::config;
use crate::ct::{self, Changes};
use crate::error::{Error, Result};
use crate::exec;
use crate::lifecycle::{self, StopHow};
use crate::paths::Paths;
use crate::template;

pub fn run(cli: &Cli) -> Result<i32> {
    let paths = Paths::resolve(cli.data_dir.as_deref(), cli.run_dir.as_deref())?;
    match &cli.command {
        Command::Create {
            ctid,
            template,
            settings,
        } => {
            let id = ct::create(&paths, ctid, template, &changes(settings))?;
            println!("CT {id} created from template {template}");
            Ok(0)
        }
        Command::Set { ctid, settings, .. } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            let c = changes(settings);
            if c.is_empty() {
                return Err(Error::BadInput(
                    "set: nothing to change (see cove set --help)".into(),
                ));
            }
            for note in ct::set(&paths, ctid, &c)? {
                println!("{note}");
            }
            println!("CT {ctid} saved");
            Ok(0)
        }
        Command::Destroy { ctid, force } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            lifecycle::destroy(&paths, ctid, *force)?;
            println!("CT {ctid} destroyed");
            Ok(0)
        }
        Command::Start { ctid, foreground } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            let code = lifecycle::start(&paths, ctid, *foreground)?;
            if !foreground {
                println!("CT {ctid} started");
            }
            Ok(code)
        }
        Command::Stop {
            ctid,
            timeout,
            fast,
        } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            lifecycle::stop(
                &paths,
                ctid,
                StopHow {
                    timeout: Duration::from_secs(*timeout),
                    fast: *fast,
                },
            )?;
            println!("CT {ctid} stopped");
            Ok(0)
        }
        Command::Restart { ctid, timeout } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            lifecycle::restart(
                &paths,
                ctid,
                StopHow {
                    timeout: Duration::from_secs(*timeout),
                    fast: false,
                },
            )?;
            println!("CT {ctid} restarted");
            Ok(0)
        }
        Command::Status { ctid, json } => {
            let st = ct::status(&paths, ctid)?;
            if *json {
                print_json(&st)?;
            } else {
                println!("{}", st.run.vz_line());
            }
            Ok(0)
        }
        Command::List {
            all,
            json,
            output,
            sort,
            no_header,
        } => list(
            &paths,
            *all,
            *json,
            &ListFormat {
                fields: output,
                sort: sort.as_deref(),
                header: !no_header,
            },
        ),
        Command::Exec { ctid, command } => exec::exec(&paths, ctid, command),
        Command::Enter { ctid } => exec::enter(&paths, ctid),
        Command::Mount { ctid } => {
            let id = config::resolve(&paths, ctid)?;
            let root = lifecycle::mount(&paths, ctid)?;
            println!("CT {id} mounted at {}", root.display());
            Ok(0)
        }
        Command::Umount { ctid } => {
            let id = config::resolve(&paths, ctid)?;
            if lifecycle::umount(&paths, ctid)? {
                println!("CT {id} unmounted");
            } else {
                println!("CT {id} was not mounted");
            }
            Ok(0)
        }
        Command::Console { ctid } => {
            let id = config::resolve(&paths, ctid)?;
            let ct = paths.ct(&id);
            if !crate::runstate::status(&ct, &id).running() {
                return Err(Error::NotRunning(id.to_string()));
            }
            if crate::console::attach(&ct.console_sock, id.as_str())? {
                eprintln!("\r\nCT {id} stopped");
            } else {
                eprintln!("\r\nDetached from the console of CT {id}");
            }
            Ok(0)
        }
        Command::Suspend {
            ctid,
            dump_dir,
            pre_dumps,
            json,
        } => {
            let s = crate::suspend::suspend(&paths, ctid, dump_dir.as_deref(), *pre_dumps)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).map_err(|e| Error::Tool(e.to_string()))?
                );
            } else {
                println!(
                    "CT {} suspended into {} (frozen {:.1} ms, {} pages written)",
                    s.ctid,
                    s.dump_dir.display(),
                    s.frozen_time_us as f64 / 1000.0,
                    s.pages_written
                );
            }
            Ok(0)
        }
        Command::Resume { ctid } => {
            crate::suspend::resume(&paths, ctid)?;
            println!("CT {ctid} resumed");
            Ok(0)
        }
        Command::Migrate(args) => crate::migrate::run(&paths, args),
        Command::MigrateRecv(args) => crate::migrate_recv::run(&paths, args),
        Command::Template { command } => template_command(&paths, command),
        Command::Systemd {
            command: SystemdCommand::Install { dir },
        } => {
            let dir = dir.clone().unwrap_or_else(crate::systemd::unit_dir);
            let exe =
                std::env::current_exe().map_err(|e| Error::io("resolve", "/proc/self/exe", e))?;
            for f in crate::systemd::install(&paths, &dir, &exe)? {
                println!("wrote {}", f.display());
            }
            Ok(0)
        }
    }
}

fn changes(s: &Settings) -> Changes {
    Changes {
        name: s.name.clone(),
        hostname: s.hostname.clone(),
        memory: s.memory,
        cpus: s.cpus,
        pids: s.pids,
        seccomp: s.seccomp.clone(),
        net: s.net.clone(),
        onboot: s.onboot,
        bootorder: s.bootorder,
        swap: s.swap,
        cpuunits: s.cpuunits,
        ioweight: s.ioweight,
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Tool(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Columns padded to their widest cell, two spaces apart.
fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// How `cove list` shows its rows (`-o`, `-s`, `-H`).
struct ListFormat<'a> {
    fields: &'a [String],
    sort: Option<&'a str>,
    header: bool,
}

/// vzlist's default columns.
const LIST_DEFAULT: [&str; 7] = [
    "ctid", "name", "status", "template", "ip", "hostname", "unit",
];

/// A column's header: the field's name in capitals, as vzlist prints them.
fn list_header(field: &str) -> String {
    match field {
        "ip" => "IP_ADDR".into(),
        other => other.to_uppercase(),
    }
}

/// Orders two cells: numbers as numbers, then text, absent values last.
fn cell_order(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    use std::cmp::Ordering;
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => cell_text(a).cmp(&cell_text(b)),
        },
    }
}

fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

fn list(paths: &Paths, all: bool, json: bool, format: &ListFormat) -> Result<i32> {
    let known: Vec<String> = serde_json::to_value(ct::Listed::default())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    let fields: Vec<String> = if format.fields.is_empty() {
        LIST_DEFAULT.iter().map(|f| f.to_string()).collect()
    } else {
        format.fields.iter().map(|f| f.trim().to_string()).collect()
    };
    let (reverse, sort_by) = match format.sort {
        Some(s) => match s.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, s),
        },
        None => (false, "ctid"),
    };
    for f in fields.iter().map(String::as_str).chain([sort_by]) {
        if !known.iter().any(|k| k == f) {
            return Err(Error::BadInput(format!(
                "list: unknown field {f:?}; fields are {}",
                known.join(", ")
            )));
        }
    }
    let (rows, warnings) = ct::list(paths, all)?;
    for w in &warnings {
        eprintln!("cove: warning: {w}");
    }
    let mut rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).map_err(|e| Error::Tool(e.to_string())))
        .collect::<Result<_>>()?;
    rows.sort_by(|a, b| {
        let o = cell_order(&a[sort_by], &b[sort_by]);
        if reverse {
            o.reverse()
        } else {
            o
        }
    });
    if json {
        let picked: Vec<serde_json::Value> = if format.fields.is_empty() {
            rows
        } else {
            rows.iter()
                .map(|r| {
                    serde_json::Value::Object(
                        fields.iter().map(|f| (f.clone(), r[f].clone())).collect(),
                    )
                })
                .collect()
        };
        print_json(&picked)?;
        return Ok(0);
    }
    let mut table = Vec::new();
    if format.header {
        table.push(fields.iter().map(|f| list_header(f)).collect());
    }
    table.extend(
        rows.iter()
            .map(|r| fields.iter().map(|f| cell_text(&r[f])).collect::<Vec<_>>()),
    );
    print_table(&table);
    Ok(0)
}

#[derive(serde::Serialize)]
struct TemplateRow {
    name: String,
    description: Option<String>,
    rootfs: std::path::PathBuf,
    used_by: Vec<String>,
}

fn template_command(paths: &Paths, cmd: &TemplateCommand) -> Result<i32> {
    match cmd {
        TemplateCommand::List { json } => {
            let mut rows = Vec::new();
            for t in template::list(paths)? {
                let used_by = template::users(paths, &t.name)?
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                rows.push(TemplateRow {
                    name: t.name,
                    description: t.manifest.description,
                    rootfs: t.rootfs,
                    used_by,
                });
            }
            if *json {
                print_json(&rows)?;
            } else {
                let mut table = vec![["NAME", "CTS", "DESCRIPTION"].map(String::from).to_vec()];
                table.extend(rows.into_iter().map(|r| {
                    vec![
                        r.name,
                        r.used_by.len().to_string(),
                        r.description.unwrap_or_else(|| "-".into()),
                    ]
                }));
                print_table(&table);
            }
            Ok(0)
        }
        TemplateCommand::Build { name, force } => {
            let t = template::build(paths, name, *force)?;
            println!("template {} built: {}", t.name, t.rootfs.display());
            Ok(0)
        }
        TemplateCommand::Import {
            tarball,
            name,
            force,
        } => {
            let t = template::import(paths, tarball, name, *force)?;
            println!("template {} imported: {}", t.name, t.rootfs.display());
            Ok(0)
        }
        TemplateCommand::Remove { name } => {
            template::remove(paths, name)?;
            println!("template {name} removed");
            Ok(0)
        }
    }
}
