//! Test helper: a scratch directory that stands in for a cgroup directory.
//! It holds the files a kernel would offer (a knob that is absent is an
//! absent file), and a journal of every write made through it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fs::{CgroupDir, Journal};

pub(crate) struct Scratch {
    pub path: PathBuf,
    journal: Journal,
}

impl Scratch {
    /// A new directory holding `files` (name, content).
    pub(crate) fn new(files: &[(&str, &str)]) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "cove-cgroups-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        for (name, content) in files {
            std::fs::write(path.join(name), content).expect("write scratch file");
        }
        Self {
            path,
            journal: Journal::default(),
        }
    }

    pub(crate) fn dir(&self) -> CgroupDir {
        CgroupDir::with_journal(&self.path, self.journal.clone())
    }

    /// Every write so far, in order, as (file, value).
    pub(crate) fn writes(&self) -> Vec<(String, String)> {
        self.journal.borrow().clone()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `LinuxResources` from the JSON a config.json would hold.
pub(crate) fn resources(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("valid linux.resources JSON")
}

/// Shorthand for an expected journal.
pub(crate) fn writes(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect()
}
