//! A CT's config, `<data>/ct/<CTID>/ct.toml`: what `cove create` and
//! `cove set` write and what every start turns into an OCI spec.
//!
//! ```toml
//! ctid = "101"
//! template = "busybox"
//! name = "web"
//! hostname = "web"
//! seccomp = "default"        # or "unconfined", or "/path/to/profile.json"
//! onboot = true              # cove@101.service enabled (cove set --onboot)
//! bootorder = 10             # higher starts first
//!
//! [resources]
//! memory = "256M"
//! swap = "128M"              # on top of memory
//! cpus = 1.5
//! cpuunits = 1000            # relative CPU weight (OpenVZ's)
//! ioweight = 100             # relative I/O weight, 10..1000 (blkio.weight)
//! pids = 512
//!
//! [net]                      # see net::config
//! ip = ["198.18.0.2/24"]
//! gateway = ["198.18.0.1"]
//! ```
//!
//! Unknown keys are refused, so a typo in a hand-edited file is reported
//! instead of silently ignored; every value is checked on load.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ctid::{self, Ctid};
use crate::error::{Error, Result};
use crate::net::NetConfig;
use crate::paths::Paths;
use crate::signals;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtConfig {
    /// Must match the directory the file is in.
    pub ctid: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub hostname: String,
    /// The CT's init, when it is not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The signal that asks the CT's init to shut down, when not the one
    /// the template's init understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The CT's seccomp profile: `default` (cove's built-in deny list, also
    /// when absent), `unconfined`, or the absolute path of a profile file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    /// Start at boot: the CT's `cove@CTID.service` is enabled (see systemd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboot: Option<bool>,
    /// Boot order among onboot CTs: higher first, unset last (as vzctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootorder: Option<u32>,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// The CT's network (see `net::config`).
    #[serde(default, skip_serializing_if = "NetConfig::is_empty")]
    pub net: NetConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    /// CPU time as a number of CPUs (1.5 = one and a half CPUs' worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// Swap the CT may use on top of its memory (needs `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Bytes>,
    /// Relative CPU weight, OpenVZ's cpuunits (1000 is the default weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuunits: Option<u32>,
    /// Relative I/O weight, 10 to 1000 (the kernel's default is 100), as
    /// blkio.weight; applied where the kernel has proportional I/O control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ioweight: Option<u16>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        self == &Resources::default()
    }
}

pub const MIN_MEMORY: u64 = 1 << 20;
/// vzctl's range for cpuunits.
pub const MIN_CPUUNITS: u32 = 8;
pub const MAX_CPUUNITS: u32 = 500_000;
pub const MIN_IOWEIGHT: u16 = 10;
pub const MAX_IOWEIGHT: u16 = 1000;
pub const MIN_CPUS: f64 = 0.01;
pub const MAX_CPUS: f64 = 1024.0;

impl CtConfig {
    /// Checks every value; `expected` is the CTID the file belongs to.
    pub fn validate(&self, expected: &Ctid) -> std::result::Result<(), String> {
        if self.ctid != expected.as_str() {
            return Err(format!(
                "ctid = {:?} but the file belongs to CT {expected}",
                self.ctid
            ));
        }
        ctid::validate_template_name(&self.template).map_err(|e| format!("template: {e}"))?;
        if let Some(n) = &self.name {
            ctid::validate_name(n).map_err(|e| format!("name: {e}"))?;
        }
        ctid::validate_hostname(&self.hostname).map_err(|e| format!("hostname: {e}"))?;
        if let Some(init) = &self.init {
            if !init.starts_with('/') {
                return Err(format!(
                    "init = {init:?}: must be an absolute path inside the CT"
                ));
            }
        }
        if let Some(s) = &self.stop_signal {
            signals::parse(s).map_err(|e| format!("stop_signal: {e}"))?;
        }
        if let Some(s) = &self.seccomp {
            crate::spec::SeccompSetting::parse(s)?;
        }
        self.resources.validate()?;
        self.net.validate()
    }

    pub fn stop_signal(&self) -> Option<i32> {
        self.stop_signal
            .as_deref()
            .and_then(|s| signals::parse(s).ok())
    }

    /// Reads and checks `path`; errors name the file and the line.
    pub fn load(path: &Path, expected: &Ctid) -> Result<CtConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSuchCt(expected.to_string()))
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let cfg: CtConfig =
            toml::from_str(&text).map_err(|e| Error::bad_config(path, toml_error(&text, &e)))?;
        cfg.validate(expected)
            .map_err(|m| Error::bad_config(path, m))?;
        Ok(cfg)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string(self).map_err(|e| Error::bad_config(path, e.to_string()))?;
        let text = format!(
            "# cove CT {}: edit with `cove set`, or by hand while the CT is stopped.\n{body}",
            self.ctid
        );
        cove_engine::state::write_atomic(path, text.as_bytes())?;
        Ok(())
    }
}

impl Resources {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(m) = self.memory {
            if m.0 < MIN_MEMORY {
                return Err(format!("resources.memory = {m}: at least 1M"));
            }
        }
        if let Some(c) = self.cpus {
            if !(MIN_CPUS..=MAX_CPUS).contains(&c) {
                return Err(format!(
                    "resources.cpus = {c}: between {MIN_CPUS} and {MAX_CPUS}"
                ));
            }
        }
        if self.pids == Some(0) {
            return Err("resources.pids = 0: at least 1".into());
        }
        if let (Some(sw), None) = (self.swap, self.memory) {
            return Err(format!(
                "resources.swap = {sw}: swap comes on top of a memory limit; set memory too"
            ));
        }
        if let Some(u) = self.cpuunits {
            if !(MIN_CPUUNITS..=MAX_CPUUNITS).contains(&u) {
                return Err(format!(
                    "resources.cpuunits = {u}: between {MIN_CPUUNITS} and {MAX_CPUUNITS}"
                ));
            }
        }
        if let Some(w) = self.ioweight {
            if !(MIN_IOWEIGHT..=MAX_IOWEIGHT).contains(&w) {
                return Err(format!(
                    "resources.ioweight = {w}: between {MIN_IOWEIGHT} and {MAX_IOWEIGHT}"
                ));
            }
        }
        Ok(())
    }
}

/// "line 4: unknown field `memroy`, expected ..." from toml's multi-line
/// report.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// A size in bytes, written as vzctl writes it: `512M`, `2G`, `1048576`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn parse(s: &str) -> std::result::Result<Bytes, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a size: use a number of bytes or one with K, M, G or T (512M, 2G)"
            )
        };
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(bad()),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(1u64 << shift)
            .map(Bytes)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Bytes {
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace supports 1.85
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
            let unit = 1u64 << shift;
            if self.0 >= unit && self.0 % unit == 0 {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"512M\" or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Bytes, E> {
                Bytes::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every CT that has a config, numeric CTIDs first in numeric order.
pub fn list_ctids(paths: &Paths) -> Result<Vec<Ctid>> {
    let dir = paths.cts();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &dir, e)),
    };
    let mut ids: Vec<Ctid> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| Ctid::parse(n).ok()))
        .filter(|id| paths.ct(id).config.exists())
        .collect();
    ids.sort_by(|a, b| {
        let key = |c: &Ctid| {
            (
                !c.is_numeric(),
                c.as_str().parse::<u64>().unwrap_or(0),
                c.as_str().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(ids)
}

/// The CT a user means by `arg`: its CTID, else its `--name`.
pub fn resolve(paths: &Paths, arg: &str) -> Result<Ctid> {
    if let Ok(id) = Ctid::parse(arg) {
        if paths.ct(&id).config.exists() {
            return Ok(id);
        }
    }
    for id in list_ctids(paths)? {
        if let Ok(cfg) = CtConfig::load(&paths.ct(&id).config, &id) {
            if cfg.name.as_deref() == Some(arg) {
                return Ok(id);
            }
        }
    }
    match Ctid::parse(arg) {
        Ok(_) => Err(Error::NoSuchCt(arg.to_string())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Ctid {
        Ctid::parse("101").unwrap()
    }

    #[test]
    fn sizes_parse_and_print_like_vzctl() {
        assert_eq!(Bytes::parse("256M").unwrap(), Bytes(256 << 20));
        assert_eq!(Bytes::parse("2g").unwrap(), Bytes(2 << 30));
        assert_eq!(Bytes::parse("4096").unwrap(), Bytes(4096));
        assert_eq!(Bytes(256 << 20).to_string(), "256M");
        assert_eq!(Bytes(1536 << 20).to_string(), "1536M");
        assert_eq!(Bytes(1000).to_string(), "1000");
        for bad in ["", "M", "12Q", "-1M", "1.5G", "99999999999T"] {
            assert!(Bytes::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn config_round_trips() {
        let cfg = CtConfig {
            ctid: "101".into(),
            template: "busybox".into(),
            name: Some("web".into()),
            hostname: "web".into(),
            init: None,
            stop_signal: None,
            seccomp: Some("unconfined".into()),
            resources: Resources {
                memory: Some(Bytes(256 << 20)),
                cpus: Some(1.5),
                pids: Some(100),
                swap: Some(Bytes(64 << 20)),
                cpuunits: Some(500),
                ioweight: Some(200),
            },
            net: NetConfig::default(),
            onboot: Some(true),
            bootorder: Some(10),
        };
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("memory = \"256M\""), "{text}");
        let back: CtConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        assert!(back.validate(&id()).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_a_line() {
        let text = "ctid = \"101\"\ntemplate = \"busybox\"\nhostname = \"a\"\n[resources]\nmemroy = \"1G\"\n";
        let e = toml::from_str::<CtConfig>(text).unwrap_err();
        let msg = toml_error(text, &e);
        assert!(
            msg.starts_with("line 5:") && msg.contains("memroy"),
            "{msg}"
        );
        let text = "ctid = \"101\"\ntemplate = \"busybox\"\nhostname = \"a\"\n[resources]\nmemory = \"lots\"\n";
        assert!(toml::from_str::<CtConfig>(text).is_err());
        let text =
            "ctid = \"101\"\ntemplate = \"busybox\"\nhostname = \"a\"\n[resources]\ncpus = 0\n";
        let cfg: CtConfig = toml::from_str(text).unwrap();
        assert!(cfg.validate(&id()).is_err());
        let text =
            "ctid = \"101\"\ntemplate = \"busybox\"\nhostname = \"a\"\n[resources]\nioweight = 5\n";
        let cfg: CtConfig = toml::from_str(text).unwrap();
        assert!(cfg.validate(&id()).unwrap_err().contains("ioweight"));
        let text = "ctid = \"102\"\ntemplate = \"busybox\"\nhostname = \"a\"\n";
        let cfg: CtConfig = toml::from_str(text).unwrap();
        assert!(cfg
            .validate(&id())
            .unwrap_err()
            .contains("belongs to CT 101"));
    }
}
