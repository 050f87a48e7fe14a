//! VIP in network namespaces: the address appears and goes, the neighbour's cache is updated by
//! the gratuitous ARP / unsolicited NA, the interface and prefix come from the route, and the
//! native agent and IPaddr2 pass the same conformance suite.

use std::time::Duration;

use agents::testing::{Case, conformance, kv};
use agents::{Action, OcfRc, Request, execute};

use crate::support::{agent, assert_same_lifecycle, in_netns};

const PEER_MAC_FAKE: &str = "02:00:00:00:00:99";

fn pair() -> (rig::Netns, rig::Netns) {
    rig::sweep_stale_namespaces();
    let a = rig::Netns::new();
    let b = rig::Netns::new();
    a.veth_to("eth0", "10.213.1.1/24", &b, "eth0", "10.213.1.2/24");
    a.sh("ip -6 addr add fd00:213::1/64 dev eth0 nodad");
    b.sh("ip -6 addr add fd00:213::2/64 dev eth0 nodad");
    (a, b)
}

#[test]
fn vip_appears_is_announced_to_the_neighbour_and_goes_away() {
    if !rig::require_root_and(&["ip", "ping"]) {
        return;
    }
    let (a, b) = pair();
    let a_mac = a
        .sh("ip -br link show eth0 | awk '{print $3}'")
        .trim()
        .to_owned();
    // The neighbour has a stale entry for the VIP pointing elsewhere (the old holder).
    b.sh(&format!(
        "ip neigh replace 10.213.1.100 lladdr {PEER_MAC_FAKE} dev eth0 nud stale"
    ));
    b.sh(&format!(
        "ip -6 neigh replace fd00:213::100 lladdr {PEER_MAC_FAKE} dev eth0 nud stale"
    ));
    // Negative control: an address started with arp_count=0 must not move its entry.
    b.sh(&format!(
        "ip neigh replace 10.213.1.99 lladdr {PEER_MAC_FAKE} dev eth0 nud stale"
    ));
    let vip = agent("vip");
    in_netns(&a, || {
        let silent = kv(&[("ip", "10.213.1.99"), ("arp_count", "0")]);
        let r = execute(vip.as_ref(), &Request::new(Action::Start, "quiet", silent));
        assert_eq!(r.rc, OcfRc::Success, "{r}");
        // No nic, no cidr: both come from the connected route covering the address.
        let p4 = kv(&[("ip", "10.213.1.100"), ("label", "vip"), ("arp_count", "2")]);
        let r = execute(
            vip.as_ref(),
            &Request::new(Action::Start, "vip4", p4.clone()),
        );
        assert_eq!(r.rc, OcfRc::Success, "{r}");
        let p6 = kv(&[("ip", "fd00:213::100"), ("nic", "eth0")]);
        let r = execute(
            vip.as_ref(),
            &Request::new(Action::Start, "vip6", p6.clone()),
        );
        assert_eq!(r.rc, OcfRc::Success, "{r}");
        assert_eq!(
            execute(
                vip.as_ref(),
                &Request::new(Action::Monitor, "vip4", p4.clone())
            )
            .rc,
            OcfRc::Success
        );
        assert_eq!(
            execute(
                vip.as_ref(),
                &Request::new(Action::Monitor, "vip6", p6.clone())
            )
            .rc,
            OcfRc::Success
        );
    });
    let shown = a.sh("ip -o addr show dev eth0");
    assert!(
        shown.contains("10.213.1.100/24") && shown.contains("eth0:vip"),
        "{shown}"
    );
    assert!(shown.contains("fd00:213::100/64"), "{shown}");
    assert!(
        rig::wait_until(Duration::from_secs(3), || b
            .sh("ip neigh show 10.213.1.100")
            .contains(&a_mac)),
        "gratuitous ARP did not update the neighbour: {}",
        b.sh("ip neigh show")
    );
    // The silent address started earlier: had it been announced, that frame would have arrived
    // before the ones just seen.
    let quiet = b.sh("ip neigh show 10.213.1.99");
    assert!(
        quiet.contains(PEER_MAC_FAKE),
        "arp_count=0 still announced: {quiet}"
    );
    assert!(
        rig::wait_until(Duration::from_secs(3), || b
            .sh("ip -6 neigh show fd00:213::100")
            .contains(&a_mac)),
        "unsolicited NA did not update the neighbour: {}",
        b.sh("ip -6 neigh show")
    );
    b.sh("ping -c1 -W2 10.213.1.100 >/dev/null");
    in_netns(&a, || {
        for (inst, ip) in [("vip4", "10.213.1.100"), ("vip6", "fd00:213::100")] {
            let p = kv(&[("ip", ip)]);
            assert_eq!(
                execute(vip.as_ref(), &Request::new(Action::Stop, inst, p.clone())).rc,
                OcfRc::Success
            );
            assert_eq!(
                execute(vip.as_ref(), &Request::new(Action::Monitor, inst, p)).rc,
                OcfRc::NotRunning
            );
        }
    });
    let shown = a.sh("ip -o addr show dev eth0");
    assert!(
        !shown.contains("10.213.1.100") && !shown.contains("fd00:213::100"),
        "{shown}"
    );
}

#[test]
fn vip_monitor_tells_failed_from_stopped_and_refuses_missing_interfaces() {
    if !rig::require_root_and(&["ip"]) {
        return;
    }
    let (a, _b) = pair();
    let vip = agent("vip");
    let p = kv(&[
        ("ip", "10.213.1.100"),
        ("cidr_netmask", "24"),
        ("nic", "eth0"),
    ]);
    in_netns(&a, || {
        assert_eq!(
            execute(vip.as_ref(), &Request::new(Action::Start, "v", p.clone())).rc,
            OcfRc::Success
        );
    });
    a.sh("ip link set eth0 down");
    in_netns(&a, || {
        let r = execute(vip.as_ref(), &Request::new(Action::Monitor, "v", p.clone()));
        assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
        assert!(r.reason.unwrap().contains("down"));
        let r = execute(
            vip.as_ref(),
            &Request::new(
                Action::Start,
                "w",
                kv(&[
                    ("ip", "10.213.1.101"),
                    ("nic", "eth9"),
                    ("cidr_netmask", "24"),
                ]),
            ),
        );
        assert_eq!(r.rc, OcfRc::ErrInstalled, "{r}");
        assert!(r.reason.unwrap().contains("eth9 does not exist"));
        let r = execute(
            vip.as_ref(),
            &Request::new(Action::Start, "w", kv(&[("ip", "192.0.2.7")])),
        );
        assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
        assert!(r.reason.unwrap().contains("set parameter `nic`"));
        let bad = |ip: &str, k: &str, v: &str| {
            // eth0 is down (no connected route), so the prefix is given explicitly.
            let mut p = kv(&[("ip", ip), ("nic", "eth0"), ("cidr_netmask", "24")]);
            p.insert(k.to_owned(), v.to_owned());
            let r = execute(vip.as_ref(), &Request::new(Action::Start, "w", p));
            assert_eq!(r.rc, OcfRc::ErrConfigured, "{r}");
            assert!(
                r.reason.as_deref().unwrap().contains(&format!("`{k}`")),
                "{r}"
            );
        };
        bad("10.213.1.102", "label", "a-much-too-long-label");
        bad("fd00:213::7", "label", "x");
        bad("fd00:213::8", "cidr_netmask", "129");
        bad("10.213.1.103", "cidr_netmask", "33");
        assert_eq!(
            execute(vip.as_ref(), &Request::new(Action::Stop, "v", p.clone())).rc,
            OcfRc::Success
        );
    });
}

#[test]
fn vip_leaves_an_address_on_another_interface_alone() {
    if !rig::require_root_and(&["ip"]) {
        return;
    }
    let (a, _b) = pair();
    a.sh("ip addr add 10.213.1.110/32 dev lo");
    let vip = agent("vip");
    let p = kv(&[
        ("ip", "10.213.1.110"),
        ("cidr_netmask", "24"),
        ("nic", "eth0"),
    ]);
    in_netns(&a, || {
        let r = execute(vip.as_ref(), &Request::new(Action::Monitor, "v", p.clone()));
        assert_eq!(r.rc, OcfRc::NotRunning, "{r}");
        assert!(r.reason.unwrap().contains("is on lo"));
        assert_eq!(
            execute(vip.as_ref(), &Request::new(Action::Stop, "v", p.clone())).rc,
            OcfRc::Success
        );
        let r = execute(vip.as_ref(), &Request::new(Action::Start, "v", p.clone()));
        assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
        assert!(r.reason.unwrap().contains("another interface"));
    });
    assert!(a.sh("ip -o addr show dev lo").contains("10.213.1.110/32"));
}

#[test]
fn vip_native_and_ipaddr2_pass_the_same_conformance_suite() {
    if !rig::require_root_and(&["ip", "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"]) {
        return;
    }
    let (a, _b) = pair();
    let case = Case::new(
        "vip",
        &[
            ("ip", "10.213.1.100"),
            ("cidr_netmask", "24"),
            ("nic", "eth0"),
        ],
    )
    .bad(
        "malformed ip",
        &[("ip", "10.213.1.300")],
        &[OcfRc::ErrConfigured],
    );
    let native = in_netns(&a, || {
        conformance(agent("vip").as_ref(), "native vip", &case)
    });
    eprintln!("native vip:\n{native}");
    let ocf = in_netns(&a, || {
        conformance(agent("ocf:heartbeat:IPaddr2").as_ref(), "IPaddr2", &case)
    });
    eprintln!("IPaddr2:\n{ocf}");
    native.assert_passed();
    ocf.assert_passed();
    assert_same_lifecycle(&native, &ocf);
}
