//! Reading and writing cgroupfs files, and creating and removing cgroup
//! directories.
//!
//! Every limit goes through [`CgroupDir`], which is the seam the unit tests
//! use: they point it at a scratch directory holding the files a kernel
//! would offer and read back the journal of writes, in order.

use std::cell::RefCell;
use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread::sleep;
use std::time::Duration;

use crate::error::{Error, Result};

/// Writes made through a [`CgroupDir`]: (file name, value), in order.
pub(crate) type Journal = Rc<RefCell<Vec<(String, String)>>>;

/// One cgroup directory in one hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct CgroupDir {
    path: PathBuf,
    journal: Option<Journal>,
}

impl CgroupDir {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            journal: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_journal(path: impl Into<PathBuf>, journal: Journal) -> Self {
        Self {
            path: path.into(),
            journal: Some(journal),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    /// One write(2) of `value`. cgroupfs files exist or not depending on the
    /// kernel and the enabled controllers, so the file is never created:
    /// a missing knob is ENOENT, as the kernel would say.
    pub(crate) fn write_raw(&self, name: &str, value: &str) -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.file(name))?;
        file.write_all(value.as_bytes())?;
        if let Some(journal) = &self.journal {
            journal
                .borrow_mut()
                .push((name.to_string(), value.to_string()));
        }
        Ok(())
    }

    pub(crate) fn write(&self, name: &str, value: &str) -> Result<()> {
        self.write_raw(name, value)
            .map_err(|source| self.write_error(name, value, source))
    }

    pub(crate) fn write_error(&self, name: &str, value: &str, source: io::Error) -> Error {
        Error::Write {
            path: self.file(name),
            value: value.to_string(),
            source,
        }
    }

    /// Replaces the cgroup's device program with the one for `set` (v2).
    /// A scratch directory journals it as a write to "<device program>".
    pub(crate) fn install_device_program(
        &self,
        set: &crate::device_rules::DeviceSet,
    ) -> Result<()> {
        if let Some(journal) = &self.journal {
            let summary = format!(
                "default {}, {} exceptions, {} instructions",
                if set.default_allow { "allow" } else { "deny" },
                set.exceptions.len(),
                crate::device_program::program(set).len()
            );
            journal
                .borrow_mut()
                .push(("<device program>".to_string(), summary));
            return Ok(());
        }
        crate::device_program::install(&self.path, set)
    }

    /// Whether writes only go to a journal (unit tests), so files that the
    /// kernel would change after a write (devices.list) do not.
    pub(crate) fn is_scratch(&self) -> bool {
        self.journal.is_some()
    }

    pub(crate) fn read_raw(&self, name: &str) -> io::Result<String> {
        fs::read_to_string(self.file(name))
    }

    pub(crate) fn read(&self, name: &str) -> Result<String> {
        self.read_raw(name).map_err(|source| Error::Read {
            path: self.file(name),
            source,
        })
    }

    /// A file holding one unsigned number.
    pub(crate) fn read_u64(&self, name: &str) -> Result<u64> {
        let text = self.read(name)?;
        parse_u64(text.trim()).ok_or_else(|| Error::Parse {
            path: self.file(name),
            content: text,
        })
    }

    /// Like [`Self::read_u64`], but `None` when the file does not exist (a
    /// knob this kernel lacks).
    pub(crate) fn read_u64_opt(&self, name: &str) -> Result<Option<u64>> {
        match self.read_raw(name) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            _ => self.read_u64(name).map(Some),
        }
    }

    /// A v2-style limit: a number, or "max" for none (`None`).
    pub(crate) fn read_limit(&self, name: &str) -> Result<Option<u64>> {
        let text = self.read(name)?;
        let value = text.split_whitespace().next().unwrap_or("");
        if value == "max" {
            return Ok(None);
        }
        parse_u64(value).map(Some).ok_or_else(|| Error::Parse {
            path: self.file(name),
            content: text.clone(),
        })
    }

    /// The value of `key` in a flat keyed file ("key value" per line, as
    /// cpu.stat, memory.events, memory.stat, memory.oom_control).
    /// `None` when the file or the key is missing.
    pub(crate) fn read_keyed(&self, name: &str, key: &str) -> Result<Option<u64>> {
        let text = match self.read_raw(name) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Read {
                    path: self.file(name),
                    source,
                })
            }
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if fields.next() == Some(key) {
                let value = fields.next().unwrap_or("");
                return parse_u64(value).map(Some).ok_or_else(|| Error::Parse {
                    path: self.file(name),
                    content: line.to_string(),
                });
            }
        }
        Ok(None)
    }

    /// Moves `pid` into this cgroup.
    pub(crate) fn add_pid(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        // EINVAL can mean the task is still in TASK_NEW (just forked) and
        // cannot be migrated yet; it clears within microseconds.
        let mut attempt = 0;
        loop {
            match self.write_raw("cgroup.procs", &value) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && attempt < 5 => {
                    attempt += 1;
                    sleep(Duration::from_millis(1));
                }
                other => return other.map_err(|e| self.write_error("cgroup.procs", &value, e)),
            }
        }
    }

    /// Pids in this cgroup and every cgroup below it. A cgroup that does not
    /// exist holds no pids.
    pub(crate) fn pids_recursive(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        collect_pids(&self.path, &mut pids)?;
        Ok(pids)
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    text.parse().ok()
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(text) => {
            for line in text.lines().filter(|l| !l.is_empty()) {
                let pid = line.trim().parse().map_err(|_| Error::Parse {
                    path: procs.clone(),
                    content: line.to_string(),
                })?;
                pids.push(pid);
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: procs,
                source,
            })
        }
    }
    for child in child_cgroups(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

/// Sub-directories of a cgroup directory: its child cgroups.
fn child_cgroups(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            children.push(entry.path());
        }
    }
    Ok(children)
}

/// `mkdir -p`, racing safely with anyone creating the same parents.
pub(crate) fn create_cgroup(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| Error::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes a cgroup and any cgroups the container made below it (a
/// container with its own cgroup namespace may nest), deepest first. The
/// kernel refuses rmdir with EBUSY while a cgroup is populated, and a
/// killed task leaves its cgroup a moment after the signal; so retry for a
/// short while. A cgroup that is already gone is fine.
pub(crate) fn remove_cgroup(path: &Path) -> Result<()> {
    // 1, 2, 4, 8, 16, then 20 ms apart, about a second in all: a short
    // step because the cgroup is usually free within milliseconds (a
    // doubling up to 200 ms made `delete` wait a further 100-200 ms for
    // nothing under a slow kernel).
    const ATTEMPTS: u32 = 60;
    let mut delay = Duration::from_millis(1);
    let mut attempt = 1;
    loop {
        match remove_tree(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < ATTEMPTS => {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(20));
                attempt += 1;
            }
            Err(source) if source.raw_os_error() == Some(libc::EBUSY) => {
                return Err(Error::RemoveBusy {
                    path: path.to_path_buf(),
                    attempts: attempt,
                    source,
                })
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    // Fast path: a leaf cgroup (the usual case) goes with one rmdir.
    match fs::remove_dir(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        // cgroupfs answers rmdir of a non-empty cgroup with EBUSY, but a
        // scratch directory in tests would say ENOTEMPTY.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
        Err(e) => return Err(e),
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            Err(io::Error::from_raw_os_error(libc::EBUSY))
        }
        other => other,
    }
}

/// Undoes a failed `create`: removes the leaf directories that did not
/// exist before it, unless committed. A half-created container must not
/// leave cgroups behind that nobody has recorded yet.
pub(crate) struct CreateGuard {
    fresh: Vec<PathBuf>,
    committed: bool,
}

impl CreateGuard {
    pub(crate) fn new<'a>(leaves: impl IntoIterator<Item = &'a Path>) -> Self {
        Self {
            fresh: leaves
                .into_iter()
                .filter(|leaf| !leaf.exists())
                .map(Path::to_path_buf)
                .collect(),
            committed: false,
        }
    }

    pub(crate) fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for leaf in self.fresh.iter().rev() {
            // Empty by construction: nothing has joined yet.
            let _ = fs::remove_dir(leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;

    #[test]
    fn failed_create_removes_only_the_leaves_it_made() {
        let scratch = Scratch::new(&[]);
        let existing = scratch.path.join("existing");
        let fresh = scratch.path.join("fresh");
        create_cgroup(&existing).unwrap();
        {
            let _guard = CreateGuard::new([existing.as_path(), fresh.as_path()]);
            create_cgroup(&fresh).unwrap();
            // Dropped without commit: the create failed after this point.
        }
        assert!(existing.is_dir(), "a leaf that was there before stays");
        assert!(!fresh.exists(), "a leaf made by the failed create goes");

        let guard = CreateGuard::new([fresh.as_path()]);
        create_cgroup(&fresh).unwrap();
        guard.commit();
        assert!(fresh.is_dir(), "a committed create keeps its leaves");
    }

    #[test]
    fn keyed_files_and_limits_parse() {
        let scratch = Scratch::new(&[
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
            ),
            ("pids.max", "max\n"),
            ("memory.max", "1048576\n"),
        ]);
        let dir = scratch.dir();
        assert_eq!(dir.read_keyed("cpu.stat", "user_usec").unwrap(), Some(1000));
        assert_eq!(dir.read_keyed("cpu.stat", "nope").unwrap(), None);
        assert_eq!(dir.read_keyed("missing.file", "x").unwrap(), None);
        assert_eq!(dir.read_limit("pids.max").unwrap(), None);
        assert_eq!(dir.read_limit("memory.max").unwrap(), Some(1_048_576));
        assert!(
            dir.write("no.such.knob", "1").is_err(),
            "knobs are never created"
        );
    }
}
