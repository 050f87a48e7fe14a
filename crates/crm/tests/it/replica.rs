//! The replicated CIB core under an ideal ordered delivery (one queue per partition, delivered
//! to every member in one order): synchronization after view changes, writes acknowledged only
//! once stable, refusals that change nothing anywhere, and the CIB as the document.

use std::collections::{BTreeMap, VecDeque};

use crm::cib::{Cib, CibVersion};
use crm::replica::{ChangeKind, CibChange, Document, Effect, Input, Replica, ReplicaMsg, WriteError};
use wire::{NodeId, RingId};

/// A toy document: a list of entries.
#[derive(Clone, Debug, Default, PartialEq)]
struct Log {
    v: CibVersion,
    entries: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum LogChange {
    Push(String),
    Note(String),
    Refuse,
}

impl Document for Log {
    type Change = LogChange;

    fn version(&self) -> CibVersion {
        self.v
    }

    fn set_version(&mut self, v: CibVersion) {
        self.v = v;
    }

    fn apply(&mut self, change: &LogChange) -> Result<ChangeKind, String> {
        match change {
            LogChange::Push(s) => {
                self.entries.push(s.clone());
                Ok(ChangeKind::Config)
            }
            LogChange::Note(s) => {
                self.entries.push(format!("note:{s}"));
                Ok(ChangeKind::Status)
            }
            LogChange::Refuse => Err("refused by the document".into()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        format!("{} {} {}\n{}", self.v.admin_epoch, self.v.epoch, self.v.num_updates, self.entries.join("\n"))
            .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
        let n: Vec<u64> = head.split(' ').map(|x| x.parse().map_err(|_| "bad version")).collect::<Result<_, _>>()?;
        let [admin_epoch, epoch, num_updates] = n[..] else { return Err("bad version".into()) };
        let entries = if rest.is_empty() { Vec::new() } else { rest.split('\n').map(str::to_string).collect() };
        Ok(Log { v: CibVersion { admin_epoch, epoch, num_updates }, entries })
    }
}

type Reply = (u64, Result<CibVersion, WriteError>);
/// Messages waiting for delivery in one partition.
type Queue = VecDeque<(NodeId, ReplicaMsg<LogChange>)>;

struct Net {
    nodes: BTreeMap<NodeId, Replica<Log>>,
    replies: BTreeMap<NodeId, Vec<Reply>>,
    persisted: BTreeMap<NodeId, usize>,
    /// Partition: (ring, members, queue of (from, msg), next seq).
    parts: Vec<(RingId, Vec<NodeId>, Queue, u64)>,
    ring_seq: u64,
}

fn ids(l: &[u32]) -> Vec<NodeId> {
    l.iter().map(|&i| NodeId(i)).collect()
}

impl Net {
    fn new(n: u32, doc: impl Fn(u32) -> Log) -> Net {
        Net {
            // Tiny pieces: whole documents travel in many messages.
            nodes: (1..=n).map(|i| (NodeId(i), Replica::new(NodeId(i), doc(i)).with_piece_bytes(5))).collect(),
            replies: BTreeMap::new(),
            persisted: BTreeMap::new(),
            parts: Vec::new(),
            ring_seq: 0,
        }
    }

    fn part_of(&self, n: NodeId) -> usize {
        self.parts.iter().position(|p| p.1.contains(&n)).expect("node is in a partition")
    }

    fn run(&mut self, n: NodeId, input: Input<'_, LogChange>) {
        let mut out = Vec::new();
        self.nodes.get_mut(&n).expect("node").handle(input, &mut out);
        for e in out {
            match e {
                Effect::Broadcast(m) => {
                    let p = self.part_of(n);
                    self.parts[p].2.push_back((n, m));
                }
                Effect::Persist(_) => *self.persisted.entry(n).or_default() += 1,
                Effect::Reply { id, result } => self.replies.entry(n).or_default().push((id, result)),
                Effect::Changed(_) | Effect::Synced(_) => {}
            }
        }
    }

    /// New views; messages still queued in an old partition are carried into the new partition
    /// of their sender (membership sends them in the next ring).
    fn views(&mut self, parts: &[&[u32]]) {
        let mut carried: Vec<(NodeId, ReplicaMsg<LogChange>)> = Vec::new();
        for p in self.parts.drain(..) {
            carried.extend(p.2);
        }
        for members in parts {
            self.ring_seq += 4;
            let m = ids(members);
            self.parts.push((RingId::new(m[0], self.ring_seq), m, VecDeque::new(), 0));
        }
        for (from, msg) in carried {
            let p = self.part_of(from);
            self.parts[p].2.push_back((from, msg));
        }
        for p in 0..self.parts.len() {
            let (ring, members) = (self.parts[p].0, self.parts[p].1.clone());
            for m in &members {
                self.run(*m, Input::View { ring, members: &members });
            }
        }
    }

    /// Delivers everything queued, in order, to every member of each partition.
    fn deliver(&mut self) {
        for p in 0..self.parts.len() {
            while let Some((from, msg)) = self.parts[p].2.pop_front() {
                self.parts[p].3 += 1;
                let seq = self.parts[p].3;
                for m in self.parts[p].1.clone() {
                    self.run(m, Input::Delivered { from, seq, msg: msg.clone() });
                }
            }
        }
    }

    /// Delivers what is queued to its sender only (the others never receive it: the sender is
    /// cut off right after multicasting).
    fn deliver_to_sender_only(&mut self) {
        for p in 0..self.parts.len() {
            while let Some((from, msg)) = self.parts[p].2.pop_front() {
                self.parts[p].3 += 1;
                let seq = self.parts[p].3;
                self.run(from, Input::Delivered { from, seq, msg });
            }
        }
    }

    /// Membership reports everything so far as received by every member.
    fn stabilize(&mut self) {
        for p in 0..self.parts.len() {
            let (ring, upto) = (self.parts[p].0, self.parts[p].3);
            for m in self.parts[p].1.clone() {
                self.run(m, Input::Stable { ring, upto });
            }
        }
    }

    fn write(&mut self, n: u32, id: u64, change: LogChange, quorate: bool) {
        self.run(NodeId(n), Input::Write { id, change, quorate });
    }

    fn doc(&self, n: u32) -> &Log {
        self.nodes[&NodeId(n)].document()
    }

    fn replies(&self, n: u32) -> Vec<Reply> {
        self.replies.get(&NodeId(n)).cloned().unwrap_or_default()
    }

    fn all_synced_alike(&self, nodes: &[u32]) {
        for &n in nodes {
            assert!(self.nodes[&NodeId(n)].is_synced(), "n{n} is not synced");
            assert_eq!(self.doc(n), self.doc(nodes[0]), "n{n} differs from n{}", nodes[0]);
        }
    }
}

fn v(epoch: u64, num_updates: u64) -> CibVersion {
    CibVersion { admin_epoch: 0, epoch, num_updates }
}

#[test]
fn a_write_is_applied_everywhere_and_acknowledged_only_once_every_member_has_it() {
    let mut net = Net::new(3, |_| Log::default());
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    net.all_synced_alike(&[1, 2, 3]);
    assert!(net.persisted.is_empty(), "identical copies: nothing to adopt");

    net.write(2, 7, LogChange::Push("a".into()), true);
    net.deliver();
    for n in [1, 2, 3] {
        assert_eq!(net.doc(n).entries, ["a"]);
        assert_eq!(net.doc(n).v, v(1, 0), "a configuration change moves the epoch");
    }
    assert!(net.replies(2).is_empty(), "not acknowledged before it is stable");
    net.stabilize();
    assert_eq!(net.replies(2), [(7, Ok(v(1, 0)))]);
    net.write(1, 1, LogChange::Note("x".into()), true);
    net.deliver();
    net.stabilize();
    assert_eq!(net.replies(1), [(1, Ok(v(1, 1)))], "a status change moves num_updates");
}

#[test]
fn without_quorum_or_while_synchronizing_a_write_is_refused_and_nothing_is_sent() {
    let mut net = Net::new(2, |_| Log::default());
    net.write(1, 1, LogChange::Push("a".into()), true);
    assert_eq!(net.replies(1), [(1, Err(WriteError::Syncing))], "no view yet");
    net.views(&[&[1, 2]]);
    net.write(1, 2, LogChange::Push("a".into()), true);
    assert_eq!(net.replies(1)[1], (2, Err(WriteError::Syncing)), "offers not in yet");
    net.deliver();
    net.write(1, 3, LogChange::Push("a".into()), false);
    assert_eq!(net.replies(1)[2], (3, Err(WriteError::NotQuorate)));
    net.deliver();
    assert!(net.doc(2).entries.is_empty());
    assert!(WriteError::NotQuorate.to_string().contains("crmctl quorum status"));
}

#[test]
fn after_a_partition_heals_everyone_adopts_the_newest_copy() {
    let mut net = Net::new(3, |_| Log::default());
    net.views(&[&[1, 2], &[3]]);
    net.deliver();
    net.write(2, 1, LogChange::Push("a".into()), true);
    net.write(2, 2, LogChange::Push("b".into()), true);
    net.write(3, 1, LogChange::Push("minority".into()), false);
    net.deliver();
    net.stabilize();
    assert_eq!(net.doc(1).entries, ["a", "b"]);
    assert!(net.doc(3).entries.is_empty());
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    net.all_synced_alike(&[1, 2, 3]);
    assert_eq!(net.doc(3).entries, ["a", "b"]);
    assert_eq!(net.persisted.get(&NodeId(3)), Some(&1), "n3 persisted the adopted copy");
}

#[test]
fn copies_that_diverged_at_the_same_version_converge_on_the_lowest_node_id() {
    let mut net = Net::new(3, |i| Log { v: v(4, 0), entries: vec![format!("from n{i}")] });
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    net.all_synced_alike(&[1, 2, 3]);
    assert_eq!(net.doc(3).entries, ["from n1"]);
}

#[test]
fn a_dead_branch_with_a_higher_version_loses_to_the_acknowledged_history() {
    let mut net = Net::new(3, |_| Log::default());
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    // n1 applies two changes of its own that nobody else receives, then is cut off.
    net.write(1, 1, LogChange::Push("lost1".into()), true);
    net.write(1, 2, LogChange::Push("lost2".into()), true);
    net.deliver_to_sender_only();
    net.views(&[&[1], &[2, 3]]);
    assert_eq!(net.replies(1), [(1, Err(WriteError::Indeterminate)), (2, Err(WriteError::Indeterminate))]);
    net.deliver();
    net.write(2, 1, LogChange::Push("kept".into()), true);
    net.deliver();
    net.stabilize();
    assert_eq!(net.replies(2), [(1, Ok(v(1, 0)))]);
    assert!(net.doc(1).v > net.doc(2).v, "the dead branch has the higher version");
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    net.all_synced_alike(&[1, 2, 3]);
    assert_eq!(net.doc(1).entries, ["kept"], "the acknowledged change survives; the dead branch is gone");
}

#[test]
fn a_restarted_replica_keeps_its_copy_and_lineage() {
    let mut net = Net::new(2, |_| Log::default());
    net.views(&[&[1, 2]]);
    net.deliver();
    net.write(1, 1, LogChange::Push("a".into()), true);
    let mut saved = Vec::new();
    let ring = net.parts[0].0;
    let msg = net.parts[0].2.pop_front().expect("queued");
    let mut out = Vec::new();
    net.nodes.get_mut(&NodeId(2)).expect("n2").handle(Input::Delivered { from: msg.0, seq: 1, msg: msg.1 }, &mut out);
    for e in out {
        if let Effect::Persist(b) = e {
            saved = b;
        }
    }
    let back = Replica::<Log>::restore(NodeId(2), &saved).expect("restores");
    assert_eq!(back.document().entries, ["a"]);
    assert_eq!(back.rank().changed_in, Some(ring));
    assert!(Replica::<Log>::restore(NodeId(2), b"garbage").is_err());
}

#[test]
fn a_change_too_large_for_one_message_is_refused_before_it_is_sent() {
    let mut net = Net::new(2, |_| Log::default());
    net.views(&[&[1, 2]]);
    net.deliver();
    net.write(1, 1, LogChange::Push("x".repeat(9 * 1024)), true);
    match &net.replies(1)[..] {
        [(1, Err(WriteError::Rejected(why)))] => assert!(why.contains("split it into smaller changes"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(net.parts[0].2.is_empty(), "nothing was multicast");
}

#[test]
fn a_refused_change_changes_nothing_anywhere() {
    let mut net = Net::new(2, |_| Log::default());
    net.views(&[&[1, 2]]);
    net.deliver();
    net.write(1, 9, LogChange::Refuse, true);
    net.deliver();
    assert_eq!(net.replies(1), [(9, Err(WriteError::Rejected("refused by the document".into())))]);
    assert_eq!(net.doc(2), &Log::default());
}

#[test]
fn a_view_change_before_stability_answers_indeterminate_never_ok() {
    let mut net = Net::new(3, |_| Log::default());
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    net.write(1, 1, LogChange::Push("a".into()), true);
    net.deliver();
    net.views(&[&[1, 2], &[3]]);
    assert_eq!(net.replies(1), [(1, Err(WriteError::Indeterminate))]);
    // A change multicast in one view but delivered in the next is refused everywhere alike.
    net.deliver();
    net.write(1, 2, LogChange::Push("b".into()), true);
    net.views(&[&[1, 2, 3]]);
    net.deliver();
    assert_eq!(net.replies(1)[1], (2, Err(WriteError::Syncing)));
    net.all_synced_alike(&[1, 2, 3]);
    assert_eq!(net.doc(3).entries, ["a"], "the applied change stays; the late one is nowhere");
}

const CONFIG: &str = r#"<configuration><crm_config/><nodes><node id="1" uname="n1"/></nodes><resources><primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"><instance_attributes id="vip-ia"><nvpair id="vip-ip" name="ip" value="192.0.2.10"/></instance_attributes></primitive></resources><constraints/></configuration>"#;

#[test]
fn the_cib_as_the_document_versions_configuration_and_status_changes() {
    let mut cib = Cib::default();
    let kind = cib.apply(&CibChange::ReplaceConfiguration { xml: CONFIG.into(), if_epoch: Some(0) }).expect("applies");
    assert_eq!(kind, ChangeKind::Config);
    assert_eq!(cib.config.resources.len(), 1);
    cib.set_version(v(1, 0));
    let stale = cib.apply(&CibChange::ReplaceConfiguration { xml: CONFIG.into(), if_epoch: Some(0) }).unwrap_err();
    assert!(stale.contains("changed meanwhile"), "{stale}");
    let dup = CONFIG
        .replace("</resources>", r#"<primitive id="vip" class="ocf" provider="heartbeat" type="Dummy"/></resources>"#);
    let e = cib.apply(&CibChange::ReplaceConfiguration { xml: dup, if_epoch: None }).unwrap_err();
    assert!(e.contains("used more than once"), "{e}");
    assert!(cib.apply(&CibChange::ReplaceConfiguration { xml: "<status/>".into(), if_epoch: None }).is_err());
    assert_eq!(cib.config.resources.len(), 1, "refusals leave the document as it was");

    let state = r#"<node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/>"#;
    assert_eq!(cib.apply(&CibChange::SetNodeState { xml: state.into() }), Ok(ChangeKind::Status));
    assert_eq!(cib.apply(&CibChange::SetNodeState { xml: state.replace("online", "offline") }), Ok(ChangeKind::Status));
    assert_eq!(cib.status.len(), 1, "one entry per node id");
    assert_eq!(cib.status[0].crmd.as_deref(), Some("offline"));
    let back = Cib::decode(&cib.encode()).expect("decodes");
    assert_eq!(back.encode(), cib.encode(), "encoding is stable across a round trip");
}

#[test]
fn replicas_of_the_cib_converge_through_the_messages() {
    let mut a = Replica::new(NodeId(1), Cib::default());
    let mut b = Replica::new(NodeId(2), Cib::default());
    let ring = RingId::new(NodeId(1), 8);
    let members = ids(&[1, 2]);
    let mut queue: VecDeque<(NodeId, ReplicaMsg<CibChange>)> = VecDeque::new();
    let mut seq = 0;
    let mut acks = Vec::new();
    let mut step = |r: &mut Replica<Cib>, me: NodeId, input: Input<'_, CibChange>, q: &mut VecDeque<_>| {
        let mut out = Vec::new();
        r.handle(input, &mut out);
        for e in out {
            match e {
                Effect::Broadcast(m) => q.push_back((me, m)),
                Effect::Reply { id, result } => acks.push((id, result)),
                _ => {}
            }
        }
    };
    step(&mut a, NodeId(1), Input::View { ring, members: &members }, &mut queue);
    step(&mut b, NodeId(2), Input::View { ring, members: &members }, &mut queue);
    let change = CibChange::ReplaceConfiguration { xml: CONFIG.into(), if_epoch: None };
    let mut wrote = false;
    while let Some((from, msg)) = queue.pop_front() {
        seq += 1;
        step(&mut a, NodeId(1), Input::Delivered { from, seq, msg: msg.clone() }, &mut queue);
        step(&mut b, NodeId(2), Input::Delivered { from, seq, msg }, &mut queue);
        if a.is_synced() && !wrote {
            wrote = true;
            step(&mut a, NodeId(1), Input::Write { id: 1, change: change.clone(), quorate: true }, &mut queue);
        }
    }
    step(&mut a, NodeId(1), Input::Stable { ring, upto: seq }, &mut queue);
    assert_eq!(acks, [(1, Ok(v(1, 0)))]);
    assert_eq!(b.document().config.resources[0].id, "vip");
    assert_eq!(a.document().encode(), b.document().encode());
}

fn op(node: u32, rsc: &str, class: &str, agent: &str, operation: &str, interval_ms: u64, rc: i32) -> CibChange {
    CibChange::RecordOp(Box::new(crm::replica::OpRecord {
        node_id: node.to_string(),
        node_name: format!("node{node}"),
        rsc: rsc.into(),
        class: class.into(),
        provider: (class == "ocf").then(|| "heartbeat".to_string()),
        agent: agent.into(),
        operation: operation.into(),
        interval_ms,
        rc,
        op_status: 0,
        call_id: 1,
        transition_key: Some(format!("1:1:{}:dc", if operation == "monitor" && interval_ms == 0 { 7 } else { 0 })),
        last_rc_change: 1_700_000_000,
        exec_ms: 12,
        exit_reason: None,
        op_digest: None,
    }))
}

/// Like [`op`], recording the digest of the parameters the operation ran with, as the
/// executor does.
fn op_with_digest(cib: &Cib, node: u32, rsc: &str, class: &str, agent: &str, operation: &str) -> CibChange {
    let mut change = op(node, rsc, class, agent, operation, 0, 0);
    if let CibChange::RecordOp(r) = &mut change {
        r.op_digest = crm::digest::action_digest(cib, rsc, Some(&r.node_name), operation, 0);
        assert!(r.op_digest.is_some(), "{rsc} is configured");
    }
    change
}

/// The demo's two-node web cluster configuration with both nodes members and node 1 DC, and
/// the `<configuration>` element it came from.
fn demo_cib_with_two_members() -> (Cib, String) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/demo-cib.xml")).expect("demo");
    let mut cib = Cib::default();
    let configuration = crm::replica::configuration_of(&text).expect("configuration");
    cib.apply(&CibChange::ReplaceConfiguration { xml: configuration.clone(), if_epoch: None }).expect("applies");
    let members = vec![
        ("1".to_string(), "node1".to_string(), crm::replica::Membership::Member),
        ("2".to_string(), "node2".to_string(), crm::replica::Membership::Member),
    ];
    cib.apply(&CibChange::SetMembership { nodes: members, dc: Some("1".into()) }).expect("applies");
    (cib, configuration)
}

#[test]
fn a_recorded_digest_lets_the_engine_restart_a_resource_whose_parameters_changed() {
    let (mut cib, configuration) = demo_cib_with_two_members();
    let summary = |cib: &Cib| crm::schedule(cib, Some(true), 1_700_000_100).summary.join("\n");
    for (node, rsc, class, agent) in [
        (2, "fence-node1", "stonith", "fence_ipmilan"),
        (1, "fence-node2", "stonith", "fence_ipmilan"),
        (1, "vip", "ocf", "IPaddr2"),
        (1, "data", "ocf", "Filesystem"),
        (1, "www", "ocf", "nginx"),
    ] {
        let change = op_with_digest(&cib, node, rsc, class, agent, "start");
        cib.apply(&change).expect("records");
    }
    let vip = cib.status.iter().flat_map(|s| &s.resources).find(|r| r.id == "vip").expect("vip recorded");
    assert!(vip.ops[0].attr("op-digest").is_some_and(|d| d.len() == 32), "{:?}", vip.ops);
    assert_eq!(summary(&cib), "", "the recorded digests match the configuration");

    let changed = configuration.replace("10.213.0.100", "10.213.0.101");
    assert_ne!(changed, configuration);
    cib.apply(&CibChange::ReplaceConfiguration { xml: changed, if_epoch: None }).expect("applies");
    let after = summary(&cib);
    assert!(after.contains("Restart") && after.contains("vip"), "{after}");
    // The members after it in the group restart with it.
    assert!(after.contains("data") && after.contains("www"), "{after}");
    let back = Cib::decode(&cib.encode()).expect("decodes");
    assert_eq!(summary(&back), after, "the recorded digests survive encoding");
}

#[test]
fn recorded_operations_are_what_the_policy_engine_reads() {
    let (mut cib, _) = demo_cib_with_two_members();
    assert_eq!(cib.dc_uuid.as_deref(), Some("1"));
    let summary = |cib: &Cib| crm::schedule(cib, Some(true), 1_700_000_100).summary.join("\n");
    let before = summary(&cib);
    assert!(before.contains("Start") && before.contains("vip"), "{before}");

    // Everything started where the engine wanted it: nothing left to do.
    for (node, rsc, class, agent) in [
        (2, "fence-node1", "stonith", "fence_ipmilan"),
        (1, "fence-node2", "stonith", "fence_ipmilan"),
        (1, "vip", "ocf", "IPaddr2"),
        (1, "data", "ocf", "Filesystem"),
        (1, "www", "ocf", "nginx"),
    ] {
        cib.apply(&op(node, rsc, class, agent, "start", 0, 0)).expect("records");
    }
    assert_eq!(summary(&cib), "", "nothing to do once everything runs");

    // The VIP's monitor fails: recovery in place.
    cib.apply(&op(1, "vip", "ocf", "IPaddr2", "monitor", 10_000, 7)).expect("records");
    let after = summary(&cib);
    assert!(after.contains("Recover") && after.contains("vip"), "{after}");
    let back = Cib::decode(&cib.encode()).expect("decodes");
    assert_eq!(summary(&back), after, "the recorded history survives encoding");

    // A successful stop ends the recurring monitor's record.
    cib.apply(&op(1, "vip", "ocf", "IPaddr2", "stop", 0, 0)).expect("records");
    let ns = cib.status.iter().find(|s| s.id == "1").expect("node 1");
    let vip = ns.resources.iter().find(|r| r.id == "vip").expect("vip");
    assert!(!vip.ops.iter().any(|o| o.id == "vip_monitor_10000"), "{:?}", vip.ops);
    assert!(vip.ops.iter().any(|o| o.id == "vip_last_failure_0"), "the failure stays on record");
}

#[test]
fn a_configuration_file_may_start_with_a_declaration_and_comments() {
    let text = "<?xml version=\"1.0\"?>\n<!-- the demo's -->\n<!-- two comments -->\n<configuration><crm_config/><nodes/><resources/><constraints/></configuration>";
    let c = crm::replica::configuration_of(text).expect("a configuration");
    assert!(c.starts_with("<configuration>"), "{c}");
    assert!(crm::replica::check_configuration(&c).is_ok());
}

#[test]
fn a_start_reported_as_pending_holds_the_resource_where_it_runs() {
    let text = r#"<configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes/><resources><primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"/></resources><constraints><rsc_location id="l" rsc="d1" node="node3" score="100"/></constraints></configuration>"#;
    let mut cib = Cib::default();
    cib.apply(&CibChange::ReplaceConfiguration { xml: text.into(), if_epoch: None }).expect("applies");
    let members = (1..=3).map(|i| (i.to_string(), format!("node{i}"), crm::replica::Membership::Member)).collect();
    cib.apply(&CibChange::SetMembership { nodes: members, dc: Some("1".into()) }).expect("applies");
    for n in 1..=3 {
        cib.apply(&op(n, "d1", "ocf", "Dummy", "monitor", 0, 7)).expect("probes");
    }
    // A DC elected while node 2's start (ordered by its predecessor) still runs: node 2
    // reports it pending with its history.
    let CibChange::RecordOp(mut pending) = op(2, "d1", "ocf", "Dummy", "start", 0, 193) else { unreachable!() };
    pending.op_status = -1;
    pending.call_id = -1;
    let probe = op(2, "d1", "ocf", "Dummy", "monitor", 0, 7);
    let CibChange::RecordOp(probe) = probe else { unreachable!() };
    cib.apply(&CibChange::ReplaceHistory {
        node_id: "2".into(),
        node_name: "node2".into(),
        ops: vec![*probe, *pending],
        shutdown: None,
        promotion: Vec::new(),
    })
    .expect("applies");
    // The engine sees d1 on node2: it may move it to node3 (its preference), which stops it on
    // node2 first (the executor runs that stop after the start it waits for); never a start
    // without that stop.
    let t = crm::schedule(&cib, Some(true), 1_700_000_100);
    let summary = t.summary.join("\n");
    assert!(summary.contains("Move") && summary.contains("node2 -> node3"), "{summary}");
    let stop = t.executable().find(|a| a.kind == crm::ActionKind::Stop).expect("a stop on node2");
    assert_eq!(t.node_name(stop.node.expect("a node")), "node2");
    let start = t.executable().find(|a| a.kind == crm::ActionKind::Start).expect("a start");
    assert!(t.edges.iter().any(|e| e.first == stop.id && e.then == start.id), "the start waits for the stop");
}

#[test]
fn status_lists_fail_counts_and_the_last_failure_of_each_resource() {
    let (mut cib, _) = demo_cib_with_two_members();
    assert_eq!(crm::simulate::format_failures(&cib), "", "nothing failed yet");
    cib.apply(&op(1, "vip", "ocf", "IPaddr2", "start", 0, 0)).expect("records");
    let CibChange::RecordOp(mut failed) = op(1, "vip", "ocf", "IPaddr2", "monitor", 10_000, 7) else { unreachable!() };
    failed.exit_reason = Some("address gone".into());
    cib.apply(&CibChange::RecordOp(failed)).expect("records");
    let text = crm::simulate::format_failures(&cib);
    assert!(text.contains("Migration Summary:") && text.contains("vip: fail-count=1 (monitor_10000)"), "{text}");
    assert!(
        text.contains(
            "* vip_monitor_10000 on node1 'not running' (7): call=1, status='complete', exitreason='address gone'"
        ),
        "{text}"
    );
}

#[test]
fn the_dc_stays_while_it_is_a_member_else_the_lowest_node_id_takes_over() {
    let ids = |l: &[u32]| l.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
    let recorded = |dc: &str| Cib { dc_uuid: Some(dc.into()), ..Cib::default() };
    assert_eq!(crm::replica::dc_of(None, &ids(&[2, 3])), Some(NodeId(2)));
    assert_eq!(
        crm::replica::dc_of(Some(&recorded("3")), &ids(&[1, 2, 3])),
        Some(NodeId(3)),
        "a lower id rejoining takes nothing"
    );
    assert_eq!(crm::replica::dc_of(Some(&recorded("1")), &ids(&[2, 3])), Some(NodeId(2)), "the recorded DC is gone");
    assert_eq!(crm::replica::dc_of(Some(&recorded("1")), &[]), None);
}

#[test]
fn a_fenced_node_is_not_recorded_lost_again_until_it_was_a_member_again() {
    let (mut cib, _) = demo_cib_with_two_members();
    let lost = std::collections::BTreeMap::from([
        (NodeId(1), crm::replica::Membership::Member),
        (NodeId(2), crm::replica::Membership::Lost),
    ]);
    let names = |id: NodeId| Some(format!("node{}", id.0));
    let change = crm::replica::membership_change(&cib, NodeId(1), &lost, names).expect("node 2 is recorded lost");
    cib.apply(&change).expect("applies");
    assert!(crm::replica::membership_change(&cib, NodeId(1), &lost, names).is_none(), "said once");
    cib.apply(&CibChange::Fenced { node_id: "2".into(), node_name: "node2".into() }).expect("fenced");
    assert!(crm::replica::membership_change(&cib, NodeId(1), &lost, names).is_none(), "the fence record stands");
}
