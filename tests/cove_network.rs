//! `cove` CT networking, seen by a user: CTs on a bridge reach each other
//! and the host, a routed CT is reached at its single address (from the
//! host and, through proxy ARP/NDP, from a neighbour on the uplink),
//! /etc/resolv.conf and /etc/hosts, addresses added and removed live, a
//! published port, and nothing left behind after destroy or a crash.
//!
//! Every test makes its own network namespace to be the host and runs
//! every cove command inside it (tests/support HostNetns); the machine's
//! own network namespace is never configured. Addresses come from the
//! benchmarking ranges (198.18.0.0/15) and fd00::/8.

mod support;

use std::time::Duration;

use support::*;

/// How long one cove command may take here: a start sets up a network as
/// well, and the VM lane runs under software emulation on a shared machine
/// (seen: 17 s for one start while other VMs ran).
const NET_COVE_TIMEOUT: Duration = Duration::from_secs(120);

fn cove(env: &CoveEnv, args: &[&str]) -> Out {
    env.cmd_timeout(args, NET_COVE_TIMEOUT)
}

/// `cove create CTID --template busybox EXTRA...`, asserted to work.
#[track_caller]
fn create(env: &CoveEnv, extra: &[&str]) -> String {
    let ctid = env.new_ctid();
    let mut args = vec!["create", ctid.as_str(), "--template", "busybox"];
    args.extend_from_slice(extra);
    cove(env, &args).assert_ok();
    ctid
}

#[track_caller]
fn status_json(env: &CoveEnv, ctid: &str) -> serde_json::Value {
    let out = cove(env, &["status", ctid, "--json"]);
    out.assert_ok();
    out.stdout_json().unwrap_or_else(|e| panic!("{e}"))
}

/// A test's cove, running in a network namespace of its own.
fn net_env(test: &str) -> Option<CoveEnv> {
    let ns = HostNetns::new(test)?;
    let mut env = CoveEnv::with_busybox(test)?;
    env.netns = Some(ns);
    Some(env)
}

fn ns(env: &CoveEnv) -> &HostNetns {
    env.netns.as_ref().expect("a test network namespace")
}

/// `ping` from the host namespace (busybox's: iputils may be missing).
fn host_ping(env: &CoveEnv, addr: &str) -> Out {
    let ping = if addr.contains(':') { "ping6" } else { "ping" };
    ns(env).exec(&["busybox", ping, "-c", "1", "-W", "3", addr])
}

/// `ping` from inside CT `ctid`.
fn ct_ping(env: &CoveEnv, ctid: &str, addr: &str) -> Out {
    let ping = if addr.contains(':') { "ping6" } else { "ping" };
    cove(env, &["exec", ctid, ping, "-c", "1", "-W", "3", addr])
}

fn ct_file(env: &CoveEnv, ctid: &str, path: &str) -> String {
    let out = cove(env, &["exec", ctid, "cat", path]);
    out.assert_ok();
    out.stdout
}

/// The host end of a CT's veth, as cove names it.
fn host_veth(ctid: &str) -> String {
    format!("vc{ctid}")
}

/// Asserts that the host namespace holds nothing of cove's for these CTs:
/// no veth, no route or proxy entry for `addrs`, no cove nftables table,
/// no bridge cove made.
#[track_caller]
fn assert_host_clean(env: &CoveEnv, ctids: &[&str], addrs: &[&str]) {
    let n = ns(env);
    let links = n.ip(&["-o", "link", "show"]);
    links.assert_ok();
    for ctid in ctids {
        let veth = host_veth(ctid);
        assert!(
            !links.stdout.contains(&format!(": {veth}")),
            "veth {veth} left:\n{links}"
        );
    }
    assert!(
        !links.stdout.contains("made by cove"),
        "a bridge cove made is left:\n{links}"
    );
    for family in ["-4", "-6"] {
        let routes = n.ip(&[family, "route", "show"]);
        routes.assert_ok();
        let proxies = n.ip(&[family, "neigh", "show", "proxy"]);
        proxies.assert_ok();
        for a in addrs {
            assert!(
                !routes
                    .stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{a} "))),
                "route to {a} left:\n{routes}"
            );
            assert!(
                !proxies.stdout.contains(a),
                "proxy entry {a} left:\n{proxies}"
            );
        }
    }
    let table = n.exec(&["nft", "list", "table", "inet", "cove"]);
    assert!(!table.ok(), "cove's nftables table is left:\n{table}");
    let tables = n.exec(&["nft", "list", "tables"]);
    assert!(
        !tables.stdout.contains("cove-guard"),
        "a CT's source guard is left:\n{tables}"
    );
}

/// `ping -I SRC` from inside CT `ctid`: a packet sent from address `src`.
fn ct_ping_from(env: &CoveEnv, ctid: &str, src: &str, addr: &str) -> Out {
    let ping = if addr.contains(':') { "ping6" } else { "ping" };
    cove(
        env,
        &["exec", ctid, ping, "-c", "1", "-W", "2", "-I", src, addr],
    )
}

/// Root inside CT `ctid` gives its eth0 another address; an IPv6 one is
/// waited for until duplicate address detection is over (a tentative
/// address cannot send, which would pass a spoofing check for nothing).
fn ct_add_addr(env: &CoveEnv, ctid: &str, cidr: &str) {
    cove(
        env,
        &["exec", ctid, "ip", "addr", "add", cidr, "dev", "eth0"],
    )
    .assert_ok();
    if cidr.contains(':') {
        let addr = cidr.split('/').next().unwrap_or(cidr);
        let settled = wait_until(Duration::from_secs(20), || {
            let out = cove(
                env,
                &["exec", ctid, "ip", "-6", "addr", "show", "dev", "eth0"],
            );
            out.ok()
                && out
                    .stdout
                    .lines()
                    .any(|l| l.contains(addr) && !l.contains("tentative"))
        });
        assert!(settled, "{addr} stayed tentative in CT {ctid}");
    }
}

fn need_nft(test: &str) -> bool {
    let found = ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !found {
        assert!(
            !in_vm_lane(),
            "{test}: nft is missing, yet the VM lane installs nftables"
        );
        skip(test, "nft is not installed (apt-get install nftables)");
    }
    found
}

#[test]
fn bridged_cts_reach_each_other_and_the_host() {
    let Some(env) = net_env("bridged_cts_reach_each_other_and_the_host") else {
        return;
    };
    let a = create(
        &env,
        &[
            "--hostname",
            "alpha.example.test",
            "--ipadd",
            "198.18.0.2/24",
            "--ipadd",
            "fd00:c0::2/64",
            "--gateway",
            "198.18.0.1",
            "--gateway",
            "fd00:c0::1",
            "--nameserver",
            "198.18.0.1",
            "--nameserver",
            "fd00:c0::1",
            "--searchdomain",
            "example.test",
        ],
    );
    let b = create(
        &env,
        &[
            "--ipadd",
            "198.18.0.3/24",
            "--ipadd",
            "fd00:c0::3/64",
            "--gateway",
            "198.18.0.1",
        ],
    );
    let t = std::time::Instant::now();
    cove(&env, &["start", &a]).assert_ok();
    eprintln!(
        "MEASURE cove start of a bridged CT (new bridge, veth, addresses, DNS files): {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    cove(&env, &["start", &b]).assert_ok();
    eprintln!(
        "MEASURE cove start of a second bridged CT (bridge there): {:?}",
        t.elapsed()
    );

    // The host side: both veths are ports of cove0, which cove made and
    // gave the gateway address.
    let n = ns(&env);
    let bridge = n.ip(&["-d", "link", "show", "cove0"]);
    assert!(
        bridge.ok() && bridge.stdout.contains("bridge") && bridge.stdout.contains("made by cove"),
        "no cove0 bridge:\n{bridge}"
    );
    for ctid in [&a, &b] {
        let port = n.ip(&["link", "show", &host_veth(ctid)]);
        assert!(
            port.ok() && port.stdout.contains("master cove0"),
            "{} is not a port of cove0:\n{port}",
            host_veth(ctid)
        );
    }
    let addrs = n.ip(&["addr", "show", "cove0"]);
    assert!(addrs.stdout.contains("198.18.0.1/24"), "{addrs}");

    // Inside: eth0 with the addresses, default routes through the gateways.
    let ip = cove(&env, &["exec", &a, "ip", "addr", "show", "eth0"]);
    ip.assert_ok();
    assert!(
        ip.stdout.contains("198.18.0.2/24") && ip.stdout.contains("fd00:c0::2/64"),
        "{ip}"
    );
    let routes = cove(&env, &["exec", &a, "ip", "route"]);
    assert!(
        routes.stdout.contains("default via 198.18.0.1 dev eth0"),
        "{routes}"
    );

    // CT to CT (both families), CT to host, host to CT.
    ct_ping(&env, &a, "198.18.0.3").assert_ok();
    ct_ping(&env, &a, "fd00:c0::3").assert_ok();
    ct_ping(&env, &b, "198.18.0.2").assert_ok();
    ct_ping(&env, &a, "198.18.0.1").assert_ok();
    ct_ping(&env, &a, "fd00:c0::1").assert_ok();
    host_ping(&env, "198.18.0.2").assert_ok();
    host_ping(&env, "198.18.0.3").assert_ok();
    host_ping(&env, "fd00:c0::2").assert_ok();

    // The DNS files as written.
    assert_eq!(
        ct_file(&env, &a, "/etc/resolv.conf")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [
            "search example.test",
            "nameserver 198.18.0.1",
            "nameserver fd00:c0::1"
        ]
    );
    let hosts = ct_file(&env, &a, "/etc/hosts");
    assert!(
        hosts.contains("198.18.0.2\talpha.example.test alpha # cove")
            && hosts.contains("fd00:c0::2\talpha.example.test alpha # cove"),
        "{hosts}"
    );
    assert!(
        hosts.lines().any(|l| l.starts_with("127.0.0.1")),
        "localhost went: {hosts}"
    );
    let resolved = cove(&env, &["exec", &a, "ping", "-c", "1", "-W", "3", "alpha"]);
    assert!(
        resolved.ok() && resolved.stdout.contains("198.18.0.2"),
        "the CT's own name does not resolve through /etc/hosts:\n{resolved}"
    );
    let listed = cove(&env, &["list", "--json"]);
    let rows = listed.stdout_json().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rows.as_array()
            .is_some_and(|r| r.iter().any(|row| row["ip"] == "198.18.0.2")),
        "cove list shows no address:\n{listed}"
    );

    // Stopping one CT takes its veth; the bridge stays for the other.
    cove(&env, &["stop", &b, "--timeout", "10"]).assert_ok();
    let gone = n.ip(&["link", "show", &host_veth(&b)]);
    assert!(!gone.ok(), "veth of the stopped CT left:\n{gone}");
    assert!(n.ip(&["link", "show", "cove0"]).ok(), "bridge went early");
    host_ping(&env, "198.18.0.2").assert_ok();

    cove(&env, &["destroy", "--force", &a]).assert_ok();
    cove(&env, &["destroy", &b]).assert_ok();
    assert_host_clean(
        &env,
        &[&a, &b],
        &["198.18.0.0/24", "198.18.0.2", "fd00:c0::/64"],
    );
    assert!(
        !n.ip(&["link", "show", "cove0"]).ok(),
        "the bridge cove made outlived its last CT"
    );
}

#[test]
fn routed_ct_is_reached_at_its_single_address() {
    let Some(env) = net_env("routed_ct_is_reached_at_its_single_address") else {
        return;
    };
    let n = ns(&env);
    // The uplink: a veth whose other end is in a second namespace, a
    // neighbour on the uplink's network that knows nothing of the CT.
    let Some(outside) = HostNetns::new("routed_ct_outside") else {
        return;
    };
    n.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "nb0"])
        .assert_ok();
    n.ip(&["link", "set", "nb0", "netns", &outside.name])
        .assert_ok();
    n.ip(&["addr", "add", "198.19.0.1/24", "dev", "up0"])
        .assert_ok();
    n.ip(&["addr", "add", "fd00:c1::1/64", "dev", "up0", "nodad"])
        .assert_ok();
    n.ip(&["link", "set", "up0", "up"]).assert_ok();
    outside
        .ip(&["addr", "add", "198.19.0.7/24", "dev", "nb0"])
        .assert_ok();
    outside
        .ip(&["addr", "add", "fd00:c1::7/64", "dev", "nb0", "nodad"])
        .assert_ok();
    outside.ip(&["link", "set", "nb0", "up"]).assert_ok();

    let ct = create(
        &env,
        &[
            "--netif",
            "routed",
            "--ipadd",
            "198.19.0.50",
            "--ipadd",
            "fd00:c1::50",
            "--uplink",
            "up0",
        ],
    );
    cove(&env, &["start", &ct]).assert_ok();

    // Inside: single addresses, default route onto the link.
    let ip = cove(&env, &["exec", &ct, "ip", "addr", "show", "eth0"]);
    assert!(
        ip.stdout.contains("198.19.0.50/32") && ip.stdout.contains("fd00:c1::50/128"),
        "{ip}"
    );
    // The host routes each address to the CT's veth and answers for them
    // on the uplink.
    let veth = host_veth(&ct);
    let routes = n.ip(&["route", "show", "198.19.0.50"]);
    assert!(routes.stdout.contains(&format!("dev {veth}")), "{routes}");
    let proxies = n.ip(&["neigh", "show", "proxy"]);
    assert!(
        proxies.stdout.contains("198.19.0.50 dev up0")
            && proxies.stdout.contains("fd00:c1::50 dev up0"),
        "{proxies}"
    );

    // From the host namespace, at the /32 and the /128.
    host_ping(&env, "198.19.0.50").assert_ok();
    host_ping(&env, "fd00:c1::50").assert_ok();
    // From the CT to the host and to the neighbour.
    ct_ping(&env, &ct, "198.19.0.1").assert_ok();
    ct_ping(&env, &ct, "198.19.0.7").assert_ok();
    // From the neighbour, which only sees the uplink's network: proxy ARP
    // and NDP make the host answer for the CT.
    outside
        .exec(&["busybox", "ping", "-c", "1", "-W", "3", "198.19.0.50"])
        .assert_ok();
    outside
        .exec(&["busybox", "ping6", "-c", "1", "-W", "3", "fd00:c1::50"])
        .assert_ok();
    // A routed CT is guarded too: an address root inside takes is not
    // routed out.
    if need_nft("routed_ct_is_reached_at_its_single_address") {
        ct_add_addr(&env, &ct, "198.19.0.99/32");
        let out = ct_ping_from(&env, &ct, "198.19.0.99", "198.19.0.7");
        assert!(!out.ok(), "the routed CT sent from 198.19.0.99:\n{out}");
    }

    cove(&env, &["destroy", "--force", &ct]).assert_ok();
    assert_host_clean(&env, &[&ct], &["198.19.0.50", "fd00:c1::50"]);
    assert!(
        !outside
            .exec(&["busybox", "ping", "-c", "1", "-W", "1", "198.19.0.50"])
            .ok(),
        "the destroyed CT's address still answers"
    );
}

#[test]
fn a_ct_cannot_send_from_an_address_not_its_own() {
    let test = "a_ct_cannot_send_from_an_address_not_its_own";
    if !need_nft(test) {
        return;
    }
    let Some(env) = net_env(test) else {
        return;
    };
    let n = ns(&env);
    let guarded = create(
        &env,
        &[
            "--ipadd",
            "198.18.9.2/24",
            "--ipadd",
            "fd00:c9::2/64",
            "--gateway",
            "198.18.9.1",
            "--gateway",
            "fd00:c9::1",
        ],
    );
    // The same set-up without the guard: what the spoofing looks like
    // when nothing stops it (the test's own control).
    let open = create(&env, &["--ipadd", "198.18.9.3/24", "--ipguard", "no"]);
    cove(&env, &["start", &guarded]).assert_ok();
    cove(&env, &["start", &open]).assert_ok();
    let table = n.exec(&[
        "nft",
        "list",
        "table",
        "netdev",
        &format!("cove-guard-{}", host_veth(&guarded)),
    ]);
    assert!(
        table.ok() && table.stdout.contains("198.18.9.2"),
        "no source guard on the CT's veth:\n{table}"
    );

    // Its own addresses work, v4 and v6 (the neighbours are resolved
    // now: what follows is sent, not held for a neighbour).
    ct_ping_from(&env, &guarded, "198.18.9.2", "198.18.9.1").assert_ok();
    ct_ping_from(&env, &guarded, "fd00:c9::2", "fd00:c9::1").assert_ok();
    // Root inside takes addresses that are not the CT's.
    ct_add_addr(&env, &guarded, "198.18.9.99/24");
    ct_add_addr(&env, &guarded, "fd00:c9::99/64");
    ct_add_addr(&env, &open, "198.18.9.98/24");
    ct_ping_from(&env, &open, "198.18.9.98", "198.18.9.1").assert_ok();
    for (src, dst) in [("198.18.9.99", "198.18.9.1"), ("fd00:c9::99", "fd00:c9::1")] {
        let out = ct_ping_from(&env, &guarded, src, dst);
        assert!(!out.ok(), "the CT sent from {src}, not its own:\n{out}");
    }
    // Its ARP replies for the stolen address never reached the host.
    let neigh = n.ip(&["neigh", "show", "198.18.9.99"]);
    assert!(
        !neigh.stdout.contains("lladdr"),
        "the host learnt the stolen address from the CT:\n{neigh}"
    );
    // Its own addresses still work.
    ct_ping_from(&env, &guarded, "198.18.9.2", "198.18.9.1").assert_ok();
    // A MAC address of its choosing is not learnt by the bridge (it could
    // take another CT's traffic): nothing it sends with it passes.
    let set_mac = |mac: &str| {
        cove(
            &env,
            &[
                "exec", &guarded, "ip", "link", "set", "eth0", "address", mac,
            ],
        )
        .assert_ok();
    };
    let own_mac = cove(
        &env,
        &["exec", &guarded, "cat", "/sys/class/net/eth0/address"],
    );
    own_mac.assert_ok();
    set_mac("02:00:5e:c0:ff:ee");
    let out = ct_ping_from(&env, &guarded, "198.18.9.2", "198.18.9.1");
    assert!(!out.ok(), "the CT sent with a MAC of its choosing:\n{out}");
    let fdb = n.exec(&["bridge", "fdb", "show", "br", "cove0"]);
    assert!(
        !fdb.stdout.contains("02:00:5e:c0:ff:ee"),
        "the bridge learnt the CT's forged MAC:\n{fdb}"
    );
    set_mac(own_mac.stdout.trim());
    assert!(
        wait_until(Duration::from_secs(20), || ct_ping_from(
            &env,
            &guarded,
            "198.18.9.2",
            "198.18.9.1"
        )
        .ok()),
        "the CT's own MAC does not pass again"
    );

    // An address given live is admitted at once; turning the guard off
    // admits anything, turning it on again closes it.
    cove(&env, &["set", &guarded, "--ipadd", "198.18.9.50/24"]).assert_ok();
    ct_ping_from(&env, &guarded, "198.18.9.50", "198.18.9.1").assert_ok();
    cove(&env, &["set", &guarded, "--ipguard", "no"]).assert_ok();
    ct_ping_from(&env, &guarded, "198.18.9.99", "198.18.9.1").assert_ok();
    cove(&env, &["set", &guarded, "--ipguard", "yes"]).assert_ok();
    let out = ct_ping_from(&env, &guarded, "198.18.9.99", "198.18.9.1");
    assert!(!out.ok(), "the guard did not come back:\n{out}");

    cove(&env, &["destroy", "--force", &guarded]).assert_ok();
    cove(&env, &["destroy", "--force", &open]).assert_ok();
    assert_host_clean(&env, &[&guarded, &open], &["198.18.9.2", "198.18.9.3"]);
}

#[test]
fn addresses_and_dns_change_live() {
    let Some(env) = net_env("addresses_and_dns_change_live") else {
        return;
    };
    let ct = create(
        &env,
        &[
            "--hostname",
            "live",
            "--ipadd",
            "198.18.0.20/24",
            "--gateway",
            "198.18.0.1",
        ],
    );
    cove(&env, &["start", &ct]).assert_ok();
    host_ping(&env, "198.18.0.20").assert_ok();
    let before = status_json(&env, &ct)["init_pid"].clone();

    let t = std::time::Instant::now();
    cove(
        &env,
        &[
            "set",
            &ct,
            "--ipadd",
            "198.18.0.21/24",
            "--nameserver",
            "198.18.0.1",
            "--save",
        ],
    )
    .assert_ok();
    eprintln!(
        "MEASURE cove set --ipadd on a running CT: {:?}",
        t.elapsed()
    );
    let ip = cove(&env, &["exec", &ct, "ip", "-4", "addr", "show", "eth0"]);
    assert!(ip.stdout.contains("198.18.0.21/24"), "{ip}");
    host_ping(&env, "198.18.0.21").assert_ok();
    assert!(
        ct_file(&env, &ct, "/etc/hosts").contains("198.18.0.21\tlive # cove"),
        "/etc/hosts not updated"
    );
    assert!(
        ct_file(&env, &ct, "/etc/resolv.conf").contains("nameserver 198.18.0.1"),
        "/etc/resolv.conf not updated"
    );
    let saved = std::fs::read_to_string(env.ct_dir(&ct).join("ct.toml")).unwrap();
    assert!(saved.contains("198.18.0.21/24"), "not saved:\n{saved}");

    cove(&env, &["set", &ct, "--ipdel", "198.18.0.21"]).assert_ok();
    let ip = cove(&env, &["exec", &ct, "ip", "-4", "addr", "show", "eth0"]);
    assert!(!ip.stdout.contains("198.18.0.21"), "{ip}");
    assert!(
        !host_ping(&env, "198.18.0.21").ok(),
        "the removed address still answers"
    );
    // The other address and the CT itself were never touched.
    host_ping(&env, "198.18.0.20").assert_ok();
    assert_eq!(
        status_json(&env, &ct)["init_pid"],
        before,
        "the CT restarted"
    );
    assert!(!ct_file(&env, &ct, "/etc/hosts").contains("198.18.0.21"));

    cove(&env, &["destroy", "--force", &ct]).assert_ok();
    assert_host_clean(&env, &[&ct], &["198.18.0.20", "198.18.0.21"]);
}

#[test]
fn published_port_is_reached_from_the_host() {
    let test = "published_port_is_reached_from_the_host";
    if !need_nft(test) {
        return;
    }
    let Some(env) = net_env(test) else {
        return;
    };
    let ct = create(
        &env,
        &[
            "--ipadd",
            "198.18.0.30/24",
            "--gateway",
            "198.18.0.1",
            "--publish",
            "8080:80",
        ],
    );
    cove(&env, &["start", &ct]).assert_ok();
    let rules = ns(&env).exec(&["nft", "list", "table", "inet", "cove"]);
    assert!(
        rules.stdout.contains(&format!("comment \"cove:{ct}\"")),
        "{rules}"
    );
    // A one-shot server in the CT on port 80; the host connects to its own
    // address on 8080.
    let serve = |text: &str| {
        cove(
            &env,
            &[
                "exec",
                &ct,
                "sh",
                "-c",
                &format!("(echo {text} | nc -l -p 80 >/dev/null 2>&1 &)"),
            ],
        )
        .assert_ok();
        std::thread::sleep(Duration::from_millis(300));
    };
    serve("published-hello");
    let got = ns(&env).exec(&["busybox", "nc", "-w", "3", "198.18.0.1", "8080"]);
    assert!(
        got.stdout.contains("published-hello"),
        "the published port did not reach the CT:\n{got}"
    );

    // Unpublished live: the rule and the (now empty) table go.
    cove(&env, &["set", &ct, "--unpublish", "8080"]).assert_ok();
    let table = ns(&env).exec(&["nft", "list", "table", "inet", "cove"]);
    assert!(!table.ok(), "table left after the last unpublish:\n{table}");
    serve("not-published");
    let got = ns(&env).exec(&["busybox", "nc", "-w", "2", "198.18.0.1", "8080"]);
    assert!(
        !got.stdout.contains("not-published"),
        "an unpublished port still leads to the CT:\n{got}"
    );

    cove(&env, &["set", &ct, "--publish", "8081:80"]).assert_ok();
    cove(&env, &["destroy", "--force", &ct]).assert_ok();
    assert_host_clean(&env, &[&ct], &["198.18.0.30"]);
}

#[test]
fn network_left_by_a_crash_is_cleaned_by_the_next_command() {
    let test = "network_left_by_a_crash_is_cleaned_by_the_next_command";
    if !need_nft(test) {
        return;
    }
    let Some(env) = net_env(test) else {
        return;
    };
    let n = ns(&env);
    n.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up0p"])
        .assert_ok();
    // The host's own address, the source of its pings.
    n.ip(&["addr", "add", "198.19.0.1/24", "dev", "up0"])
        .assert_ok();
    let routed = create(
        &env,
        &[
            "--netif",
            "routed",
            "--ipadd",
            "198.19.0.60",
            "--uplink",
            "up0",
        ],
    );
    let bridged = create(
        &env,
        &[
            "--ipadd",
            "198.18.0.40/24",
            "--gateway",
            "198.18.0.1",
            "--publish",
            "8090:80",
        ],
    );
    for ct in [&routed, &bridged] {
        cove(&env, &["start", ct]).assert_ok();
    }
    // The crash: monitors and inits killed, nobody tears anything down.
    for ct in [&routed, &bridged] {
        let st = status_json(&env, ct);
        for pid in [
            env.monitor_pid(ct),
            st["init_pid"].as_i64().map(|p| p as i32),
        ]
        .into_iter()
        .flatten()
        {
            // SAFETY: kill(2) on processes this test started through cove.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let proxies = n.ip(&["neigh", "show", "proxy"]);
    assert!(
        proxies.stdout.contains("198.19.0.60"),
        "the crash took the proxy entry (nothing to clean):\n{proxies}"
    );
    // The next start cleans what the last run left and starts cleanly.
    for ct in [&routed, &bridged] {
        cove(&env, &["start", ct]).assert_ok();
    }
    let rules = n.exec(&["nft", "list", "table", "inet", "cove"]);
    assert_eq!(
        rules.stdout.matches("dport 8090").count(),
        2,
        "rules doubled or missing after the restart:\n{rules}"
    );
    let proxies = n.ip(&["neigh", "show", "proxy"]);
    assert_eq!(
        proxies.stdout.matches("198.19.0.60").count(),
        1,
        "{proxies}"
    );
    host_ping(&env, "198.19.0.60").assert_ok();
    host_ping(&env, "198.18.0.40").assert_ok();
    // And destroy after another crash leaves nothing either.
    let monitor = env.monitor_pid(&bridged);
    if let Some(pid) = monitor {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for ct in [&routed, &bridged] {
        cove(&env, &["destroy", "--force", ct]).assert_ok();
    }
    assert_host_clean(&env, &[&routed, &bridged], &["198.19.0.60", "198.18.0.40"]);
}

#[test]
fn bad_network_values_are_refused_before_anything_is_made() {
    let Some(env) = net_env("bad_network_values_are_refused") else {
        return;
    };
    let taken = create(&env, &["--ipadd", "198.18.0.50/24"]);
    for (args, says) in [
        (
            vec!["--ipadd", "198.18.0.300"],
            "not an IPv4 or IPv6 address",
        ),
        (vec!["--ipadd", "198.18.0.2/33"], "prefix length"),
        (
            vec!["--netif", "routed", "--ipadd", "198.18.0.2/24"],
            "single addresses",
        ),
        (vec!["--gateway", "198.18.0.1"], "no IPv4 address"),
        (
            vec!["--ipadd", "198.18.0.2/24", "--publish", "80"],
            "HOSTPORT:CTPORT",
        ),
        (
            vec![
                "--netif",
                "routed",
                "--ipadd",
                "198.18.0.2",
                "--publish",
                "80:80",
            ],
            "bridged",
        ),
        (
            vec!["--ipadd", "198.18.0.2/24", "--bridge", "a/b"],
            "interface name",
        ),
        (vec!["--ipadd", "198.18.0.50/24"], "already CT"),
        (vec!["--netif", "ethernet"], "ethernet"),
    ] {
        let ctid = env.new_ctid();
        let mut full = vec!["create", ctid.as_str(), "--template", "busybox"];
        full.extend_from_slice(&args);
        let out = cove(&env, &full);
        assert_cove_refused(&out, 1);
        assert!(out.stderr.contains(says), "expected {says:?}:\n{out}");
        assert!(!env.ct_dir(&ctid).exists(), "refused create made {ctid}");
    }
    let out = cove(&env, &["set", &taken, "--ipdel", "198.18.0.99"]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("no such address"), "{out}");
    // A start whose uplink is missing fails with one line and leaves nothing.
    let routed = create(
        &env,
        &[
            "--netif",
            "routed",
            "--ipadd",
            "198.19.0.70",
            "--uplink",
            "nope0",
        ],
    );
    let out = cove(&env, &["start", &routed]);
    assert_cove_refused(&out, 1);
    assert!(out.stderr.contains("uplink nope0 does not exist"), "{out}");
    env.assert_ct_cleaned_up(&routed);
    assert_host_clean(&env, &[&routed], &["198.19.0.70"]);
}
