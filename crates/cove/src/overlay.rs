//! The CT's root filesystem: an overlay of the read-only template (lower)
//! and the CT's private directory (upper), mounted in the host's mount
//! namespace before the engine creates the container, so that creating a
//! CT copies nothing and a CT's changes stay in its private area.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

pub fn mount_rootfs(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::sys(format!("mount overlay on {} ({data})", target.display()), e))
}

/// Unmounts `target` if something is mounted there (every layer, should a
/// CT's rootfs have been mounted twice). A mount still busy after a few
/// seconds is detached: it disappears from every namespace's view now and
/// is freed by the kernel once its last user goes.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_mounted(target) {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| Error::sys(format!("umount -l {}", target.display()), e))?,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::sys(format!("umount {}", target.display()), e)),
        }
    }
    Ok(())
}

/// Whether `target` is a mount point in our mount namespace.
pub fn is_mounted(target: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = target.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\"), "/x\\");
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")));
        assert!(!is_mounted(Path::new("/surely/not/a/mount/point")));
    }
}
