//! cove-net against the kernel, in network namespaces this test makes
//! (a thread that unshares its own; the machine's is never touched): links,
//! addresses, routes, proxy entries, sysctls, moving a link to another
//! namespace and working there; gratuitous ARP and unsolicited neighbour
//! advertisements as a peer's kernel takes them. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN);
//! says SKIP otherwise.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;

use cove_net::route::Route;
use cove_net::sysctl::{self, Knob};
use cove_net::{addr, arp, link, ndp, neigh, netns, route, Cidr, Netlink};

/// Runs `f` on a thread in a network namespace of its own; the namespace
/// goes when the thread ends.
fn in_scratch_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .expect("the scratch-namespace thread panicked")
}

/// A second scratch namespace, kept alive by a parked thread until the
/// returned sender is dropped; its fd is returned.
fn parked_netns() -> (OwnedFd, mpsc::Sender<()>) {
    let (fd_tx, fd_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        let fd = std::fs::File::open("/proc/thread-self/ns/net").expect("open own netns");
        fd_tx.send(OwnedFd::from(fd)).unwrap();
        let _ = stop_rx.recv();
    });
    (fd_rx.recv().unwrap(), stop_tx)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn links_addresses_routes_proxies_and_sysctls_in_a_scratch_namespace() {
    if !is_root() {
        eprintln!(
            "SKIP links_addresses_routes_proxies_and_sysctls_in_a_scratch_namespace: needs root"
        );
        return;
    }
    in_scratch_netns(|| {
        let mut nl = Netlink::open().unwrap();
        link::set_up(&mut nl, "lo", true).unwrap();

        // A bridge, marked, up.
        link::add_bridge(&mut nl, "br-t").unwrap();
        link::set_alias(&mut nl, "br-t", "made by a test").unwrap();
        link::set_up(&mut nl, "br-t", true).unwrap();
        let br = link::find(&mut nl, "br-t").unwrap().expect("bridge listed");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.alias.as_deref(), Some("made by a test"));
        assert!(br.up);
        let again = link::add_bridge(&mut nl, "br-t").unwrap_err();
        assert!(again.is_exists(), "{again}");

        // A veth pair, one end a port of the bridge, the other renamed.
        link::add_veth(&mut nl, "va", "vb", None).unwrap();
        link::set_master(&mut nl, "va", "br-t").unwrap();
        let ports: Vec<String> = link::ports(&mut nl, br.index)
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(ports, ["va"]);
        link::rename(&mut nl, "vb", "vc").unwrap();
        assert!(link::find(&mut nl, "vb").unwrap().is_none());
        link::set_up(&mut nl, "va", true).unwrap();
        link::set_up(&mut nl, "vc", true).unwrap();

        // Addresses of both families.
        let v4: Cidr = "198.18.5.1/24".parse().unwrap();
        let v6: Cidr = "fd00:c5::1/64".parse().unwrap();
        addr::add(&mut nl, "br-t", &v4).unwrap();
        addr::add(&mut nl, "br-t", &v6).unwrap();
        let on_br: Vec<Cidr> = addr::list(&mut nl, Some("br-t"))
            .unwrap()
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert!(on_br.contains(&v4) && on_br.contains(&v6), "{on_br:?}");
        assert!(addr::add(&mut nl, "br-t", &v4).unwrap_err().is_exists());

        // Routes: on-link to a host, through a gateway, default.
        let host: Cidr = "198.18.7.7/32".parse().unwrap();
        route::add(&mut nl, &Route::to(host, "vc")).unwrap();
        let gw: IpAddr = "198.18.5.254".parse().unwrap();
        let net: Cidr = "198.18.9.0/24".parse().unwrap();
        route::add(
            &mut nl,
            &Route {
                dest: Some(net),
                dev: "br-t".into(),
                via: Some(gw),
                v6: false,
            },
        )
        .unwrap();
        route::add(&mut nl, &Route::default_via(gw, "br-t")).unwrap();
        let routes = route::list(&mut nl).unwrap();
        assert!(routes.iter().any(|r| r.dest == Some(host)), "{routes:?}");
        assert!(
            routes
                .iter()
                .any(|r| r.dest == Some(net) && r.via == Some(gw)),
            "{routes:?}"
        );
        assert!(
            routes.iter().any(|r| r.dest.is_none() && r.via == Some(gw)),
            "{routes:?}"
        );
        route::delete(&mut nl, &Route::to(host, "vc")).unwrap();
        let gone = route::delete(&mut nl, &Route::to(host, "vc")).unwrap_err();
        assert!(gone.is_gone(), "{gone}");

        // Proxy entries.
        let p4: IpAddr = "198.18.5.50".parse().unwrap();
        let p6: IpAddr = "fd00:c5::50".parse().unwrap();
        neigh::add_proxy(&mut nl, &p4, "br-t").unwrap();
        neigh::add_proxy(&mut nl, &p6, "br-t").unwrap();
        let proxies = neigh::proxies(&mut nl).unwrap();
        assert!(
            proxies.contains(&(p4, br.index)) && proxies.contains(&(p6, br.index)),
            "{proxies:?}"
        );
        neigh::delete_proxy(&mut nl, &p4, "br-t").unwrap();
        neigh::delete_proxy(&mut nl, &p6, "br-t").unwrap();
        assert!(neigh::proxies(&mut nl).unwrap().is_empty());

        // Sysctls of this namespace.
        sysctl::enable(Knob::ProxyArp("va")).unwrap();
        assert_eq!(sysctl::get(Knob::ProxyArp("va")).unwrap(), "1");
        sysctl::enable(Knob::Forward4).unwrap();
        assert_eq!(sysctl::get(Knob::Forward4).unwrap(), "1");

        // Moving a link into another namespace, and working there.
        let (other, keep) = parked_netns();
        link::move_to_netns(&mut nl, "vc", link::NetnsRef::Fd(other.as_fd())).unwrap();
        assert!(link::find(&mut nl, "vc").unwrap().is_none(), "vc stayed");
        netns::run_in(other.as_fd(), || {
            let mut there = Netlink::open()?;
            link::set_up(&mut there, "vc", true)?;
            addr::add(&mut there, "vc", &"198.18.5.2/24".parse().unwrap())?;
            if link::find(&mut there, "vc")?.is_none() {
                return Err(cove_net::Error::NoSuchLink("vc".into()));
            }
            Ok(())
        })
        .unwrap();
        // An error in there comes back with its message.
        let e = netns::run_in(other.as_fd(), || {
            let mut there = Netlink::open()?;
            link::index(&mut there, "no-such").map(drop)
        })
        .unwrap_err();
        assert!(e.to_string().contains("no-such"), "{e}");
        drop(keep);

        // Deleting a veth end takes the pair; deleting again says gone.
        link::delete(&mut nl, "va").unwrap();
        assert!(link::delete(&mut nl, "va").unwrap_err().is_gone());
        link::delete(&mut nl, "br-t").unwrap();
    });
}

/// `ip ARGS` in the namespace `ns` (the calling thread's when None);
/// its stdout, or a panic with its stderr.
fn ip_in(ns: Option<&OwnedFd>, args: &[&str]) -> String {
    let mut c = Command::new("ip");
    c.args(args);
    if let Some(ns) = ns {
        let fd = ns.as_raw_fd();
        // SAFETY: setns(2) between fork and exec, on a descriptor that
        // outlives the spawn.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = c.output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The link-layer address of `ip` in `ns`'s neighbour table on `dev`.
fn lladdr_of(ns: &OwnedFd, ip: &str, dev: &str) -> Option<String> {
    let out = ip_in(Some(ns), &["neigh", "show", ip, "dev", dev]);
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|s| s.to_string())
}

/// A moved CT's announcements as a peer's kernel sees them: the peer
/// (another namespace, at the far end of a veth) has stale entries for an
/// IPv4 and an IPv6 address at an old MAC; a gratuitous ARP and an
/// unsolicited neighbour advertisement from the near end move both to
/// its MAC. The kernel drops an advertisement with a bad checksum, a hop
/// limit below 255 or the Solicited flag to a multicast address, and
/// takes no MAC without the Override flag: the frame is right if the
/// entry changes.
#[test]
fn announcements_move_the_peers_neighbour_entries() {
    if !is_root() {
        eprintln!("SKIP announcements_move_the_peers_neighbour_entries: needs root");
        return;
    }
    const MAC: &str = "02:c0:fe:00:77:01";
    const OLD: &str = "02:c0:fe:00:77:99";
    const V4: &str = "198.18.77.10";
    const V6: &str = "2001:db8:77::10";
    let (peer, keep) = parked_netns();
    let peer_fd = peer.as_fd().try_clone_to_owned().unwrap();
    in_scratch_netns(move || {
        let mut nl = Netlink::open().unwrap();
        link::add_veth(&mut nl, "ann0", "ann1", Some(peer_fd.as_fd())).unwrap();
        ip_in(None, &["link", "set", "ann0", "address", MAC]);
        // The addresses are the near end's (as the CT's are its eth0's).
        addr::add(&mut nl, "ann0", &format!("{V4}/24").parse().unwrap()).unwrap();
        addr::add(&mut nl, "ann0", &format!("{V6}/64").parse().unwrap()).unwrap();
        for ip in [V4, V6] {
            ip_in(
                Some(&peer_fd),
                &[
                    "neigh", "replace", ip, "lladdr", OLD, "dev", "ann1", "nud", "stale",
                ],
            );
            assert_eq!(lladdr_of(&peer_fd, ip, "ann1").as_deref(), Some(OLD));
        }
        // Aged as a peer's entries are (a kernel keeps an entry changed
        // less than `locktime`, 1 s, ago against a new MAC).
        std::thread::sleep(std::time::Duration::from_millis(1200));
        link::set_up(&mut nl, "ann0", true).unwrap();
        ip_in(Some(&peer_fd), &["link", "set", "ann1", "up"]);
        // The receiving end just came up, as a CT's host end does before
        // the announcement: what arrives before the link watch made it
        // operational is dropped (a bridge port forwards nothing yet).
        netns::run_in(peer_fd.as_fd(), || {
            let mut nl = Netlink::open()?;
            match link::wait_oper_up(&mut nl, "ann1", std::time::Duration::from_secs(2))? {
                true => Ok(()),
                false => Err(cove_net::Error::InNamespace("ann1 not up".into())),
            }
        })
        .unwrap();
        // ann0 too came up just now: the senders wait for it.
        ndp::advertise("ann0", &[V6.parse().unwrap()]).unwrap();
        arp::announce("ann0", &[V4.parse().unwrap()]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen = |ip: &str| lladdr_of(&peer_fd, ip, "ann1");
        while (seen(V4).as_deref() != Some(MAC) || seen(V6).as_deref() != Some(MAC))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            seen(V6).as_deref(),
            Some(MAC),
            "the advertisement was not taken"
        );
        assert_eq!(
            seen(V4).as_deref(),
            Some(MAC),
            "the gratuitous ARP was not taken"
        );
        // An interface that is not there is named.
        let e = ndp::advertise("no-such0", &[V6.parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("no-such0"), "{e}");
        link::delete(&mut nl, "ann0").unwrap();
    });
    drop(keep);
}
