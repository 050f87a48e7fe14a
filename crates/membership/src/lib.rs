//! Cluster membership: a token ring in the spirit of Totem SRP.
//!
//! Nodes agree on *views* (a ring id and an ordered member list) through a gather → commit →
//! operational protocol, and multicast messages in one total order inside each view with
//! extended virtual synchrony: members that move together from one view to the next deliver
//! exactly the same messages of the old view, before the new view is reported. Failure detection
//! is fast (token loss, then silent candidates are excluded after a short join timeout instead of
//! always waiting for the consensus timer) and hard to fool (a node that was not scheduled
//! notices it from its own late timers and restarts them instead of blaming peers; the token
//! timeout adapts to measured rotations). Each node has several links; tokens that are not
//! acknowledged are re-sent on every link, so a link failure alone never changes the view.
//!
//! The core is sans-IO: call [`Membership::handle`] with `now` and an [`Input`], execute the
//! [`Effect`]s, and call again at [`Membership::next_wakeup`]. It never touches sockets, files,
//! clocks, threads or a global RNG, and must never depend on tokio or any transport: the
//! `clusterd` driver and the simulator both run it unchanged. The protocol is described in
//! `docs/membership.md`.

mod config;
mod events;
mod links;
mod packet;
mod ring;

pub use config::{Config, ConfigError, ConfigErrors};
pub use links::LinkState;
pub use packet::KIND;
pub use ring::{Counters, Departure, Effect, Input, Membership, PersistedState, Phase, Status, View};

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{Instant, LinkId, NodeId};

    fn node(id: u32) -> Membership {
        Membership::new(Config::new(NodeId(id), vec![NodeId(1), NodeId(2)], "c"), None, u64::from(id))
    }

    /// Runs two nodes wired back to back until both have a view; returns the packets seen.
    fn pair() -> (Membership, Membership, Vec<Vec<u8>>) {
        let mut n = [node(1), node(2)];
        let mut seen = Vec::new();
        let mut now = Instant::ZERO;
        let mut queue: Vec<(usize, NodeId, LinkId, Vec<u8>)> = Vec::new();
        let mut fx = Vec::new();
        let route = |i: usize, fx: &mut Vec<Effect>, queue: &mut Vec<(usize, NodeId, LinkId, Vec<u8>)>| {
            for e in fx.drain(..) {
                if let Effect::Transmit { to, link, bytes } = e {
                    queue.push((to.0 as usize - 1, NodeId(i as u32 + 1), link, bytes));
                }
            }
        };
        for _ in 0..2000 {
            for (i, m) in n.iter_mut().enumerate() {
                if m.next_wakeup().is_some_and(|t| t <= now) {
                    m.handle(now, Input::Wakeup, &mut fx);
                    route(i, &mut fx, &mut queue);
                }
            }
            while !queue.is_empty() {
                for (to, from, link, bytes) in std::mem::take(&mut queue) {
                    n[to].handle(now, Input::Datagram { from, link, bytes: &bytes }, &mut fx);
                    seen.push(bytes);
                    route(to, &mut fx, &mut queue);
                }
            }
            if n.iter().all(|m| m.view().is_some()) && now > Instant::from_nanos(500_000_000) {
                break;
            }
            now += wire::Duration::from_millis(1);
        }
        let [a, b] = n;
        (a, b, seen)
    }

    #[test]
    fn two_nodes_agree_on_a_view() {
        let (a, b, _) = pair();
        let (ra, ma) = a.view().expect("a has a view");
        let (rb, mb) = b.view().expect("b has a view");
        assert_eq!((ra, ma), (rb, mb));
        assert_eq!(ma, &[NodeId(1), NodeId(2)]);
    }

    #[test]
    fn hostile_packets_are_dropped_and_counted_never_fatal() {
        let (mut a, _, seen) = pair();
        assert!(a.view().is_some());
        let mut fx = Vec::new();
        let now = Instant::from_nanos(10_000_000_000);
        // Garbage, truncations and bit flips of every packet kind seen.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let base = &seen[(next() as usize) % seen.len()];
            let mut bytes = base.clone();
            match next() % 3 {
                0 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
                1 => {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] ^= 1 << (next() % 8);
                }
                _ => bytes = (0..(next() % 64)).map(|_| next() as u8).collect(),
            }
            a.handle(now, Input::Datagram { from: NodeId(2), link: LinkId(0), bytes: &bytes }, &mut fx);
            // From a node that is not configured, and on a link that does not exist.
            a.handle(now, Input::Datagram { from: NodeId(9), link: LinkId(7), bytes: base }, &mut fx);
        }
        let c = a.counters();
        assert!(c.malformed > 1000, "{c:?}");
        assert!(c.foreign >= 2000, "{c:?}");
        // Oversized broadcasts are refused, not queued.
        a.handle(now, Input::Broadcast(vec![0; 70_000]), &mut fx);
        assert_eq!(a.counters().rejected, 1);
    }

    #[test]
    fn config_errors_render_one_line_each() {
        let mut c = Config::new(NodeId(1), vec![NodeId(1)], "");
        c.links = 0;
        let text = c.validate().expect_err("invalid").to_string();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("links: 0 links configured; configure between 1 and 8 links"), "{text}");
    }
}
