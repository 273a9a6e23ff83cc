//! One function per command: does it, prints the result, returns the
//! exit code. Errors go back to main, which prints them as one line.

use std::io::Write;
use std::time::Duration;

use crate::cli::{Cli, Command, Settings, TemplateCommand};
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
        Command::Set { ctid, settings } => {
            let ctid = &config::resolve(&paths, ctid)?.to_string();
            let c = changes(settings);
            if c.name.is_none()
                && c.hostname.is_none()
                && c.memory.is_none()
                && c.cpus.is_none()
                && c.pids.is_none()
                && c.seccomp.is_none()
            {
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
        Command::List { all, json } => list(&paths, *all, *json),
        Command::Exec { ctid, command } => exec::exec(&paths, ctid, command),
        Command::Enter { ctid } => exec::enter(&paths, ctid),
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
        Command::Template { command } => template_command(&paths, command),
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

fn list(paths: &Paths, all: bool, json: bool) -> Result<i32> {
    let (rows, warnings) = ct::list(paths, all)?;
    for w in &warnings {
        eprintln!("cove: warning: {w}");
    }
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut table = vec![
        ["CTID", "NAME", "STATUS", "TEMPLATE", "IP_ADDR", "HOSTNAME"]
            .map(String::from)
            .to_vec(),
    ];
    table.extend(rows.iter().map(|r| {
        vec![
            r.ctid.clone(),
            dash(&r.name),
            r.status.clone(),
            dash(&r.template),
            dash(&r.ip),
            dash(&r.hostname),
        ]
    }));
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
