//! The CT's /etc/hosts and /etc/resolv.conf, written from the host into
//! the CT's mounted root. Every path is resolved inside that root
//! (openat2 RESOLVE_IN_ROOT), so a symlink the CT planted at /etc cannot
//! send the write to the host's files; the new file replaces the old by a
//! rename in the same directory.
//!
//! /etc/hosts: cove's lines end in `# cove`; they are rewritten, the
//! others kept. /etc/resolv.conf: when the CT has nameservers or search
//! domains, its `nameserver`, `search` and `domain` lines are replaced by
//! those; other lines (options) stay.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cove_engine::sys::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

use super::config::NetConfig;
use crate::error::{Error, Result};

const MARK: &str = "# cove";
/// What a file of the CT may weigh for us to read it.
const MAX_READ: u64 = 1 << 20;

/// The CT's /etc, opened inside its root; created when missing.
fn open_etc(rootfs: &Path) -> Result<OwnedFd> {
    let root = std::fs::File::open(rootfs).map_err(|e| Error::io("open", rootfs, e))?;
    let open = || {
        openat2(
            root.as_fd(),
            Path::new("etc"),
            libc::O_DIRECTORY | libc::O_RDONLY,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
    };
    match open() {
        Ok(fd) => Ok(fd),
        Err(nix::errno::Errno::ENOENT) => {
            nix::sys::stat::mkdirat(
                Some(root.as_raw_fd()),
                "etc",
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )
            .map_err(|e| Error::sys(format!("mkdir {}/etc", rootfs.display()), e))?;
            open().map_err(|e| Error::sys(format!("open {}/etc", rootfs.display()), e))
        }
        Err(e) => Err(Error::sys(format!("open {}/etc", rootfs.display()), e)),
    }
}

/// The text of `etc/NAME` if it is a regular file of sane size.
fn read(etc: &OwnedFd, name: &str) -> Option<String> {
    let fd = openat2(
        etc.as_fd(),
        Path::new(name),
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_READ {
        return None;
    }
    // Capped as read, too: the CT may grow the file after the check.
    let mut text = String::new();
    f.take(MAX_READ).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Replaces `etc/NAME` with `text` (mode 0644) by a rename.
fn replace(etc: &OwnedFd, rootfs: &Path, name: &str, text: &str) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let dir = Some(etc.as_raw_fd());
    let tmp = format!(".{name}.cove-{}", std::process::id());
    let what = || format!("{}/etc/{name}", rootfs.display());
    let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    let fd = nix::fcntl::openat(
        dir,
        tmp.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| Error::sys(format!("create {}", what()), e))?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| f.sync_all());
    drop(f);
    let renamed = written
        .map_err(|e| Error::io("write", what(), e))
        .and_then(|()| {
            nix::fcntl::renameat(dir, tmp.as_str(), dir, name)
                .map_err(|e| Error::sys(format!("rename into {}", what()), e))
        });
    if renamed.is_err() {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    renamed
}

/// /etc/hosts with cove's lines for `hostname` and the CT's addresses.
pub fn hosts_text(old: &str, hostname: &str, net: &NetConfig) -> String {
    let kept: Vec<&str> = old
        .lines()
        .filter(|l| !l.trim_end().ends_with(MARK))
        .collect();
    let names_localhost = |l: &&str| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|n| n == "localhost")
    };
    let mut out = String::new();
    if !kept.iter().any(names_localhost) {
        out.push_str(&format!("127.0.0.1\tlocalhost {MARK}\n"));
        out.push_str(&format!(
            "::1\tlocalhost ip6-localhost ip6-loopback {MARK}\n"
        ));
    }
    for l in &kept {
        out.push_str(l);
        out.push('\n');
    }
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short != hostname {
        format!("{hostname} {short}")
    } else {
        hostname.to_string()
    };
    if net.ip.is_empty() {
        out.push_str(&format!("127.0.1.1\t{names} {MARK}\n"));
    }
    for c in &net.ip {
        out.push_str(&format!("{}\t{names} {MARK}\n", c.addr));
    }
    out
}

/// /etc/resolv.conf with the CT's nameservers and search domains.
pub fn resolv_text(old: &str, net: &NetConfig) -> String {
    let mut out = String::from(
        "# written by cove from the CT's config (cove set --nameserver/--searchdomain)\n",
    );
    for l in old.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if matches!(first, "nameserver" | "search" | "domain") || l.starts_with("# written by cove")
        {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !net.searchdomain.is_empty() {
        out.push_str(&format!("search {}\n", net.searchdomain.join(" ")));
    }
    for n in &net.nameserver {
        out.push_str(&format!("nameserver {n}\n"));
    }
    out
}

/// Writes both files into the CT mounted at `rootfs`: /etc/hosts always
/// (for a CT with a `[net]` table), /etc/resolv.conf when there is
/// something to put in it.
pub fn write(rootfs: &Path, hostname: &str, net: &NetConfig) -> Result<()> {
    if net.is_empty() {
        return Ok(());
    }
    let etc = open_etc(rootfs)?;
    let old = read(&etc, "hosts").unwrap_or_default();
    let new = hosts_text(&old, hostname, net);
    if new != old {
        replace(&etc, rootfs, "hosts", &new)?;
    }
    if !net.nameserver.is_empty() || !net.searchdomain.is_empty() {
        let old = read(&etc, "resolv.conf").unwrap_or_default();
        let new = resolv_text(&old, net);
        if new != old {
            replace(&etc, rootfs, "resolv.conf", &new)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> NetConfig {
        NetConfig {
            ip: vec![
                "198.18.0.2/24".parse().unwrap(),
                "fd00:c0::2/64".parse().unwrap(),
            ],
            nameserver: vec!["198.18.0.1".parse().unwrap()],
            searchdomain: vec!["example.test".into(), "lan.test".into()],
            ..Default::default()
        }
    }

    #[test]
    fn hosts_keeps_the_ct_s_lines_and_replaces_cove_s() {
        let old = "127.0.0.1 localhost\n10.9.9.9 other\n198.18.0.7\told # cove\n";
        let new = hosts_text(old, "web.example.test", &net());
        assert_eq!(
            new,
            "127.0.0.1 localhost\n10.9.9.9 other\n198.18.0.2\tweb.example.test web # cove\nfd00:c0::2\tweb.example.test web # cove\n"
        );
        // Idempotent.
        assert_eq!(hosts_text(&new, "web.example.test", &net()), new);
        let fresh = hosts_text("", "box", &NetConfig::default());
        assert!(
            fresh.starts_with("127.0.0.1\tlocalhost # cove\n"),
            "{fresh}"
        );
        assert!(fresh.ends_with("127.0.1.1\tbox # cove\n"), "{fresh}");
    }

    #[test]
    fn resolv_conf_gets_the_servers_and_keeps_options() {
        let old = "nameserver 9.9.9.9\nsearch old.test\noptions ndots:2\n";
        let new = resolv_text(old, &net());
        assert_eq!(
            new,
            "# written by cove from the CT's config (cove set --nameserver/--searchdomain)\noptions ndots:2\nsearch example.test lan.test\nnameserver 198.18.0.1\n"
        );
        assert_eq!(resolv_text(&new, &net()), new);
    }
}
