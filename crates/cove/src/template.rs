//! The template store: read-only root filesystems CTs are made from.
//!
//! A template is built by a recipe (`rootfs-templates/<name>/build OUTDIR`,
//! with its `manifest.toml`) or imported from a tarball, always into a
//! hidden directory next to its final place and then renamed there, so a
//! half-built template is never seen. Once in the store cove never writes
//! it again: CTs only ever see it as the lower layer of their overlay.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::config::{self, CtConfig};
use crate::ctid::{self, Ctid};
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::overlay;
use crate::paths::Paths;
use crate::signals;

pub const MANIFEST: &str = "manifest.toml";
pub const ROOTFS: &str = "rootfs";

/// What cove reads from a recipe's `manifest.toml`. Keys it does not know
/// are left alone: recipes describe more than cove needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The build script, relative to the recipe directory.
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub init: Option<InitSpec>,
}

/// `[init]` of a manifest: how the template's init is started and stopped.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InitSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let m: Manifest = toml::from_str(&text)
            .map_err(|e| Error::bad_config(path, e.message().trim().replace('\n', " ")))?;
        if let Some(s) = m.init.as_ref().and_then(|i| i.stop_signal.as_deref()) {
            signals::parse(s)
                .map_err(|e| Error::bad_config(path, format!("init.stop_signal: {e}")))?;
        }
        if let Some(p) = m.init.as_ref().and_then(|i| i.path.as_deref()) {
            if !p.starts_with('/') {
                return Err(Error::bad_config(
                    path,
                    format!("init.path = {p:?}: must be absolute"),
                ));
            }
        }
        Ok(m)
    }
}

/// A template in the store.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub manifest: Manifest,
}

pub fn open(paths: &Paths, name: &str) -> Result<Template> {
    ctid::validate_template_name(name)?;
    let dir = paths.template(name);
    let rootfs = dir.join(ROOTFS);
    if !rootfs.is_dir() {
        return Err(Error::NoSuchTemplate(name.to_string()));
    }
    let manifest_path = dir.join(MANIFEST);
    let manifest = if manifest_path.exists() {
        Manifest::load(&manifest_path)?
    } else {
        Manifest::default()
    };
    Ok(Template {
        name: name.to_string(),
        dir,
        rootfs,
        manifest,
    })
}

/// Every template in the store, by name. Hidden entries are builds in
/// progress or removals and are not templates.
pub fn list(paths: &Paths) -> Result<Vec<Template>> {
    let dir = paths.templates();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &dir, e)),
    };
    let mut out: Vec<Template> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && ctid::validate_template_name(n).is_ok())
        .filter_map(|n| open(paths, &n).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The CTs whose config names `name` as their template.
pub fn users(paths: &Paths, name: &str) -> Result<Vec<Ctid>> {
    Ok(config::list_ctids(paths)?
        .into_iter()
        .filter(|id| {
            CtConfig::load(&paths.ct(id).config, id)
                .map(|c| c.template == name)
                .unwrap_or(false)
        })
        .collect())
}

fn joined(ids: &[Ctid]) -> String {
    ids.iter()
        .map(Ctid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the recipes are: `$COVE_TEMPLATES_DIR`, else `rootfs-templates/`
/// in a directory above the executable (a workspace build), else the
/// installed copy.
pub fn recipes_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("COVE_TEMPLATES_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let candidate = dir.join("rootfs-templates");
            if candidate.is_dir() {
                return Some(candidate);
            }
        }
    }
    [
        "/usr/share/cove/rootfs-templates",
        "/usr/local/share/cove/rootfs-templates",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.is_dir())
}

/// A scratch directory in the store, removed on drop unless committed.
struct Staging {
    dir: Option<PathBuf>,
}

impl Staging {
    fn new(paths: &Paths, name: &str, what: &str) -> Result<Staging> {
        let store = paths.templates();
        crate::paths::private_dir(&store)?;
        let dir = store.join(format!(".{name}.{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        Ok(Staging { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// Moves the staged template to `<store>/<name>`. With `replace`, an
    /// existing template is swapped out atomically (RENAME_EXCHANGE), so
    /// readers see the old one or the new one, never neither.
    fn commit(mut self, paths: &Paths, name: &str, replace: bool) -> Result<()> {
        let Some(staged) = self.dir.take() else {
            return Ok(());
        };
        let target = paths.template(name);
        let result = if replace && target.exists() {
            nix::fcntl::renameat2(
                None,
                &staged,
                None,
                &target,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(|e| {
                Error::sys(
                    format!("rename {} <-> {}", staged.display(), target.display()),
                    e,
                )
            })
            .map(|()| {
                // `staged` now holds the old template.
                let _ = std::fs::remove_dir_all(&staged);
            })
        } else {
            // rename(2) onto an existing non-empty directory fails, which is
            // what a concurrent build of the same name must see.
            std::fs::rename(&staged, &target).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                    Error::TemplateExists(name.to_string())
                }
                _ => Error::io("rename", &target, e),
            })
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        result
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Checks that a new template may be written under `name`; returns whether
/// one is being replaced.
fn check_replace(paths: &Paths, name: &str, force: bool) -> Result<bool> {
    ctid::validate_template_name(name)?;
    if !paths.template(name).exists() {
        return Ok(false);
    }
    if !force {
        return Err(Error::TemplateExists(name.to_string()));
    }
    // An overlay whose lower layer changes while it is mounted behaves in
    // undefined ways (overlayfs(5)); stopped CTs pick the new one up at
    // their next start.
    let running: Vec<Ctid> = users(paths, name)?
        .into_iter()
        .filter(|id| overlay::is_mounted(&paths.ct(id).rootfs))
        .collect();
    if !running.is_empty() {
        return Err(Error::BadInput(format!(
            "template {name} is in use by running CT {}: stop them before replacing it",
            joined(&running)
        )));
    }
    Ok(true)
}

fn template_lock(paths: &Paths, name: &str) -> Result<Lock> {
    // '@' never appears in a CTID, so this lock is nobody else's.
    let path = paths.locks().join(format!("template@{name}.lock"));
    Lock::try_acquire(&path).and_then(|l| {
        l.ok_or_else(|| {
            Error::BadInput(format!("template {name} is locked by another cove command"))
        })
    })
}

/// A root filesystem cove can boot: it needs an init or at least a shell.
fn check_rootfs(rootfs: &Path, what: &str) -> Result<()> {
    let has = |p: &str| rootfs.join(p).symlink_metadata().is_ok();
    if has("sbin/init") || has("bin/sh") {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "{what} does not look like a root filesystem: it has neither /sbin/init nor /bin/sh"
        )))
    }
}

/// `cove template build NAME`: runs the recipe's build script into the store.
pub fn build(paths: &Paths, name: &str, force: bool) -> Result<Template> {
    ctid::validate_template_name(name)?;
    let recipes = recipes_dir().ok_or_else(|| {
        Error::BadInput("cannot find rootfs-templates/: set COVE_TEMPLATES_DIR to the directory of template recipes".into())
    })?;
    let recipe = recipes.join(name);
    let manifest_path = recipe.join(MANIFEST);
    if !manifest_path.is_file() {
        return Err(Error::BadInput(format!(
            "no recipe for template {name}: {} does not exist",
            manifest_path.display()
        )));
    }
    let manifest = Manifest::load(&manifest_path)?;
    let script = recipe.join(manifest.build.as_deref().unwrap_or("build"));
    if !script.is_file() {
        return Err(Error::bad_config(
            &manifest_path,
            format!("build script {} does not exist", script.display()),
        ));
    }
    let _lock = template_lock(paths, name)?;
    let replace = check_replace(paths, name, force)?;
    let staging = Staging::new(paths, name, "build")?;
    let rootfs = staging.path().join(ROOTFS);
    // The script's own output is the progress report: it goes to our stderr
    // so that stdout stays for cove's one-line result.
    let status = Command::new(&script)
        .arg(&rootfs)
        .current_dir(&recipe)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| Error::io("run", &script, e))?;
    if !status.success() {
        return Err(Error::Tool(format!(
            "template build {name}: {} failed ({status})",
            script.display()
        )));
    }
    check_rootfs(&rootfs, &format!("the output of {}", script.display()))?;
    let copy = staging.path().join(MANIFEST);
    std::fs::copy(&manifest_path, &copy).map_err(|e| Error::io("copy", &copy, e))?;
    staging.commit(paths, name, replace)?;
    open(paths, name)
}

/// `cove template import TARBALL NAME`: a root filesystem from a tarball
/// (compressed or not; GNU tar recognises the compression).
pub fn import(paths: &Paths, tarball: &Path, name: &str, force: bool) -> Result<Template> {
    ctid::validate_template_name(name)?;
    match std::fs::metadata(tarball) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::BadInput(format!(
                "{} is not a file",
                tarball.display()
            )))
        }
        Err(e) => {
            return Err(Error::BadInput(format!(
                "tarball {}: {e}",
                tarball.display()
            )))
        }
    }
    let tarball = std::fs::canonicalize(tarball).map_err(|e| Error::io("resolve", tarball, e))?;
    let _lock = template_lock(paths, name)?;
    let replace = check_replace(paths, name, force)?;
    let staging = Staging::new(paths, name, "import")?;
    let rootfs = staging.path().join(ROOTFS);
    std::fs::create_dir(&rootfs).map_err(|e| Error::io("create", &rootfs, e))?;
    // Owners by number (the host's passwd means nothing inside), modes and
    // file capabilities as archived.
    let out = Command::new("tar")
        .args([
            "--numeric-owner",
            "--same-permissions",
            "--xattrs",
            "--xattrs-include=*",
            "-x",
            "-f",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&rootfs)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Tool(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        return Err(Error::Tool(format!(
            "tar -xf {}: {first} ({})",
            tarball.display(),
            out.status
        )));
    }
    check_rootfs(&rootfs, &tarball.display().to_string())?;
    let manifest = format!(
        "# Imported by cove template import.\nname = {name:?}\ndescription = {:?}\n",
        format!("imported from {}", tarball.display())
    );
    let mpath = staging.path().join(MANIFEST);
    std::fs::write(&mpath, manifest).map_err(|e| Error::io("write", &mpath, e))?;
    staging.commit(paths, name, replace)?;
    open(paths, name)
}

/// `cove template remove NAME`: refused while a CT is made from it.
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let t = open(paths, name)?;
    let _lock = template_lock(paths, name)?;
    let used = users(paths, name)?;
    if !used.is_empty() {
        return Err(Error::TemplateInUse {
            name: name.to_string(),
            users: joined(&used),
        });
    }
    // Renamed first, so that an interrupted removal leaves a hidden
    // leftover rather than a template with half its files.
    let doomed = paths
        .templates()
        .join(format!(".{name}.remove-{}", std::process::id()));
    std::fs::rename(&t.dir, &doomed).map_err(|e| Error::io("rename", &t.dir, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))
}

/// How a CT's init is run and asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    pub path: String,
    pub stop_signal: i32,
}

/// The CT's init and its stop signal: the CT's config first, then the
/// template's manifest, then what the init binary is (looked up inside
/// `rootfs`, the CT's mounted root).
pub fn init_of(cfg: &CtConfig, manifest: &Manifest, rootfs: &Path) -> InitInfo {
    let from_manifest = manifest.init.clone().unwrap_or_default();
    let path = cfg
        .init
        .clone()
        .or(from_manifest.path)
        .unwrap_or_else(|| "/sbin/init".to_string());
    let stop_signal = cfg
        .stop_signal()
        .or_else(|| {
            from_manifest
                .stop_signal
                .as_deref()
                .and_then(|s| signals::parse(s).ok())
        })
        .unwrap_or_else(|| {
            stop_signal_for(resolve_in_root(rootfs, &path).as_deref().unwrap_or(&path))
        });
    InitInfo { path, stop_signal }
}

/// The shutdown request each init understands: systemd powers off on
/// SIGRTMIN+3, busybox init on SIGUSR2 (SIGTERM means reboot to it);
/// sysvinit and others get SIGPWR, as LXC does.
pub fn stop_signal_for(init_target: &str) -> i32 {
    let file = init_target.rsplit('/').next().unwrap_or(init_target);
    if file.contains("systemd") {
        libc::SIGRTMIN() + 3
    } else if file == "busybox" {
        libc::SIGUSR2
    } else {
        libc::SIGPWR
    }
}

/// Follows `path` inside `root` as the CT would see it (symlinks resolved
/// against `root`, never the host's /), without opening any file for
/// reading. Returns the CT-side path of the final file, or None for a loop.
///
/// The walk holds an O_PATH fd of each directory it has entered and looks
/// at the next component relative to it with AT_SYMLINK_NOFOLLOW: a running
/// CT that turns a directory into a symlink meanwhile cannot send the walk
/// through the host's tree (the next lookup fails, the rest is taken as
/// written). What does not exist is kept as written.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<String> {
    use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let open_dir = |dir: Option<&OwnedFd>, name: &Path| -> Option<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir.map(|d| d.as_raw_fd()), name, flags, Mode::empty()).ok()?;
        // SAFETY: openat just returned this fd; nothing else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let root_fd = open_dir(None, root);
    let mut todo: std::collections::VecDeque<String> =
        path.split('/').map(str::to_string).collect();
    // Each entered component with its directory fd; None once the walk
    // has left what exists (then nothing more is looked up).
    let mut done: Vec<(String, Option<OwnedFd>)> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = match done.last() {
            Some((_, fd)) => fd.as_ref(),
            None => root_fd.as_ref(),
        };
        let Some(dir) = here else {
            done.push((c, None));
            continue;
        };
        let name = Path::new(&c);
        let is_link =
            fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            });
        if !is_link {
            let fd = open_dir(Some(dir), name);
            done.push((c, fd));
            continue;
        }
        hops += 1;
        if hops > 40 {
            return None;
        }
        let target = readlinkat(Some(dir.as_raw_fd()), name).ok()?;
        let target = target.to_string_lossy().into_owned();
        if target.starts_with('/') {
            done.clear();
        }
        for part in target.split('/').rev() {
            todo.push_front(part.to_string());
        }
    }
    let names: Vec<&str> = done.iter().map(|(n, _)| n.as_str()).collect();
    Some(format!("/{}", names.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("cove-template-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn init_symlinks_resolve_inside_the_root() {
        let root = scratch("resolve");
        std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
        std::fs::write(root.join("usr/lib/systemd/systemd"), "").unwrap();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        symlink("usr/sbin", root.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", root.join("usr/sbin/init")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/sbin/init").as_deref(),
            Some("/usr/lib/systemd/systemd")
        );
        symlink("/loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(&root, "/loop"), None);
        // An absolute link is read against the CT's root, not the host's.
        symlink("/../../../bin/busybox", root.join("escape")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/escape").as_deref(),
            Some("/bin/busybox")
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn stop_signals_by_init() {
        assert_eq!(stop_signal_for("/bin/busybox"), libc::SIGUSR2);
        assert_eq!(
            stop_signal_for("/usr/lib/systemd/systemd"),
            libc::SIGRTMIN() + 3
        );
        assert_eq!(stop_signal_for("/sbin/init"), libc::SIGPWR);
    }

    #[test]
    fn config_and_manifest_override_detection() {
        let root = scratch("override");
        let mut cfg = CtConfig {
            ctid: "1".into(),
            template: "t".into(),
            name: None,
            hostname: "h".into(),
            init: None,
            stop_signal: None,
            seccomp: None,
            onboot: None,
            bootorder: None,
            resources: Default::default(),
            net: Default::default(),
        };
        let manifest = Manifest {
            init: Some(InitSpec {
                path: Some("/sbin/myinit".into()),
                stop_signal: Some("SIGTERM".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            init_of(&cfg, &manifest, &root),
            InitInfo {
                path: "/sbin/myinit".into(),
                stop_signal: libc::SIGTERM
            }
        );
        cfg.stop_signal = Some("SIGINT".into());
        assert_eq!(init_of(&cfg, &manifest, &root).stop_signal, libc::SIGINT);
        assert_eq!(
            init_of(&cfg, &Manifest::default(), &root).path,
            "/sbin/init"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
