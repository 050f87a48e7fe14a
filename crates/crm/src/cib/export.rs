//! Pacemaker CIB XML export (new names: `fencing-*`, Promoted/Unpromoted, promotable clones).

use std::fmt::Write;

use super::model::*;

struct W {
    out: String,
    depth: usize,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

impl W {
    fn open(&mut self, tag: &str, attrs: &[(&str, Option<String>)], empty: bool) {
        let _ = write!(self.out, "{}<{tag}", "  ".repeat(self.depth));
        for (k, v) in attrs {
            if let Some(v) = v {
                let _ = write!(self.out, " {k}=\"{}\"", esc(v));
            }
        }
        if empty {
            self.out.push_str("/>\n");
        } else {
            self.out.push_str(">\n");
            self.depth += 1;
        }
    }
    fn close(&mut self, tag: &str) {
        self.depth -= 1;
        let _ = writeln!(self.out, "{}</{tag}>", "  ".repeat(self.depth));
    }
    fn nvsets(&mut self, tag: &str, sets: &[NvSet]) {
        for s in sets {
            self.open(tag, &[("id", Some(s.id.clone())), ("score", s.score.map(|x| x.to_string()))], false);
            if let Some(r) = &s.rule {
                self.rule(r);
            }
            for p in &s.pairs {
                // Agent parameters and node attributes are named by their owners: only
                // options (cluster properties, meta attributes) have current names.
                let name = if tag == "instance_attributes" { p.name.clone() } else { modern_name(&p.name) };
                self.open(
                    "nvpair",
                    &[("id", Some(p.id.clone())), ("name", Some(name)), ("value", p.value.clone())],
                    true,
                );
            }
            self.close(tag);
        }
    }
    fn rule(&mut self, r: &Rule) {
        self.open(
            "rule",
            &[
                ("id", Some(r.id.clone())),
                ("score", r.score.map(|s| s.to_string())),
                ("score-attribute", r.score_attribute.clone()),
                ("boolean-op", Some(if r.boolean_or { "or" } else { "and" }.into())),
                ("role", r.role.map(|x| x.as_str().into())),
            ],
            r.exprs.is_empty(),
        );
        if r.exprs.is_empty() {
            return;
        }
        for e in &r.exprs {
            match e {
                Expr::Attr { id, attribute, operation, value, value_type, value_source } => self.open(
                    "expression",
                    &[
                        ("id", Some(id.clone())),
                        ("attribute", Some(attribute.clone())),
                        ("operation", Some(operation.clone())),
                        ("value", value.clone()),
                        ("type", value_type.clone()),
                        ("value-source", value_source.clone()),
                    ],
                    true,
                ),
                Expr::Rule(r) => self.rule(r),
                Expr::Resource { id, class, provider, agent } => self.open(
                    "rsc_expression",
                    &[
                        ("id", Some(id.clone())),
                        ("class", class.clone()),
                        ("provider", provider.clone()),
                        ("type", agent.clone()),
                    ],
                    true,
                ),
                Expr::Op { id, name, interval } => self.open(
                    "op_expression",
                    &[("id", Some(id.clone())), ("name", Some(name.clone())), ("interval", interval.clone())],
                    true,
                ),
                Expr::Date { id } => self.open("date_expression", &[("id", Some(id.clone()))], true),
            }
        }
        self.close("rule");
    }
    fn resource(&mut self, r: &Resource) {
        match &r.kind {
            ResourceKind::Primitive { class, provider, agent } => {
                self.open(
                    "primitive",
                    &[
                        ("id", Some(r.id.clone())),
                        ("class", Some(class.clone())),
                        ("provider", provider.clone()),
                        ("type", Some(agent.clone())),
                    ],
                    false,
                );
                self.rsc_sets(r);
                if !r.ops.is_empty() {
                    self.open("operations", &[], false);
                    for op in &r.ops {
                        let mut attrs = vec![
                            ("id", Some(op.id.clone())),
                            ("name", Some(op.name.clone())),
                            ("interval", Some(format!("{}ms", op.interval_ms))),
                            ("role", op.role.map(|x| x.as_str().to_string())),
                            ("on-fail", op.on_fail.clone()),
                            ("enabled", (!op.enabled).then(|| "false".to_string())),
                            ("timeout", op.timeout_ms.map(|t| format!("{t}ms"))),
                        ];
                        for p in &op.meta {
                            attrs.push((p.name.as_str(), p.value.clone()));
                        }
                        if op.params.is_empty() {
                            self.open("op", &attrs, true);
                        } else {
                            self.open("op", &attrs, false);
                            let set = NvSet {
                                id: format!("{}-instance_attributes", op.id),
                                pairs: op.params.clone(),
                                ..NvSet::default()
                            };
                            self.nvsets("instance_attributes", &[set]);
                            self.close("op");
                        }
                    }
                    self.close("operations");
                }
                self.close("primitive");
            }
            ResourceKind::Group { members } => {
                self.open("group", &[("id", Some(r.id.clone()))], false);
                self.rsc_sets(r);
                for m in members {
                    self.resource(m);
                }
                self.close("group");
            }
            ResourceKind::Clone { child, legacy_promotable } => {
                self.open("clone", &[("id", Some(r.id.clone()))], false);
                self.rsc_sets(r);
                if *legacy_promotable {
                    self.nvsets(
                        "meta_attributes",
                        &[NvSet {
                            id: format!("{}-promotable", r.id),
                            pairs: vec![NvPair {
                                id: format!("{}-promotable-nv", r.id),
                                name: "promotable".into(),
                                value: Some("true".into()),
                            }],
                            ..NvSet::default()
                        }],
                    );
                }
                self.resource(child);
                self.close("clone");
            }
        }
    }
    fn rsc_sets(&mut self, r: &Resource) {
        self.nvsets("meta_attributes", &r.meta);
        self.nvsets("instance_attributes", &r.params);
        self.nvsets("utilization", &r.utilization);
    }
    fn sets(&mut self, sets: &[ResourceSet]) {
        for s in sets {
            self.open(
                "resource_set",
                &[
                    ("id", Some(s.id.clone())),
                    ("sequential", (!s.sequential).then(|| "false".into())),
                    ("require-all", (!s.require_all).then(|| "false".into())),
                    ("role", s.role.map(|x| x.as_str().into())),
                    ("action", s.action.clone()),
                    ("score", s.score.map(|x| x.to_string())),
                ],
                false,
            );
            for r in &s.resources {
                self.open("resource_ref", &[("id", Some(r.clone()))], true);
            }
            self.close("resource_set");
        }
    }
}

/// Maps legacy cluster option names to the current ones.
pub(crate) fn modern_name(name: &str) -> String {
    match name {
        "stonith-enabled" => "fencing-enabled".into(),
        "stonith-action" => "fencing-action".into(),
        "stonith-timeout" => "fencing-timeout".into(),
        "stop-orphan-resources" => "stop-removed-resources".into(),
        "stop-orphan-actions" => "cancel-removed-actions".into(),
        "master-max" => "promoted-max".into(),
        "master-node-max" => "promoted-node-max".into(),
        _ => name.to_string(),
    }
}

/// Writes a CIB as Pacemaker XML with current names.
pub fn to_xml(cib: &Cib) -> String {
    let mut w = W { out: String::new(), depth: 0 };
    w.open(
        "cib",
        &[
            ("admin_epoch", Some(cib.version.admin_epoch.to_string())),
            ("epoch", Some(cib.version.epoch.to_string())),
            ("num_updates", Some(cib.version.num_updates.to_string())),
            ("have-quorum", Some(if cib.have_quorum { "1" } else { "0" }.into())),
            ("dc-uuid", cib.dc_uuid.clone()),
            ("validate-with", cib.validate_with.clone()),
            ("crm_feature_set", cib.feature_set.clone()),
            ("execution-date", cib.execution_date.map(|d| d.to_string())),
            ("no-quorum-panic", cib.no_quorum_panic.then(|| "1".to_string())),
        ],
        false,
    );
    let c = &cib.config;
    w.open("configuration", &[], false);
    w.open("crm_config", &[], false);
    w.nvsets("cluster_property_set", &c.properties);
    w.close("crm_config");
    w.open("nodes", &[], false);
    for n in &c.nodes {
        w.open(
            "node",
            &[("id", Some(n.id.clone())), ("uname", Some(n.uname.clone())), ("type", n.kind.clone())],
            false,
        );
        w.nvsets("instance_attributes", &n.attributes);
        w.nvsets("utilization", &n.utilization);
        w.close("node");
    }
    w.close("nodes");
    w.open("resources", &[], false);
    for r in &c.resources {
        w.resource(r);
    }
    w.close("resources");
    w.open("constraints", &[], false);
    for k in &c.constraints {
        match k {
            Constraint::Location(l) => {
                w.open(
                    "rsc_location",
                    &[
                        ("id", Some(l.id.clone())),
                        ("rsc", l.rsc.clone()),
                        ("rsc-pattern", l.rsc_pattern.clone()),
                        ("role", l.role.map(|x| x.as_str().into())),
                        ("node", l.node.clone()),
                        ("score", l.score.map(|x| x.to_string())),
                        ("resource-discovery", l.resource_discovery.clone()),
                    ],
                    false,
                );
                w.sets(&l.sets);
                for r in &l.rules {
                    w.rule(r);
                }
                w.close("rsc_location");
            }
            Constraint::Colocation(co) => {
                w.open(
                    "rsc_colocation",
                    &[
                        ("id", Some(co.id.clone())),
                        ("rsc", co.rsc.clone()),
                        ("with-rsc", co.with_rsc.clone()),
                        ("score", Some(co.score.to_string())),
                        ("rsc-role", co.rsc_role.map(|x| x.as_str().into())),
                        ("with-rsc-role", co.with_rsc_role.map(|x| x.as_str().into())),
                        ("node-attribute", co.node_attribute.clone()),
                        ("influence", co.influence.map(|b| b.to_string())),
                    ],
                    false,
                );
                w.sets(&co.sets);
                w.close("rsc_colocation");
            }
            Constraint::Order(o) => {
                w.open(
                    "rsc_order",
                    &[
                        ("id", Some(o.id.clone())),
                        ("first", o.first.clone()),
                        ("then", o.then.clone()),
                        ("first-action", o.first_action.clone()),
                        ("then-action", o.then_action.clone()),
                        (
                            "kind",
                            Some(
                                match o.kind {
                                    OrderKind::Mandatory => "Mandatory",
                                    OrderKind::Optional => "Optional",
                                    OrderKind::Serialize => "Serialize",
                                }
                                .into(),
                            ),
                        ),
                        ("symmetrical", o.symmetrical.map(|b| b.to_string())),
                        ("require-all", (!o.require_all).then(|| "false".into())),
                    ],
                    false,
                );
                w.sets(&o.sets);
                w.close("rsc_order");
            }
        }
    }
    w.close("constraints");
    w.open("rsc_defaults", &[], false);
    w.nvsets("meta_attributes", &c.rsc_defaults);
    w.close("rsc_defaults");
    w.open("op_defaults", &[], false);
    w.nvsets("meta_attributes", &c.op_defaults);
    w.close("op_defaults");
    w.close("configuration");
    w.open("status", &[], false);
    for ns in &cib.status {
        w.open(
            "node_state",
            &[
                ("id", Some(ns.id.clone())),
                ("uname", ns.uname.clone()),
                ("in_ccm", ns.in_ccm.clone()),
                ("crmd", ns.crmd.clone()),
                ("join", ns.join.clone()),
                ("expected", ns.expected.clone()),
            ],
            false,
        );
        if !ns.transient.is_empty() || !ns.transient_utilization.is_empty() {
            w.open("transient_attributes", &[("id", Some(ns.id.clone()))], false);
            w.nvsets("instance_attributes", &ns.transient);
            w.nvsets("utilization", &ns.transient_utilization);
            w.close("transient_attributes");
        }
        w.open("lrm", &[("id", Some(ns.id.clone()))], false);
        w.open("lrm_resources", &[], false);
        for lr in &ns.resources {
            w.open(
                "lrm_resource",
                &[
                    ("id", Some(lr.id.clone())),
                    ("class", lr.class.clone()),
                    ("provider", lr.provider.clone()),
                    ("type", lr.agent.clone()),
                    ("shutdown-lock", lr.shutdown_lock.map(|t| t.to_string())),
                ],
                false,
            );
            for op in &lr.ops {
                let mut attrs = vec![
                    ("id", Some(op.id.clone())),
                    ("operation", Some(op.operation.clone())),
                    ("interval", Some(op.interval_ms.to_string())),
                    ("rc-code", Some(op.rc.to_string())),
                    ("op-status", Some(op.op_status.to_string())),
                    ("call-id", Some(op.call_id.to_string())),
                    ("last-rc-change", op.last_rc_change.map(|v| v.to_string())),
                    ("exit-reason", op.exit_reason.clone()),
                    ("on_node", op.on_node.clone()),
                ];
                for (k, v) in &op.extra {
                    attrs.push((k.as_str(), Some(v.clone())));
                }
                w.open("lrm_rsc_op", &attrs, true);
            }
            w.close("lrm_resource");
        }
        w.close("lrm_resources");
        w.close("lrm");
        w.close("node_state");
    }
    w.close("status");
    w.close("cib");
    w.out
}
