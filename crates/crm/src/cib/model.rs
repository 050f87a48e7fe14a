//! The CIB: configuration and status, as typed data.

use crate::score::Score;

/// The CIB version triple. A change by an administrator bumps `admin_epoch`, a configuration
/// change bumps `epoch`, a status change bumps `num_updates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CibVersion {
    /// Bumped by administrators to override any other copy.
    pub admin_epoch: u64,
    /// Bumped on every configuration change.
    pub epoch: u64,
    /// Bumped on every status change.
    pub num_updates: u64,
}

/// A whole CIB: configuration plus status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cib {
    /// Version triple.
    pub version: CibVersion,
    /// Whether the partition that wrote this CIB had quorum.
    pub have_quorum: bool,
    /// The node id of the DC, if known.
    pub dc_uuid: Option<String>,
    /// `validate-with` schema name.
    pub validate_with: Option<String>,
    /// `crm_feature_set`.
    pub feature_set: Option<String>,
    /// `no-quorum-panic`: with no-quorum-policy=suicide, fence every node on quorum loss.
    pub no_quorum_panic: bool,
    /// `execution-date` (Unix seconds): the scheduler's "now" when present.
    pub execution_date: Option<i64>,
    /// The configuration section.
    pub config: Configuration,
    /// The status section, one entry per node.
    pub status: Vec<NodeState>,
}

/// A set of name/value pairs (`cluster_property_set`, `meta_attributes`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvSet {
    /// Element id.
    pub id: String,
    /// Precedence among sets (higher first).
    pub score: Option<Score>,
    /// A rule limiting when the set applies.
    pub rule: Option<Rule>,
    /// The pairs in document order.
    pub pairs: Vec<NvPair>,
}

/// One `nvpair`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvPair {
    /// Element id.
    pub id: String,
    /// Attribute name.
    pub name: String,
    /// Attribute value (`None` when the pair unsets a value).
    pub value: Option<String>,
}

/// The configuration section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    /// `crm_config`: cluster properties.
    pub properties: Vec<NvSet>,
    /// Cluster nodes.
    pub nodes: Vec<NodeConfig>,
    /// Top-level resources in configuration order.
    pub resources: Vec<Resource>,
    /// Constraints in configuration order.
    pub constraints: Vec<Constraint>,
    /// `rsc_defaults` meta attributes.
    pub rsc_defaults: Vec<NvSet>,
    /// `op_defaults` meta attributes.
    pub op_defaults: Vec<NvSet>,
}

/// A configured node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConfig {
    /// Node id (matches `node_state id`).
    pub id: String,
    /// Node name.
    pub uname: String,
    /// `member`, `remote` or `ping`.
    pub kind: Option<String>,
    /// Permanent node attributes.
    pub attributes: Vec<NvSet>,
    /// Utilization capacities.
    pub utilization: Vec<NvSet>,
}

/// The kind of a resource and its children.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceKind {
    /// A resource run by an agent.
    Primitive {
        /// `ocf`, `lsb`, `systemd`, `stonith`, ...
        class: String,
        /// OCF provider.
        provider: Option<String>,
        /// Agent name (`type`).
        agent: String,
    },
    /// An ordered, colocated list of primitives.
    Group {
        /// Members in order.
        members: Vec<Resource>,
    },
    /// A clone (promotable when `promotable=true`, or when read from a legacy `master`).
    Clone {
        /// The cloned resource (primitive or group).
        child: Box<Resource>,
        /// Read from a legacy `<master>` element: promotable regardless of meta.
        legacy_promotable: bool,
    },
}

/// A configured resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Resource id.
    pub id: String,
    /// Primitive, group or clone.
    pub kind: ResourceKind,
    /// Meta attributes.
    pub meta: Vec<NvSet>,
    /// Instance attributes (agent parameters).
    pub params: Vec<NvSet>,
    /// Utilization requirements.
    pub utilization: Vec<NvSet>,
    /// Configured operations.
    pub ops: Vec<OpConfig>,
}

/// A configured operation (`op`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpConfig {
    /// Element id.
    pub id: String,
    /// Action name: monitor, start, stop, promote, demote, ...
    pub name: String,
    /// Interval in milliseconds (0 for one-off actions).
    pub interval_ms: u64,
    /// The role a recurring monitor applies to.
    pub role: Option<Role>,
    /// `on-fail`.
    pub on_fail: Option<String>,
    /// `enabled=false` disables a recurring op.
    pub enabled: bool,
    /// Timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Other attributes and meta attributes.
    pub meta: Vec<NvPair>,
    /// The operation's own `instance_attributes`: agent parameters passed to this operation
    /// only (they override the resource's parameters of the same name).
    pub params: Vec<NvPair>,
}

/// Resource roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not known yet.
    Unknown,
    /// Not running.
    Stopped,
    /// Running (non-promotable).
    Started,
    /// Running, not promoted.
    Unpromoted,
    /// Running, promoted.
    Promoted,
}

impl Role {
    /// Parses new and legacy spellings (`Master`/`Slave`).
    pub fn parse(text: &str) -> Option<Role> {
        match text.to_ascii_lowercase().as_str() {
            "stopped" => Some(Role::Stopped),
            "started" => Some(Role::Started),
            "unpromoted" | "slave" => Some(Role::Unpromoted),
            "promoted" | "master" => Some(Role::Promoted),
            "unknown" => Some(Role::Unknown),
            _ => None,
        }
    }

    /// The new spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "Unknown",
            Role::Stopped => "Stopped",
            Role::Started => "Started",
            Role::Unpromoted => "Unpromoted",
            Role::Promoted => "Promoted",
        }
    }
}

/// A rule (`rule` element).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// Element id.
    pub id: String,
    /// Score when the rule matches (location rules).
    pub score: Option<Score>,
    /// Node attribute whose value is the score.
    pub score_attribute: Option<String>,
    /// `and` (default) or `or`.
    pub boolean_or: bool,
    /// Role the rule applies to (location rules).
    pub role: Option<Role>,
    /// Conditions.
    pub exprs: Vec<Expr>,
}

/// A rule condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A node attribute comparison.
    Attr {
        /// Element id.
        id: String,
        /// Attribute name (`#uname`, `#id`, ... or a node attribute).
        attribute: String,
        /// lt, gt, lte, gte, eq, ne, defined, not_defined.
        operation: String,
        /// Comparison value.
        value: Option<String>,
        /// string, integer, number, version.
        value_type: Option<String>,
        /// literal, param, meta.
        value_source: Option<String>,
    },
    /// A nested rule.
    Rule(Box<Rule>),
    /// A resource expression (`rsc_expression`, in rsc_defaults and op_defaults rules):
    /// matches resources by agent standard, provider and type; unset parts match anything.
    Resource {
        /// Element id.
        id: String,
        /// Agent standard (`ocf`, `stonith`, ...).
        class: Option<String>,
        /// Agent provider.
        provider: Option<String>,
        /// Agent type.
        agent: Option<String>,
    },
    /// An operation expression (`op_expression`, in op_defaults rules): matches operations
    /// by name and, when given, interval.
    Op {
        /// Element id.
        id: String,
        /// Operation name.
        name: String,
        /// Interval as written (`10s`, `0`, ...).
        interval: Option<String>,
    },
    /// A date expression: kept, evaluated as not matching.
    Date {
        /// Element id.
        id: String,
    },
}

/// Order kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// Then must wait for and depends on first.
    Mandatory,
    /// Only an ordering when both happen in one transition.
    Optional,
    /// Never run both at the same time.
    Serialize,
}

/// A resource set inside a constraint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    /// Element id.
    pub id: String,
    /// Member resource ids in order.
    pub resources: Vec<String>,
    /// Whether members are ordered/colocated with each other (default true).
    pub sequential: bool,
    /// For orders: whether all members are needed (default true).
    pub require_all: bool,
    /// Role filter.
    pub role: Option<Role>,
    /// Action for orders.
    pub action: Option<String>,
    /// Score override for colocations.
    pub score: Option<Score>,
}

/// A constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// `rsc_location`.
    Location(Location),
    /// `rsc_colocation`.
    Colocation(Colocation),
    /// `rsc_order`.
    Order(Order),
}

/// A location constraint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// Constraint id.
    pub id: String,
    /// Resource id.
    pub rsc: Option<String>,
    /// Regular expression over resource ids.
    pub rsc_pattern: Option<String>,
    /// Role filter.
    pub role: Option<Role>,
    /// Node name (with `score`).
    pub node: Option<String>,
    /// Score for `node`.
    pub score: Option<Score>,
    /// Rules (instead of node/score).
    pub rules: Vec<Rule>,
    /// Resource sets.
    pub sets: Vec<ResourceSet>,
    /// `resource-discovery`: `always` (default), `never` or `exclusive`.
    pub resource_discovery: Option<String>,
}

/// A colocation constraint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Colocation {
    /// Constraint id.
    pub id: String,
    /// The dependent resource.
    pub rsc: Option<String>,
    /// The primary resource.
    pub with_rsc: Option<String>,
    /// Score.
    pub score: Score,
    /// Dependent role filter.
    pub rsc_role: Option<Role>,
    /// Primary role filter.
    pub with_rsc_role: Option<Role>,
    /// Node attribute that defines "same place" (default `#uname`).
    pub node_attribute: Option<String>,
    /// Whether the dependent may pull the primary (default true).
    pub influence: Option<bool>,
    /// Resource sets.
    pub sets: Vec<ResourceSet>,
}

/// An order constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Constraint id.
    pub id: String,
    /// First resource.
    pub first: Option<String>,
    /// Then resource.
    pub then: Option<String>,
    /// Action of first (default start).
    pub first_action: Option<String>,
    /// Action of then (default: first's action).
    pub then_action: Option<String>,
    /// Kind.
    pub kind: OrderKind,
    /// Whether the reverse ordering applies to the reverse actions.
    pub symmetrical: Option<bool>,
    /// For clones: how many first instances are needed.
    pub require_all: bool,
    /// Resource sets.
    pub sets: Vec<ResourceSet>,
}

/// The status of one node (`node_state`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    /// Node id.
    pub id: String,
    /// Node name.
    pub uname: Option<String>,
    /// Cluster-layer membership: `true`/`false` or a timestamp.
    pub in_ccm: Option<String>,
    /// Controller process: `online`/`offline` or a timestamp.
    pub crmd: Option<String>,
    /// Join state: `member`, `down`, `pending`, `banned`.
    pub join: Option<String>,
    /// Expected state: `member` or `down`.
    pub expected: Option<String>,
    /// Transient node attributes (fail counts, promotion scores, ...).
    pub transient: Vec<NvSet>,
    /// Transient node utilization (capacities set at run time, `utilization` inside
    /// `transient_attributes`); they override the configured ones.
    pub transient_utilization: Vec<NvSet>,
    /// Operation history per resource.
    pub resources: Vec<LrmResource>,
}

/// One resource's history on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LrmResource {
    /// Resource id (for clones possibly `rsc:N`).
    pub id: String,
    /// Agent class.
    pub class: Option<String>,
    /// Agent provider.
    pub provider: Option<String>,
    /// Agent type.
    pub agent: Option<String>,
    /// `shutdown-lock`: when (Unix seconds) the resource was stopped by a clean shutdown of
    /// this node with shutdown locks enabled; it stays locked to the node.
    pub shutdown_lock: Option<i64>,
    /// Operations recorded.
    pub ops: Vec<LrmOp>,
}

/// One recorded operation result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LrmOp {
    /// Element id.
    pub id: String,
    /// Action name.
    pub operation: String,
    /// Interval in milliseconds.
    pub interval_ms: u64,
    /// OCF return code.
    pub rc: i32,
    /// Execution status: 0 done, -1 pending, others errors.
    pub op_status: i32,
    /// Call id (-1 while pending).
    pub call_id: i64,
    /// The expected rc, from `transition-key`.
    pub target_rc: Option<i32>,
    /// `last-rc-change` (Unix seconds).
    pub last_rc_change: Option<i64>,
    /// `exit-reason`.
    pub exit_reason: Option<String>,
    /// Node the op ran on, when recorded.
    pub on_node: Option<String>,
    /// Other attributes, kept for export.
    pub extra: Vec<(String, String)>,
}

impl LrmOp {
    /// The value of a recorded attribute kept in [`LrmOp::extra`] (`op-digest`,
    /// `transition-key`, ...).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
