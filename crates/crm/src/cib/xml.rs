//! Pacemaker CIB XML import. Accepts old and new names; reports unknown elements.

use std::collections::BTreeMap;

use roxmltree::{Document, Node};

use super::model::*;
use crate::error::{CibError, Diagnostic};
use crate::score::Score;

type XNode<'a, 'i> = Node<'a, 'i>;

struct Reader<'a, 'i> {
    diags: Vec<Diagnostic>,
    /// Elements with an id, for `id-ref` resolution.
    by_id: BTreeMap<&'a str, XNode<'a, 'i>>,
}

/// Parses a CIB XML document. Returns the CIB and warnings (unknown elements and attributes
/// that were not understood); fails on malformed XML or invalid values.
pub fn parse_cib(text: &str) -> Result<(Cib, Vec<Diagnostic>), CibError> {
    let doc = Document::parse(text).map_err(|e| CibError::Xml { detail: e.to_string() })?;
    let root = doc.root_element();
    if root.tag_name().name() != "cib" {
        return Err(CibError::Invalid {
            element: root.tag_name().name().to_string(),
            id: String::new(),
            field: "root".into(),
            problem: "the document root must be <cib>".into(),
        });
    }
    let mut by_id = BTreeMap::new();
    for n in root.descendants().filter(|n| n.is_element()) {
        if let Some(id) = n.attribute("id") {
            by_id.entry(id).or_insert(n);
        }
    }
    let mut r = Reader { diags: Vec::new(), by_id };
    let cib = r.cib(root)?;
    Ok((cib, r.diags))
}

fn num<T: std::str::FromStr>(n: XNode<'_, '_>, attr: &str) -> Result<Option<T>, CibError> {
    match n.attribute(attr) {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| invalid(n, attr, &format!("'{v}' is not a number"))),
    }
}

fn invalid(n: XNode<'_, '_>, field: &str, problem: &str) -> CibError {
    CibError::Invalid {
        element: n.tag_name().name().to_string(),
        id: n.attribute("id").unwrap_or("").to_string(),
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

fn score_attr(n: XNode<'_, '_>, attr: &str) -> Result<Option<Score>, CibError> {
    match n.attribute(attr) {
        None => Ok(None),
        Some(v) => Score::parse(v)
            .map(Some)
            .ok_or_else(|| invalid(n, attr, &format!("'{v}' is not a score (use an integer or INFINITY)"))),
    }
}

fn role_attr(n: XNode<'_, '_>, attr: &str) -> Result<Option<Role>, CibError> {
    match n.attribute(attr) {
        None => Ok(None),
        Some(v) => Role::parse(v)
            .map(Some)
            .ok_or_else(|| invalid(n, attr, &format!("'{v}' is not a role (Started, Promoted, Unpromoted, Stopped)"))),
    }
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1" | "y")
}

/// Parses an interval: plain milliseconds or a number with a unit (s, ms, m, h).
pub(crate) fn parse_interval_ms(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Some(0);
    }
    if let Ok(v) = t.parse::<u64>() {
        return Some(v);
    }
    let (digits, unit): (String, String) = t.chars().partition(|c| c.is_ascii_digit());
    let v: u64 = digits.parse().ok()?;
    let mult = match unit.trim() {
        "ms" | "msec" => 1,
        "s" | "sec" => 1000,
        "m" | "min" => 60_000,
        "h" | "hr" => 3_600_000,
        "us" | "usec" => return Some(v / 1000),
        _ => return None,
    };
    Some(v * mult)
}

/// Parses a configured interval: a bare number is seconds.
pub(crate) fn parse_config_interval_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Ok(v) = t.parse::<u64>() {
        return Some(v * 1000);
    }
    parse_interval_ms(t)
}

/// Parses a duration in seconds (`60`, `60s`, `5min`, `1h`).
pub(crate) fn parse_duration_s(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    parse_interval_ms(&t).map(|ms| (ms / 1000) as i64)
}

impl<'a, 'i> Reader<'a, 'i> {
    fn unknown(&mut self, n: XNode<'a, 'i>, parent: &str) {
        self.diags.push(Diagnostic {
            element: n.tag_name().name().to_string(),
            id: n.attribute("id").unwrap_or("").to_string(),
            message: format!("unknown element <{}> inside <{parent}> was not imported", n.tag_name().name()),
        });
    }

    fn deref(&self, n: XNode<'a, 'i>) -> XNode<'a, 'i> {
        if let Some(r) = n.attribute("id-ref")
            && let Some(t) = self.by_id.get(r)
        {
            return *t;
        }
        n
    }

    fn cib(&mut self, root: XNode<'a, 'i>) -> Result<Cib, CibError> {
        let mut cib = Cib {
            version: CibVersion {
                admin_epoch: num(root, "admin_epoch")?.unwrap_or(0),
                epoch: num(root, "epoch")?.unwrap_or(0),
                num_updates: num(root, "num_updates")?.unwrap_or(0),
            },
            have_quorum: root.attribute("have-quorum").is_some_and(truthy),
            dc_uuid: root.attribute("dc-uuid").map(str::to_string),
            validate_with: root.attribute("validate-with").map(str::to_string),
            feature_set: root.attribute("crm_feature_set").map(str::to_string),
            execution_date: num(root, "execution-date")?,
            no_quorum_panic: root.attribute("no-quorum-panic").is_some_and(truthy),
            ..Cib::default()
        };
        for child in root.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "configuration" => cib.config = self.configuration(child)?,
                "status" => {
                    for ns in child.children().filter(|n| n.is_element()) {
                        if ns.tag_name().name() == "node_state" {
                            cib.status.push(self.node_state(ns)?);
                        } else {
                            self.unknown(ns, "status");
                        }
                    }
                }
                _ => self.unknown(child, "cib"),
            }
        }
        Ok(cib)
    }

    fn configuration(&mut self, n: XNode<'a, 'i>) -> Result<Configuration, CibError> {
        let mut c = Configuration::default();
        for child in n.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "crm_config" => c.properties = self.sets(child, "cluster_property_set")?,
                "nodes" => {
                    for node in child.children().filter(|n| n.is_element()) {
                        if node.tag_name().name() != "node" {
                            self.unknown(node, "nodes");
                            continue;
                        }
                        let mut nc = NodeConfig {
                            id: node.attribute("id").unwrap_or("").to_string(),
                            uname: node.attribute("uname").or(node.attribute("id")).unwrap_or("").to_string(),
                            kind: node.attribute("type").map(str::to_string),
                            ..NodeConfig::default()
                        };
                        for s in node.children().filter(|n| n.is_element()) {
                            match s.tag_name().name() {
                                "instance_attributes" => nc.attributes.push(self.nvset(s)?),
                                "utilization" => nc.utilization.push(self.nvset(s)?),
                                _ => self.unknown(s, "node"),
                            }
                        }
                        c.nodes.push(nc);
                    }
                }
                "resources" => {
                    for r in child.children().filter(|n| n.is_element()) {
                        if let Some(res) = self.resource(r, "resources")? {
                            c.resources.push(res);
                        }
                    }
                }
                "constraints" => {
                    for k in child.children().filter(|n| n.is_element()) {
                        match k.tag_name().name() {
                            "rsc_location" => c.constraints.push(Constraint::Location(self.location(k)?)),
                            "rsc_colocation" => c.constraints.push(Constraint::Colocation(self.colocation(k)?)),
                            "rsc_order" => c.constraints.push(Constraint::Order(self.order(k)?)),
                            _ => self.unknown(k, "constraints"),
                        }
                    }
                }
                "rsc_defaults" => c.rsc_defaults = self.sets(child, "meta_attributes")?,
                "op_defaults" => c.op_defaults = self.sets(child, "meta_attributes")?,
                _ => self.unknown(child, "configuration"),
            }
        }
        Ok(c)
    }

    fn sets(&mut self, n: XNode<'a, 'i>, tag: &str) -> Result<Vec<NvSet>, CibError> {
        let mut out = Vec::new();
        for s in n.children().filter(|n| n.is_element()) {
            let name = s.tag_name().name();
            if name == tag || name == "meta_attributes" || name == "instance_attributes" {
                out.push(self.nvset(s)?);
            } else {
                self.unknown(s, n.tag_name().name());
            }
        }
        Ok(out)
    }

    fn nvset(&mut self, n: XNode<'a, 'i>) -> Result<NvSet, CibError> {
        let id = n.attribute("id").or(n.attribute("id-ref")).unwrap_or("").to_string();
        let src = self.deref(n);
        let mut set = NvSet { id, score: score_attr(src, "score")?, ..NvSet::default() };
        for p in src.children().filter(|n| n.is_element()) {
            match p.tag_name().name() {
                "nvpair" => {
                    let p = self.deref(p);
                    set.pairs.push(NvPair {
                        id: p.attribute("id").unwrap_or("").to_string(),
                        name: p
                            .attribute("name")
                            .ok_or_else(|| invalid(p, "name", "an nvpair needs a name"))?
                            .to_string(),
                        value: p.attribute("value").map(str::to_string),
                    });
                }
                "rule" => set.rule = Some(self.rule(p)?),
                _ => self.unknown(p, src.tag_name().name()),
            }
        }
        Ok(set)
    }

    fn resource(&mut self, r: XNode<'a, 'i>, parent: &str) -> Result<Option<Resource>, CibError> {
        let tag = r.tag_name().name();
        let id = r.attribute("id").ok_or_else(|| invalid(r, "id", "every resource needs an id"))?.to_string();
        let mut res = Resource {
            id: id.clone(),
            kind: ResourceKind::Group { members: Vec::new() },
            meta: Vec::new(),
            params: Vec::new(),
            utilization: Vec::new(),
            ops: Vec::new(),
        };
        let mut members = Vec::new();
        for c in r.children().filter(|n| n.is_element()) {
            match c.tag_name().name() {
                "meta_attributes" => res.meta.push(self.nvset(c)?),
                "instance_attributes" => res.params.push(self.nvset(c)?),
                "utilization" => res.utilization.push(self.nvset(c)?),
                "operations" => {
                    // An operations set may be a reference to one defined elsewhere.
                    let c = self.deref(c);
                    for op in c.children().filter(|n| n.is_element()) {
                        if op.tag_name().name() == "op" {
                            let op = self.deref(op);
                            res.ops.push(self.op(op)?);
                        } else {
                            self.unknown(op, "operations");
                        }
                    }
                }
                "primitive" | "group" | "clone" | "master" if tag != "primitive" => {
                    if let Some(m) = self.resource(c, tag)? {
                        members.push(m);
                    }
                }
                _ => self.unknown(c, tag),
            }
        }
        res.kind = match tag {
            "primitive" => ResourceKind::Primitive {
                class: r
                    .attribute("class")
                    .ok_or_else(|| invalid(r, "class", "a primitive needs a class (ocf, lsb, systemd, stonith)"))?
                    .to_string(),
                provider: r.attribute("provider").map(str::to_string),
                agent: r
                    .attribute("type")
                    .ok_or_else(|| invalid(r, "type", "a primitive needs an agent type"))?
                    .to_string(),
            },
            "group" => {
                if members.iter().any(|m| !matches!(m.kind, ResourceKind::Primitive { .. })) {
                    return Err(invalid(r, "members", "a group may only contain primitives"));
                }
                ResourceKind::Group { members }
            }
            "clone" | "master" => {
                if members.len() != 1 {
                    return Err(invalid(r, "child", "a clone must contain exactly one primitive or group"));
                }
                let child = members.pop().ok_or_else(|| invalid(r, "child", "missing child"))?;
                if matches!(child.kind, ResourceKind::Clone { .. }) {
                    return Err(invalid(r, "child", "a clone cannot contain a clone"));
                }
                ResourceKind::Clone { child: Box::new(child), legacy_promotable: tag == "master" }
            }
            _ => {
                self.unknown(r, parent);
                return Ok(None);
            }
        };
        Ok(Some(res))
    }

    fn op(&mut self, op: XNode<'a, 'i>) -> Result<OpConfig, CibError> {
        let op = self.deref(op);
        let interval = op.attribute("interval").unwrap_or("0");
        let mut cfg = OpConfig {
            id: op.attribute("id").unwrap_or("").to_string(),
            name: op.attribute("name").ok_or_else(|| invalid(op, "name", "an op needs a name"))?.to_string(),
            interval_ms: parse_config_interval_ms(interval)
                .ok_or_else(|| invalid(op, "interval", &format!("'{interval}' is not an interval")))?,
            role: role_attr(op, "role")?,
            on_fail: op.attribute("on-fail").map(str::to_string),
            enabled: op.attribute("enabled").is_none_or(truthy),
            timeout_ms: op.attribute("timeout").and_then(parse_config_interval_ms),
            meta: Vec::new(),
            params: Vec::new(),
        };
        for a in op.attributes() {
            if !matches!(a.name(), "id" | "name" | "interval" | "role" | "on-fail" | "enabled" | "timeout") {
                cfg.meta.push(NvPair {
                    id: String::new(),
                    name: a.name().to_string(),
                    value: Some(a.value().to_string()),
                });
            }
        }
        for c in op.children().filter(|n| n.is_element()) {
            match c.tag_name().name() {
                "instance_attributes" => cfg.params.extend(self.nvset(c)?.pairs),
                "meta_attributes" => {
                    let set = self.nvset(c)?;
                    for p in set.pairs {
                        match p.name.as_str() {
                            "on-fail" => cfg.on_fail = p.value,
                            "enabled" => cfg.enabled = p.value.as_deref().is_none_or(truthy),
                            _ => cfg.meta.push(p),
                        }
                    }
                }
                _ => self.unknown(c, "op"),
            }
        }
        Ok(cfg)
    }

    fn rule(&mut self, n: XNode<'a, 'i>) -> Result<Rule, CibError> {
        let n = self.deref(n);
        let mut rule = Rule {
            id: n.attribute("id").unwrap_or("").to_string(),
            score: score_attr(n, "score")?,
            score_attribute: n.attribute("score-attribute").map(str::to_string),
            boolean_or: n.attribute("boolean-op").is_some_and(|v| v.eq_ignore_ascii_case("or")),
            role: role_attr(n, "role")?,
            exprs: Vec::new(),
        };
        for e in n.children().filter(|n| n.is_element()) {
            match e.tag_name().name() {
                "expression" => rule.exprs.push(Expr::Attr {
                    id: e.attribute("id").unwrap_or("").to_string(),
                    attribute: e
                        .attribute("attribute")
                        .ok_or_else(|| invalid(e, "attribute", "an expression needs an attribute"))?
                        .to_string(),
                    operation: e
                        .attribute("operation")
                        .ok_or_else(|| invalid(e, "operation", "an expression needs an operation"))?
                        .to_string(),
                    value: e.attribute("value").map(str::to_string),
                    value_type: e.attribute("type").map(str::to_string),
                    value_source: e.attribute("value-source").map(str::to_string),
                }),
                "rule" => rule.exprs.push(Expr::Rule(Box::new(self.rule(e)?))),
                "rsc_expression" => rule.exprs.push(Expr::Resource {
                    id: e.attribute("id").unwrap_or("").to_string(),
                    class: e.attribute("class").map(str::to_string),
                    provider: e.attribute("provider").map(str::to_string),
                    agent: e.attribute("type").map(str::to_string),
                }),
                "op_expression" => {
                    let interval = e.attribute("interval").map(str::to_string);
                    if let Some(i) = &interval
                        && parse_interval_ms(i).is_none()
                    {
                        return Err(invalid(e, "interval", "an op_expression interval must be a duration such as 10s"));
                    }
                    rule.exprs.push(Expr::Op {
                        id: e.attribute("id").unwrap_or("").to_string(),
                        name: e
                            .attribute("name")
                            .ok_or_else(|| invalid(e, "name", "an op_expression needs an operation name"))?
                            .to_string(),
                        interval,
                    })
                }
                "date_expression" => {
                    self.diags.push(Diagnostic {
                        element: "date_expression".into(),
                        id: e.attribute("id").unwrap_or("").to_string(),
                        message: "date expressions are not supported and never match".into(),
                    });
                    rule.exprs.push(Expr::Date { id: e.attribute("id").unwrap_or("").to_string() });
                }
                _ => self.unknown(e, "rule"),
            }
        }
        Ok(rule)
    }

    fn rsc_sets(&mut self, n: XNode<'a, 'i>) -> Result<Vec<ResourceSet>, CibError> {
        let mut sets = Vec::new();
        for s in n.children().filter(|n| n.is_element()) {
            if s.tag_name().name() != "resource_set" {
                continue;
            }
            let s = self.deref(s);
            let mut set = ResourceSet {
                id: s.attribute("id").unwrap_or("").to_string(),
                sequential: s.attribute("sequential").is_none_or(truthy),
                require_all: s.attribute("require-all").is_none_or(truthy),
                role: role_attr(s, "role")?,
                action: s.attribute("action").map(str::to_string),
                score: score_attr(s, "score")?,
                resources: Vec::new(),
            };
            for r in s.children().filter(|n| n.is_element()) {
                if r.tag_name().name() == "resource_ref" {
                    set.resources.push(
                        r.attribute("id").ok_or_else(|| invalid(r, "id", "resource_ref needs an id"))?.to_string(),
                    );
                } else {
                    self.unknown(r, "resource_set");
                }
            }
            sets.push(set);
        }
        Ok(sets)
    }

    fn location(&mut self, n: XNode<'a, 'i>) -> Result<Location, CibError> {
        let mut loc = Location {
            id: n.attribute("id").unwrap_or("").to_string(),
            rsc: n.attribute("rsc").map(str::to_string),
            rsc_pattern: n.attribute("rsc-pattern").map(str::to_string),
            role: role_attr(n, "role")?,
            node: n.attribute("node").map(str::to_string),
            score: score_attr(n, "score")?,
            rules: Vec::new(),
            sets: self.rsc_sets(n)?,
            resource_discovery: n.attribute("resource-discovery").map(str::to_ascii_lowercase),
        };
        for c in n.children().filter(|n| n.is_element()) {
            match c.tag_name().name() {
                "rule" => loc.rules.push(self.rule(c)?),
                "resource_set" => {}
                _ => self.unknown(c, "rsc_location"),
            }
        }
        if loc.rsc.is_none() && loc.rsc_pattern.is_none() && loc.sets.is_empty() {
            return Err(invalid(n, "rsc", "a location constraint needs rsc, rsc-pattern or a resource_set"));
        }
        if loc.node.is_some() && loc.score.is_none() && n.attribute("score-attribute").is_none() {
            return Err(invalid(n, "score", "a location constraint with a node needs a score"));
        }
        Ok(loc)
    }

    fn colocation(&mut self, n: XNode<'a, 'i>) -> Result<Colocation, CibError> {
        let c = Colocation {
            id: n.attribute("id").unwrap_or("").to_string(),
            rsc: n.attribute("rsc").map(str::to_string),
            with_rsc: n.attribute("with-rsc").map(str::to_string),
            score: score_attr(n, "score")?.unwrap_or(Score::ZERO),
            rsc_role: role_attr(n, "rsc-role")?,
            with_rsc_role: role_attr(n, "with-rsc-role")?,
            node_attribute: n.attribute("node-attribute").map(str::to_string),
            influence: n.attribute("influence").map(truthy),
            sets: self.rsc_sets(n)?,
        };
        if c.sets.is_empty() && (c.rsc.is_none() || c.with_rsc.is_none()) {
            return Err(invalid(n, "with-rsc", "a colocation needs rsc and with-rsc, or resource sets"));
        }
        Ok(c)
    }

    fn order(&mut self, n: XNode<'a, 'i>) -> Result<Order, CibError> {
        let kind = match n.attribute("kind").map(str::to_ascii_lowercase).as_deref() {
            Some("mandatory") => OrderKind::Mandatory,
            Some("optional") => OrderKind::Optional,
            Some("serialize") => OrderKind::Serialize,
            Some(other) => {
                return Err(invalid(n, "kind", &format!("'{other}' is not Mandatory, Optional or Serialize")));
            }
            None => match score_attr(n, "score")? {
                Some(s) if s.value() == 0 => OrderKind::Optional,
                Some(s) if s.value() < 0 => OrderKind::Optional,
                _ => OrderKind::Mandatory,
            },
        };
        let o = Order {
            id: n.attribute("id").unwrap_or("").to_string(),
            first: n.attribute("first").map(str::to_string),
            then: n.attribute("then").map(str::to_string),
            first_action: n.attribute("first-action").map(str::to_string),
            then_action: n.attribute("then-action").map(str::to_string),
            kind,
            symmetrical: n.attribute("symmetrical").map(truthy),
            require_all: n.attribute("require-all").is_none_or(truthy),
            sets: self.rsc_sets(n)?,
        };
        if o.sets.is_empty() && (o.first.is_none() || o.then.is_none()) {
            return Err(invalid(n, "then", "an order needs first and then, or resource sets"));
        }
        Ok(o)
    }

    fn node_state(&mut self, n: XNode<'a, 'i>) -> Result<NodeState, CibError> {
        let mut ns = NodeState {
            id: n
                .attribute("id")
                .or(n.attribute("uname"))
                .ok_or_else(|| invalid(n, "id", "node_state needs an id or uname"))?
                .to_string(),
            uname: n.attribute("uname").map(str::to_string),
            in_ccm: n.attribute("in_ccm").map(str::to_string),
            crmd: n.attribute("crmd").map(str::to_string),
            join: n.attribute("join").map(str::to_string),
            expected: n.attribute("expected").map(str::to_string),
            ..NodeState::default()
        };
        for c in n.children().filter(|n| n.is_element()) {
            match c.tag_name().name() {
                "transient_attributes" => {
                    for s in c.children().filter(|s| s.is_element()) {
                        match s.tag_name().name() {
                            "utilization" => ns.transient_utilization.push(self.nvset(s)?),
                            "instance_attributes" | "meta_attributes" => ns.transient.push(self.nvset(s)?),
                            _ => self.unknown(s, "transient_attributes"),
                        }
                    }
                }
                "lrm" => {
                    for lr in c.descendants().filter(|d| d.is_element() && d.tag_name().name() == "lrm_resource") {
                        ns.resources.push(self.lrm_resource(lr)?);
                    }
                }
                _ => self.unknown(c, "node_state"),
            }
        }
        Ok(ns)
    }

    fn lrm_resource(&mut self, n: XNode<'a, 'i>) -> Result<LrmResource, CibError> {
        let mut lr = LrmResource {
            id: n.attribute("id").ok_or_else(|| invalid(n, "id", "lrm_resource needs an id"))?.to_string(),
            class: n.attribute("class").map(str::to_string),
            provider: n.attribute("provider").map(str::to_string),
            agent: n.attribute("type").map(str::to_string),
            shutdown_lock: num(n, "shutdown-lock")?,
            ops: Vec::new(),
        };
        for o in n.children().filter(|n| n.is_element()) {
            if o.tag_name().name() != "lrm_rsc_op" {
                self.unknown(o, "lrm_resource");
                continue;
            }
            let target_rc =
                o.attribute("transition-key").and_then(|k| k.split(':').nth(2)).and_then(|v| v.parse().ok());
            let mut op = LrmOp {
                id: o.attribute("id").unwrap_or("").to_string(),
                operation: o
                    .attribute("operation")
                    .ok_or_else(|| invalid(o, "operation", "lrm_rsc_op needs an operation"))?
                    .to_string(),
                interval_ms: o.attribute("interval").and_then(parse_interval_ms).unwrap_or(0),
                rc: num(o, "rc-code")?.unwrap_or(0),
                op_status: num(o, "op-status")?.unwrap_or(0),
                call_id: num(o, "call-id")?.unwrap_or(0),
                target_rc,
                last_rc_change: num(o, "last-rc-change")?.or(num(o, "last-run")?),
                exit_reason: o.attribute("exit-reason").map(str::to_string),
                on_node: o.attribute("on_node").map(str::to_string),
                extra: Vec::new(),
            };
            for a in o.attributes() {
                if !matches!(
                    a.name(),
                    "id" | "operation"
                        | "interval"
                        | "rc-code"
                        | "op-status"
                        | "call-id"
                        | "last-rc-change"
                        | "exit-reason"
                        | "on_node"
                ) {
                    op.extra.push((a.name().to_string(), a.value().to_string()));
                }
            }
            lr.ops.push(op);
        }
        Ok(lr)
    }
}
