//! NOTIFY_SOCKET as runc handles it, so that `podman run
//! --sdnotify=container` (and any service manager running cove-oci) hears
//! when the container's own process says it is ready.
//!
//! When cove-oci is called with `NOTIFY_SOCKET` in its environment,
//! `create` (through the engine) binds the container's state directory's
//! `notify` directory read-only at `/run/notify` and gives the process
//! `NOTIFY_SOCKET=/run/notify/notify.sock`. `start` (or `run`) binds that
//! socket before it lets the process run, then waits until a datagram with
//! a `READY=` line arrives (or the container's init is gone) and passes
//! the line on to the host's socket with `MAINPID=` the init's host pid,
//! so that the service manager watches the container's process. Other
//! messages before it (STATUS=, ...) are not passed on, as with runc.

use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The host's socket, from our own environment; None without one.
pub fn host_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| s.starts_with('/') || s.starts_with('@'))
}

/// The container's socket, bound and listening. The file stays when we
/// are gone (as runc's: a later message finds nobody listening), and goes
/// with the state directory at `delete`.
pub struct Listener {
    sock: UnixDatagram,
    host: String,
}

impl Listener {
    /// Binds the container's socket if the container was created with a
    /// notify directory and we have a host socket to relay to.
    pub fn bind(root: &Path, id: &str) -> Result<Option<Listener>, String> {
        let Some(host) = host_socket() else {
            return Ok(None);
        };
        let path = cove_engine::container::notify_socket_path(root, id);
        if !path.parent().is_some_and(Path::is_dir) {
            // Created without NOTIFY_SOCKET: nothing inside can notify.
            return Ok(None);
        }
        // sun_path holds 108 bytes with the terminating NUL.
        let len = path.as_os_str().len();
        if len > 107 {
            return Err(format!(
                "the notify socket {} is {len} bytes long, more than a unix socket takes (107): use a shorter --root",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)
            .map_err(|e| format!("bind the notify socket {}: {e}", path.display()))?;
        // Anyone in the container may send (its root is not always ours).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
        Ok(Some(Listener { sock, host }))
    }

    /// Waits for the container's READY= and relays it with MAINPID=`pid`.
    /// Returns when relayed, or quietly when the init `pidfd` ended first.
    pub fn wait_and_relay(&self, pidfd: impl AsFd, pid: i32) -> Result<(), String> {
        let mut buf = vec![0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(self.sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll the notify socket: {e}")),
            }
            let readable = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let (msg, gone) = (readable(&fds[0]), readable(&fds[1]));
            if msg {
                let n = self
                    .sock
                    .recv(&mut buf)
                    .map_err(|e| format!("read the notify socket: {e}"))?;
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(ready) = text.lines().find(|l| l.starts_with("READY=")) {
                    return send(&self.host, &format!("{ready}\nMAINPID={pid}\n"));
                }
            } else if gone {
                return Ok(());
            }
        }
    }
}

/// One datagram to the host's socket (a path, or `@name` for an abstract
/// one).
fn send(host: &str, msg: &str) -> Result<(), String> {
    use std::os::unix::net::SocketAddr;
    let sock = UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
    let addr = match host.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(host),
    }
    .map_err(|e| format!("NOTIFY_SOCKET={host}: {e}"))?;
    sock.send_to_addr(msg.as_bytes(), &addr)
        .map(|_| ())
        .map_err(|e| format!("send to NOTIFY_SOCKET={host}: {e}"))
}
