//! linux.seccomp at create and exec: the compiled filter, taken from a
//! cache of compiled filters when this profile was compiled before.
//!
//! podman and Kubernetes give every container the same profile, and
//! compiling podman's costs some 300 µs in a fresh process (syscall name
//! lookups, a one-time table, sorting), most of what a profile added to
//! `cove-oci run` before this cache. An entry is a file in
//! `<state root>/.seccomp-cache/` (directory 0700, owned by the runtime's
//! user, made on first use). It holds the exact input the compile depends
//! on, this binary's identity (its GNU build-id, so a new build never
//! reads an old one's entries) and the profile's JSON text as config.json
//! has it, and is used only when both are byte for byte those of the
//! container at hand. Nothing else goes in: the compile reads no kernel
//! facts (the syscall tables are built in) and the flags are part of the
//! profile.
//!
//! The file's name is a 64-bit hash of that input. It need not resist
//! collisions, since a hit compares the input itself: two profiles with
//! one name only take turns in the file. A cryptographic digest would
//! cost more here than the rest of a hit: SHA-256's CPU feature detection
//! alone is three CPUIDs, each a trap to the hypervisor on a VM (4 µs
//! measured).
//!
//! Behind the input an entry holds the whole [`Filter`] (program,
//! seccomp(2) flags, notify use), framed by a magic, a format version,
//! lengths and a checksum. One that is truncated, corrupt, of another
//! input or another format is ignored, and replaced once the fresh
//! compile has served a container. Entries are written to a temporary
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

use crate::error::{Error, Result};
use crate::spec::Config;

/// The cache's directory under the state root (reserved: no container can
/// take this id).
pub const CACHE_DIR: &str = ".seccomp-cache";
/// Entries kept; podman or Kubernetes use one or a few profiles.
pub const MAX_ENTRIES: usize = 64;

/// Entry layout (integers u32 LE): MAGIC, VERSION, the binary's identity,
/// the profile's text and the filter ([`Filter::to_bytes`]), each as its
/// length and its bytes, then [`hash64`] of all that (u64 LE).
const MAGIC: &[u8; 8] = b"coveSECF";
const VERSION: u32 = 1;
/// podman's profile is 16 KB of JSON, its filter 4 KB; room to spare.
const MAX_ENTRY_LEN: u64 = 1 << 20;
/// A temporary file this old was left by a runtime that died writing it.
const STALE_TMP: Duration = Duration::from_secs(60);

/// The filter for a config's linux.seccomp.
pub struct Seccomp {
    pub filter: Filter,
    /// linux.seccomp parsed: always when the filter has SCMP_ACT_NOTIFY
    /// rules (the listener's path and metadata are in it), and after a
    /// compile.
    pub profile: Option<LinuxSeccomp>,
    /// A compiled filter the cache does not hold yet: the directory, the
    /// binary's identity and the profile's text.
    unsaved: Option<(PathBuf, Vec<u8>, Vec<u8>)>,
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
        let exe = exe_identity();
        if let Some(filter) = exe.as_ref().and_then(|exe| lookup(&dir, exe, json)) {
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
            unsaved: exe.map(|exe| (dir, exe, json.to_vec())),
        }))
    }

    /// Stores a freshly compiled filter once it served a container.
    pub fn remember(&self) {
        if let Some((dir, exe, json)) = &self.unsaved {
            match store(dir, exe, json, &self.filter) {
                Ok(path) => tracing::debug!(entry = %path.display(), "seccomp filter cached"),
                Err(e) => tracing::debug!("seccomp filter not cached: {e}"),
            }
        }
    }
}

/// Compiles a profile that is not in the cache.
fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
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

/// What tells this binary from another build: its GNU build-id, or, when
/// the linker wrote none, the identity of the file (device, inode, size,
/// mtime and ctime, which any write changes). None when neither is known.
fn exe_identity() -> Option<Vec<u8>> {
    if let Some(id) = crate::sys::build_id() {
        return Some([b"build-id:".as_slice(), &id].concat());
    }
    let exe = match std::fs::metadata("/proc/self/exe") {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("seccomp cache not used: /proc/self/exe: {e}");
            return None;
        }
    };
    let mut id = b"file:".to_vec();
    for v in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
        exe.ctime() as u64,
        exe.ctime_nsec() as u64,
    ] {
        id.extend_from_slice(&v.to_le_bytes());
    }
    Some(id)
}

/// A 64-bit hash for entry names and the entry checksum: FxHash's step
/// over 8-byte words (each step a bijection of the state, so any change to
/// one word changes the result) and murmur3's finaliser to spread the
/// bits. Fast (16 KB in about a microsecond), not cryptographic: see the
/// module's comment.
fn hash64(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut step = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    for part in parts {
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            step(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        step(u64::from_le_bytes(tail));
        step(part.len() as u64);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn entry_name(exe: &[u8], json: &[u8]) -> String {
    format!("{:016x}", hash64(&[exe, json]))
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

fn lookup(dir: &Path, exe: &[u8], json: &[u8]) -> Option<Filter> {
    let path = dir.join(entry_name(exe, json));
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
        decode(&bytes, exe, json)
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

fn encode(exe: &[u8], json: &[u8], filter: &Filter) -> Vec<u8> {
    let body = filter.to_bytes();
    let mut out = Vec::with_capacity(32 + exe.len() + json.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for part in [exe, json, &body] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    let sum = hash64(&[&out]);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The filter in an entry written by [`encode`] for this `exe` and `json`.
fn decode(bytes: &[u8], exe: &[u8], json: &[u8]) -> std::result::Result<Filter, String> {
    let Some((data, sum)) = bytes.split_last_chunk::<8>() else {
        return Err("not a cache entry (too short)".into());
    };
    if data.get(..8) != Some(MAGIC.as_slice()) {
        return Err("not a cache entry (wrong magic)".into());
    }
    if hash64(&[data]) != u64::from_le_bytes(*sum) {
        return Err("checksum mismatch (truncated or damaged)".into());
    }
    if data.get(8..12) != Some(VERSION.to_le_bytes().as_slice()) {
        return Err("another format version".into());
    }
    let mut rest = &data[12..];
    let mut part = || -> std::result::Result<&[u8], String> {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("a length runs past the end")?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, tail) = tail
            .split_at_checked(len)
            .ok_or("a part runs past the end")?;
        rest = tail;
        Ok(part)
    };
    if part()? != exe {
        return Err("written by another build".into());
    }
    if part()? != json {
        return Err("another profile's entry".into());
    }
    let body = part()?;
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    Filter::from_bytes(body).ok_or_else(|| "not a valid filter".to_string())
}

fn store(
    dir: &Path,
    exe: &[u8],
    json: &[u8],
    filter: &Filter,
) -> std::result::Result<PathBuf, String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    dir_is_private(dir)?;
    let path = dir.join(entry_name(exe, json));
    let tmp = dir.join(format!(".tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode(exe, json, filter)))
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
    fn entries_decode_only_whole_and_for_their_input() {
        let f = filter();
        let (exe, json) = (
            b"build-id:1234".as_slice(),
            br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.as_slice(),
        );
        let good = encode(exe, json, &f);
        let back = decode(&good, exe, json).expect("whole entry");
        assert_eq!(back.to_bytes(), f.to_bytes());
        assert!(
            decode(&good, b"build-id:1235", json).is_err(),
            "another build"
        );
        assert!(
            decode(&good, exe, br#"{"defaultAction":"SCMP_ACT_LOG"}"#).is_err(),
            "another profile"
        );
        for len in [0, 8, 20, good.len() / 2, good.len() - 1] {
            assert!(
                decode(&good[..len], exe, json).is_err(),
                "truncated to {len}"
            );
        }
        for at in [0, 9, 14, 30, good.len() - 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, exe, json).is_err(), "byte {at} flipped");
        }
    }

    /// A fresh directory of mode 0700 under the system's temp dir.
    fn private_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cove-sc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    #[test]
    fn store_keeps_the_newest_entries_and_drops_stale_temporaries() {
        let dir = private_dir("evict");
        let cache = dir.join(CACHE_DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&cache)
            .unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let mut names = Vec::new();
        for i in 0..MAX_ENTRIES {
            let name = format!("{i:016x}");
            let f = std::fs::File::create(cache.join(&name)).unwrap();
            f.set_modified(old + Duration::from_secs(i as u64)).unwrap();
            names.push(name);
        }
        let stale = cache.join(".tmp.1");
        std::fs::File::create(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = cache.join(".tmp.2");
        std::fs::File::create(&fresh).unwrap();

        let (exe, json) = (
            b"build-id:ab".as_slice(),
            br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.as_slice(),
        );
        let stored = store(&cache, exe, json, &filter()).expect("store");
        assert!(
            lookup(&cache, exe, json).is_some(),
            "the new entry is read back"
        );
        let left: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| is_entry_name(n))
            .collect();
        assert_eq!(left.len(), MAX_ENTRIES);
        assert!(!left.contains(&names[0]), "the oldest entry stayed");
        assert!(left.iter().any(|n| stored.ends_with(n)));
        assert!(!stale.exists(), "a stale temporary file stayed");
        assert!(fresh.exists(), "a writer's fresh temporary file went");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_directory_others_can_enter_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir("mode");
        let cache = dir.join(CACHE_DIR);
        let (exe, json) = (
            b"build-id:ab".as_slice(),
            br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.as_slice(),
        );
        store(&cache, exe, json, &filter()).expect("store");
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700, "made with mode 0700");
        assert!(lookup(&cache, exe, json).is_some());
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            lookup(&cache, exe, json).is_none(),
            "read from a 0755 directory"
        );
        assert!(
            store(&cache, exe, json, &filter()).is_err(),
            "written to a 0755 directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_differ_by_profile_text_and_build() {
        let a = entry_name(b"build-id:1", br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
        let b = entry_name(b"build-id:1", br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#);
        let c = entry_name(b"build-id:2", br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
        assert!(a != b && a != c && b != c);
        assert_eq!(
            a,
            entry_name(b"build-id:1", br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)
        );
        assert!(is_entry_name(&a), "{a}");
    }
}
