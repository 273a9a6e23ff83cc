//! cove-net against the kernel, in network namespaces this test makes
//! (a thread that unshares its own; the machine's is never touched): links,
//! addresses, routes, proxy entries, sysctls, moving a link to another
//! namespace and working there. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN);
//! says SKIP otherwise.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

use cove_net::route::Route;
use cove_net::sysctl::{self, Knob};
use cove_net::{addr, link, neigh, netns, route, Cidr, Netlink};

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
