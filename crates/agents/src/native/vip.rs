//! The VIP agent (IPaddr2's job): an IPv4 or IPv6 address added to and removed from an
//! interface over rtnetlink, announced with gratuitous ARP / unsolicited neighbour advertisement.

use std::net::IpAddr;
use std::time::Duration;

use super::garp::Announcer;
use super::netlink::{self, Addr, Link};
use super::{configured, op_actions};
use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::events::Event;
use crate::rc::OcfRc;
use crate::schema::{Metadata, ParamSpec, ParamType};

/// The VIP agent.
#[derive(Debug, Default)]
pub(crate) struct Vip;

struct Target {
    ip: IpAddr,
    link: Link,
    prefix_len: u8,
    label: Option<String>,
}

fn parse_ip(op: &Op<'_>) -> Result<IpAddr, Outcome> {
    let text = op.params.str("ip").unwrap_or_default();
    text.parse::<IpAddr>()
        .map_err(|_| configured("ip", format!("`{text}` is not an IPv4 or IPv6 address")))
}

fn io_fail(what: &str, e: &std::io::Error) -> Outcome {
    Outcome::fail(OcfRc::ErrGeneric, format!("{what}: {e}"))
}

fn find_link<'a>(links: &'a [Link], nic: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.name == nic)
}

/// Where the address goes: `nic` when given, else the interface whose directly connected route
/// covers the address (the most specific one); prefix from `cidr_netmask`, else from that route.
fn resolve(op: &Op<'_>, ip: IpAddr) -> Result<Target, Outcome> {
    let links = netlink::links().map_err(|e| io_fail("cannot list interfaces", &e))?;
    let max_prefix: i64 = if ip.is_ipv4() { 32 } else { 128 };
    let cidr = match op.params.int("cidr_netmask") {
        Some(c) if (0..=max_prefix).contains(&c) => Some(c as u8),
        Some(c) => {
            return Err(configured(
                "cidr_netmask",
                format!("{c} is not a prefix length for {ip} (0..={max_prefix})"),
            ));
        }
        None => None,
    };
    let routes = netlink::routes(&ip).map_err(|e| io_fail("cannot list routes", &e))?;
    let nic = op.params.str("nic");
    let nic_link = match nic {
        Some(n) => Some(find_link(&links, n).ok_or_else(|| {
            Outcome::fail(
                OcfRc::ErrInstalled,
                format!("parameter `nic`: interface {n} does not exist on this node"),
            )
        })?),
        None => None,
    };
    let covering = routes
        .iter()
        .filter(|r| r.unicast && !r.via_gateway && r.oif.is_some() && r.prefix_len > 0)
        .filter(|r| {
            r.dst
                .is_some_and(|d| netlink::contains(d, r.prefix_len, ip))
        })
        .filter(|r| nic_link.is_none_or(|l| r.oif == Some(l.index)))
        .filter(|r| !(ip.is_ipv6() && r.prefix_len == 128))
        .max_by_key(|r| r.prefix_len);
    let link = match (nic_link, covering) {
        (Some(l), _) => l.clone(),
        (None, Some(r)) => links
            .iter()
            .find(|l| Some(l.index) == r.oif)
            .cloned()
            .ok_or_else(|| {
                Outcome::fail(OcfRc::ErrGeneric, "route points at a vanished interface")
            })?,
        (None, None) => {
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "no interface has a connected route covering {ip}: set parameter `nic` (and `cidr_netmask`)"
                ),
            ));
        }
    };
    let prefix_len = match (cidr, covering) {
        (Some(c), _) => c,
        (None, Some(r)) => r.prefix_len,
        (None, None) => {
            return Err(configured(
                "cidr_netmask",
                format!(
                    "not given, and no route on {} covers {ip} to take it from",
                    link.name
                ),
            ));
        }
    };
    let label = match op.params.str("label") {
        Some(_) if ip.is_ipv6() => {
            return Err(configured("label", "labels exist only for IPv4 addresses"));
        }
        Some(l) => {
            let full = if l.starts_with(&format!("{}:", link.name)) {
                l.to_owned()
            } else {
                format!("{}:{l}", link.name)
            };
            if full.len() > 15 {
                return Err(configured(
                    "label",
                    format!("`{full}` is longer than 15 characters"),
                ));
            }
            Some(full)
        }
        None => None,
    };
    Ok(Target {
        ip,
        link,
        prefix_len,
        label,
    })
}

fn present(ip: IpAddr) -> Result<Option<Addr>, Outcome> {
    Ok(netlink::addresses(&ip)
        .map_err(|e| io_fail("cannot list addresses", &e))?
        .into_iter()
        .find(|a| a.ip == ip))
}

fn announce(op: &Op<'_>, t: &Target) -> Result<(), Outcome> {
    let count = op.params.int("arp_count").unwrap_or(5).max(0);
    if count == 0 {
        return Ok(());
    }
    let interval =
        Duration::from_millis(op.params.int("arp_interval").unwrap_or(200).max(0) as u64);
    let Some(ann) = Announcer::new(&t.link.name, t.ip)
        .map_err(|e| io_fail(&format!("cannot announce {} on {}", t.ip, t.link.name), &e))?
    else {
        return Ok(());
    };
    ann.send_round()
        .map_err(|e| io_fail(&format!("cannot send announcement on {}", t.link.name), &e))?;
    if count > 1 {
        // The repeats go out after start has returned, as a cluster expects a quick start.
        // Each repeat first checks that the address is still ours: a stop (or a move) right
        // after start must not be followed by announcements of an address given up.
        let (ip, index) = (t.ip, t.link.index);
        std::thread::spawn(move || {
            for _ in 1..count {
                std::thread::sleep(interval);
                let still_ours = netlink::addresses(&ip)
                    .is_ok_and(|all| all.iter().any(|a| a.ip == ip && a.index == index));
                if !still_ours || ann.send_round().is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

impl Vip {
    fn do_start(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let ip = parse_ip(op)?;
        let t = resolve(op, ip)?;
        if let Some(a) = present(ip)? {
            if a.index == t.link.index {
                return Ok(Outcome::ok());
            }
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "{ip} is already configured on another interface (index {})",
                    a.index
                ),
            ));
        }
        if !t.link.up {
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("interface {} is down", t.link.name),
            ));
        }
        netlink::add_address(t.link.index, ip, t.prefix_len, t.label.as_deref()).map_err(|e| {
            io_fail(
                &format!("cannot add {ip}/{} to {}", t.prefix_len, t.link.name),
                &e,
            )
        })?;
        Event::AddressAdded {
            rsc: op.instance,
            ip,
            nic: &t.link.name,
            prefix_len: t.prefix_len,
        }
        .log();
        announce(op, &t)?;
        Ok(Outcome::ok())
    }

    fn do_stop(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let ip = parse_ip(op)?;
        let Some(a) = present(ip)? else {
            return Ok(Outcome::ok());
        };
        if let Some(nic) = op.params.str("nic") {
            let links = netlink::links().map_err(|e| io_fail("cannot list interfaces", &e))?;
            if find_link(&links, nic).is_none_or(|l| l.index != a.index) {
                // The address is on another interface (or ours is gone): not ours to remove.
                return Ok(Outcome::ok());
            }
        }
        netlink::del_address(a.index, ip, a.prefix_len)
            .map_err(|e| io_fail(&format!("cannot remove {ip}"), &e))?;
        Event::AddressRemoved {
            rsc: op.instance,
            ip,
        }
        .log();
        Ok(Outcome::ok())
    }

    fn do_monitor(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let ip = parse_ip(op)?;
        let Some(a) = present(ip)? else {
            return Ok(Outcome::not_running());
        };
        let links = netlink::links().map_err(|e| io_fail("cannot list interfaces", &e))?;
        let Some(link) = links.iter().find(|l| l.index == a.index) else {
            return Ok(Outcome::not_running());
        };
        if let Some(nic) = op.params.str("nic")
            && nic != link.name
        {
            // Not ours (stop leaves it alone too); a start will report the conflict.
            return Ok(Outcome::not_running()
                .with_reason(format!("{ip} is on {}, not on {nic}", link.name)));
        }
        if !link.up {
            return Ok(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("{ip} is configured but interface {} is down", link.name),
            ));
        }
        if !link.lower_up && link.name != "lo" {
            return Ok(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "{ip} is configured but interface {} has no carrier",
                    link.name
                ),
            ));
        }
        Ok(Outcome::ok())
    }
}

impl ResourceAgent for Vip {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        Ok(Metadata {
            name: "vip".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shortdesc: "Virtual IP address (IPv4 or IPv6)".into(),
            longdesc: "Adds an address to an interface with rtnetlink and announces it with gratuitous ARP or unsolicited neighbour advertisements. Parameter names follow IPaddr2.".into(),
            params: vec![
                ParamSpec::new("ip", ParamType::String, "The address to manage").required().unique(),
                ParamSpec::new("cidr_netmask", ParamType::Integer, "Prefix length").long("Taken from the connected route covering the address when not given."),
                ParamSpec::new("nic", ParamType::String, "Interface").long("Chosen by the connected route covering the address when not given."),
                ParamSpec::new("label", ParamType::String, "IPv4 address label (nic:label)"),
                ParamSpec::new("arp_count", ParamType::Integer, "Announcements sent on start").default("5"),
                ParamSpec::new("arp_interval", ParamType::Integer, "Milliseconds between announcements").default("200"),
            ],
            actions: op_actions(20, 20, 10, 20),
        })
    }

    fn validate(&self, op: &Op<'_>) -> Outcome {
        parse_ip(op)
            .and_then(|ip| resolve(op, ip))
            .map_or_else(|o| o, |_| Outcome::ok())
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        self.do_start(op).unwrap_or_else(|o| o)
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.do_stop(op).unwrap_or_else(|o| o)
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.do_monitor(op).unwrap_or_else(|o| o)
    }
}
