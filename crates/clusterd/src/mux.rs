//! Users of ordered delivery share one stream: the first payload byte says whose message it is.
//! Tags are never reused; a message with an unknown tag is dropped (a newer peer's user).

use quorum::{QUORUM_WIRE_KIND, QuorumMsg};

use crm::replica::{CibChange, REPLICA_WIRE_KIND, ReplicaMsg};

use crate::admin::{ADMIN_WIRE_KIND, AdminMsg};
use crate::execd::EXEC_WIRE_KIND;
use crm::exec::ExecMsg;

/// The embedding application ([`crate::AppPort`]).
pub(crate) const TAG_APP: u8 = 0;
/// Votequorum's [`QuorumMsg`].
pub(crate) const TAG_QUORUM: u8 = 1;
/// Cluster-wide administrative changes ([`AdminMsg`]).
pub(crate) const TAG_ADMIN: u8 = 2;
/// The replicated CIB ([`ReplicaMsg`]).
pub(crate) const TAG_CIB: u8 = 3;
/// The DC's orders and the executors' reports ([`ExecMsg`]).
pub(crate) const TAG_EXEC: u8 = 4;

/// A delivered payload, by user.
#[derive(Debug)]
pub(crate) enum Demuxed<'a> {
    /// For the application.
    App(&'a [u8]),
    /// For votequorum.
    Quorum(QuorumMsg),
    /// An administrative change.
    Admin(AdminMsg),
    /// For the replicated CIB.
    Cib(ReplicaMsg<CibChange>),
    /// For the executors and the DC.
    Exec(ExecMsg),
    /// Unknown tag or undecodable: dropped.
    Unknown,
}

/// Tags an application payload.
pub(crate) fn app(payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(TAG_APP);
    out.extend_from_slice(&payload);
    out
}

/// Tags a quorum message.
pub(crate) fn quorum(msg: &QuorumMsg) -> Vec<u8> {
    let mut out = vec![TAG_QUORUM];
    // Encoding a plain enum into a vector cannot fail.
    let _ = wire::encode_into(QUORUM_WIRE_KIND, msg, &mut out);
    out
}

/// Tags an administrative message.
pub(crate) fn admin(msg: &AdminMsg) -> Vec<u8> {
    let mut out = vec![TAG_ADMIN];
    // Encoding a plain enum into a vector cannot fail.
    let _ = wire::encode_into(ADMIN_WIRE_KIND, msg, &mut out);
    out
}

/// Tags a CIB message.
pub(crate) fn cib(msg: &ReplicaMsg<CibChange>) -> Vec<u8> {
    let mut out = vec![TAG_CIB];
    // Encoding a plain enum into a vector cannot fail.
    let _ = wire::encode_into(REPLICA_WIRE_KIND, msg, &mut out);
    out
}

/// Tags an executor message.
pub(crate) fn exec(msg: &ExecMsg) -> Vec<u8> {
    let mut out = vec![TAG_EXEC];
    // Encoding a plain enum into a vector cannot fail.
    let _ = wire::encode_into(EXEC_WIRE_KIND, msg, &mut out);
    out
}

/// Splits a delivered payload by tag.
pub(crate) fn demux(payload: &[u8]) -> Demuxed<'_> {
    match payload.split_first() {
        Some((&TAG_APP, rest)) => Demuxed::App(rest),
        Some((&TAG_QUORUM, rest)) => match wire::decode(QUORUM_WIRE_KIND, rest) {
            Ok(m) => Demuxed::Quorum(m),
            Err(_) => Demuxed::Unknown,
        },
        Some((&TAG_ADMIN, rest)) => match wire::decode(ADMIN_WIRE_KIND, rest) {
            Ok(m) => Demuxed::Admin(m),
            Err(_) => Demuxed::Unknown,
        },
        Some((&TAG_CIB, rest)) => match wire::decode(REPLICA_WIRE_KIND, rest) {
            Ok(m) => Demuxed::Cib(m),
            Err(_) => Demuxed::Unknown,
        },
        Some((&TAG_EXEC, rest)) => match wire::decode(EXEC_WIRE_KIND, rest) {
            Ok(m) => Demuxed::Exec(m),
            Err(_) => Demuxed::Unknown,
        },
        _ => Demuxed::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_by_tag_and_unknown_tags_are_dropped() {
        assert!(matches!(demux(&app(b"hi".to_vec())), Demuxed::App(b"hi")));
        let m = QuorumMsg::SetExpected { expected_votes: 3 };
        assert!(matches!(demux(&quorum(&m)), Demuxed::Quorum(got) if got == m));
        assert!(matches!(demux(&[7, 1, 2]), Demuxed::Unknown));
        assert!(matches!(demux(&[TAG_QUORUM, 1, 2]), Demuxed::Unknown));
        let a = AdminMsg::DevicePrepared { op: 3, node: wire::NodeId(2), result: Err("no".into()) };
        assert!(matches!(demux(&admin(&a)), Demuxed::Admin(got) if got == a));
        assert!(matches!(demux(&[TAG_ADMIN, 0]), Demuxed::Unknown));
        let c = ReplicaMsg::Change {
            ring: wire::RingId::new(wire::NodeId(1), 4),
            id: 9,
            change: CibChange::SetNodeState { xml: "<node_state id=\"1\"/>".into() },
        };
        assert!(matches!(demux(&cib(&c)), Demuxed::Cib(got) if got == c));
        let e = ExecMsg::Reported { ring: wire::RingId::new(wire::NodeId(2), 7) };
        assert!(matches!(demux(&exec(&e)), Demuxed::Exec(got) if got == e));
        assert!(matches!(demux(&[TAG_EXEC, 9]), Demuxed::Unknown));
        assert!(matches!(demux(&[]), Demuxed::Unknown));
    }
}
