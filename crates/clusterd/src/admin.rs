//! Cluster-wide administrative changes carried in ordered delivery (mux tag 2), decided the same
//! way on every node because every node sees the same messages in the same order.
//!
//! Adding the arbiter with a join code, or removing it ([`DeviceJoin`]), is a two-phase change:
//! 1. the node the administrator asked broadcasts [`AdminMsg::DevicePrepare`]; every node, on
//!    delivery, prepares (but does not install) its new configuration (for an addition it first
//!    fetches its own certificate from the arbiter), then broadcasts [`AdminMsg::DevicePrepared`]
//!    with the result;
//! 2. once every configured node has reported success, every node commits at that same point
//!    of the order: the files move into place, votequorum takes (or gives back) the arbiter's
//!    votes, and the arbiter client starts (or stops). Any failure, or a configured node leaving
//!    the view before the end, aborts the change everywhere and nothing is installed.
//!
//! This module is sans-IO: the driver runs the effects (the enrollment task, the file moves).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::NodeId;

use crate::control::DeviceAddRequest;

/// The `wire` frame kind of [`AdminMsg`] (inside ordered delivery).
pub(crate) const ADMIN_WIRE_KIND: u8 = 0x53;

/// A change of the arbiter configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DeviceChange {
    /// Add this arbiter (each node gets its certificate with the join code).
    Add(DeviceAddRequest),
    /// Remove the arbiter.
    Remove,
}

/// A cluster-wide administrative message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AdminMsg {
    /// Every node: prepare this change, then report.
    DevicePrepare {
        /// Names this change (random, chosen by the initiator).
        op: u64,
        /// The node the administrator asked.
        initiator: NodeId,
        /// What was asked.
        change: DeviceChange,
    },
    /// One node's result for change `op`.
    DevicePrepared {
        /// The change.
        op: u64,
        /// Who reports.
        node: NodeId,
        /// Ready to commit, or why not.
        result: Result<(), String>,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JoinEffect {
    /// Prepare the change (for an addition: fetch this node's certificate), then report with
    /// [`AdminMsg::DevicePrepared`].
    Prepare { op: u64, change: DeviceChange },
    /// Every node is ready: install what was prepared.
    Commit { op: u64, change: DeviceChange },
    /// Throw away what was prepared for `op`.
    Abort { op: u64, reason: String },
    /// This node was the initiator: answer the administrator.
    Reply { op: u64, result: Result<String, String> },
}

#[derive(Debug)]
struct Pending {
    op: u64,
    initiator: NodeId,
    change: DeviceChange,
    results: BTreeMap<NodeId, Result<(), String>>,
}

/// The state of the cluster-wide arbiter changes on one node.
#[derive(Debug)]
pub(crate) struct DeviceJoin {
    me: NodeId,
    nodes: Vec<NodeId>,
    members: Vec<NodeId>,
    configured: bool,
    pending: Option<Pending>,
}

impl DeviceJoin {
    /// `nodes`: every configured node; `configured`: an arbiter is already in use.
    pub(crate) fn new(me: NodeId, mut nodes: Vec<NodeId>, configured: bool) -> DeviceJoin {
        nodes.sort();
        DeviceJoin { me, nodes, members: Vec::new(), configured, pending: None }
    }

    /// Whether this node may start `change` now (checked before broadcasting; the ordered
    /// delivery decides races between two initiators).
    pub(crate) fn check_start(&self, quorate: bool, change: &DeviceChange) -> Result<(), String> {
        if let Some(e) = self.refusal(change) {
            return Err(e);
        }
        if self.pending.is_some() {
            return Err("an arbiter change is already in progress".into());
        }
        if !quorate {
            return Err("this partition is not quorate; cluster-wide changes need quorum".into());
        }
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(format!(
                "every configured node must be up to receive its certificate; not in the view: {}",
                ids(&missing)
            ));
        }
        Ok(())
    }

    fn refusal(&self, change: &DeviceChange) -> Option<String> {
        match change {
            DeviceChange::Add(_) if self.configured => Some("an arbiter is already configured".into()),
            DeviceChange::Remove if !self.configured => Some("no arbiter is configured".into()),
            _ => None,
        }
    }

    fn missing(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| !self.members.contains(n)).copied().collect()
    }

    /// A new view. A configured node gone mid-way aborts the addition.
    pub(crate) fn view(&mut self, members: &[NodeId], out: &mut Vec<JoinEffect>) {
        self.members = members.to_vec();
        let missing = self.missing();
        if self.pending.is_some() && !missing.is_empty() {
            self.abort(format!("node {} left the view before every node was ready", ids(&missing)), out);
        }
    }

    /// A delivered message.
    pub(crate) fn delivered(&mut self, from: NodeId, msg: AdminMsg, out: &mut Vec<JoinEffect>) {
        match msg {
            AdminMsg::DevicePrepare { op, initiator, change } => {
                if initiator != from {
                    return;
                }
                let refusal = if let Some(e) = self.refusal(&change) {
                    Some(e)
                } else if self.pending.is_some() {
                    Some("another arbiter change came first".to_string())
                } else if !self.missing().is_empty() {
                    Some(format!("not in the view: {}", ids(&self.missing())))
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    if initiator == self.me {
                        out.push(JoinEffect::Reply { op, result: Err(reason) });
                    }
                    return;
                }
                self.pending = Some(Pending { op, initiator, change: change.clone(), results: BTreeMap::new() });
                out.push(JoinEffect::Prepare { op, change });
            }
            AdminMsg::DevicePrepared { op, node, result } => {
                let Some(p) = self.pending.as_mut().filter(|p| p.op == op && node == from) else { return };
                if let Err(e) = &result {
                    let reason = format!("node {node}: {e}");
                    self.abort(reason, out);
                    return;
                }
                p.results.insert(node, result);
                if self.nodes.iter().all(|n| p.results.contains_key(n)) {
                    let Some(p) = self.pending.take() else { return };
                    self.configured = matches!(p.change, DeviceChange::Add(_));
                    out.push(JoinEffect::Commit { op, change: p.change.clone() });
                    if p.initiator == self.me {
                        let done = match &p.change {
                            DeviceChange::Add(req) => format!(
                                "the arbiter {}:{} ({}) is configured on nodes {}; each node has its own certificate",
                                req.host,
                                req.port,
                                req.algorithm,
                                ids(&self.nodes)
                            ),
                            DeviceChange::Remove => format!("the arbiter is removed on nodes {}", ids(&self.nodes)),
                        };
                        out.push(JoinEffect::Reply { op, result: Ok(done) });
                    }
                }
            }
        }
    }

    fn abort(&mut self, reason: String, out: &mut Vec<JoinEffect>) {
        let Some(p) = self.pending.take() else { return };
        out.push(JoinEffect::Abort { op: p.op, reason: reason.clone() });
        if p.initiator == self.me {
            out.push(JoinEffect::Reply { op: p.op, result: Err(format!("{reason}; nothing was changed on any node")) });
        }
    }
}

fn ids(list: &[NodeId]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> DeviceAddRequest {
        DeviceAddRequest {
            host: "arb".into(),
            port: 5403,
            token: "hc1-x".into(),
            algorithm: "ffsplit".into(),
            tie_breaker: "lowest".into(),
            votes: None,
        }
    }

    fn add() -> DeviceChange {
        DeviceChange::Add(req())
    }

    fn three() -> Vec<DeviceJoin> {
        (1..=3)
            .map(|i| {
                let mut j = DeviceJoin::new(NodeId(i), vec![NodeId(1), NodeId(2), NodeId(3)], false);
                j.view(&[NodeId(1), NodeId(2), NodeId(3)], &mut Vec::new());
                j
            })
            .collect()
    }

    /// Delivers `msg` from `from` to every node, returning each node's effects.
    fn deliver(nodes: &mut [DeviceJoin], from: u32, msg: AdminMsg) -> Vec<Vec<JoinEffect>> {
        nodes
            .iter_mut()
            .map(|n| {
                let mut out = Vec::new();
                n.delivered(NodeId(from), msg.clone(), &mut out);
                out
            })
            .collect()
    }

    fn enrolled(op: u64, node: u32, result: Result<(), String>) -> AdminMsg {
        AdminMsg::DevicePrepared { op, node: NodeId(node), result }
    }

    #[test]
    fn every_node_commits_at_the_same_point_once_all_are_enrolled() {
        let mut n = three();
        assert_eq!(n[0].check_start(true, &add()), Ok(()));
        let fx = deliver(&mut n, 1, AdminMsg::DevicePrepare { op: 7, initiator: NodeId(1), change: add() });
        assert!(fx.iter().all(|f| f == &[JoinEffect::Prepare { op: 7, change: add() }]));
        assert!(n[1].check_start(true, &add()).unwrap_err().contains("in progress"));
        for i in [2, 3] {
            assert!(deliver(&mut n, i, enrolled(7, i, Ok(()))).iter().all(Vec::is_empty));
        }
        let fx = deliver(&mut n, 1, enrolled(7, 1, Ok(())));
        assert!(matches!(&fx[0][..], [JoinEffect::Commit { op: 7, .. }, JoinEffect::Reply { op: 7, result: Ok(_) }]));
        assert!(matches!(&fx[1][..], [JoinEffect::Commit { op: 7, .. }]));
        assert!(matches!(&fx[2][..], [JoinEffect::Commit { op: 7, .. }]));
        assert!(n[2].check_start(true, &add()).unwrap_err().contains("already configured"));
        // Now it can be removed, the same way.
        assert_eq!(n[2].check_start(true, &DeviceChange::Remove), Ok(()));
        let fx =
            deliver(&mut n, 3, AdminMsg::DevicePrepare { op: 8, initiator: NodeId(3), change: DeviceChange::Remove });
        assert!(fx.iter().all(|f| f == &[JoinEffect::Prepare { op: 8, change: DeviceChange::Remove }]));
        for i in [1, 2, 3] {
            deliver(&mut n, i, enrolled(8, i, Ok(())));
        }
        assert!(n[0].check_start(true, &DeviceChange::Remove).unwrap_err().contains("no arbiter is configured"));
    }

    #[test]
    fn one_failure_or_a_departure_aborts_everywhere_and_the_initiator_hears_why() {
        let mut n = three();
        deliver(&mut n, 2, AdminMsg::DevicePrepare { op: 1, initiator: NodeId(2), change: add() });
        let fx = deliver(&mut n, 3, enrolled(1, 3, Err("the arbiter refused: unknown or expired join code".into())));
        assert!(matches!(&fx[0][..], [JoinEffect::Abort { op: 1, .. }]));
        match &fx[1][..] {
            [JoinEffect::Abort { .. }, JoinEffect::Reply { result: Err(e), .. }] => {
                assert!(
                    e.starts_with("node 3: the arbiter refused") && e.ends_with("nothing was changed on any node"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Late reports of the aborted change are ignored; a new attempt may start.
        assert!(deliver(&mut n, 1, enrolled(1, 1, Ok(()))).iter().all(Vec::is_empty));
        assert_eq!(n[0].check_start(true, &add()), Ok(()));

        deliver(&mut n, 1, AdminMsg::DevicePrepare { op: 2, initiator: NodeId(1), change: add() });
        let mut out = Vec::new();
        n[0].view(&[NodeId(1), NodeId(2)], &mut out);
        assert!(
            matches!(&out[..], [JoinEffect::Abort { op: 2, .. }, JoinEffect::Reply { result: Err(e), .. }] if e.contains("node 3 left"))
        );
        assert!(n[0].check_start(true, &add()).unwrap_err().contains("not in the view: 3"));
        assert!(n[0].check_start(false, &add()).unwrap_err().contains("not quorate"));
    }

    #[test]
    fn of_two_racing_initiators_the_first_delivered_wins() {
        let mut n = three();
        deliver(&mut n, 1, AdminMsg::DevicePrepare { op: 1, initiator: NodeId(1), change: add() });
        let fx = deliver(&mut n, 3, AdminMsg::DevicePrepare { op: 2, initiator: NodeId(3), change: add() });
        assert!(fx[0].is_empty() && fx[1].is_empty());
        assert!(matches!(&fx[2][..], [JoinEffect::Reply { op: 2, result: Err(e) }] if e.contains("came first")));
        // A node may only report for itself, and only the initiator may start a change.
        assert!(deliver(&mut n, 2, enrolled(1, 3, Ok(()))).iter().all(Vec::is_empty));
        assert!(
            deliver(&mut n, 2, AdminMsg::DevicePrepare { op: 3, initiator: NodeId(1), change: add() })
                .iter()
                .all(Vec::is_empty)
        );
    }
}
