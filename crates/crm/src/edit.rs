//! Administrative edits of the configuration, as pure functions over
//! [`Configuration`](crate::cib::Configuration): create, update and delete resources,
//! enable/disable them, move/ban/clear them (Pacemaker's `cli-prefer-`/`cli-ban-` location
//! constraints), node attributes (standby, maintenance), location/order/colocation
//! constraints (also with resource sets), and cluster properties.
//!
//! Every function checks its input against the configuration and either changes it and
//! returns notes (what else happened, in words: "removed constraint X, it referenced R") or
//! leaves it untouched and returns an [`EditError`] naming the field and the fix. The ids of
//! new elements follow Pacemaker's and pcs's naming (`R-instance_attributes-NAME`,
//! `R-monitor-interval-10s`, `cli-ban-R-on-N`, `location-R-N-INFINITY`, ...) and are made
//! unique in the whole configuration. The result is meant to pass [`crate::cib::validate`];
//! callers still run it, since a configuration read from elsewhere may already be invalid.

use std::collections::BTreeSet;

use crate::cib::xml::parse_config_interval_ms;
use crate::cib::{
    Colocation, Configuration, Constraint, Expr, Location, NodeConfig, NvPair, NvSet, OpConfig, Order, OrderKind,
    Resource, ResourceKind, ResourceSet, Role, Rule,
};
use crate::scheduler::{ClusterView, RscView};
use crate::score::Score;

/// Why an edit was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// A value is malformed or not allowed here.
    #[error("field {field}: {problem}")]
    Invalid {
        /// The field (argument) at fault.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The object named does not exist.
    #[error("no {what} named '{id}'{hint}")]
    NotFound {
        /// `resource`, `node`, `constraint`, `property`, ...
        what: &'static str,
        /// The name given.
        id: String,
        /// What does exist, when helpful (starts with `; `).
        hint: String,
    },
    /// The object to create exists already.
    #[error("{what} '{id}' already exists; {fix}")]
    Exists {
        /// `resource`, `constraint`, `id`, ...
        what: &'static str,
        /// The id.
        id: String,
        /// How to proceed.
        fix: String,
    },
}

/// Notes about what an edit did beyond the obvious (removed constraints, created groups).
pub type Notes = Vec<String>;

fn invalid(field: &str, problem: impl Into<String>) -> EditError {
    EditError::Invalid { field: field.to_string(), problem: problem.into() }
}

// ---------------------------------------------------------------------------------------------
// Ids and lookups

/// Whether `id` is a valid XML id as Pacemaker requires: a letter or `_` first, then letters,
/// digits, `_`, `-` or `.`.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_id(field: &str, id: &str) -> Result<(), EditError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("'{id}' is not a valid id: start with a letter or '_', then use letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// Turns arbitrary text into id characters (`:` and spaces become `_`).
fn sanitize(text: &str) -> String {
    let s: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') { s } else { format!("_{s}") }
}

fn rule_ids(r: &Rule, out: &mut BTreeSet<String>) {
    out.insert(r.id.clone());
    for e in &r.exprs {
        match e {
            Expr::Attr { id, .. } | Expr::Resource { id, .. } | Expr::Op { id, .. } | Expr::Date { id } => {
                out.insert(id.clone());
            }
            Expr::Rule(r) => rule_ids(r, out),
        }
    }
}

fn set_ids(sets: &[NvSet], out: &mut BTreeSet<String>) {
    for s in sets {
        out.insert(s.id.clone());
        if let Some(r) = &s.rule {
            rule_ids(r, out);
        }
        out.extend(s.pairs.iter().map(|p| p.id.clone()));
    }
}

fn resource_all_ids(r: &Resource, out: &mut BTreeSet<String>) {
    out.insert(r.id.clone());
    set_ids(&r.meta, out);
    set_ids(&r.params, out);
    set_ids(&r.utilization, out);
    out.extend(r.ops.iter().map(|o| o.id.clone()));
    match &r.kind {
        ResourceKind::Primitive { .. } => {}
        ResourceKind::Group { members } => members.iter().for_each(|m| resource_all_ids(m, out)),
        ResourceKind::Clone { child, .. } => resource_all_ids(child, out),
    }
}

/// Every element id used in the configuration.
fn all_ids(cfg: &Configuration) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    set_ids(&cfg.properties, &mut out);
    set_ids(&cfg.rsc_defaults, &mut out);
    set_ids(&cfg.op_defaults, &mut out);
    for n in &cfg.nodes {
        out.insert(n.id.clone());
        set_ids(&n.attributes, &mut out);
        set_ids(&n.utilization, &mut out);
    }
    for r in &cfg.resources {
        resource_all_ids(r, &mut out);
    }
    for c in &cfg.constraints {
        let (id, sets, rules): (&str, &[ResourceSet], &[Rule]) = match c {
            Constraint::Location(l) => (&l.id, &l.sets, &l.rules),
            Constraint::Colocation(c) => (&c.id, &c.sets, &[]),
            Constraint::Order(o) => (&o.id, &o.sets, &[]),
        };
        out.insert(id.to_string());
        out.extend(sets.iter().map(|s| s.id.clone()));
        rules.iter().for_each(|r| rule_ids(r, &mut out));
    }
    out.remove("");
    out
}

/// `base` (sanitized) if unused, else `base-1`, `base-2`, ...; the result is added to `ids`.
fn fresh_id(ids: &mut BTreeSet<String>, base: &str) -> String {
    let base = sanitize(base);
    let mut id = base.clone();
    let mut n = 1;
    while ids.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    ids.insert(id.clone());
    id
}

fn find<'a>(rs: &'a [Resource], id: &str) -> Option<&'a Resource> {
    for r in rs {
        if r.id == id {
            return Some(r);
        }
        let found = match &r.kind {
            ResourceKind::Primitive { .. } => None,
            ResourceKind::Group { members } => find(members, id),
            ResourceKind::Clone { child, .. } => find(std::slice::from_ref(child.as_ref()), id),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn find_mut<'a>(rs: &'a mut [Resource], id: &str) -> Option<&'a mut Resource> {
    for r in rs {
        if r.id == id {
            return Some(r);
        }
        let found = match &mut r.kind {
            ResourceKind::Primitive { .. } => None,
            ResourceKind::Group { members } => find_mut(members, id),
            ResourceKind::Clone { child, .. } => find_mut(std::slice::from_mut(child.as_mut()), id),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn all_resource_ids(rs: &[Resource], out: &mut Vec<String>) {
    for r in rs {
        out.push(r.id.clone());
        match &r.kind {
            ResourceKind::Primitive { .. } => {}
            ResourceKind::Group { members } => all_resource_ids(members, out),
            ResourceKind::Clone { child, .. } => all_resource_ids(std::slice::from_ref(child.as_ref()), out),
        }
    }
}

fn known_list(mut names: Vec<String>) -> String {
    if names.is_empty() {
        return "; none is configured".into();
    }
    names.sort();
    names.dedup();
    let more = names.len().saturating_sub(12);
    names.truncate(12);
    let mut s = format!("; known: {}", names.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

fn no_resource(cfg: &Configuration, id: &str) -> EditError {
    let mut ids = Vec::new();
    all_resource_ids(&cfg.resources, &mut ids);
    EditError::NotFound { what: "resource", id: id.to_string(), hint: known_list(ids) }
}

fn resource<'a>(cfg: &'a Configuration, id: &str) -> Result<&'a Resource, EditError> {
    find(&cfg.resources, id).ok_or_else(|| no_resource(cfg, id))
}

/// The node named `name` (by name, or by id).
fn node_index(cfg: &Configuration, name: &str) -> Result<usize, EditError> {
    cfg.nodes.iter().position(|n| n.uname == name).or_else(|| cfg.nodes.iter().position(|n| n.id == name)).ok_or_else(
        || EditError::NotFound {
            what: "node",
            id: name.to_string(),
            hint: known_list(cfg.nodes.iter().map(|n| n.uname.clone()).collect()),
        },
    )
}

/// Checks that `node` is a configured node (any name is accepted when no node is configured
/// yet, as in a fresh offline file); returns its name.
fn check_node(cfg: &Configuration, node: &str) -> Result<String, EditError> {
    if node.is_empty() {
        return Err(invalid("node", "a node name is required"));
    }
    if cfg.nodes.is_empty() {
        return Ok(node.to_string());
    }
    node_index(cfg, node).map(|i| cfg.nodes[i].uname.clone())
}

/// Parses a constraint score: an integer, `INFINITY`, `+INFINITY` or `-INFINITY`.
pub fn parse_score(field: &str, text: &str) -> Result<Score, EditError> {
    let t = text.trim();
    let ok =
        matches!(t.to_ascii_uppercase().as_str(), "INFINITY" | "+INFINITY" | "-INFINITY" | "INF" | "+INF" | "-INF")
            || t.strip_prefix(['+', '-']).unwrap_or(t).chars().all(|c| c.is_ascii_digit()) && !t.is_empty();
    match Score::parse(t) {
        Some(s) if ok => Ok(s),
        _ => Err(invalid(field, format!("'{text}' is not a score: use an integer, INFINITY or -INFINITY"))),
    }
}

fn parse_role(field: &str, text: &str) -> Result<Role, EditError> {
    match Role::parse(text) {
        Some(r @ (Role::Started | Role::Stopped | Role::Promoted | Role::Unpromoted)) => Ok(r),
        _ => Err(invalid(field, format!("'{text}' is not a role: use Started, Stopped, Promoted or Unpromoted"))),
    }
}

fn parse_bool(field: &str, text: &str) -> Result<bool, EditError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" => Ok(true),
        "false" | "no" | "off" | "0" | "n" => Ok(false),
        _ => Err(invalid(field, format!("'{text}' is not a boolean: use true or false"))),
    }
}

fn parse_interval(field: &str, text: &str) -> Result<u64, EditError> {
    parse_config_interval_ms(text)
        .ok_or_else(|| invalid(field, format!("'{text}' is not a duration: use 30s, 5min, 1h or 500ms")))
}

// ---------------------------------------------------------------------------------------------
// Name/value sets

/// Sets (or, with an empty value, removes) `pairs` in `sets`: a pair is updated where it is
/// (in a set without a rule), a new one goes to the first set without a rule (created with the
/// id `new_set_id` when there is none). Names are stored in their current spelling; every
/// spelling of a name counts as that name. Sets left empty are removed.
fn apply_pairs(
    sets: &mut Vec<NvSet>,
    ids: &mut BTreeSet<String>,
    new_set_id: &str,
    pairs: &[(String, String)],
) -> Result<(), EditError> {
    for (name, value) in pairs {
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '=') {
            return Err(invalid(name, format!("'{name}={value}': a name must be non-empty, without spaces")));
        }
        let modern = crate::cib::xml_modern(name);
        let same = |p: &NvPair| crate::cib::xml_modern(&p.name) == modern;
        if value.is_empty() {
            for s in sets.iter_mut() {
                s.pairs.retain(|p| !same(p));
            }
            continue;
        }
        if let Some(p) = sets.iter_mut().filter(|s| s.rule.is_none()).flat_map(|s| s.pairs.iter_mut()).find(|p| same(p))
        {
            p.name = modern;
            p.value = Some(value.clone());
            continue;
        }
        let at = match sets.iter().position(|s| s.rule.is_none()) {
            Some(i) => i,
            None => {
                let id = fresh_id(ids, new_set_id);
                sets.push(NvSet { id, ..NvSet::default() });
                sets.len() - 1
            }
        };
        let set = &mut sets[at];
        let id = fresh_id(ids, &format!("{}-{modern}", set.id));
        set.pairs.push(NvPair { id, name: modern, value: Some(value.clone()) });
    }
    sets.retain(|s| !s.pairs.is_empty() || s.rule.is_some());
    Ok(())
}

fn get_pair<'a>(sets: &'a [NvSet], name: &str) -> Option<&'a str> {
    let modern = crate::cib::xml_modern(name);
    sets.iter().flat_map(|s| &s.pairs).find(|p| crate::cib::xml_modern(&p.name) == modern)?.value.as_deref()
}

// ---------------------------------------------------------------------------------------------
// Resources

/// An agent name split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// `ocf`, `systemd`, `lsb`, `service`, `stonith`, `native`.
    pub class: String,
    /// The provider (`ocf` and `native` need one).
    pub provider: Option<String>,
    /// The agent type.
    pub agent: String,
}

/// Parses `class:provider:type` (or `class:type` for classes without providers).
pub fn parse_agent(text: &str) -> Result<AgentSpec, EditError> {
    let parts: Vec<&str> = text.split(':').collect();
    let bad = |p: &str| invalid("agent", format!("'{text}': {p}"));
    if parts.iter().any(|p| p.is_empty() || p.contains(['/', ' '])) {
        return Err(bad("empty part, space or '/' in the name; use class:provider:type such as ocf:heartbeat:IPaddr2"));
    }
    match parts.as_slice() {
        [class @ ("ocf" | "native"), provider, agent] => {
            Ok(AgentSpec { class: (*class).into(), provider: Some((*provider).into()), agent: (*agent).into() })
        }
        [class @ ("systemd" | "lsb" | "service" | "stonith" | "upstart" | "nagios"), agent] => {
            Ok(AgentSpec { class: (*class).into(), provider: None, agent: (*agent).into() })
        }
        [class, _, _] => Err(bad(&format!("class '{class}' has no providers; use {class}:TYPE"))),
        [class @ ("ocf" | "native"), _] => {
            Err(bad(&format!("class '{class}' needs a provider: {class}:PROVIDER:TYPE")))
        }
        [_, _] => Err(bad("unknown class: use ocf, systemd, lsb, service or stonith")),
        _ => Err(bad("use class:provider:type, such as ocf:heartbeat:IPaddr2, or systemd:UNIT")),
    }
}

/// One `op ACTION k=v...` group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpSpec {
    /// The action: monitor, start, stop, promote, demote, ...
    pub action: String,
    /// Its attributes: interval, timeout, role, on-fail, enabled, start-delay, ...; an empty
    /// value unsets (on update).
    pub attrs: Vec<(String, String)>,
}

/// Where a new primitive goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Placement {
    /// A top-level resource.
    #[default]
    TopLevel,
    /// A member of group `group` (created when missing).
    Group {
        /// The group id.
        group: String,
        /// Where in the group.
        position: Position,
    },
    /// Wrapped in a clone.
    Clone {
        /// The clone id (default `R-clone`).
        id: Option<String>,
        /// The clone's meta attributes (`clone-max`, `promoted-max`, ...).
        meta: Vec<(String, String)>,
        /// A promotable clone.
        promotable: bool,
    },
}

/// A position inside a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Position {
    /// Last.
    #[default]
    End,
    /// Just before this member.
    Before(String),
    /// Just after this member.
    After(String),
}

/// A primitive to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimitiveSpec {
    /// Resource id.
    pub id: String,
    /// The agent.
    pub agent: AgentSpec,
    /// Instance attributes (agent parameters).
    pub params: Vec<(String, String)>,
    /// Operations.
    pub ops: Vec<OpSpec>,
    /// Meta attributes.
    pub meta: Vec<(String, String)>,
    /// Utilization.
    pub utilization: Vec<(String, String)>,
    /// Where it goes.
    pub placement: Placement,
    /// Created stopped (`target-role=Stopped`).
    pub disabled: bool,
}

const ON_FAIL: &[&str] = &["ignore", "block", "demote", "stop", "restart", "standby", "fence", "stonith"];
const OP_META: &[&str] =
    &["start-delay", "interval-origin", "record-pending", "description", "requires", "OCF_CHECK_LEVEL"];

fn check_action(action: &str) -> Result<(), EditError> {
    if !action.is_empty() && action.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(invalid("op", format!("'{action}' is not an action name: use monitor, start, stop, promote, demote, ...")))
    }
}

/// Applies `attrs` to `op` (an empty value unsets).
fn apply_op_attrs(op: &mut OpConfig, attrs: &[(String, String)]) -> Result<(), EditError> {
    for (k, v) in attrs {
        let field = format!("op {} {k}", op.name);
        let unset = v.is_empty();
        match k.as_str() {
            "interval" => op.interval_ms = if unset { 0 } else { parse_interval(&field, v)? },
            "timeout" => op.timeout_ms = if unset { None } else { Some(parse_interval(&field, v)?) },
            "role" => op.role = if unset { None } else { Some(parse_role(&field, v)?) },
            "on-fail" => {
                if !unset && !ON_FAIL.contains(&v.as_str()) {
                    return Err(invalid(&field, format!("'{v}' is not one of {}", ON_FAIL.join(", "))));
                }
                op.on_fail = (!unset).then(|| v.clone());
            }
            "enabled" => op.enabled = unset || parse_bool(&field, v)?,
            "id" | "name" => return Err(invalid(&field, "set by the cluster; remove it")),
            _ if OP_META.contains(&k.as_str()) => {
                op.meta.retain(|p| &p.name != k);
                if !unset {
                    op.meta.push(NvPair { id: String::new(), name: k.clone(), value: Some(v.clone()) });
                }
            }
            _ => {
                return Err(invalid(
                    &field,
                    format!(
                        "unknown operation attribute; use interval, timeout, role, on-fail, enabled, {}",
                        OP_META.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn interval_text(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Adds or updates operations of `r`: an op is matched by action and, when `interval=` is
/// given, interval; a new one gets the id `R-ACTION-interval-I`.
/// With `create`, every spec is a new op (two alike are refused).
fn apply_ops(
    r: &mut Resource,
    ids: &mut BTreeSet<String>,
    ops: &[OpSpec],
    create: bool,
    notes: &mut Notes,
) -> Result<(), EditError> {
    for spec in ops {
        check_action(&spec.action)?;
        let interval = match spec.attrs.iter().find(|(k, _)| k == "interval") {
            Some((_, v)) if !v.is_empty() => Some(parse_interval(&format!("op {} interval", spec.action), v)?),
            _ => None,
        };
        let role = match spec.attrs.iter().find(|(k, _)| k == "role") {
            Some((_, v)) if !v.is_empty() => Some(parse_role(&format!("op {} role", spec.action), v)?),
            _ => None,
        };
        let matching: Vec<usize> = r
            .ops
            .iter()
            .enumerate()
            .filter(|_| !create)
            .filter(|(_, o)| o.name == spec.action && interval.is_none_or(|i| o.interval_ms == i))
            .filter(|(_, o)| role.is_none() || o.role == role || interval.is_none())
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [one] if interval.is_some() || r.ops.iter().filter(|o| o.name == spec.action).count() == 1 => {
                let mut op = r.ops[*one].clone();
                apply_op_attrs(&mut op, &spec.attrs)?;
                r.ops[*one] = op;
            }
            [_, _, ..] if interval.is_none() => {
                return Err(invalid(
                    &format!("op {}", spec.action),
                    format!("'{}' has several {} operations: add interval= to say which", r.id, spec.action),
                ));
            }
            _ => {
                let mut op = OpConfig { name: spec.action.clone(), enabled: true, ..OpConfig::default() };
                apply_op_attrs(&mut op, &spec.attrs)?;
                if interval.is_none() && spec.action == "monitor" {
                    op.interval_ms = 60_000;
                    notes.push(format!("op monitor of '{}' has no interval: using 60s", r.id));
                }
                if r.ops.iter().any(|o| o.name == op.name && o.interval_ms == op.interval_ms && o.role == op.role) {
                    return Err(EditError::Exists {
                        what: "operation",
                        id: format!("{} {} interval={}", r.id, op.name, interval_text(op.interval_ms)),
                        fix: "give a different interval or update that one".into(),
                    });
                }
                op.id = fresh_id(ids, &format!("{}-{}-interval-{}", r.id, op.name, interval_text(op.interval_ms)));
                r.ops.push(op);
            }
        }
    }
    // Two recurring monitors of one role must differ in interval (Pacemaker refuses it).
    let mut seen = BTreeSet::new();
    for o in &r.ops {
        if !seen.insert((o.name.clone(), o.interval_ms, o.role)) {
            return Err(EditError::Exists {
                what: "operation",
                id: format!("{} {} interval={}", r.id, o.name, interval_text(o.interval_ms)),
                fix: "two operations of one action need different intervals".into(),
            });
        }
    }
    Ok(())
}

/// Creates a primitive as `spec` says, with its instance attributes, ops and meta attributes,
/// at the top level, in a group (created when missing) or in a new clone.
pub fn create_primitive(cfg: &mut Configuration, spec: &PrimitiveSpec) -> Result<Notes, EditError> {
    check_id("id", &spec.id)?;
    let mut ids = all_ids(cfg);
    if find(&cfg.resources, &spec.id).is_some() {
        return Err(EditError::Exists {
            what: "resource",
            id: spec.id.clone(),
            fix: "choose another id, or change it with `resource update`".into(),
        });
    }
    if ids.contains(&spec.id) {
        return Err(EditError::Exists {
            what: "id",
            id: spec.id.clone(),
            fix: "another element of the configuration uses it; choose another id".into(),
        });
    }
    ids.insert(spec.id.clone());
    let mut notes = Notes::new();
    let AgentSpec { class, provider, agent } = spec.agent.clone();
    let mut r = Resource {
        id: spec.id.clone(),
        kind: ResourceKind::Primitive { class, provider, agent },
        meta: Vec::new(),
        params: Vec::new(),
        utilization: Vec::new(),
        ops: Vec::new(),
    };
    let set_only: Vec<(String, String)> = spec.params.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    apply_pairs(&mut r.params, &mut ids, &format!("{}-instance_attributes", spec.id), &set_only)?;
    let mut meta: Vec<(String, String)> = spec.meta.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    if spec.disabled {
        meta.push(("target-role".into(), "Stopped".into()));
    }
    apply_pairs(&mut r.meta, &mut ids, &format!("{}-meta_attributes", spec.id), &meta)?;
    apply_pairs(&mut r.utilization, &mut ids, &format!("{}-utilization", spec.id), &spec.utilization)?;
    apply_ops(&mut r, &mut ids, &spec.ops, true, &mut notes)?;
    match &spec.placement {
        Placement::TopLevel => cfg.resources.push(r),
        Placement::Group { group, position } => {
            check_id("group", group)?;
            let existing = cfg.resources.iter().position(|g| &g.id == group);
            let idx = match existing {
                Some(i) => i,
                None => {
                    if find(&cfg.resources, group).is_some() || ids.contains(group) {
                        return Err(invalid(
                            "group",
                            format!("'{group}' is the id of something else than a top-level group; choose another"),
                        ));
                    }
                    if *position != Position::End {
                        return Err(invalid(
                            "group",
                            format!("group '{group}' does not exist yet, so --before/--after have nothing to refer to"),
                        ));
                    }
                    notes.push(format!("created group '{group}'"));
                    cfg.resources.push(Resource {
                        id: group.clone(),
                        kind: ResourceKind::Group { members: Vec::new() },
                        meta: Vec::new(),
                        params: Vec::new(),
                        utilization: Vec::new(),
                        ops: Vec::new(),
                    });
                    cfg.resources.len() - 1
                }
            };
            let ResourceKind::Group { members } = &mut cfg.resources[idx].kind else {
                return Err(invalid("group", format!("'{group}' is not a group; choose a group id")));
            };
            let at = match position {
                Position::End => members.len(),
                Position::Before(m) | Position::After(m) => {
                    let i = members.iter().position(|x| &x.id == m).ok_or_else(|| EditError::NotFound {
                        what: "group member",
                        id: m.clone(),
                        hint: known_list(members.iter().map(|x| x.id.clone()).collect()),
                    })?;
                    if matches!(position, Position::After(_)) { i + 1 } else { i }
                }
            };
            members.insert(at, r);
        }
        Placement::Clone { id, meta, promotable } => {
            let cid = match id {
                Some(c) => {
                    check_id("clone", c)?;
                    if ids.contains(c) {
                        return Err(EditError::Exists {
                            what: "id",
                            id: c.clone(),
                            fix: "choose another clone id".into(),
                        });
                    }
                    c.clone()
                }
                None => fresh_id(&mut ids, &format!("{}-clone", spec.id)),
            };
            ids.insert(cid.clone());
            let mut clone = Resource {
                id: cid.clone(),
                kind: ResourceKind::Clone { child: Box::new(r), legacy_promotable: false },
                meta: Vec::new(),
                params: Vec::new(),
                utilization: Vec::new(),
                ops: Vec::new(),
            };
            let mut m: Vec<(String, String)> = meta.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
            if *promotable {
                m.push(("promotable".into(), "true".into()));
            }
            apply_pairs(&mut clone.meta, &mut ids, &format!("{cid}-meta_attributes"), &m)?;
            cfg.resources.push(clone);
        }
    }
    Ok(notes)
}

/// Changes a resource's instance attributes, meta attributes and operations (an empty value
/// unsets a key). Instance attributes and ops exist only on primitives.
pub fn update_resource(
    cfg: &mut Configuration,
    id: &str,
    params: &[(String, String)],
    meta: &[(String, String)],
    ops: &[OpSpec],
) -> Result<Notes, EditError> {
    let mut ids = all_ids(cfg);
    let mut notes = Notes::new();
    let mut r = resource(cfg, id)?.clone();
    let primitive = matches!(r.kind, ResourceKind::Primitive { .. });
    if !primitive && (!params.is_empty() || !ops.is_empty()) {
        return Err(invalid(
            "resource",
            format!("'{id}' is a group or clone: parameters and operations belong to its primitives; update those"),
        ));
    }
    if params.is_empty() && meta.is_empty() && ops.is_empty() {
        return Err(invalid("resource", "nothing to change: give key=value, op ACTION key=value or meta key=value"));
    }
    apply_pairs(&mut r.params, &mut ids, &format!("{id}-instance_attributes"), params)?;
    apply_pairs(&mut r.meta, &mut ids, &format!("{id}-meta_attributes"), meta)?;
    apply_ops(&mut r, &mut ids, ops, false, &mut notes)?;
    if let Some(slot) = find_mut(&mut cfg.resources, id) {
        *slot = r;
    }
    Ok(notes)
}

fn references(c: &Constraint, gone: &BTreeSet<String>) -> bool {
    let hit = |r: &Option<String>| r.as_ref().is_some_and(|r| gone.contains(r));
    match c {
        Constraint::Location(l) => hit(&l.rsc),
        Constraint::Colocation(c) => hit(&c.rsc) || hit(&c.with_rsc),
        Constraint::Order(o) => hit(&o.first) || hit(&o.then),
    }
}

/// Removes `gone` resources from constraints: a constraint naming one directly is removed; in
/// resource sets the reference is removed, then empty sets, then constraints left without sets.
fn drop_references(cfg: &mut Configuration, gone: &BTreeSet<String>, why: &str, notes: &mut Notes) {
    let mut kept = Vec::new();
    for mut c in std::mem::take(&mut cfg.constraints) {
        let id = constraint_id(&c).to_string();
        if references(&c, gone) {
            notes.push(format!("removed constraint '{id}' ({why})"));
            continue;
        }
        let sets = match &mut c {
            Constraint::Location(l) => &mut l.sets,
            Constraint::Colocation(c) => &mut c.sets,
            Constraint::Order(o) => &mut o.sets,
        };
        if sets.is_empty() {
            kept.push(c);
            continue;
        }
        let before: usize = sets.iter().map(|s| s.resources.len()).sum();
        for s in sets.iter_mut() {
            s.resources.retain(|r| !gone.contains(r));
        }
        sets.retain(|s| !s.resources.is_empty());
        let after: usize = sets.iter().map(|s| s.resources.len()).sum();
        if after == 0 {
            notes.push(format!("removed constraint '{id}' ({why})"));
            continue;
        }
        if after != before {
            notes.push(format!("removed {} from the resource sets of constraint '{id}'", join_set(gone)));
        }
        kept.push(c);
    }
    cfg.constraints = kept;
}

fn join_set(s: &BTreeSet<String>) -> String {
    s.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", ")
}

/// The id of a constraint.
pub fn constraint_id(c: &Constraint) -> &str {
    match c {
        Constraint::Location(l) => &l.id,
        Constraint::Colocation(c) => &c.id,
        Constraint::Order(o) => &o.id,
    }
}

/// Deletes a resource, and with it (as pcs does) every constraint that names it; it is also
/// taken out of resource sets. Deleting a clone's child deletes the clone; deleting a group's
/// last member deletes the group.
pub fn delete_resource(cfg: &mut Configuration, id: &str) -> Result<Notes, EditError> {
    resource(cfg, id)?;
    let mut notes = Notes::new();
    let mut removed: Option<Resource> = None;
    for i in 0..cfg.resources.len() {
        let top = &mut cfg.resources[i];
        if top.id == id {
            removed = Some(cfg.resources.remove(i));
            break;
        }
        match &mut top.kind {
            ResourceKind::Clone { child, .. } if find(std::slice::from_ref(child.as_ref()), id).is_some() => {
                notes.push(format!("removed clone '{}' (its resource '{id}' is deleted)", top.id));
                removed = Some(cfg.resources.remove(i));
                break;
            }
            ResourceKind::Group { members } => {
                if let Some(m) = members.iter().position(|m| m.id == id) {
                    removed = Some(members.remove(m));
                    if members.is_empty() {
                        notes.push(format!("removed group '{}' (it has no members left)", top.id));
                        let group = cfg.resources.remove(i);
                        let mut gone = BTreeSet::new();
                        gone.insert(group.id);
                        drop_references(cfg, &gone, &format!("it referenced the group of '{id}'"), &mut notes);
                    }
                    break;
                }
            }
            _ => {}
        }
    }
    let removed = removed.ok_or_else(|| no_resource(cfg, id))?;
    let mut gone = Vec::new();
    all_resource_ids(std::slice::from_ref(&removed), &mut gone);
    let gone: BTreeSet<String> = gone.into_iter().collect();
    drop_references(cfg, &gone, &format!("it referenced {}", join_set(&gone)), &mut notes);
    Ok(notes)
}

/// Sets a resource's `target-role` (`disable`: Stopped), or removes it (`enable`: `None`,
/// the resource runs in its default role). Notes when a parent keeps it stopped anyway.
pub fn set_target_role(cfg: &mut Configuration, id: &str, role: Option<Role>) -> Result<Notes, EditError> {
    let mut ids = all_ids(cfg);
    let mut notes = Notes::new();
    let value = role.map_or(String::new(), |r| r.as_str().to_string());
    if find(&cfg.resources, id).is_none() {
        return Err(no_resource(cfg, id));
    }
    let Some(r) = find_mut(&mut cfg.resources, id) else { return Err(no_resource(cfg, id)) };
    apply_pairs(&mut r.meta, &mut ids, &format!("{id}-meta_attributes"), &[("target-role".into(), value)])?;
    if role.is_none() {
        // A clone's or group's own target-role still applies to the whole.
        for top in &cfg.resources {
            if top.id != id
                && find(std::slice::from_ref(top), id).is_some()
                && get_pair(&top.meta, "target-role").is_some_and(|v| v.eq_ignore_ascii_case("stopped"))
            {
                notes.push(format!("'{}' (which contains '{id}') is still disabled; enable it too", top.id));
            }
        }
    }
    Ok(notes)
}

/// Unmanages (`is-managed=false`: the cluster leaves it alone) or manages again (the meta
/// attribute is removed) a resource. With `monitors`, the recurring monitors of its
/// primitives are disabled too (on unmanage) or enabled again (on manage).
pub fn set_managed(cfg: &mut Configuration, id: &str, managed: bool, monitors: bool) -> Result<Notes, EditError> {
    let mut ids = all_ids(cfg);
    let Some(r) = find_mut(&mut cfg.resources, id) else { return Err(no_resource(cfg, id)) };
    let value = if managed { String::new() } else { "false".to_string() };
    apply_pairs(&mut r.meta, &mut ids, &format!("{id}-meta_attributes"), &[("is-managed".into(), value)])?;
    let mut notes = Notes::new();
    if monitors {
        fn each(r: &mut Resource, enabled: bool, notes: &mut Notes) {
            for o in r.ops.iter_mut().filter(|o| o.name == "monitor" && o.interval_ms > 0) {
                if o.enabled != enabled {
                    o.enabled = enabled;
                    notes.push(format!("{} {}", if enabled { "enabled" } else { "disabled" }, o.id));
                }
            }
            match &mut r.kind {
                ResourceKind::Primitive { .. } => {}
                ResourceKind::Group { members } => members.iter_mut().for_each(|m| each(m, enabled, notes)),
                ResourceKind::Clone { child, .. } => each(child, enabled, notes),
            }
        }
        each(r, managed, &mut notes);
    }
    Ok(notes)
}

/// Adds one operation to a primitive (refused when one with the same action, interval and
/// role exists: change that one with [`update_resource`]).
pub fn add_op(cfg: &mut Configuration, rsc: &str, op: &OpSpec) -> Result<Notes, EditError> {
    let mut ids = all_ids(cfg);
    let mut r = resource(cfg, rsc)?.clone();
    if !matches!(r.kind, ResourceKind::Primitive { .. }) {
        return Err(invalid("resource", format!("'{rsc}' is a group or clone: operations belong to its primitives")));
    }
    let mut notes = Notes::new();
    apply_ops(&mut r, &mut ids, std::slice::from_ref(op), true, &mut notes)?;
    notes.push(format!("added {}", r.ops.last().map_or("", |o| o.id.as_str())));
    if let Some(slot) = find_mut(&mut cfg.resources, rsc) {
        *slot = r;
    }
    Ok(notes)
}

/// Removes operations of a primitive: by op id, or by action (all of them, or the one with
/// `interval`).
pub fn remove_op(cfg: &mut Configuration, rsc: &str, which: &str, interval: Option<&str>) -> Result<Notes, EditError> {
    let ms = interval.map(|i| parse_interval("interval", i)).transpose()?;
    let Some(r) = find_mut(&mut cfg.resources, rsc) else { return Err(no_resource(cfg, rsc)) };
    let before: Vec<String> = r.ops.iter().map(|o| o.id.clone()).collect();
    r.ops.retain(|o| !(o.id == which || o.name == which && ms.is_none_or(|m| o.interval_ms == m)));
    let removed: Vec<String> = before.into_iter().filter(|id| !r.ops.iter().any(|o| &o.id == id)).collect();
    if removed.is_empty() {
        let known =
            r.ops.iter().map(|o| format!("{} ({} every {})", o.id, o.name, interval_text(o.interval_ms))).collect();
        return Err(EditError::NotFound { what: "operation", id: which.into(), hint: known_list(known) });
    }
    Ok(removed.into_iter().map(|id| format!("removed operation {id}")).collect())
}

/// Takes `id` out of wherever it is (top level or a group); returns it. A group left empty is
/// removed with the constraints that name it.
fn detach(cfg: &mut Configuration, id: &str, notes: &mut Notes) -> Result<Resource, EditError> {
    if let Some(i) = cfg.resources.iter().position(|r| r.id == id) {
        return Ok(cfg.resources.remove(i));
    }
    for i in 0..cfg.resources.len() {
        if let ResourceKind::Group { members } = &mut cfg.resources[i].kind
            && let Some(m) = members.iter().position(|m| m.id == id)
        {
            let r = members.remove(m);
            if members.is_empty() {
                let group = cfg.resources.remove(i);
                notes.push(format!("removed group '{}' (it has no members left)", group.id));
                let gone: BTreeSet<String> = [group.id].into_iter().collect();
                drop_references(cfg, &gone, "it referenced the emptied group", notes);
            }
            return Ok(r);
        }
    }
    Err(match find(&cfg.resources, id) {
        Some(_) => invalid("resource", format!("'{id}' is inside a clone; unclone it first")),
        None => no_resource(cfg, id),
    })
}

/// Puts primitives into group `group` (created when missing) at `position`, taking them from
/// the top level or from another group.
pub fn group_add(
    cfg: &mut Configuration,
    group: &str,
    members: &[String],
    position: &Position,
) -> Result<Notes, EditError> {
    check_id("group", group)?;
    if members.is_empty() {
        return Err(invalid("resources", "name the resources to put into the group"));
    }
    let mut notes = Notes::new();
    for m in members {
        let r = resource(cfg, m)?;
        if !matches!(r.kind, ResourceKind::Primitive { .. }) {
            return Err(invalid("resources", format!("'{m}' is not a primitive: a group holds primitives only")));
        }
        if m == group {
            return Err(invalid("group", "a resource cannot be put into a group of its own name"));
        }
    }
    if !cfg.resources.iter().any(|r| r.id == group) {
        if find(&cfg.resources, group).is_some() || all_ids(cfg).contains(group) {
            return Err(invalid("group", format!("'{group}' is the id of something else than a group")));
        }
        notes.push(format!("created group '{group}'"));
        cfg.resources.push(Resource {
            id: group.into(),
            kind: ResourceKind::Group { members: Vec::new() },
            meta: Vec::new(),
            params: Vec::new(),
            utilization: Vec::new(),
            ops: Vec::new(),
        });
    }
    let mut moved = Vec::new();
    for m in members {
        moved.push(detach(cfg, m, &mut notes)?);
    }
    let Some(g) = cfg.resources.iter_mut().find(|r| r.id == group) else {
        return Err(invalid("group", format!("group '{group}' lost its last member to itself; name other resources")));
    };
    let ResourceKind::Group { members: list } = &mut g.kind else {
        return Err(invalid("group", format!("'{group}' is not a group")));
    };
    let at = match position {
        Position::End => list.len(),
        Position::Before(x) | Position::After(x) => {
            let i = list.iter().position(|r| &r.id == x).ok_or_else(|| EditError::NotFound {
                what: "group member",
                id: x.clone(),
                hint: known_list(list.iter().map(|r| r.id.clone()).collect()),
            })?;
            if matches!(position, Position::After(_)) { i + 1 } else { i }
        }
    };
    for (k, r) in moved.into_iter().enumerate() {
        list.insert(at + k, r);
    }
    Ok(notes)
}

/// Takes members out of group `group` (all of them with an empty list: ungroup); they become
/// top-level resources right after it. A group left empty is removed with the constraints
/// that name it.
pub fn group_remove(cfg: &mut Configuration, group: &str, members: &[String]) -> Result<Notes, EditError> {
    let Some(gi) = cfg.resources.iter().position(|r| r.id == group) else {
        return Err(match find(&cfg.resources, group) {
            Some(_) => invalid("group", format!("'{group}' is not a top-level group")),
            None => no_resource(cfg, group),
        });
    };
    let ResourceKind::Group { members: list } = &cfg.resources[gi].kind else {
        return Err(invalid("group", format!("'{group}' is not a group")));
    };
    let names: Vec<String> =
        if members.is_empty() { list.iter().map(|m| m.id.clone()).collect() } else { members.to_vec() };
    for m in &names {
        if !list.iter().any(|x| &x.id == m) {
            return Err(EditError::NotFound {
                what: "group member",
                id: m.clone(),
                hint: known_list(list.iter().map(|x| x.id.clone()).collect()),
            });
        }
    }
    let mut notes = Notes::new();
    let mut out = Vec::new();
    for m in &names {
        out.push(detach(cfg, m, &mut notes)?);
    }
    // Right after the group, or where it was when it is gone.
    let at = cfg.resources.iter().position(|r| r.id == group).map_or(gi.min(cfg.resources.len()), |i| i + 1);
    for (k, r) in out.into_iter().enumerate() {
        cfg.resources.insert(at + k, r);
    }
    Ok(notes)
}

// ---------------------------------------------------------------------------------------------
// Moves and bans

/// The id Pacemaker gives a move's preference (`crm_resource --move`).
pub fn prefer_id(rsc: &str) -> String {
    format!("cli-prefer-{rsc}")
}

/// The id Pacemaker gives a ban (`crm_resource --ban`).
pub fn ban_id(rsc: &str, node: &str) -> String {
    format!("cli-ban-{rsc}-on-{node}")
}

fn upsert_location(cfg: &mut Configuration, loc: Location) {
    match cfg.constraints.iter_mut().find(|c| constraint_id(c) == loc.id) {
        Some(c) => *c = Constraint::Location(loc),
        None => cfg.constraints.push(Constraint::Location(loc)),
    }
}

fn remove_where(cfg: &mut Configuration, what: impl Fn(&Constraint) -> bool, why: &str, notes: &mut Notes) -> usize {
    let before = cfg.constraints.len();
    cfg.constraints.retain(|c| {
        let hit = what(c);
        if hit {
            notes.push(format!("removed constraint '{}' ({why})", constraint_id(c)));
        }
        !hit
    });
    before - cfg.constraints.len()
}

/// Moves `rsc` to `node`: a `cli-prefer-R` location constraint with score INFINITY (for the
/// promoted role only with `role`), replacing a previous one. A ban of `rsc` from `node`
/// would defeat it, so it is removed.
pub fn move_to(cfg: &mut Configuration, rsc: &str, node: &str, role: Option<Role>) -> Result<Notes, EditError> {
    resource(cfg, rsc)?;
    let node = check_node(cfg, node)?;
    let mut notes = Notes::new();
    let ban = ban_id(rsc, &node);
    remove_where(cfg, |c| constraint_id(c) == ban, "a ban from the destination", &mut notes);
    let loc = Location {
        id: prefer_id(rsc),
        rsc: Some(rsc.into()),
        role,
        node: Some(node.clone()),
        score: Some(Score::INF),
        ..Location::default()
    };
    upsert_location(cfg, loc);
    notes.push(format!(
        "'{rsc}' now prefers {node} with INFINITY ({}); remove it with `resource clear {rsc}` once it has moved",
        prefer_id(rsc)
    ));
    Ok(notes)
}

/// Bans `rsc` from `node`: a `cli-ban-R-on-N` location constraint with score -INFINITY. A
/// move of `rsc` to `node` would contradict it, so it is removed.
pub fn ban(cfg: &mut Configuration, rsc: &str, node: &str, role: Option<Role>) -> Result<Notes, EditError> {
    resource(cfg, rsc)?;
    let node = check_node(cfg, node)?;
    let mut notes = Notes::new();
    let prefer = prefer_id(rsc);
    remove_where(
        cfg,
        |c| matches!(c, Constraint::Location(l) if l.id == prefer && l.node.as_deref() == Some(node.as_str())),
        "a move to the banned node",
        &mut notes,
    );
    let loc = Location {
        id: ban_id(rsc, &node),
        rsc: Some(rsc.into()),
        role,
        node: Some(node.clone()),
        score: Some(Score::NEG_INF),
        ..Location::default()
    };
    upsert_location(cfg, loc);
    notes.push(format!("'{rsc}' is banned from {node} ({}); lift it with `resource clear {rsc}`", ban_id(rsc, &node)));
    Ok(notes)
}

/// Removes the constraints left by moves and bans of `rsc` (`cli-prefer-R`, `cli-ban-R-on-*`),
/// only those about `node` when given. Removing none is not an error (noted).
pub fn clear(cfg: &mut Configuration, rsc: &str, node: Option<&str>) -> Result<Notes, EditError> {
    resource(cfg, rsc)?;
    let node = node.map(|n| check_node(cfg, n)).transpose()?;
    let mut notes = Notes::new();
    let prefer = prefer_id(rsc);
    let ban_prefix = format!("cli-ban-{rsc}-on-");
    let n = remove_where(
        cfg,
        |c| match c {
            Constraint::Location(l) => {
                let ours = l.id == prefer || l.id.starts_with(&ban_prefix);
                ours && node.as_deref().is_none_or(|n| l.node.as_deref() == Some(n))
            }
            _ => false,
        },
        "a move or ban",
        &mut notes,
    );
    if n == 0 {
        notes.push(format!(
            "'{rsc}' had no move or ban constraint{}",
            node.map_or(String::new(), |n| format!(" for {n}"))
        ));
    }
    Ok(notes)
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// Node attribute that keeps resources off a node.
pub const STANDBY: &str = "standby";
/// Node attribute that makes the cluster leave a node's resources alone.
pub const MAINTENANCE: &str = "maintenance";

/// Sets (or with `None` removes) a permanent node attribute in `<nodes>` (`standby=on`,
/// `maintenance=on`, ...). The set is `nodes-ID`, its pairs `nodes-ID-NAME`, as Pacemaker
/// names them.
pub fn set_node_attribute(
    cfg: &mut Configuration,
    node: &str,
    name: &str,
    value: Option<&str>,
) -> Result<Notes, EditError> {
    let i = node_index(cfg, node)?;
    let mut ids = all_ids(cfg);
    let n: &mut NodeConfig = &mut cfg.nodes[i];
    if matches!(name, STANDBY | MAINTENANCE)
        && let Some(v) = value
    {
        parse_bool(name, v)?;
    }
    let owner = format!("nodes-{}", n.id);
    let pairs = [(name.to_string(), value.unwrap_or("").to_string())];
    apply_pairs(&mut n.attributes, &mut ids, &owner, &pairs)?;
    Ok(Notes::new())
}

/// A node attribute's configured value.
pub fn node_attribute<'a>(cfg: &'a Configuration, node: &str, name: &str) -> Option<&'a str> {
    let i = node_index(cfg, node).ok()?;
    get_pair(&cfg.nodes[i].attributes, name)
}

// ---------------------------------------------------------------------------------------------
// Constraints

fn check_constraint_id(cfg: &Configuration, id: &str) -> Result<(), EditError> {
    check_id("id", id)?;
    if all_ids(cfg).contains(id) {
        return Err(EditError::Exists {
            what: "id",
            id: id.into(),
            fix: "choose another id, or delete the existing constraint first".into(),
        });
    }
    Ok(())
}

/// A location constraint: `rsc` prefers (positive score) or avoids (negative) `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationSpec {
    /// Id (default `location-R-N-SCORE`).
    pub id: Option<String>,
    /// The resource.
    pub rsc: String,
    /// The node.
    pub node: String,
    /// The score.
    pub score: Score,
    /// Only for this role.
    pub role: Option<Role>,
    /// `resource-discovery`: always, never, exclusive.
    pub resource_discovery: Option<String>,
}

/// Adds a location constraint. A constraint for the same resource, node and role is updated
/// in place (its score changes) unless another id is asked for.
pub fn add_location(cfg: &mut Configuration, spec: &LocationSpec) -> Result<Notes, EditError> {
    resource(cfg, &spec.rsc)?;
    let node = check_node(cfg, &spec.node)?;
    if let Some(d) = &spec.resource_discovery
        && !matches!(d.as_str(), "always" | "never" | "exclusive")
    {
        return Err(invalid("resource-discovery", format!("'{d}' is not always, never or exclusive")));
    }
    let mut notes = Notes::new();
    let same = cfg.constraints.iter().position(|c| {
        matches!(c, Constraint::Location(l) if l.rsc.as_deref() == Some(spec.rsc.as_str())
            && l.node.as_deref() == Some(node.as_str()) && l.role == spec.role && l.rules.is_empty()
            && !l.id.starts_with("cli-"))
    });
    if let Some(i) = same
        && spec.id.as_ref().is_none_or(|id| id == constraint_id(&cfg.constraints[i]))
    {
        if let Constraint::Location(l) = &mut cfg.constraints[i] {
            notes.push(format!(
                "updated constraint '{}': score {} (was {:?})",
                l.id,
                spec.score,
                l.score.map(|s| s.to_string())
            ));
            l.score = Some(spec.score);
            l.resource_discovery = spec.resource_discovery.clone().or(l.resource_discovery.take());
        }
        return Ok(notes);
    }
    let id = match &spec.id {
        Some(id) => {
            check_constraint_id(cfg, id)?;
            id.clone()
        }
        None => fresh_id(&mut all_ids(cfg), &format!("location-{}-{node}-{}", spec.rsc, spec.score)),
    };
    notes.push(format!("added constraint '{id}'"));
    cfg.constraints.push(Constraint::Location(Location {
        id,
        rsc: Some(spec.rsc.clone()),
        role: spec.role,
        node: Some(node),
        score: Some(spec.score),
        resource_discovery: spec.resource_discovery.clone(),
        ..Location::default()
    }));
    Ok(notes)
}

/// A location constraint with a rule over node attributes (`location R rule ... EXPR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRuleSpec {
    /// Constraint id (default `location-R`).
    pub id: Option<String>,
    /// The resource.
    pub rsc: String,
    /// Only for this role.
    pub role: Option<Role>,
    /// The score when the rule matches (default INFINITY).
    pub score: Option<Score>,
    /// Or: the node attribute whose value is the score.
    pub score_attribute: Option<String>,
    /// `resource-discovery`.
    pub resource_discovery: Option<String>,
    /// The expression, as words: `ATTR OP [TYPE] VALUE`, `defined ATTR`, `not_defined ATTR`,
    /// joined by `and` or by `or`.
    pub expression: Vec<String>,
}

const RULE_OPS: &[&str] = &["lt", "gt", "lte", "gte", "eq", "ne"];
const RULE_TYPES: &[&str] = &["string", "integer", "number", "version"];

/// One term of a rule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTerm {
    /// Node attribute (`#uname`, `#id`, or any attribute).
    pub attribute: String,
    /// lt, gt, lte, gte, eq, ne, defined, not_defined.
    pub operation: String,
    /// The value compared with (none for defined/not_defined).
    pub value: Option<String>,
    /// string, integer, number or version.
    pub value_type: Option<String>,
}

/// Parses a rule expression: terms `ATTR OP [TYPE] VALUE`, `defined ATTR` or `not_defined
/// ATTR`, joined all by `and` or all by `or`. Returns whether they are joined by `or`, and
/// the terms.
pub fn parse_rule_expression(words: &[String]) -> Result<(bool, Vec<RuleTerm>), EditError> {
    let toks: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
    let bad = |p: String| invalid("rule", p);
    if toks.is_empty() {
        return Err(bad("an expression is needed, such as: #uname eq node1, or: defined pingd".into()));
    }
    let mut terms = Vec::new();
    let mut joiner: Option<&str> = None;
    let mut i = 0;
    loop {
        let t = toks.get(i).copied().ok_or_else(|| bad("the expression ends after and/or".into()))?;
        if t == "(" || t.starts_with('(') || t == "date" || t == "date-spec" {
            return Err(bad(format!("'{t}': parentheses and date expressions are not supported; split the rule")));
        }
        if matches!(t, "defined" | "not_defined") {
            let attr = toks.get(i + 1).ok_or_else(|| bad(format!("'{t}' needs an attribute name")))?;
            terms.push(RuleTerm {
                attribute: attr.to_string(),
                operation: t.to_string(),
                value: None,
                value_type: None,
            });
            i += 2;
        } else {
            let op =
                toks.get(i + 1).ok_or_else(|| bad(format!("'{t}' needs an operation and a value: {t} eq VALUE")))?;
            if !RULE_OPS.contains(op) {
                return Err(bad(format!(
                    "'{op}' is not an operation: use {}, defined or not_defined",
                    RULE_OPS.join(", ")
                )));
            }
            let (ty, at) = match toks.get(i + 2) {
                Some(ty) if RULE_TYPES.contains(ty) && toks.get(i + 3).is_some() => (Some(ty.to_string()), i + 3),
                _ => (None, i + 2),
            };
            let value = toks.get(at).ok_or_else(|| bad(format!("'{t} {op}' needs a value")))?;
            terms.push(RuleTerm {
                attribute: t.to_string(),
                operation: op.to_string(),
                value: Some(value.to_string()),
                value_type: ty,
            });
            i = at + 1;
        }
        match toks.get(i) {
            None => break,
            Some(&j @ ("and" | "or")) => {
                if joiner.is_some_and(|x| x != j) {
                    return Err(bad(
                        "mixing 'and' and 'or' needs parentheses, which are not supported; use two constraints".into(),
                    ));
                }
                joiner = Some(j);
                i += 1;
            }
            Some(other) => return Err(bad(format!("'{other}': expected 'and' or 'or' between terms"))),
        }
    }
    Ok((joiner == Some("or"), terms))
}

/// Adds a location constraint whose rule decides the nodes (and, with `score_attribute`, the
/// score).
pub fn add_location_rule(cfg: &mut Configuration, spec: &LocationRuleSpec) -> Result<Notes, EditError> {
    resource(cfg, &spec.rsc)?;
    if spec.score.is_some() && spec.score_attribute.is_some() {
        return Err(invalid("score", "give score= or score-attribute=, not both"));
    }
    if let Some(d) = &spec.resource_discovery
        && !matches!(d.as_str(), "always" | "never" | "exclusive")
    {
        return Err(invalid("resource-discovery", format!("'{d}' is not always, never or exclusive")));
    }
    let (or, terms) = parse_rule_expression(&spec.expression)?;
    let mut ids = all_ids(cfg);
    let id = match &spec.id {
        Some(id) => {
            check_constraint_id(cfg, id)?;
            ids.insert(id.clone());
            id.clone()
        }
        None => fresh_id(&mut ids, &format!("location-{}", spec.rsc)),
    };
    let rule_id = fresh_id(&mut ids, &format!("{id}-rule"));
    let exprs = terms
        .into_iter()
        .map(|RuleTerm { attribute, operation, value, value_type }| Expr::Attr {
            id: fresh_id(&mut ids, &format!("{rule_id}-expr")),
            attribute,
            operation,
            value,
            value_type,
            value_source: None,
        })
        .collect();
    let score = if spec.score_attribute.is_some() { None } else { Some(spec.score.unwrap_or(Score::INF)) };
    cfg.constraints.push(Constraint::Location(Location {
        id: id.clone(),
        rsc: Some(spec.rsc.clone()),
        rules: vec![Rule {
            id: rule_id,
            score,
            score_attribute: spec.score_attribute.clone(),
            boolean_or: or,
            role: spec.role,
            exprs,
        }],
        resource_discovery: spec.resource_discovery.clone(),
        ..Location::default()
    }));
    Ok(vec![format!("added constraint '{id}'")])
}

const ORDER_ACTIONS: &[&str] = &["start", "stop", "promote", "demote"];

fn check_order_action(field: &str, a: &str) -> Result<String, EditError> {
    let a = a.to_ascii_lowercase();
    if ORDER_ACTIONS.contains(&a.as_str()) {
        Ok(a)
    } else {
        Err(invalid(field, format!("'{a}' is not an action: use start, stop, promote or demote")))
    }
}

/// Parses an order kind.
pub fn parse_order_kind(text: &str) -> Result<OrderKind, EditError> {
    match text.to_ascii_lowercase().as_str() {
        "mandatory" => Ok(OrderKind::Mandatory),
        "optional" => Ok(OrderKind::Optional),
        "serialize" => Ok(OrderKind::Serialize),
        _ => Err(invalid("kind", format!("'{text}' is not a kind: use Mandatory, Optional or Serialize"))),
    }
}

fn kind_word(k: OrderKind) -> &'static str {
    match k {
        OrderKind::Mandatory => "mandatory",
        OrderKind::Optional => "optional",
        OrderKind::Serialize => "serialize",
    }
}

/// An order constraint: `first_action first` then `then_action then`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// Id (default `order-A-B-KIND`).
    pub id: Option<String>,
    /// First resource.
    pub first: String,
    /// Its action (default start).
    pub first_action: Option<String>,
    /// Then resource.
    pub then: String,
    /// Its action (default: first's).
    pub then_action: Option<String>,
    /// Kind.
    pub kind: OrderKind,
    /// Whether the reverse applies to the reverse actions.
    pub symmetrical: Option<bool>,
    /// For clones: whether every first instance is needed.
    pub require_all: bool,
}

/// Adds an order constraint.
pub fn add_order(cfg: &mut Configuration, spec: &OrderSpec) -> Result<Notes, EditError> {
    resource(cfg, &spec.first)?;
    resource(cfg, &spec.then)?;
    if spec.first == spec.then {
        return Err(invalid("then", "a resource cannot be ordered after itself; name two resources"));
    }
    let fa = spec.first_action.as_deref().map(|a| check_order_action("first-action", a)).transpose()?;
    let ta = spec.then_action.as_deref().map(|a| check_order_action("then-action", a)).transpose()?;
    if let Some(c) = cfg.constraints.iter().find(|c| {
        matches!(c, Constraint::Order(o) if o.first.as_deref() == Some(spec.first.as_str())
            && o.then.as_deref() == Some(spec.then.as_str())
            && o.first_action.as_deref().unwrap_or("start") == fa.as_deref().unwrap_or("start")
            && o.then_action.as_deref().or(o.first_action.as_deref()).unwrap_or("start")
                == ta.as_deref().or(fa.as_deref()).unwrap_or("start"))
    }) {
        return Err(EditError::Exists {
            what: "constraint",
            id: constraint_id(c).into(),
            fix: "it orders the same actions; delete it first to change it".into(),
        });
    }
    let id = match &spec.id {
        Some(id) => {
            check_constraint_id(cfg, id)?;
            id.clone()
        }
        None => fresh_id(&mut all_ids(cfg), &format!("order-{}-{}-{}", spec.first, spec.then, kind_word(spec.kind))),
    };
    cfg.constraints.push(Constraint::Order(Order {
        id: id.clone(),
        first: Some(spec.first.clone()),
        then: Some(spec.then.clone()),
        first_action: fa,
        then_action: ta,
        kind: spec.kind,
        symmetrical: spec.symmetrical,
        require_all: spec.require_all,
        sets: Vec::new(),
    }));
    Ok(vec![format!("added constraint '{id}'")])
}

/// A colocation: `rsc` (in `rsc_role`) is placed with `with_rsc` (in `with_role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColocationSpec {
    /// Id (default `colocation-A-B-SCORE`).
    pub id: Option<String>,
    /// The dependent resource.
    pub rsc: String,
    /// Its role.
    pub rsc_role: Option<Role>,
    /// The primary resource.
    pub with_rsc: String,
    /// Its role.
    pub with_role: Option<Role>,
    /// Score (INFINITY: must, -INFINITY: must not).
    pub score: Score,
    /// Whether the dependent may pull the primary.
    pub influence: Option<bool>,
    /// Node attribute that defines "same place".
    pub node_attribute: Option<String>,
}

/// Adds a colocation constraint.
pub fn add_colocation(cfg: &mut Configuration, spec: &ColocationSpec) -> Result<Notes, EditError> {
    resource(cfg, &spec.rsc)?;
    resource(cfg, &spec.with_rsc)?;
    if spec.rsc == spec.with_rsc {
        return Err(invalid("with", "a resource cannot be colocated with itself; name two resources"));
    }
    if let Some(c) = cfg.constraints.iter().find(|c| {
        matches!(c, Constraint::Colocation(co) if co.rsc.as_deref() == Some(spec.rsc.as_str())
            && co.with_rsc.as_deref() == Some(spec.with_rsc.as_str()))
    }) {
        return Err(EditError::Exists {
            what: "constraint",
            id: constraint_id(c).into(),
            fix: "it colocates the same resources; delete it first to change it".into(),
        });
    }
    let id = match &spec.id {
        Some(id) => {
            check_constraint_id(cfg, id)?;
            id.clone()
        }
        None => fresh_id(&mut all_ids(cfg), &format!("colocation-{}-{}-{}", spec.rsc, spec.with_rsc, spec.score)),
    };
    cfg.constraints.push(Constraint::Colocation(Colocation {
        id: id.clone(),
        rsc: Some(spec.rsc.clone()),
        with_rsc: Some(spec.with_rsc.clone()),
        score: spec.score,
        rsc_role: spec.rsc_role,
        with_rsc_role: spec.with_role,
        node_attribute: spec.node_attribute.clone(),
        influence: spec.influence,
        sets: Vec::new(),
    }));
    Ok(vec![format!("added constraint '{id}'")])
}

/// One resource set of a set constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// Members in order.
    pub resources: Vec<String>,
    /// Members ordered/colocated among themselves (default true).
    pub sequential: bool,
    /// Orders: every member needed (default true).
    pub require_all: bool,
    /// Role filter.
    pub role: Option<Role>,
    /// Orders: the action.
    pub action: Option<String>,
}

impl Default for SetSpec {
    fn default() -> Self {
        SetSpec { resources: Vec::new(), sequential: true, require_all: true, role: None, action: None }
    }
}

/// What kind of set constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// An ordering of the sets, one after the other.
    Order(OrderKind),
    /// A colocation of the sets.
    Colocation(Score),
}

/// Adds an order or colocation constraint over resource sets.
pub fn add_set_constraint(
    cfg: &mut Configuration,
    id: Option<&str>,
    kind: SetKind,
    sets: &[SetSpec],
) -> Result<Notes, EditError> {
    if sets.is_empty() || sets.iter().any(|s| s.resources.is_empty()) {
        return Err(invalid("set", "every set needs at least one resource: set R1 R2 ... [set R3 ...]"));
    }
    let mut seen = BTreeSet::new();
    for r in sets.iter().flat_map(|s| &s.resources) {
        resource(cfg, r)?;
        if !seen.insert(r.clone()) {
            return Err(invalid("set", format!("'{r}' appears twice; a resource may be in one set only")));
        }
    }
    let (prefix, word) = match kind {
        SetKind::Order(_) => ("order", "order"),
        SetKind::Colocation(_) => ("colocation", "colocation"),
    };
    let names: Vec<&str> = sets.iter().flat_map(|s| s.resources.iter().map(String::as_str)).collect();
    let mut ids = all_ids(cfg);
    let id = match id {
        Some(id) => {
            check_constraint_id(cfg, id)?;
            ids.insert(id.to_string());
            id.to_string()
        }
        None => fresh_id(&mut ids, &format!("{prefix}-set-{}", names.join("-"))),
    };
    let mut rsets = Vec::new();
    for s in sets {
        let action = match (&s.action, kind) {
            (Some(a), SetKind::Order(_)) => Some(check_order_action("action", a)?),
            (Some(_), SetKind::Colocation(_)) => {
                return Err(invalid("action", "sets of a colocation have no action; use role="));
            }
            (None, _) => None,
        };
        rsets.push(ResourceSet {
            id: fresh_id(&mut ids, &format!("{id}-set")),
            resources: s.resources.clone(),
            sequential: s.sequential,
            require_all: s.require_all,
            role: s.role,
            action,
            score: None,
        });
    }
    cfg.constraints.push(match kind {
        SetKind::Order(k) => Constraint::Order(Order {
            id: id.clone(),
            first: None,
            then: None,
            first_action: None,
            then_action: None,
            kind: k,
            symmetrical: None,
            require_all: true,
            sets: rsets,
        }),
        SetKind::Colocation(score) => {
            Constraint::Colocation(Colocation { id: id.clone(), score, sets: rsets, ..Colocation::default() })
        }
    });
    Ok(vec![format!("added {word} constraint '{id}' over {} set(s)", sets.len())])
}

/// Removes a constraint by id.
pub fn remove_constraint(cfg: &mut Configuration, id: &str) -> Result<Notes, EditError> {
    let before = cfg.constraints.len();
    cfg.constraints.retain(|c| constraint_id(c) != id);
    if cfg.constraints.len() == before {
        return Err(EditError::NotFound {
            what: "constraint",
            id: id.into(),
            hint: known_list(cfg.constraints.iter().map(|c| constraint_id(c).to_string()).collect()),
        });
    }
    Ok(vec![format!("removed constraint '{id}'")])
}

// ---------------------------------------------------------------------------------------------
// Cluster properties

#[derive(Clone, Copy)]
enum PropKind {
    Bool,
    Duration,
    Int,
    Choice(&'static [&'static str]),
    Text,
    ReadOnly,
}

/// Pacemaker's cluster options (current names) and what values they take.
const PROPERTIES: &[(&str, PropKind)] = &[
    ("batch-limit", PropKind::Int),
    ("cancel-removed-actions", PropKind::Bool),
    ("cluster-delay", PropKind::Duration),
    ("cluster-infrastructure", PropKind::ReadOnly),
    ("cluster-ipc-limit", PropKind::Int),
    ("cluster-name", PropKind::Text),
    ("cluster-recheck-interval", PropKind::Duration),
    ("concurrent-fencing", PropKind::Bool),
    ("dc-deadtime", PropKind::Duration),
    ("dc-version", PropKind::ReadOnly),
    ("election-timeout", PropKind::Duration),
    ("enable-acl", PropKind::Bool),
    ("enable-startup-probes", PropKind::Bool),
    ("fence-reaction", PropKind::Choice(&["stop", "panic"])),
    ("fencing-action", PropKind::Choice(&["reboot", "off", "poweroff"])),
    ("fencing-enabled", PropKind::Bool),
    ("fencing-timeout", PropKind::Duration),
    ("have-watchdog", PropKind::ReadOnly),
    ("join-finalization-timeout", PropKind::Duration),
    ("join-integration-timeout", PropKind::Duration),
    ("last-lrm-refresh", PropKind::ReadOnly),
    ("load-threshold", PropKind::Text),
    ("maintenance-mode", PropKind::Bool),
    ("migration-limit", PropKind::Int),
    ("no-quorum-policy", PropKind::Choice(&["stop", "freeze", "ignore", "demote", "fence", "suicide"])),
    ("node-action-limit", PropKind::Int),
    ("node-health-base", PropKind::Int),
    ("node-health-green", PropKind::Text),
    ("node-health-red", PropKind::Text),
    ("node-health-strategy", PropKind::Choice(&["none", "migrate-on-red", "only-green", "progressive", "custom"])),
    ("node-health-yellow", PropKind::Text),
    ("node-pending-timeout", PropKind::Duration),
    ("pe-error-series-max", PropKind::Int),
    ("pe-input-series-max", PropKind::Int),
    ("pe-warn-series-max", PropKind::Int),
    ("placement-strategy", PropKind::Choice(&["default", "utilization", "minimal", "balanced"])),
    ("priority-fencing-delay", PropKind::Duration),
    ("shutdown-escalation", PropKind::Duration),
    ("shutdown-lock", PropKind::Bool),
    ("shutdown-lock-limit", PropKind::Duration),
    ("start-failure-is-fatal", PropKind::Bool),
    ("startup-fencing", PropKind::Bool),
    ("stonith-max-attempts", PropKind::Int),
    ("stonith-watchdog-timeout", PropKind::Text),
    ("stop-all-resources", PropKind::Bool),
    ("stop-removed-resources", PropKind::Bool),
    ("symmetric-cluster", PropKind::Bool),
    ("transition-delay", PropKind::Duration),
];

/// The name of every cluster option this cluster knows (current spellings).
pub fn known_properties() -> impl Iterator<Item = &'static str> {
    PROPERTIES.iter().map(|(n, _)| *n)
}

/// The current spelling of a property or meta attribute name (`stonith-enabled` →
/// `fencing-enabled`, `master-max` → `promoted-max`, ...).
pub fn canonical_name(name: &str) -> String {
    crate::cib::xml_modern(name)
}

fn check_property(name: &str, value: &str, force: bool) -> Result<(), EditError> {
    let Some((_, kind)) = PROPERTIES.iter().find(|(n, _)| *n == name) else {
        if force {
            return Ok(());
        }
        let close: Vec<String> = PROPERTIES
            .iter()
            .filter(|(n, _)| n.split('-').any(|w| w.len() > 3 && name.contains(w)))
            .map(|(n, _)| n.to_string())
            .collect();
        let hint = if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) };
        return Err(invalid(name, format!("unknown cluster property{hint}; use --force to set it anyway")));
    };
    let bad = |what: &str| Err(invalid(name, format!("'{value}' is not {what}")));
    match kind {
        PropKind::Bool => parse_bool(name, value).map(|_| ()),
        PropKind::Duration if parse_config_interval_ms(value).is_none() => {
            bad("a duration: use 30s, 5min, 1h or 500ms")
        }
        PropKind::Int if value.parse::<i64>().is_err() => bad("an integer"),
        PropKind::Choice(c) if !c.contains(&value.to_ascii_lowercase().as_str()) => {
            bad(&format!("one of {}", c.join(", ")))
        }
        PropKind::ReadOnly => Err(invalid(name, "maintained by the cluster itself; it cannot be set")),
        _ => Ok(()),
    }
}

/// Sets cluster properties (`crm_config`), in their current spelling; every other spelling of
/// the same name is replaced. An empty value unsets. Unknown names are refused unless `force`.
pub fn set_properties(cfg: &mut Configuration, pairs: &[(String, String)], force: bool) -> Result<Notes, EditError> {
    let mut notes = Notes::new();
    for (name, value) in pairs {
        let modern = canonical_name(name);
        if value.is_empty() {
            continue;
        }
        check_property(&modern, value, force)?;
        if &modern != name {
            notes.push(format!("'{name}' is now called '{modern}'; stored as '{modern}'"));
        }
    }
    let mut ids = all_ids(cfg);
    apply_pairs(&mut cfg.properties, &mut ids, "cib-bootstrap-options", pairs)?;
    Ok(notes)
}

/// Unsets cluster properties (every spelling). Unsetting one that is not set is refused.
pub fn unset_properties(cfg: &mut Configuration, names: &[String]) -> Result<Notes, EditError> {
    for name in names {
        if get_pair(&cfg.properties, name).is_none() {
            return Err(EditError::NotFound {
                what: "property",
                id: name.clone(),
                hint: known_list(
                    cfg.properties.iter().flat_map(|s| &s.pairs).map(|p| canonical_name(&p.name)).collect(),
                ),
            });
        }
    }
    let pairs: Vec<(String, String)> = names.iter().map(|n| (n.clone(), String::new())).collect();
    let mut ids = all_ids(cfg);
    apply_pairs(&mut cfg.properties, &mut ids, "cib-bootstrap-options", &pairs)?;
    Ok(names.iter().map(|n| format!("unset '{}'", canonical_name(n))).collect())
}

/// A cluster property's configured value (any spelling).
pub fn property<'a>(cfg: &'a Configuration, name: &str) -> Option<&'a str> {
    get_pair(&cfg.properties, name)
}

// ---------------------------------------------------------------------------------------------
// Outcomes: what a change does to the cluster, and whether it got where it was meant to

/// The end state an edit asks for, checked once the cluster has settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Only settle.
    Settled,
    /// The resource runs (somewhere, or on this node).
    Running(String, Option<String>),
    /// The resource runs nowhere (or not on this node).
    Stopped(String, Option<String>),
    /// Nothing runs on this node.
    NodeEmpty(String),
}

/// Every node some primitive of `v` runs on.
fn nodes_of(v: &RscView, out: &mut Vec<String>) {
    out.extend(v.nodes.iter().cloned());
    for c in &v.children {
        nodes_of(c, out);
    }
    out.sort();
    out.dedup();
}

fn runs_on_in(views: &[RscView], id: &str, out: &mut Vec<String>) {
    for v in views {
        if v.id == id || crate::replica::same_resource(&v.id, id) {
            nodes_of(v, out);
        } else {
            runs_on_in(&v.children, id, out);
        }
    }
    out.sort();
    out.dedup();
}

/// The nodes where `id` runs (for a clone or group: where any of its instances or members run).
pub fn runs_on(view: &ClusterView, id: &str) -> Vec<String> {
    let mut on = Vec::new();
    runs_on_in(&view.resources, id, &mut on);
    on
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "nowhere".into() } else { v.join(", ") }
}

/// Whether `view` (the cluster as it is) satisfies `goal`: what was reached, or what was not.
pub fn check_goal(view: &ClusterView, goal: &Goal) -> Result<String, String> {
    match goal {
        Goal::Settled => Ok("the cluster settled".into()),
        Goal::Running(r, node) => {
            let on = runs_on(view, r);
            match node {
                Some(n) if on.contains(n) => Ok(format!("{r} runs on {n}")),
                None if !on.is_empty() => Ok(format!("{r} runs on {}", on.join(", "))),
                Some(n) => Err(format!("{r} does not run on {n} (it runs on: {})", list_or_none(&on))),
                None => Err(format!("{r} runs nowhere")),
            }
        }
        Goal::Stopped(r, node) => {
            let on = runs_on(view, r);
            match node {
                Some(n) if !on.contains(n) => {
                    Ok(format!("{r} does not run on {n} (it runs on: {})", list_or_none(&on)))
                }
                None if on.is_empty() => Ok(format!("{r} is stopped")),
                _ => Err(format!("{r} still runs on {}", on.join(", "))),
            }
        }
        Goal::NodeEmpty(n) => {
            let busy: Vec<&str> = view
                .resources
                .iter()
                .filter(|v| {
                    let mut on = Vec::new();
                    nodes_of(v, &mut on);
                    on.contains(n)
                })
                .map(|v| v.id.as_str())
                .collect();
            if busy.is_empty() {
                Ok(format!("no resource runs on {n}"))
            } else {
                Err(format!("{} still {} on {n}", busy.join(", "), if busy.len() == 1 { "runs" } else { "run" }))
            }
        }
    }
}

/// Whether fencing is enabled (`fencing-enabled`, any spelling; on by default).
pub fn fencing_enabled(cfg: &Configuration) -> bool {
    property(cfg, "fencing-enabled")
        .is_none_or(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "no" | "off" | "0" | "n"))
}

/// A risk line from a Transition Summary: what stops, moves, restarts or recovers, which nodes
/// are fenced, and (with fencing on) on which nodes a failed stop would get the node fenced;
/// and whether the transition disturbs anything running.
pub fn risk(summary: &[String], fencing: bool) -> (String, bool) {
    let count = |word: &str| summary.iter().filter(|l| l.starts_with(word)).count();
    let (stop, moves, restart, recover, fence) =
        (count("Stop"), count("Move") + count("Migrate"), count("Restart"), count("Recover"), count("Fence"));
    if stop + moves + restart + recover + fence == 0 {
        return ("risk: no running resource is disturbed".into(), false);
    }
    let mut parts = Vec::new();
    for (n, what) in [(stop, "stop"), (moves, "move"), (restart, "restart"), (recover, "recover")] {
        if n > 0 {
            parts.push(format!("{n} resource{} {what}", if n == 1 { "" } else { "s" }));
        }
    }
    if fence > 0 {
        parts.push(format!("{fence} node{} fenced", if fence == 1 { " is" } else { "s are" }));
    }
    if fencing {
        // The node a stop runs on: the first name inside the parentheses.
        let mut stopping: Vec<&str> = summary
            .iter()
            .filter(|l| ["Stop", "Move", "Migrate", "Restart", "Recover"].iter().any(|w| l.starts_with(w)))
            .filter_map(|l| l.split_once('(').and_then(|(_, rest)| rest.split_whitespace().next()))
            .collect();
        stopping.sort_unstable();
        stopping.dedup();
        if !stopping.is_empty() {
            parts.push(format!(
                "{} {} fenced if a stop fails there",
                stopping.join(", "),
                if stopping.len() == 1 { "is" } else { "are" }
            ));
        }
    }
    (format!("risk: {}", parts.join("; ")), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::{Cib, parse_cib, to_xml, validate};

    /// Three online nodes, fencing off, `d1` running on node1 and `d2` stopped.
    const BASE: &str = r#"<cib epoch="5" num_updates="0" admin_epoch="0" have-quorum="1">
      <configuration>
        <crm_config><cluster_property_set id="cib-bootstrap-options">
          <nvpair id="o-fe" name="stonith-enabled" value="false"/>
        </cluster_property_set></crm_config>
        <nodes><node id="1" uname="node1"/><node id="2" uname="node2"/><node id="3" uname="node3"/></nodes>
        <resources>
          <primitive id="d1" class="ocf" provider="heartbeat" type="Dummy">
            <operations><op id="d1-monitor-interval-10s" name="monitor" interval="10s"/></operations>
          </primitive>
          <primitive id="d2" class="ocf" provider="heartbeat" type="Dummy"/>
        </resources>
        <constraints/>
      </configuration>
      <status>
        <node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member">
          <lrm id="1"><lrm_resources><lrm_resource id="d1" class="ocf" provider="heartbeat" type="Dummy">
            <lrm_rsc_op id="d1_last_0" operation="start" interval="0" rc-code="0" op-status="0" call-id="2" transition-key="1:1:0:x"/>
            <lrm_rsc_op id="d1_monitor_10000" operation="monitor" interval="10000" rc-code="0" op-status="0" call-id="3" transition-key="2:1:0:x"/>
          </lrm_resource></lrm_resources></lrm>
        </node_state>
        <node_state id="2" uname="node2" in_ccm="true" crmd="online" join="member" expected="member"/>
        <node_state id="3" uname="node3" in_ccm="true" crmd="online" join="member" expected="member"/>
      </status>
    </cib>"#;

    fn base() -> Cib {
        parse_cib(BASE).expect("base parses").0
    }

    /// The edited CIB validates and survives export and import unchanged.
    fn assert_sound(cib: &Cib) {
        assert_eq!(validate(cib), Vec::new(), "validates");
        let xml = to_xml(cib);
        let (back, _) = parse_cib(&xml).expect("re-parses");
        assert_eq!(to_xml(&back), xml, "round trip through to_xml/parse_cib");
        assert_eq!(back.config.resources, cib.config.resources);
        assert_eq!(back.config.constraints, cib.config.constraints);
        assert_eq!(back.config.nodes, cib.config.nodes);
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn op(action: &str, attrs: &[(&str, &str)]) -> OpSpec {
        OpSpec { action: action.into(), attrs: kv(attrs) }
    }

    fn spec(id: &str) -> PrimitiveSpec {
        PrimitiveSpec {
            id: id.into(),
            agent: parse_agent("ocf:heartbeat:IPaddr2").expect("agent"),
            params: kv(&[("ip", "10.0.0.5"), ("cidr_netmask", "24")]),
            ops: vec![op("monitor", &[("interval", "10s"), ("timeout", "20s")])],
            meta: kv(&[("resource-stickiness", "100")]),
            utilization: Vec::new(),
            placement: Placement::TopLevel,
            disabled: false,
        }
    }

    fn summary(cib: &Cib) -> Vec<String> {
        crate::schedule(cib, None, 1_700_000_000).summary
    }

    fn location<'a>(cib: &'a Cib, id: &str) -> Option<&'a Location> {
        cib.config.constraints.iter().find_map(|c| match c {
            Constraint::Location(l) if l.id == id => Some(l),
            _ => None,
        })
    }

    #[test]
    fn create_adds_a_primitive_with_params_ops_and_meta_named_as_pcs_names_them() {
        let mut cib = base();
        create_primitive(&mut cib.config, &spec("vip")).expect("created");
        assert_sound(&cib);
        let r = find(&cib.config.resources, "vip").expect("there");
        assert_eq!(r.params[0].id, "vip-instance_attributes");
        assert_eq!(r.params[0].pairs[0].id, "vip-instance_attributes-ip");
        assert_eq!(r.meta[0].pairs[0].name, "resource-stickiness");
        assert_eq!(r.ops[0].id, "vip-monitor-interval-10s");
        assert_eq!((r.ops[0].interval_ms, r.ops[0].timeout_ms), (10_000, Some(20_000)));
        assert!(summary(&cib).iter().any(|l| l.starts_with("Start") && l.contains("vip")), "{:?}", summary(&cib));
    }

    #[test]
    fn create_disabled_sets_target_role_stopped_and_nothing_starts() {
        let mut cib = base();
        create_primitive(&mut cib.config, &PrimitiveSpec { disabled: true, ..spec("vip") }).expect("created");
        assert_sound(&cib);
        assert_eq!(get_pair(&find(&cib.config.resources, "vip").expect("there").meta, "target-role"), Some("Stopped"));
        assert!(!summary(&cib).iter().any(|l| l.contains("vip")), "{:?}", summary(&cib));
    }

    #[test]
    fn create_refuses_duplicate_and_malformed_input_naming_the_field() {
        let mut cib = base();
        let before = cib.config.clone();
        let dup = create_primitive(&mut cib.config, &spec("d1")).unwrap_err();
        assert!(matches!(&dup, EditError::Exists { what: "resource", id, .. } if id == "d1"), "{dup}");
        let taken = create_primitive(&mut cib.config, &spec("o-fe")).unwrap_err();
        assert!(matches!(taken, EditError::Exists { what: "id", .. }));
        let bad_id = create_primitive(&mut cib.config, &spec("1vip")).unwrap_err();
        assert!(bad_id.to_string().starts_with("field id:"), "{bad_id}");
        let bad_interval = PrimitiveSpec { ops: vec![op("monitor", &[("interval", "often")])], ..spec("vip") };
        let e = create_primitive(&mut cib.config, &bad_interval).unwrap_err();
        assert!(e.to_string().contains("op monitor interval") && e.to_string().contains("30s"), "{e}");
        let bad_attr = PrimitiveSpec { ops: vec![op("start", &[("colour", "red")])], ..spec("vip") };
        let e = create_primitive(&mut cib.config, &bad_attr).unwrap_err();
        assert!(e.to_string().contains("unknown operation attribute"), "{e}");
        let twice = PrimitiveSpec {
            ops: vec![op("monitor", &[("interval", "10s")]), op("monitor", &[("interval", "10000ms")])],
            ..spec("vip")
        };
        assert!(matches!(create_primitive(&mut cib.config, &twice), Err(EditError::Exists { what: "operation", .. })));
        assert_eq!(cib.config, before, "nothing changed on a refusal");
    }

    #[test]
    fn agent_names_need_a_provider_exactly_where_the_class_has_one() {
        assert_eq!(parse_agent("systemd:nginx").expect("ok").provider, None);
        assert_eq!(parse_agent("ocf:heartbeat:Dummy").expect("ok").provider.as_deref(), Some("heartbeat"));
        for bad in ["ocf:Dummy", "systemd:x:y", "Dummy", "ocf::Dummy", "foo:bar"] {
            let e = parse_agent(bad).unwrap_err();
            assert!(e.to_string().starts_with("field agent:"), "{bad}: {e}");
        }
    }

    #[test]
    fn create_into_a_group_creates_it_and_honours_before_and_after() {
        let mut cib = base();
        let into = |id: &str, position| PrimitiveSpec {
            placement: Placement::Group { group: "g".into(), position },
            ..spec(id)
        };
        let notes = create_primitive(&mut cib.config, &into("a", Position::End)).expect("a");
        assert!(notes.iter().any(|n| n.contains("created group 'g'")), "{notes:?}");
        create_primitive(&mut cib.config, &into("c", Position::End)).expect("c");
        create_primitive(&mut cib.config, &into("b", Position::After("a".into()))).expect("b");
        create_primitive(&mut cib.config, &into("z", Position::Before("a".into()))).expect("z");
        assert_sound(&cib);
        let g = find(&cib.config.resources, "g").expect("group");
        let ResourceKind::Group { members } = &g.kind else { panic!("not a group") };
        assert_eq!(members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["z", "a", "b", "c"]);
        let e = create_primitive(&mut cib.config, &into("y", Position::Before("nope".into()))).unwrap_err();
        assert!(matches!(e, EditError::NotFound { what: "group member", .. }), "{e}");
        let not_group =
            PrimitiveSpec { placement: Placement::Group { group: "d1".into(), position: Position::End }, ..spec("y") };
        assert!(create_primitive(&mut cib.config, &not_group).unwrap_err().to_string().contains("not a group"));
    }

    #[test]
    fn create_as_promotable_clone_wraps_it_with_clone_meta() {
        let mut cib = base();
        let s = PrimitiveSpec {
            placement: Placement::Clone { id: None, meta: kv(&[("promoted-max", "1")]), promotable: true },
            ..spec("db")
        };
        create_primitive(&mut cib.config, &s).expect("created");
        assert_sound(&cib);
        let c = cib.config.resources.iter().find(|r| r.id == "db-clone").expect("clone");
        assert!(matches!(&c.kind, ResourceKind::Clone { child, .. } if child.id == "db"));
        assert_eq!(get_pair(&c.meta, "promotable"), Some("true"));
        assert_eq!(get_pair(&c.meta, "promoted-max"), Some("1"));
    }

    #[test]
    fn update_sets_and_unsets_keys_and_changes_the_matching_op() {
        let mut cib = base();
        create_primitive(&mut cib.config, &spec("vip")).expect("created");
        update_resource(
            &mut cib.config,
            "vip",
            &kv(&[("ip", "10.0.0.6"), ("cidr_netmask", ""), ("nic", "eth0")]),
            &kv(&[("resource-stickiness", ""), ("migration-threshold", "3")]),
            &[op("monitor", &[("timeout", "30s")]), op("start", &[("timeout", "40s")])],
        )
        .expect("updated");
        assert_sound(&cib);
        let r = find(&cib.config.resources, "vip").expect("there");
        assert_eq!(get_pair(&r.params, "ip"), Some("10.0.0.6"));
        assert_eq!(get_pair(&r.params, "cidr_netmask"), None);
        assert_eq!(get_pair(&r.params, "nic"), Some("eth0"));
        assert_eq!(get_pair(&r.meta, "resource-stickiness"), None);
        assert_eq!(get_pair(&r.meta, "migration-threshold"), Some("3"));
        assert_eq!(r.ops.len(), 2, "monitor updated in place, start added: {:?}", r.ops);
        assert_eq!(r.ops[0].timeout_ms, Some(30_000));
        assert_eq!(r.ops[1].id, "vip-start-interval-0s");
    }

    #[test]
    fn update_of_one_of_several_monitors_needs_its_interval() {
        let mut cib = base();
        let two = PrimitiveSpec {
            ops: vec![
                op("monitor", &[("interval", "10s"), ("role", "Promoted")]),
                op("monitor", &[("interval", "11s"), ("role", "Unpromoted")]),
            ],
            ..spec("vip")
        };
        create_primitive(&mut cib.config, &two).expect("created");
        let e = update_resource(&mut cib.config, "vip", &[], &[], &[op("monitor", &[("timeout", "5s")])]).unwrap_err();
        assert!(e.to_string().contains("add interval="), "{e}");
        update_resource(&mut cib.config, "vip", &[], &[], &[op("monitor", &[("interval", "11s"), ("timeout", "5s")])])
            .expect("with interval");
        assert_sound(&cib);
        let r = find(&cib.config.resources, "vip").expect("there");
        assert_eq!(r.ops.iter().map(|o| o.timeout_ms).collect::<Vec<_>>(), [None, Some(5000)]);
        assert!(matches!(
            update_resource(&mut cib.config, "nope", &kv(&[("a", "b")]), &[], &[]),
            Err(EditError::NotFound { what: "resource", .. })
        ));
    }

    #[test]
    fn delete_removes_the_resource_and_every_constraint_naming_it() {
        let mut cib = base();
        create_primitive(&mut cib.config, &spec("d3")).expect("d3");
        let c = &mut cib.config;
        add_location(
            c,
            &LocationSpec {
                id: None,
                rsc: "d1".into(),
                node: "node2".into(),
                score: Score::new(50),
                role: None,
                resource_discovery: None,
            },
        )
        .expect("loc");
        add_order(
            c,
            &OrderSpec {
                id: None,
                first: "d2".into(),
                first_action: None,
                then: "d1".into(),
                then_action: None,
                kind: OrderKind::Mandatory,
                symmetrical: None,
                require_all: true,
            },
        )
        .expect("order");
        let set = |rs: &[&str]| SetSpec { resources: rs.iter().map(|r| r.to_string()).collect(), ..SetSpec::default() };
        add_set_constraint(c, Some("keep"), SetKind::Colocation(Score::INF), &[set(&["d1", "d2"]), set(&["d3"])])
            .expect("set");
        add_set_constraint(c, Some("lone"), SetKind::Order(OrderKind::Optional), &[set(&["d1"])]).expect("set");
        let notes = delete_resource(c, "d1").expect("deleted");
        assert_sound(&cib);
        assert!(find(&cib.config.resources, "d1").is_none());
        let ids: Vec<&str> = cib.config.constraints.iter().map(constraint_id).collect();
        assert_eq!(ids, ["keep"], "{notes:?}");
        for gone in ["location-d1-node2-50", "order-d2-d1-mandatory", "lone"] {
            assert!(notes.iter().any(|n| n.contains(gone)), "{gone} not reported: {notes:?}");
        }
        assert!(notes.iter().any(|n| n.contains("resource sets of constraint 'keep'")), "{notes:?}");
    }

    #[test]
    fn deleting_a_clone_child_or_a_groups_last_member_removes_the_wrapper() {
        let mut cib = base();
        let c = &mut cib.config;
        let cloned =
            PrimitiveSpec { placement: Placement::Clone { id: None, meta: vec![], promotable: false }, ..spec("p") };
        create_primitive(c, &cloned).expect("clone");
        let grouped =
            PrimitiveSpec { placement: Placement::Group { group: "g".into(), position: Position::End }, ..spec("m") };
        create_primitive(c, &grouped).expect("group");
        add_colocation(
            c,
            &ColocationSpec {
                id: None,
                rsc: "g".into(),
                rsc_role: None,
                with_rsc: "d2".into(),
                with_role: None,
                score: Score::INF,
                influence: None,
                node_attribute: None,
            },
        )
        .expect("colocation");
        let notes = delete_resource(c, "p").expect("p");
        assert!(notes.iter().any(|n| n.contains("removed clone 'p-clone'")), "{notes:?}");
        let notes = delete_resource(c, "m").expect("m");
        assert!(notes.iter().any(|n| n.contains("removed group 'g'")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("colocation-g-d2-INFINITY")), "{notes:?}");
        assert_sound(&cib);
        assert_eq!(cib.config.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["d1", "d2"]);
        assert!(cib.config.constraints.is_empty());
    }

    #[test]
    fn disable_stops_the_resource_and_enable_removes_target_role() {
        let mut cib = base();
        set_target_role(&mut cib.config, "d1", Some(Role::Stopped)).expect("disabled");
        assert_sound(&cib);
        let d1: Vec<String> = summary(&cib).into_iter().filter(|l| l.contains("d1")).collect();
        assert!(d1.len() == 1 && d1[0].starts_with("Stop") && d1[0].contains("node1"), "{d1:?}");
        set_target_role(&mut cib.config, "d1", None).expect("enabled");
        assert_sound(&cib);
        assert!(find(&cib.config.resources, "d1").expect("there").meta.is_empty(), "the emptied set is removed");
        assert!(summary(&cib).iter().all(|l| !l.contains("d1")), "{:?}", summary(&cib));
        assert!(matches!(set_target_role(&mut cib.config, "x", None), Err(EditError::NotFound { .. })));
    }

    #[test]
    fn move_prefers_the_node_and_lifts_a_ban_there_and_clear_removes_it() {
        let mut cib = base();
        ban(&mut cib.config, "d1", "node3", None).expect("ban");
        assert!(location(&cib, "cli-ban-d1-on-node3").is_some());
        let notes = move_to(&mut cib.config, "d1", "node3", None).expect("moved");
        assert_sound(&cib);
        assert!(location(&cib, "cli-ban-d1-on-node3").is_none(), "{notes:?}");
        let l = location(&cib, "cli-prefer-d1").expect("prefer");
        assert_eq!((l.node.as_deref(), l.score), (Some("node3"), Some(Score::INF)));
        assert!(
            summary(&cib).iter().any(|s| s.starts_with("Move") && s.contains("node1 -> node3")),
            "{:?}",
            summary(&cib)
        );
        // A second move replaces the first.
        move_to(&mut cib.config, "d1", "node2", None).expect("moved again");
        assert_eq!(cib.config.constraints.len(), 1);
        clear(&mut cib.config, "d1", None).expect("cleared");
        assert!(cib.config.constraints.is_empty());
        assert_sound(&cib);
    }

    #[test]
    fn ban_keeps_it_off_the_node_and_clear_for_one_node_keeps_the_others() {
        let mut cib = base();
        ban(&mut cib.config, "d1", "node1", None).expect("ban");
        ban(&mut cib.config, "d1", "node2", None).expect("ban");
        assert_sound(&cib);
        let l = location(&cib, "cli-ban-d1-on-node1").expect("named as Pacemaker names it");
        assert_eq!(l.score, Some(Score::NEG_INF));
        assert!(summary(&cib).iter().any(|s| s.contains("node1 -> node3")), "{:?}", summary(&cib));
        let notes = clear(&mut cib.config, "d1", Some("node2")).expect("cleared");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(location(&cib, "cli-ban-d1-on-node1").is_some());
        let nothing = clear(&mut cib.config, "d2", None).expect("nothing to clear");
        assert!(nothing[0].contains("no move or ban"));
        let e = ban(&mut cib.config, "d1", "node9", None).unwrap_err();
        assert_eq!(e.to_string(), "no node named 'node9'; known: node1, node2, node3");
        let e = move_to(&mut cib.config, "nope", "node1", None).unwrap_err();
        assert!(e.to_string().starts_with("no resource named 'nope'; known: d1, d2"), "{e}");
    }

    #[test]
    fn standby_and_maintenance_are_node_attributes_the_scheduler_obeys() {
        let mut cib = base();
        set_node_attribute(&mut cib.config, "node1", STANDBY, Some("on")).expect("standby");
        assert_sound(&cib);
        assert_eq!(cib.config.nodes[0].attributes[0].id, "nodes-1");
        assert_eq!(cib.config.nodes[0].attributes[0].pairs[0].id, "nodes-1-standby");
        assert_eq!(node_attribute(&cib.config, "node1", STANDBY), Some("on"));
        assert!(summary(&cib).iter().any(|s| s.starts_with("Move") && s.contains("d1")), "{:?}", summary(&cib));
        set_node_attribute(&mut cib.config, "node1", STANDBY, None).expect("unstandby");
        assert!(cib.config.nodes[0].attributes.is_empty());
        set_node_attribute(&mut cib.config, "node1", MAINTENANCE, Some("on")).expect("maintenance");
        assert_sound(&cib);
        assert!(summary(&cib).iter().all(|l| !l.contains("d1")), "{:?}", summary(&cib));
        let e = set_node_attribute(&mut cib.config, "node1", STANDBY, Some("maybe")).unwrap_err();
        assert!(e.to_string().contains("not a boolean"), "{e}");
        assert!(matches!(
            set_node_attribute(&mut cib.config, "node7", STANDBY, Some("on")),
            Err(EditError::NotFound { what: "node", .. })
        ));
    }

    #[test]
    fn location_constraints_are_added_updated_and_checked() {
        let mut cib = base();
        let loc = |score: &str, id: Option<&str>| LocationSpec {
            id: id.map(str::to_string),
            rsc: "d2".into(),
            node: "node2".into(),
            score: parse_score("score", score).expect("score"),
            role: None,
            resource_discovery: None,
        };
        add_location(&mut cib.config, &loc("INFINITY", None)).expect("added");
        assert!(location(&cib, "location-d2-node2-INFINITY").is_some());
        let notes = add_location(&mut cib.config, &loc("-100", None)).expect("updated");
        assert!(notes[0].contains("updated"), "{notes:?}");
        assert_eq!(cib.config.constraints.len(), 1);
        assert_sound(&cib);
        let e = add_location(&mut cib.config, &loc("5", Some("location-d2-node2-INFINITY"))).expect("same id: update");
        assert!(e[0].contains("updated"));
        assert!(matches!(
            add_location(
                &mut cib.config,
                &LocationSpec { id: Some("o-fe".into()), node: "node3".into(), ..loc("1", None) }
            ),
            Err(EditError::Exists { what: "id", .. })
        ));
        for bad in ["lots", "1.5e", "", "green"] {
            let e = parse_score("score", bad).unwrap_err();
            assert!(e.to_string().contains("INFINITY"), "{bad}: {e}");
        }
        remove_constraint(&mut cib.config, "location-d2-node2-INFINITY").expect("removed");
        assert!(matches!(remove_constraint(&mut cib.config, "x"), Err(EditError::NotFound { what: "constraint", .. })));
    }

    #[test]
    fn order_and_colocation_check_their_resources_actions_and_duplicates() {
        let mut cib = base();
        let order = |first: &str, fa: Option<&str>| OrderSpec {
            id: None,
            first: first.into(),
            first_action: fa.map(str::to_string),
            then: "d2".into(),
            then_action: None,
            kind: OrderKind::Mandatory,
            symmetrical: None,
            require_all: true,
        };
        add_order(&mut cib.config, &order("d1", None)).expect("order");
        assert!(matches!(add_order(&mut cib.config, &order("d1", Some("start"))), Err(EditError::Exists { .. })));
        add_order(&mut cib.config, &order("d1", Some("promote"))).expect("another action");
        let e = add_order(&mut cib.config, &order("d1", Some("launch"))).unwrap_err();
        assert!(e.to_string().starts_with("field first-action:"), "{e}");
        assert!(add_order(&mut cib.config, &order("d2", None)).unwrap_err().to_string().contains("itself"));
        assert!(matches!(add_order(&mut cib.config, &order("zz", None)), Err(EditError::NotFound { .. })));
        let coloc = ColocationSpec {
            id: Some("c1".into()),
            rsc: "d2".into(),
            rsc_role: None,
            with_rsc: "d1".into(),
            with_role: None,
            score: Score::INF,
            influence: Some(false),
            node_attribute: None,
        };
        add_colocation(&mut cib.config, &coloc).expect("colocation");
        assert!(matches!(add_colocation(&mut cib.config, &coloc), Err(EditError::Exists { .. })));
        assert_sound(&cib);
        // d2 now follows d1 to node1.
        assert!(summary(&cib).iter().any(|s| s.starts_with("Start") && s.contains("d2") && s.contains("node1")));
    }

    #[test]
    fn set_constraints_get_ids_and_refuse_a_resource_in_two_sets() {
        let mut cib = base();
        create_primitive(&mut cib.config, &spec("d3")).expect("d3");
        let set = |rs: &[&str], seq: bool| SetSpec {
            resources: rs.iter().map(|r| r.to_string()).collect(),
            sequential: seq,
            ..SetSpec::default()
        };
        add_set_constraint(
            &mut cib.config,
            None,
            SetKind::Order(OrderKind::Mandatory),
            &[set(&["d1", "d2"], false), set(&["d3"], true)],
        )
        .expect("order set");
        assert_sound(&cib);
        let Some(Constraint::Order(o)) = cib.config.constraints.first() else { panic!("no order") };
        assert_eq!(o.id, "order-set-d1-d2-d3");
        assert_eq!(o.sets.len(), 2);
        assert!(!o.sets[0].sequential);
        let e = add_set_constraint(
            &mut cib.config,
            None,
            SetKind::Colocation(Score::INF),
            &[set(&["d1"], true), set(&["d1"], true)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
        assert!(add_set_constraint(&mut cib.config, None, SetKind::Colocation(Score::INF), &[]).is_err());
    }

    #[test]
    fn properties_are_stored_under_their_current_name_and_checked() {
        let mut cib = base();
        let notes = set_properties(&mut cib.config, &kv(&[("stonith-enabled", "true")]), false).expect("set");
        assert!(notes[0].contains("fencing-enabled"), "{notes:?}");
        let pairs: Vec<&NvPair> = cib.config.properties.iter().flat_map(|s| &s.pairs).collect();
        assert_eq!(pairs.len(), 1, "the old spelling was replaced: {pairs:?}");
        assert_eq!((pairs[0].name.as_str(), pairs[0].value.as_deref()), ("fencing-enabled", Some("true")));
        set_properties(
            &mut cib.config,
            &kv(&[("no-quorum-policy", "freeze"), ("cluster-recheck-interval", "2min")]),
            false,
        )
        .expect("set");
        assert_eq!(property(&cib.config, "no-quorum-policy"), Some("freeze"));
        assert_sound(&cib);
        for (k, v, want) in [
            ("stonith-enabled", "perhaps", "not a boolean"),
            ("no-quorum-policy", "panic", "one of stop"),
            ("cluster-recheck-interval", "soon", "not a duration"),
            ("dc-version", "2.1", "cannot be set"),
            ("maintenance-mod", "true", "did you mean maintenance-mode"),
        ] {
            let e = set_properties(&mut cib.config, &kv(&[(k, v)]), false).unwrap_err();
            assert!(e.to_string().contains(want), "{k}={v}: {e}");
        }
        set_properties(&mut cib.config, &kv(&[("my-own", "x")]), true).expect("forced");
        unset_properties(&mut cib.config, &["stonith-enabled".into(), "my-own".into()]).expect("unset");
        assert_eq!(property(&cib.config, "fencing-enabled"), None);
        let e = unset_properties(&mut cib.config, &["batch-limit".into()]).unwrap_err();
        assert!(matches!(e, EditError::NotFound { what: "property", .. }), "{e}");
        assert_sound(&cib);
    }

    #[test]
    fn generated_ids_never_collide_with_existing_ones() {
        let mut cib = base();
        let mut ids = all_ids(&cib.config);
        assert_eq!(fresh_id(&mut ids, "d1"), "d1-1");
        assert_eq!(fresh_id(&mut ids, "d1"), "d1-2");
        assert_eq!(fresh_id(&mut ids, "10.0.0.1:x"), "_10.0.0.1_x");
        // An op id already used elsewhere is not reused.
        let s = PrimitiveSpec { ops: vec![op("monitor", &[("interval", "10s")])], ..spec("d1-monitor-interval") };
        create_primitive(&mut cib.config, &PrimitiveSpec { id: "d1x".into(), ..s }).expect("created");
        assert_sound(&cib);
    }

    #[test]
    fn unmanage_sets_is_managed_and_can_pause_monitors() {
        let mut cib = base();
        let notes = set_managed(&mut cib.config, "d1", false, true).expect("unmanaged");
        assert_sound(&cib);
        let r = find(&cib.config.resources, "d1").expect("there");
        assert_eq!(get_pair(&r.meta, "is-managed"), Some("false"));
        assert!(!r.ops[0].enabled, "{notes:?}");
        set_target_role(&mut cib.config, "d1", Some(Role::Stopped)).expect("disabled");
        assert!(summary(&cib).iter().all(|l| !l.contains("d1")), "unmanaged: not stopped {:?}", summary(&cib));
        set_managed(&mut cib.config, "d1", true, true).expect("managed");
        let r = find(&cib.config.resources, "d1").expect("there");
        assert_eq!(get_pair(&r.meta, "is-managed"), None);
        assert!(r.ops[0].enabled);
        assert_sound(&cib);
    }

    #[test]
    fn ops_are_added_once_and_removed_by_action_interval_or_id() {
        let mut cib = base();
        add_op(&mut cib.config, "d1", &op("monitor", &[("interval", "20s"), ("role", "Started")])).expect("added");
        add_op(&mut cib.config, "d1", &op("start", &[("timeout", "30s")])).expect("added");
        let again = add_op(&mut cib.config, "d1", &op("monitor", &[("interval", "10s")])).unwrap_err();
        assert!(matches!(again, EditError::Exists { what: "operation", .. }), "{again}");
        assert_sound(&cib);
        remove_op(&mut cib.config, "d1", "monitor", Some("20s")).expect("removed one");
        assert_eq!(find(&cib.config.resources, "d1").expect("d1").ops.len(), 2);
        remove_op(&mut cib.config, "d1", "d1-start-interval-0s", None).expect("by id");
        remove_op(&mut cib.config, "d1", "monitor", None).expect("all monitors");
        assert!(find(&cib.config.resources, "d1").expect("d1").ops.is_empty());
        let e = remove_op(&mut cib.config, "d1", "monitor", None).unwrap_err();
        assert!(matches!(e, EditError::NotFound { what: "operation", .. }));
        assert_sound(&cib);
    }

    #[test]
    fn grouping_moves_primitives_in_and_out_and_drops_an_emptied_group() {
        let mut cib = base();
        create_primitive(&mut cib.config, &spec("d3")).expect("d3");
        let notes = group_add(&mut cib.config, "g", &["d1".into(), "d2".into()], &Position::End).expect("grouped");
        assert!(notes.iter().any(|n| n.contains("created group 'g'")));
        group_add(&mut cib.config, "g", &["d3".into()], &Position::Before("d2".into())).expect("inserted");
        assert_sound(&cib);
        let ResourceKind::Group { members } = &find(&cib.config.resources, "g").expect("g").kind else {
            panic!("not a group")
        };
        assert_eq!(members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["d1", "d3", "d2"]);
        assert!(group_add(&mut cib.config, "g2", &["g".into()], &Position::End).is_err(), "groups hold primitives");
        add_colocation(
            &mut cib.config,
            &ColocationSpec {
                id: Some("with-g".into()),
                rsc: "g".into(),
                rsc_role: None,
                with_rsc: "vip".into(),
                with_role: None,
                score: Score::INF,
                influence: None,
                node_attribute: None,
            },
        )
        .unwrap_err();
        group_remove(&mut cib.config, "g", &["d3".into()]).expect("one out");
        assert_eq!(cib.config.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["g", "d3"]);
        add_order(
            &mut cib.config,
            &OrderSpec {
                id: Some("g-first".into()),
                first: "g".into(),
                first_action: None,
                then: "d3".into(),
                then_action: None,
                kind: OrderKind::Mandatory,
                symmetrical: None,
                require_all: true,
            },
        )
        .expect("order");
        let notes = group_remove(&mut cib.config, "g", &[]).expect("ungrouped");
        assert!(notes.iter().any(|n| n.contains("removed group 'g'")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("g-first")), "{notes:?}");
        assert_eq!(cib.config.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["d1", "d2", "d3"]);
        assert_sound(&cib);
    }

    #[test]
    fn the_risk_line_counts_disruption_and_names_nodes_at_risk() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(risk(&s(&["Start d1 ( n1 )"]), true), ("risk: no running resource is disturbed".into(), false));
        let moves =
            s(&["Move       d1     ( n2 -> n1 )", "Stop d2 ( n1 )  due to node availability", "Stop d3 ( n1 )"]);
        assert_eq!(
            risk(&moves, true).0,
            "risk: 2 resources stop; 1 resource move; n1, n2 are fenced if a stop fails there"
        );
        assert_eq!(
            risk(&s(&["Restart d1 ( n1 )", "Fence (reboot) n3 'peer lost'"]), false),
            ("risk: 1 resource restart; 1 node is fenced".into(), true)
        );
        assert!(!fencing_enabled(&base().config), "the base configuration turns it off");
        assert!(fencing_enabled(&Configuration::default()));
    }

    #[test]
    fn goals_are_checked_against_where_resources_run() {
        let cib = base();
        let view = &crate::schedule(&cib, None, 1_700_000_000).current;
        assert_eq!(runs_on(view, "d1"), ["node1"]);
        let ok = |g: Goal| check_goal(view, &g);
        assert_eq!(ok(Goal::Running("d1".into(), Some("node1".into()))), Ok("d1 runs on node1".into()));
        assert_eq!(
            ok(Goal::Running("d1".into(), Some("node2".into()))),
            Err("d1 does not run on node2 (it runs on: node1)".into())
        );
        assert_eq!(ok(Goal::Stopped("d2".into(), None)), Ok("d2 is stopped".into()));
        assert_eq!(ok(Goal::Stopped("d1".into(), None)), Err("d1 still runs on node1".into()));
        assert_eq!(ok(Goal::NodeEmpty("node1".into())), Err("d1 still runs on node1".into()));
        assert!(ok(Goal::NodeEmpty("node2".into())).is_ok());
    }

    #[test]
    fn location_rules_parse_terms_and_steer_placement() {
        let w = |t: &str| vec![t.to_string()];
        let (or, terms) = parse_rule_expression(&w("#uname eq node2 or rack eq integer 3")).expect("parses");
        assert!(or);
        let want = RuleTerm {
            attribute: "rack".into(),
            operation: "eq".into(),
            value: Some("3".into()),
            value_type: Some("integer".into()),
        };
        assert_eq!(terms[1], want);
        let (or, terms) = parse_rule_expression(&w("defined pingd and pingd gt 0")).expect("parses");
        assert!(!or);
        assert_eq!(
            (terms[0].attribute.as_str(), terms[0].operation.as_str(), &terms[0].value),
            ("pingd", "defined", &None)
        );
        for (bad, says) in [
            ("", "an expression is needed"),
            ("#uname is node1", "not an operation"),
            ("a eq 1 and b eq 2 or c eq 3", "mixing"),
            ("a eq", "needs a value"),
            ("a eq 1 b eq 2", "expected 'and' or 'or'"),
            ("date gt 2020-01-01", "date expressions"),
        ] {
            let e = parse_rule_expression(&w(bad)).unwrap_err();
            assert!(e.to_string().starts_with("field rule:") && e.to_string().contains(says), "{bad}: {e}");
        }
        let mut cib = base();
        let spec = LocationRuleSpec {
            id: None,
            rsc: "d1".into(),
            role: None,
            score: None,
            score_attribute: None,
            resource_discovery: None,
            expression: w("#uname eq node2"),
        };
        add_location_rule(&mut cib.config, &spec).expect("added");
        assert_sound(&cib);
        let l = location(&cib, "location-d1").expect("named location-R");
        assert_eq!(l.rules[0].id, "location-d1-rule");
        assert!(summary(&cib).iter().any(|s| s.contains("node1 -> node2")), "{:?}", summary(&cib));
        let both = LocationRuleSpec { score: Some(Score::new(5)), score_attribute: Some("x".into()), ..spec };
        assert!(add_location_rule(&mut cib.config, &both).unwrap_err().to_string().contains("not both"));
    }
}
