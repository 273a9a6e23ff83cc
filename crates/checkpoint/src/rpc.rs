//! CRIU's RPC messages (criu/images/rpc.proto of CRIU 3.x): the request
//! and options we send, the response and notifications we read. Field
//! numbers are CRIU's; only the fields cove uses are here.

use crate::proto::{Encoder, Fields, Malformed, Value};

/// criu_req_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    Notify = 6,
    FeatureCheck = 9,
    Version = 10,
}

impl ReqType {
    fn from_wire(v: u64) -> Option<ReqType> {
        Some(match v {
            1 => ReqType::Dump,
            2 => ReqType::Restore,
            3 => ReqType::Check,
            4 => ReqType::PreDump,
            6 => ReqType::Notify,
            9 => ReqType::FeatureCheck,
            10 => ReqType::Version,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ReqType::Dump => "dump",
            ReqType::Restore => "restore",
            ReqType::Check => "check",
            ReqType::PreDump => "pre-dump",
            ReqType::Notify => "notify",
            ReqType::FeatureCheck => "feature check",
            ReqType::Version => "version",
        }
    }
}

/// criu_cg_mode: what CRIU does with the cgroups of the dumped tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgMode {
    Ignore = 0,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

impl CgMode {
    /// runc's `--manage-cgroups-mode` values; empty is CRIU's default (soft).
    pub fn parse(s: &str) -> Option<CgMode> {
        Some(match s {
            "" => CgMode::Default,
            "soft" => CgMode::Soft,
            "full" => CgMode::Full,
            "strict" => CgMode::Strict,
            "ignore" => CgMode::Ignore,
            _ => return None,
        })
    }
}

/// criu_opts. Bools left false are not sent (CRIU's defaults are false).
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub images_dir_fd: i32,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub ext_unix_sk: bool,
    pub tcp_established: bool,
    pub evasive_devices: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub log_level: Option<i32>,
    pub log_file: Option<String>,
    /// Page server address and port.
    pub page_server: Option<(String, i32)>,
    /// A socket already connected to a page server (swrk mode only: the
    /// fd is CRIU's, inherited).
    pub page_server_fd: Option<i32>,
    pub notify_scripts: bool,
    pub root: Option<String>,
    pub parent_img: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub work_dir_fd: Option<i32>,
    pub link_remap: bool,
    /// (mount point in the container, what it maps to).
    pub ext_mnt: Vec<(String, String)>,
    pub manage_cgroups: bool,
    /// (controller or "" for cgroup2, path).
    pub cg_root: Vec<(String, String)>,
    pub rst_sibling: bool,
    /// (key, fd in CRIU's process).
    pub inherit_fd: Vec<(String, i32)>,
    pub manage_cgroups_mode: Option<CgMode>,
    pub external: Vec<String>,
    pub empty_ns: u32,
    /// (namespace name, path).
    pub join_ns: Vec<(String, String)>,
    pub freeze_cgroup: Option<String>,
    pub tcp_skip_in_flight: bool,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    pub orphan_pts_master: bool,
    pub config_file: Option<String>,
    /// Filesystems CRIU may dump although it does not know them.
    pub enable_fs: Vec<String>,
    /// Where CRIU looks for the path of an inotify watch whose file handle
    /// it cannot open (--irmap-scan-path), as the dumped tasks see them.
    pub irmap_scan_paths: Vec<String>,
}

impl Opts {
    fn encode(&self) -> Encoder {
        let mut e = Encoder::new();
        e.int32(1, self.images_dir_fd);
        if let Some(pid) = self.pid {
            e.int32(2, pid);
        }
        e.flag(3, self.leave_running)
            .flag(4, self.ext_unix_sk)
            .flag(5, self.tcp_established)
            .flag(6, self.evasive_devices)
            .flag(7, self.shell_job)
            .flag(8, self.file_locks);
        if let Some(l) = self.log_level {
            e.int32(9, l);
        }
        if let Some(f) = &self.log_file {
            e.string(10, f);
        }
        if let Some((addr, port)) = &self.page_server {
            let mut ps = Encoder::new();
            ps.string(1, addr).int32(2, *port);
            e.message(11, ps);
        } else if let Some(fd) = self.page_server_fd {
            let mut ps = Encoder::new();
            ps.int32(4, fd);
            e.message(11, ps);
        }
        e.flag(12, self.notify_scripts);
        if let Some(r) = &self.root {
            e.string(13, r);
        }
        if let Some(p) = &self.parent_img {
            e.string(14, p);
        }
        e.flag(15, self.track_mem).flag(16, self.auto_dedup);
        if let Some(fd) = self.work_dir_fd {
            e.int32(17, fd);
        }
        e.flag(18, self.link_remap);
        for (k, v) in &self.ext_mnt {
            let mut m = Encoder::new();
            m.string(1, k).string(2, v);
            e.message(23, m);
        }
        e.flag(24, self.manage_cgroups);
        for (ctrl, path) in &self.cg_root {
            let mut m = Encoder::new();
            m.string(1, ctrl).string(2, path);
            e.message(25, m);
        }
        e.flag(26, self.rst_sibling);
        for (key, fd) in &self.inherit_fd {
            let mut m = Encoder::new();
            m.string(1, key).int32(2, *fd);
            e.message(27, m);
        }
        for fs in &self.enable_fs {
            e.string(32, fs);
        }
        if let Some(mode) = self.manage_cgroups_mode {
            e.uint(34, mode as u64);
        }
        for p in &self.irmap_scan_paths {
            e.string(36, p);
        }
        for x in &self.external {
            e.string(37, x);
        }
        if self.empty_ns != 0 {
            e.uint(38, u64::from(self.empty_ns));
        }
        for (ns, file) in &self.join_ns {
            let mut m = Encoder::new();
            m.string(1, ns).string(2, file);
            e.message(39, m);
        }
        if let Some(cg) = &self.freeze_cgroup {
            e.string(44, cg);
        }
        e.flag(46, self.tcp_skip_in_flight)
            .flag(48, self.lazy_pages);
        if let Some(fd) = self.status_fd {
            e.int32(49, fd);
        }
        e.flag(50, self.orphan_pts_master);
        if let Some(f) = &self.config_file {
            e.string(51, f);
        }
        e
    }
}

/// criu_req.
pub fn request(kind: ReqType, opts: Option<&Opts>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.uint(1, kind as u64);
    if let Some(o) = opts {
        e.message(2, o.encode());
    }
    e.into_bytes()
}

/// The answer to a notification: go on.
pub fn notify_ack() -> Vec<u8> {
    let mut e = Encoder::new();
    e.uint(1, ReqType::Notify as u64).bool(3, true);
    e.into_bytes()
}

/// criu_resp, the fields cove reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resp {
    pub kind: Option<ReqType>,
    pub success: bool,
    /// criu_restore_resp.pid: the restored root task.
    pub restored_pid: Option<i32>,
    /// criu_notify: the script name and the pid it concerns.
    pub notify: Option<(String, i32)>,
    pub cr_errno: Option<i32>,
    pub cr_errmsg: Option<String>,
    /// (major, minor, sublevel) from a VERSION request.
    pub version: Option<(i32, i32, i32)>,
}

fn as_i32(v: Value) -> Result<i32, Malformed> {
    match v {
        Value::Varint(n) => Ok(n as i64 as i32),
        _ => Err(Malformed),
    }
}

fn as_str(v: Value) -> Result<String, Malformed> {
    match v {
        Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(Malformed),
    }
}

fn sub(v: Value) -> Result<Fields, Malformed> {
    match v {
        Value::Bytes(b) => Ok(Fields::new(b)),
        _ => Err(Malformed),
    }
}

impl Resp {
    pub fn decode(buf: &[u8]) -> Result<Resp, Malformed> {
        let mut r = Resp::default();
        for f in Fields::new(buf) {
            let (field, v) = f?;
            match field {
                1 => {
                    if let Value::Varint(n) = v {
                        r.kind = ReqType::from_wire(n);
                    }
                }
                2 => r.success = as_i32(v)? != 0,
                4 => {
                    for f in sub(v)? {
                        if let (1, v) = f? {
                            r.restored_pid = Some(as_i32(v)?);
                        }
                    }
                }
                5 => {
                    let (mut script, mut pid) = (String::new(), 0);
                    for f in sub(v)? {
                        match f? {
                            (1, v) => script = as_str(v)?,
                            (2, v) => pid = as_i32(v)?,
                            _ => {}
                        }
                    }
                    r.notify = Some((script, pid));
                }
                7 => r.cr_errno = Some(as_i32(v)?),
                9 => r.cr_errmsg = Some(as_str(v)?),
                10 => {
                    let (mut major, mut minor, mut sub_) = (0, 0, 0);
                    for f in sub(v)? {
                        match f? {
                            (1, v) => major = as_i32(v)?,
                            (2, v) => minor = as_i32(v)?,
                            (4, v) => sub_ = as_i32(v)?,
                            _ => {}
                        }
                    }
                    r.version = Some((major, minor, sub_));
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_restore_response() {
        // type RESTORE, success, restore { pid: 4242 }
        let mut inner = Encoder::new();
        inner.int32(1, 4242);
        let mut e = Encoder::new();
        e.uint(1, 2).bool(2, true).message(4, inner);
        let r = Resp::decode(&e.into_bytes()).unwrap();
        assert_eq!(r.kind, Some(ReqType::Restore));
        assert!(r.success);
        assert_eq!(r.restored_pid, Some(4242));
    }

    #[test]
    fn decodes_a_notification_and_an_error() {
        let mut n = Encoder::new();
        n.string(1, "post-restore").int32(2, 77);
        let mut e = Encoder::new();
        e.uint(1, 6)
            .bool(2, true)
            .message(5, n)
            .int32(7, -1)
            .string(9, "boom");
        let r = Resp::decode(&e.into_bytes()).unwrap();
        assert_eq!(r.notify, Some(("post-restore".into(), 77)));
        assert_eq!(r.cr_errno, Some(-1));
        assert_eq!(r.cr_errmsg.as_deref(), Some("boom"));
    }

    #[test]
    fn options_encode_repeated_fields_in_order() {
        let o = Opts {
            images_dir_fd: 3,
            ext_mnt: vec![("/a".into(), "/a".into()), ("/b".into(), "/x".into())],
            ..Default::default()
        };
        let b = o.encode().into_bytes();
        let fields: Vec<_> = Fields::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields[0], (1, Value::Varint(3)));
        assert_eq!(fields[1].0, 23);
        assert_eq!(fields[2].0, 23);
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn irmap_scan_paths_are_criu_field_36() {
        let o = Opts {
            images_dir_fd: 3,
            irmap_scan_paths: vec!["/usr/share/dbus-1".into(), "/etc/localtime".into()],
            ..Default::default()
        };
        let b = o.encode().into_bytes();
        let fields: Vec<_> = Fields::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields[1], (36, Value::Bytes(b"/usr/share/dbus-1")));
        assert_eq!(fields[2], (36, Value::Bytes(b"/etc/localtime")));
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn a_page_server_socket_is_criu_page_server_info_fd_4() {
        let o = Opts {
            images_dir_fd: 3,
            page_server_fd: Some(9),
            ..Default::default()
        };
        let b = o.encode().into_bytes();
        let fields: Vec<_> = Fields::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].0, 11);
        let Value::Bytes(ps) = fields[1].1 else {
            panic!("criu_page_server_info is not a message: {:?}", fields[1]);
        };
        let inner: Vec<_> = Fields::new(ps).collect::<Result<_, _>>().unwrap();
        // Only the fd: no address (CRIU would connect to it) and no port.
        assert_eq!(inner, vec![(4, Value::Varint(9))]);
    }

    #[test]
    fn cg_modes_are_runcs_words() {
        assert_eq!(CgMode::parse("soft"), Some(CgMode::Soft));
        assert_eq!(CgMode::parse(""), Some(CgMode::Default));
        assert_eq!(CgMode::parse("hard"), None);
    }
}
