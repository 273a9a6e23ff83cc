//! linux.seccomp at create and exec: the compiled filter, taken from a
//! cache of compiled filters when this profile was compiled before.
//!
//! podman and Kubernetes give every container the same profile, and
//! compiling podman's costs some 300 µs in a fresh process (syscall name
//! lookups, a one-time table, sorting), most of what a profile added to
//! `cove-oci run` before this cache. An entry is a file in
//! `<state root>/.seccomp-cache/` (directory 0700, owned by the runtime's
//! user, made on first use) named by the SHA-256 of what the compile
//! depends on: this binary (its /proc/self/exe identity, so a new build
//! never reads an old one's entries) and the profile's JSON text exactly
//! as config.json has it. Nothing else goes in: the compile reads no
//! kernel facts (the syscall tables are built in) and the flags are part
//! of the profile.
//!
//! An entry holds the whole [`Filter`] (program, seccomp(2) flags, notify
//! use), behind a header (magic, format version, the key) and followed by
//! a SHA-256 of everything before it. One that is truncated, corrupt, of
//! another key or another format is ignored, and replaced once the fresh
//! compile has been used successfully. Entries are written to a temporary
//! file and renamed, so a reader sees a whole entry or none; only what
//! compiled and then served a container is stored, so a bad profile is
//! never cached and is refused, as before, with its line. At most
//! [`MAX_ENTRIES`] are kept, the oldest written removed first.
//!
//! Everything here is best effort: a cache that cannot be read or written
//! costs a compile, never a failed container (a debug line says why).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cove_seccomp::Filter;
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::Config;

/// The cache's directory under the state root (reserved: no container can
/// take this id).
pub const CACHE_DIR: &str = ".seccomp-cache";
/// Entries kept; podman or Kubernetes use one or a few profiles.
pub const MAX_ENTRIES: usize = 64;

/// Entry layout: MAGIC, VERSION (u32 LE), the 32-byte key, the filter's
/// length (u32 LE), the filter ([`Filter::to_bytes`]), SHA-256 of all that.
const MAGIC: &[u8; 8] = b"coveSECF";
const VERSION: u32 = 1;
const HEAD: usize = 8 + 4 + 32 + 4;
const SUM: usize = 32;
/// A filter of the kernel's 4096 instructions, with room to spare.
const MAX_ENTRY_LEN: u64 = 64 << 10;
/// A temporary file this old was left by a runtime that died writing it.
const STALE_TMP: Duration = Duration::from_secs(60);

type Key = [u8; 32];

/// The filter for a config's linux.seccomp.
pub struct Seccomp {
    pub filter: Filter,
    /// linux.seccomp parsed: always when the filter has SCMP_ACT_NOTIFY
    /// rules (the listener's path and metadata are in it), and after a
    /// compile.
    pub profile: Option<LinuxSeccomp>,
    /// A compiled filter the cache does not hold yet.
    unsaved: Option<(PathBuf, Key)>,
}

impl Seccomp {
    /// The filter for `config`'s linux.seccomp, None without one: from the
    /// cache under `root`, or compiled (a bad profile is refused here, with
    /// nothing made yet).
    pub fn prepare(root: &Path, config: &Config) -> Result<Option<Seccomp>> {
        let Some(json) = config.seccomp_json() else {
            return Ok(None);
        };
        let dir = root.join(CACHE_DIR);
        let key = key(json);
        if let Some(filter) = key.as_ref().and_then(|k| lookup(&dir, k)) {
            let profile = if filter.uses_notify() {
                config.seccomp()?
            } else {
                None
            };
            return Ok(Some(Seccomp {
                filter,
                profile,
                unsaved: None,
            }));
        }
        let Some(profile) = config.seccomp()? else {
            return Ok(None);
        };
        let filter = compile(&profile)?;
        Ok(Some(Seccomp {
            filter,
            profile: Some(profile),
            unsaved: key.map(|k| (dir, k)),
        }))
    }

    /// Stores a freshly compiled filter once it served a container.
    pub fn remember(&self) {
        if let Some((dir, key)) = &self.unsaved {
            match store(dir, key, &self.filter) {
                Ok(path) => tracing::debug!(entry = %path.display(), "seccomp filter cached"),
                Err(e) => tracing::debug!("seccomp filter not cached: {e}"),
            }
        }
    }
}

/// Compiles a profile that is not in the cache.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    let t = Instant::now();
    let filter = cove_seccomp::compile(profile)
        .map_err(|e| Error::InvalidConfig(format!("seccomp: {e}")))?;
    tracing::debug!(
        instructions = filter.instructions().len(),
        micros = t.elapsed().as_micros() as u64,
        "seccomp filter compiled"
    );
    Ok(filter)
}

/// SHA-256 over this binary's identity and the profile's text; None when
/// the binary cannot be told apart from another build.
fn key(json: &[u8]) -> Option<Key> {
    let exe = match std::fs::metadata("/proc/self/exe") {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("seccomp cache not used: /proc/self/exe: {e}");
            return None;
        }
    };
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(VERSION.to_le_bytes());
    // ctime too: it changes with any write to the file, which mtime need
    // not (`cp -p`, `touch -r`).
    for v in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
        exe.ctime() as u64,
        exe.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    h.update(json);
    Some(h.finalize().into())
}

fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The cache directory is ours alone: a directory (not a link), owned by
/// our user, mode 0700. Anything else is not read or written.
fn dir_is_private(dir: &Path) -> std::result::Result<(), String> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !m.is_dir() || m.uid() != euid || m.mode() & 0o7777 != 0o700 {
        return Err(format!(
            "{} is not a directory of mode 0700 owned by uid {euid}",
            dir.display()
        ));
    }
    Ok(())
}

fn lookup(dir: &Path, key: &Key) -> Option<Filter> {
    let path = dir.join(hex(key));
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!("seccomp cache entry {} not read: {e}", path.display());
            return None;
        }
    };
    let found = dir_is_private(dir).and_then(|()| {
        let m = file.metadata().map_err(|e| e.to_string())?;
        if !m.is_file() || m.uid() != nix::unistd::geteuid().as_raw() {
            return Err("not a file of ours".into());
        }
        if m.len() > MAX_ENTRY_LEN {
            return Err(format!("{} bytes", m.len()));
        }
        let mut bytes = Vec::with_capacity(m.len() as usize);
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        decode(&bytes, key)
    });
    match found {
        Ok(filter) => {
            tracing::debug!(entry = %path.display(), "seccomp filter from cache");
            Some(filter)
        }
        Err(why) => {
            tracing::debug!("seccomp cache entry {} ignored: {why}", path.display());
            None
        }
    }
}

fn encode(key: &Key, filter: &Filter) -> Vec<u8> {
    let body = filter.to_bytes();
    let mut out = Vec::with_capacity(HEAD + body.len() + SUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

fn decode(bytes: &[u8], key: &Key) -> std::result::Result<Filter, String> {
    if bytes.len() < HEAD + SUM || &bytes[..8] != MAGIC {
        return Err("not a cache entry (too short or wrong magic)".into());
    }
    if bytes[8..12] != VERSION.to_le_bytes() {
        return Err("another format version".into());
    }
    if &bytes[12..44] != key {
        return Err("another profile's entry".into());
    }
    let len = u32::from_le_bytes(bytes[44..48].try_into().unwrap_or_default()) as usize;
    if bytes.len() != HEAD + len + SUM {
        return Err(format!(
            "{} bytes, the header says {}",
            bytes.len(),
            HEAD + len + SUM
        ));
    }
    let (data, sum) = bytes.split_at(HEAD + len);
    if Sha256::digest(data).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    Filter::from_bytes(&data[HEAD..]).ok_or_else(|| "not a valid filter".to_string())
}

fn store(dir: &Path, key: &Key, filter: &Filter) -> std::result::Result<PathBuf, String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    dir_is_private(dir)?;
    let path = dir.join(hex(key));
    let tmp = dir.join(format!(".tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode(key, filter)))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    evict(dir);
    Ok(path)
}

/// Keeps the newest [`MAX_ENTRIES`] entries and removes temporary files
/// that writers which died left behind.
fn evict(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(m) = e.metadata() else { continue };
        let written = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if is_entry_name(name) {
            entries.push((written, e.path()));
        } else if name.starts_with(".tmp.")
            && now.duration_since(written).unwrap_or_default() > STALE_TMP
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    entries.sort();
    for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        let p = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        cove_seccomp::compile(&p).unwrap()
    }

    #[test]
    fn entries_decode_only_whole_and_for_their_key() {
        let f = filter();
        let key = [7u8; 32];
        let good = encode(&key, &f);
        let back = decode(&good, &key).expect("whole entry");
        assert_eq!(back.to_bytes(), f.to_bytes());
        assert!(decode(&good, &[8u8; 32]).is_err(), "another key");
        for len in [0, 8, HEAD, HEAD + SUM, good.len() - 1] {
            assert!(decode(&good[..len], &key).is_err(), "truncated to {len}");
        }
        for at in [0, 9, 20, 45, HEAD + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, &key).is_err(), "byte {at} flipped");
        }
    }

    #[test]
    fn keys_differ_by_profile_text() {
        let a = key(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let b = key(br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, key(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap());
        assert!(is_entry_name(&hex(&a)));
    }
}
