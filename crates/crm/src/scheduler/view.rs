//! Cluster views for printing: nodes and the resource tree with each resource's state, before
//! (from history) and after (assuming every runnable action succeeds) the transition.

use crate::cib::Role;

use super::unpack::{Kind, World};

/// A node's state as printed in a status listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// `online`, `OFFLINE`, `standby`, `maintenance`, `pending`, `UNCLEAN (online)`, ...
    pub state: String,
}

/// A resource (and its children) as printed in a status listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RscView {
    /// Resource id (instances carry `:N`).
    pub id: String,
    /// `primitive`, `group` or `clone`.
    pub kind: &'static str,
    /// `class:provider:type` for primitives.
    pub agent: String,
    /// Clone flags: unique, promotable.
    pub flags: Vec<&'static str>,
    /// Nodes it runs on.
    pub nodes: Vec<String>,
    /// Role.
    pub role: Role,
    /// Failed.
    pub failed: bool,
    /// Not managed by the cluster.
    pub unmanaged: bool,
    /// target-role=Stopped.
    pub disabled: bool,
    /// Children (group members, clone instances).
    pub children: Vec<RscView>,
}

/// A printable view of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Nodes.
    pub nodes: Vec<NodeView>,
    /// Top-level resources.
    pub resources: Vec<RscView>,
}

pub(crate) fn node_views(w: &World, fenced: &[usize]) -> Vec<NodeView> {
    w.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let state = if fenced.contains(&i) {
                "OFFLINE".to_string()
            } else if n.unclean {
                if n.online { "UNCLEAN (online)" } else { "UNCLEAN (offline)" }.to_string()
            } else if n.pending {
                "pending".to_string()
            } else if !n.online {
                "OFFLINE".to_string()
            } else if n.maintenance {
                "maintenance".to_string()
            } else if n.standby {
                let active = w.rscs.iter().any(|r| r.kind == Kind::Primitive && r.running.contains(&i));
                if active { "standby (with active resources)" } else { "standby" }.to_string()
            } else {
                "online".to_string()
            };
            NodeView { name: n.name.clone(), state }
        })
        .collect()
}

fn view(w: &World, r: usize, after: bool) -> RscView {
    let rs = &w.rscs[r];
    let (nodes, role, failed) = if rs.kind == Kind::Primitive {
        if after {
            match rs.assigned {
                Some(n) => (vec![w.nodes[n].name.clone()], rs.next_role, false),
                None => (Vec::new(), Role::Stopped, false),
            }
        } else {
            (rs.running.iter().map(|&n| w.nodes[n].name.clone()).collect(), rs.role, rs.failed)
        }
    } else {
        (Vec::new(), Role::Unknown, false)
    };
    let mut flags = Vec::new();
    if rs.kind == Kind::Clone {
        if rs.clone.unique {
            flags.push("unique");
        }
        if rs.clone.promotable {
            flags.push("promotable");
        }
    }
    RscView {
        id: rs.id.clone(),
        kind: match rs.kind {
            Kind::Primitive => "primitive",
            Kind::Group => "group",
            Kind::Clone => "clone",
        },
        agent: match &rs.provider {
            Some(p) => format!("{}:{p}:{}", rs.class, rs.agent),
            None => format!("{}:{}", rs.class, rs.agent),
        },
        flags,
        nodes,
        role,
        failed,
        unmanaged: !rs.managed,
        disabled: rs.target_role == Some(Role::Stopped),
        children: rs.children.iter().map(|&c| view(w, c, after)).collect(),
    }
}

pub(crate) fn cluster_view(w: &World, after: bool, fenced: &[usize]) -> ClusterView {
    ClusterView {
        nodes: node_views(w, if after { fenced } else { &[] }),
        resources: w
            .top
            .iter()
            .filter(|&&t| !(w.rscs[t].orphan && (after || w.rscs[t].running.is_empty())))
            .map(|&t| view(w, t, after))
            .collect(),
    }
}
