//! `crmctl constraint ...`: location (prefers/avoids), order and colocation constraints, also
//! over resource sets, their deletion and listing, with pcs's grammar. Mutations run through
//! [`crate::cmd_resource::mutate`].

use std::process::ExitCode;

use clap::{Args, Subcommand};
use crm::Score;
use crm::cib::{Constraint, OrderKind, Role};
use crm::edit::{
    self, ColocationSpec, EditError, Goal, LocationRuleSpec, LocationSpec, Notes, OrderSpec, SetKind, SetSpec,
};

use crate::cmd_resource::{API_VERSION, EditFlags, Output, key_value, load, mutate, shell_word};
use crate::exit::Exit;

/// `crmctl constraint`.
#[derive(Debug, Args)]
pub(crate) struct ConstraintArgs {
    #[command(subcommand)]
    command: Option<ConstraintCommand>,
    #[command(flatten)]
    flags: EditFlags,
}

#[derive(Debug, Subcommand)]
enum ConstraintCommand {
    /// List every constraint with its id.
    #[command(alias = "list")]
    Config,
    /// `location R prefers|avoids N[=SCORE]… [role=ROLE] [resource-discovery=always|never|exclusive] [id=ID]`.
    Location {
        /// The resource.
        rsc: String,
        /// `prefers`/`avoids`, nodes and options.
        #[arg(value_name = "WORDS", required = true)]
        words: Vec<String>,
    },
    /// `order [ACTION] A then [ACTION] B [kind=…] [symmetrical=…] [require-all=…] [id=…]`, or
    /// `order set R… [opts] [set R… [opts]]… [setoptions id=… kind=…]`.
    Order {
        /// The constraint, as words.
        #[arg(value_name = "WORDS", required = true)]
        words: Vec<String>,
    },
    /// `colocation add [ROLE] A with [ROLE] B [score=S] [influence=…] [node-attribute=…] [id=…]`, or
    /// `colocation set R… [opts] [set R… [opts]]… [setoptions id=… score=…]`.
    Colocation {
        /// The constraint, as words.
        #[arg(value_name = "WORDS", required = true)]
        words: Vec<String>,
    },
    /// Delete constraints by id.
    #[command(alias = "remove")]
    Delete {
        /// Constraint ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// The constraints that name these resources.
    Ref {
        /// Resource ids.
        #[arg(required = true)]
        rscs: Vec<String>,
    },
}

fn usage(m: impl Into<String>) -> anyhow::Error {
    Exit::error(Exit::USAGE, m.into())
}

fn bad(e: EditError) -> anyhow::Error {
    let code = match e {
        EditError::NotFound { .. } => Exit::NO_SUCH,
        EditError::Exists { .. } => Exit::EXISTS,
        _ => Exit::INVALID_PARAM,
    };
    Exit::error(code, e.to_string())
}

fn role(field: &str, v: &str) -> anyhow::Result<Role> {
    match Role::parse(v) {
        Some(r @ (Role::Started | Role::Stopped | Role::Promoted | Role::Unpromoted)) => Ok(r),
        _ => Err(bad(EditError::Invalid {
            field: field.into(),
            problem: format!("'{v}' is not a role: use Started, Promoted or Unpromoted"),
        })),
    }
}

fn boolean(field: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(bad(EditError::Invalid { field: field.into(), problem: format!("'{v}' is not true or false") })),
    }
}

/// What `location R ...` asks for.
#[derive(Debug)]
pub(crate) enum LocationCmd {
    /// `prefers|avoids N[=S]…`: one constraint per node.
    Nodes(Vec<LocationSpec>),
    /// `rule [options] EXPR`.
    Rule(LocationRuleSpec),
}

/// `rule [id=] [role=] [score=|score-attribute=] [resource-discovery=] EXPR…`.
fn parse_location_rule(rsc: &str, words: &[String]) -> anyhow::Result<LocationRuleSpec> {
    let mut spec = LocationRuleSpec {
        id: None,
        rsc: rsc.to_string(),
        role: None,
        score: None,
        score_attribute: None,
        resource_discovery: None,
        expression: Vec::new(),
    };
    let mut i = 0;
    while let Some((k, v)) = words.get(i).and_then(|w| key_value(w)) {
        match k.as_str() {
            "id" => spec.id = Some(v),
            "role" => spec.role = Some(role("role", &v)?),
            "score" => spec.score = Some(edit::parse_score("score", &v).map_err(bad)?),
            "score-attribute" => spec.score_attribute = Some(v),
            "resource-discovery" => spec.resource_discovery = Some(v),
            _ => break,
        }
        i += 1;
    }
    spec.expression = words[i..].to_vec();
    Ok(spec)
}

/// `prefers|avoids N[=S]… [options]` (one spec per node), or `rule [options] EXPR`.
pub(crate) fn parse_location(rsc: &str, words: &[String]) -> anyhow::Result<LocationCmd> {
    let (verb, rest) = words.split_first().ok_or_else(|| usage("say prefers, avoids or rule"))?;
    let sign = match verb.as_str() {
        "prefers" => 1,
        "avoids" => -1,
        "rule" => return parse_location_rule(rsc, rest).map(LocationCmd::Rule),
        other => return Err(usage(format!("'{other}': expected prefers, avoids or rule"))),
    };
    let (mut id, mut role_f, mut discovery) = (None, None, None);
    let mut nodes = Vec::new();
    for w in rest {
        match key_value(w) {
            Some((k, v)) if k == "id" => id = Some(v),
            Some((k, v)) if k == "role" => role_f = Some(role("role", &v)?),
            Some((k, v)) if k == "resource-discovery" => discovery = Some(v),
            Some((node, score)) => nodes.push((node, Some(score))),
            None => nodes.push((w.clone(), None)),
        }
    }
    if nodes.is_empty() {
        return Err(usage(format!("name at least one node: location {rsc} {verb} NODE[=SCORE]")));
    }
    if id.is_some() && nodes.len() > 1 {
        return Err(usage("id= names one constraint: give one node with it"));
    }
    let specs: anyhow::Result<Vec<LocationSpec>> = nodes
        .into_iter()
        .map(|(node, score)| {
            let s = match score {
                Some(t) => edit::parse_score(&format!("score of {node}"), &t).map_err(bad)?,
                None => Score::INF,
            };
            let score = if sign < 0 { Score::new(-s.value()) } else { s };
            Ok(LocationSpec {
                id: id.clone(),
                rsc: rsc.to_string(),
                node,
                score,
                role: role_f,
                resource_discovery: discovery.clone(),
            })
        })
        .collect();
    specs.map(LocationCmd::Nodes)
}

fn is_action(w: &str) -> bool {
    matches!(w, "start" | "stop" | "promote" | "demote")
}

/// `[ACTION] A then [ACTION] B [options]`.
pub(crate) fn parse_order(words: &[String]) -> anyhow::Result<OrderSpec> {
    let then_at =
        words.iter().position(|w| w == "then").ok_or_else(|| usage("expected: [ACTION] A then [ACTION] B"))?;
    let (left, right) = (&words[..then_at], &words[then_at + 1..]);
    let (first_action, first) = match left {
        [a, r] if is_action(a) => (Some(a.clone()), r.clone()),
        [r] => (None, r.clone()),
        _ => return Err(usage("before `then`: [ACTION] RESOURCE")),
    };
    let (then_action, then, opts) = match right {
        [a, r, rest @ ..] if is_action(a) && !r.contains('=') => (Some(a.clone()), r.clone(), rest),
        [r, rest @ ..] if !r.contains('=') => (None, r.clone(), rest),
        _ => return Err(usage("after `then`: [ACTION] RESOURCE [options]")),
    };
    let mut spec = OrderSpec {
        id: None,
        first,
        first_action,
        then,
        then_action,
        kind: OrderKind::Mandatory,
        symmetrical: None,
        require_all: true,
    };
    for o in opts {
        match key_value(o) {
            Some((k, v)) if k == "kind" => spec.kind = edit::parse_order_kind(&v).map_err(bad)?,
            Some((k, v)) if k == "symmetrical" => spec.symmetrical = Some(boolean("symmetrical", &v)?),
            Some((k, v)) if k == "require-all" => spec.require_all = boolean("require-all", &v)?,
            Some((k, v)) if k == "id" => spec.id = Some(v),
            _ => return Err(usage(format!("'{o}': options are kind=, symmetrical=, require-all=, id="))),
        }
    }
    Ok(spec)
}

/// `[add] [ROLE] A with [ROLE] B [SCORE] [options]`.
pub(crate) fn parse_colocation(words: &[String]) -> anyhow::Result<ColocationSpec> {
    let words = if words.first().is_some_and(|w| w == "add") { &words[1..] } else { words };
    let with_at = words.iter().position(|w| w == "with").ok_or_else(|| usage("expected: [ROLE] A with [ROLE] B"))?;
    let (left, right) = (&words[..with_at], &words[with_at + 1..]);
    let is_role = |w: &str| Role::parse(w).is_some();
    let (rsc_role, rsc) = match left {
        [r, x] if is_role(r) => (Some(role("role", r)?), x.clone()),
        [x] => (None, x.clone()),
        _ => return Err(usage("before `with`: [ROLE] RESOURCE")),
    };
    let (with_role, with_rsc, opts) = match right {
        [r, x, rest @ ..] if is_role(r) && !x.contains('=') => (Some(role("with role", r)?), x.clone(), rest),
        [x, rest @ ..] if !x.contains('=') => (None, x.clone(), rest),
        _ => return Err(usage("after `with`: [ROLE] RESOURCE [score=S] [options]")),
    };
    let mut spec = ColocationSpec {
        id: None,
        rsc,
        rsc_role,
        with_rsc,
        with_role,
        score: Score::INF,
        influence: None,
        node_attribute: None,
    };
    for o in opts {
        match key_value(o) {
            Some((k, v)) if k == "score" => spec.score = edit::parse_score("score", &v).map_err(bad)?,
            Some((k, v)) if k == "influence" => spec.influence = Some(boolean("influence", &v)?),
            Some((k, v)) if k == "node-attribute" => spec.node_attribute = Some(v),
            Some((k, v)) if k == "id" => spec.id = Some(v),
            None if edit::parse_score("score", o).is_ok() => spec.score = edit::parse_score("score", o).map_err(bad)?,
            _ => return Err(usage(format!("'{o}': options are score=, influence=, node-attribute=, id="))),
        }
    }
    Ok(spec)
}

/// `set R… [opts] [set R… [opts]]… [setoptions id=… kind=…|score=…]`.
pub(crate) fn parse_sets(words: &[String], order: bool) -> anyhow::Result<(Option<String>, SetKind, Vec<SetSpec>)> {
    let mut sets: Vec<SetSpec> = Vec::new();
    let mut id = None;
    let mut kind = if order { SetKind::Order(OrderKind::Mandatory) } else { SetKind::Colocation(Score::INF) };
    let mut in_options = false;
    for w in words {
        if w == "set" {
            sets.push(SetSpec::default());
            in_options = false;
            continue;
        }
        if w == "setoptions" {
            in_options = true;
            continue;
        }
        let kv = key_value(w);
        if in_options {
            match (kv, order) {
                (Some((k, v)), _) if k == "id" => id = Some(v),
                (Some((k, v)), true) if k == "kind" => kind = SetKind::Order(edit::parse_order_kind(&v).map_err(bad)?),
                (Some((k, v)), false) if k == "score" => {
                    kind = SetKind::Colocation(edit::parse_score("score", &v).map_err(bad)?);
                }
                _ => {
                    return Err(usage(format!(
                        "'{w}': setoptions takes id= and {}",
                        if order { "kind=" } else { "score=" }
                    )));
                }
            }
            continue;
        }
        let set = sets.last_mut().ok_or_else(|| usage("start with `set R1 R2 …`"))?;
        match kv {
            None => set.resources.push(w.clone()),
            Some((k, v)) if k == "sequential" => set.sequential = boolean("sequential", &v)?,
            Some((k, v)) if k == "require-all" => set.require_all = boolean("require-all", &v)?,
            Some((k, v)) if k == "role" => set.role = Some(role("role", &v)?),
            Some((k, v)) if k == "action" && order => set.action = Some(v),
            Some((k, _)) => {
                return Err(usage(format!("'{k}=': set options are sequential=, require-all=, role=, action=")));
            }
        }
    }
    if sets.is_empty() {
        return Err(usage("give at least one `set R1 R2 …`"));
    }
    Ok((id, kind, sets))
}

fn describe(c: &Constraint) -> String {
    let sets = |s: &[crm::cib::ResourceSet]| {
        s.iter().map(|x| format!("set {}", x.resources.join(" "))).collect::<Vec<_>>().join(" ")
    };
    match c {
        Constraint::Location(l) => {
            let who =
                l.rsc.clone().or(l.rsc_pattern.clone().map(|p| format!("/{p}/"))).unwrap_or_else(|| sets(&l.sets));
            let role = l.role.map_or(String::new(), |r| format!(" (role {})", r.as_str()));
            match (&l.node, l.score) {
                (Some(n), Some(s)) if s.value() < 0 => format!("{who} avoids {n} (score {s}){role} (id: {})", l.id),
                (Some(n), Some(s)) => format!("{who} prefers {n} (score {s}){role} (id: {})", l.id),
                _ => format!("{who}: {} rule(s){role} (id: {})", l.rules.len(), l.id),
            }
        }
        Constraint::Order(o) => {
            let kind = format!("{:?}", o.kind);
            match (&o.first, &o.then) {
                (Some(f), Some(t)) => {
                    let fa = o.first_action.as_deref().unwrap_or("start");
                    let ta = o.then_action.as_deref().unwrap_or(fa);
                    format!("{fa} {f} then {ta} {t} (kind {kind}) (id: {})", o.id)
                }
                _ => format!("{} (kind {kind}) (id: {})", sets(&o.sets), o.id),
            }
        }
        Constraint::Colocation(co) => match (&co.rsc, &co.with_rsc) {
            (Some(a), Some(b)) => format!("{a} with {b} (score {}) (id: {})", co.score, co.id),
            _ => format!("{} (score {}) (id: {})", sets(&co.sets), co.score, co.id),
        },
    }
}

fn set_json(s: &crm::cib::ResourceSet) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "resources": s.resources,
        "sequential": s.sequential,
        "require_all": s.require_all,
        "role": s.role.map(|r| r.as_str()),
        "action": s.action,
    })
}

fn rule_json(r: &crm::cib::Rule) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "score": r.score.map(|s| s.to_string()),
        "score_attribute": r.score_attribute,
        "boolean_op": if r.boolean_or { "or" } else { "and" },
        "role": r.role.map(|x| x.as_str()),
        "expressions": r.exprs.iter().map(|e| match e {
            crm::cib::Expr::Attr { id, attribute, operation, value, value_type, .. } => serde_json::json!({
                "id": id, "attribute": attribute, "operation": operation, "value": value, "type": value_type,
            }),
            crm::cib::Expr::Rule(inner) => rule_json(inner),
            other => serde_json::json!({ "unsupported": format!("{other:?}") }),
        }).collect::<Vec<_>>(),
    })
}

fn constraint_json(c: &Constraint) -> serde_json::Value {
    match c {
        Constraint::Location(l) => serde_json::json!({
            "type": "location",
            "id": l.id,
            "rsc": l.rsc,
            "rsc_pattern": l.rsc_pattern,
            "node": l.node,
            "score": l.score.map(|s| s.to_string()),
            "role": l.role.map(|r| r.as_str()),
            "rules": l.rules.iter().map(rule_json).collect::<Vec<_>>(),
            "sets": l.sets.iter().map(set_json).collect::<Vec<_>>(),
        }),
        Constraint::Order(o) => serde_json::json!({
            "type": "order",
            "id": o.id,
            "first": o.first,
            "first_action": o.first_action,
            "then": o.then,
            "then_action": o.then_action,
            "kind": format!("{:?}", o.kind),
            "symmetrical": o.symmetrical,
            "require_all": o.require_all,
            "sets": o.sets.iter().map(set_json).collect::<Vec<_>>(),
        }),
        Constraint::Colocation(co) => serde_json::json!({
            "type": "colocation",
            "id": co.id,
            "rsc": co.rsc,
            "rsc_role": co.rsc_role.map(|r| r.as_str()),
            "with_rsc": co.with_rsc,
            "with_rsc_role": co.with_rsc_role.map(|r| r.as_str()),
            "score": co.score.to_string(),
            "influence": co.influence,
            "node_attribute": co.node_attribute,
            "sets": co.sets.iter().map(set_json).collect::<Vec<_>>(),
        }),
    }
}

fn set_words(sets: &[crm::cib::ResourceSet], order: bool) -> Vec<String> {
    let mut w = Vec::new();
    for s in sets {
        w.push("set".to_string());
        w.extend(s.resources.iter().cloned());
        if !s.sequential {
            w.push("sequential=false".into());
        }
        if !s.require_all {
            w.push("require-all=false".into());
        }
        if let Some(r) = s.role {
            w.push(format!("role={}", r.as_str()));
        }
        if let (Some(a), true) = (&s.action, order) {
            w.push(format!("action={a}"));
        }
    }
    w
}

/// The crmctl command that recreates `c`, when there is one.
fn constraint_cmd(c: &Constraint) -> String {
    let words: Vec<String> = match c {
        Constraint::Location(l) => match (&l.rsc, &l.node, l.score) {
            (Some(r), Some(n), Some(s)) => {
                let mut w = vec!["location".into(), r.clone()];
                if s.value() < 0 {
                    w.extend(["avoids".into(), format!("{n}={}", Score::new(-s.value()))]);
                } else {
                    w.extend(["prefers".into(), format!("{n}={s}")]);
                }
                if let Some(role) = l.role {
                    w.push(format!("role={}", role.as_str()));
                }
                if let Some(d) = &l.resource_discovery {
                    w.push(format!("resource-discovery={d}"));
                }
                w.push(format!("id={}", l.id));
                w
            }
            (Some(r), None, None) if l.rules.len() == 1 && l.sets.is_empty() => {
                let rule = &l.rules[0];
                let mut w = vec!["location".into(), r.clone(), "rule".into(), format!("id={}", l.id)];
                if let Some(role) = rule.role.or(l.role) {
                    w.push(format!("role={}", role.as_str()));
                }
                match (&rule.score_attribute, rule.score) {
                    (Some(a), _) => w.push(format!("score-attribute={a}")),
                    (None, Some(s)) => w.push(format!("score={s}")),
                    (None, None) => {}
                }
                if let Some(d) = &l.resource_discovery {
                    w.push(format!("resource-discovery={d}"));
                }
                for (i, e) in rule.exprs.iter().enumerate() {
                    let crm::cib::Expr::Attr { attribute, operation, value, value_type, value_source: None, .. } = e
                    else {
                        return format!("# {}: this rule has no command form yet", l.id);
                    };
                    if i > 0 {
                        w.push(if rule.boolean_or { "or" } else { "and" }.into());
                    }
                    match value {
                        None => w.extend([operation.clone(), attribute.clone()]),
                        Some(v) => {
                            w.extend([attribute.clone(), operation.clone()]);
                            w.extend(value_type.iter().cloned());
                            w.push(v.clone());
                        }
                    }
                }
                w
            }
            _ => return format!("# {}: sets in location constraints have no command form yet", l.id),
        },
        Constraint::Order(o) => {
            let mut w = vec!["order".to_string()];
            match (&o.first, &o.then) {
                (Some(f), Some(t)) => {
                    w.extend(o.first_action.iter().cloned());
                    w.push(f.clone());
                    w.push("then".into());
                    w.extend(o.then_action.iter().cloned());
                    w.push(t.clone());
                    w.push(format!("kind={:?}", o.kind));
                    if let Some(sym) = o.symmetrical {
                        w.push(format!("symmetrical={sym}"));
                    }
                    if !o.require_all {
                        w.push("require-all=false".into());
                    }
                    w.push(format!("id={}", o.id));
                }
                _ => {
                    w.extend(set_words(&o.sets, true));
                    w.extend(["setoptions".into(), format!("id={}", o.id), format!("kind={:?}", o.kind)]);
                }
            }
            w
        }
        Constraint::Colocation(co) => {
            let mut w = vec!["colocation".to_string()];
            match (&co.rsc, &co.with_rsc) {
                (Some(a), Some(b)) => {
                    w.push("add".into());
                    w.extend(co.rsc_role.map(|r| r.as_str().to_string()));
                    w.push(a.clone());
                    w.push("with".into());
                    w.extend(co.with_rsc_role.map(|r| r.as_str().to_string()));
                    w.push(b.clone());
                    w.push(format!("score={}", co.score));
                    if let Some(i) = co.influence {
                        w.push(format!("influence={i}"));
                    }
                    if let Some(n) = &co.node_attribute {
                        w.push(format!("node-attribute={n}"));
                    }
                    w.push(format!("id={}", co.id));
                }
                _ => {
                    w.extend(set_words(&co.sets, false));
                    w.extend(["setoptions".into(), format!("id={}", co.id), format!("score={}", co.score)]);
                }
            }
            w
        }
    };
    format!("crmctl constraint {}", words.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" "))
}

fn names(c: &Constraint, r: &str) -> bool {
    let is = |x: &Option<String>| x.as_deref() == Some(r);
    let in_sets = |s: &[crm::cib::ResourceSet]| s.iter().any(|x| x.resources.iter().any(|y| y == r));
    match c {
        Constraint::Location(l) => is(&l.rsc) || in_sets(&l.sets),
        Constraint::Order(o) => is(&o.first) || is(&o.then) || in_sets(&o.sets),
        Constraint::Colocation(co) => is(&co.rsc) || is(&co.with_rsc) || in_sets(&co.sets),
    }
}

pub(crate) fn run(args: ConstraintArgs) -> anyhow::Result<ExitCode> {
    let flags = &args.flags;
    match args.command.unwrap_or(ConstraintCommand::Config) {
        ConstraintCommand::Config => {
            let (cib, _) = load(flags)?;
            match flags.output {
                Output::Json => {
                    let doc = serde_json::json!({
                        "api_version": API_VERSION,
                        "constraints": cib.config.constraints.iter().map(constraint_json).collect::<Vec<_>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                    return Ok(ExitCode::SUCCESS);
                }
                Output::Cmd => {
                    cib.config.constraints.iter().for_each(|c| println!("{}", constraint_cmd(c)));
                    return Ok(ExitCode::SUCCESS);
                }
                Output::Text => {}
            }
            for (title, pick) in [("Location", 0), ("Ordering", 1), ("Colocation", 2)] {
                println!("{title} Constraints:");
                for c in &cib.config.constraints {
                    let kind = match c {
                        Constraint::Location(_) => 0,
                        Constraint::Order(_) => 1,
                        Constraint::Colocation(_) => 2,
                    };
                    if kind == pick {
                        println!("  {}", describe(c));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConstraintCommand::Ref { rscs } => {
            let (cib, _) = load(flags)?;
            for r in &rscs {
                println!("{r}:");
                for c in cib.config.constraints.iter().filter(|c| names(c, r)) {
                    println!("  {}", edit::constraint_id(c));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConstraintCommand::Location { rsc, words } => {
            let specs = match parse_location(&rsc, &words)? {
                LocationCmd::Rule(spec) => {
                    return mutate(
                        flags,
                        &format!("location rule for {rsc}"),
                        |c| edit::add_location_rule(c, &spec),
                        Goal::Settled,
                    );
                }
                LocationCmd::Nodes(specs) => specs,
            };
            mutate(
                flags,
                &format!("location constraint for {rsc}"),
                |c| {
                    let mut notes = Notes::new();
                    for s in &specs {
                        notes.extend(edit::add_location(c, s)?);
                    }
                    Ok(notes)
                },
                Goal::Settled,
            )
        }
        ConstraintCommand::Order { words } if words.first().is_some_and(|w| w == "set") => {
            let (id, kind, sets) = parse_sets(&words, true)?;
            mutate(flags, "order set", |c| edit::add_set_constraint(c, id.as_deref(), kind, &sets), Goal::Settled)
        }
        ConstraintCommand::Order { words } => {
            let spec = parse_order(&words)?;
            mutate(
                flags,
                &format!("order {} then {}", spec.first, spec.then),
                |c| edit::add_order(c, &spec),
                Goal::Settled,
            )
        }
        ConstraintCommand::Colocation { words } if words.first().is_some_and(|w| w == "set") => {
            let (id, kind, sets) = parse_sets(&words, false)?;
            mutate(flags, "colocation set", |c| edit::add_set_constraint(c, id.as_deref(), kind, &sets), Goal::Settled)
        }
        ConstraintCommand::Colocation { words } => {
            let spec = parse_colocation(&words)?;
            mutate(
                flags,
                &format!("colocation {} with {}", spec.rsc, spec.with_rsc),
                |c| edit::add_colocation(c, &spec),
                Goal::Settled,
            )
        }
        ConstraintCommand::Delete { ids } => mutate(
            flags,
            &format!("deleted {}", ids.join(", ")),
            |c| {
                let mut notes = Notes::new();
                for id in &ids {
                    notes.extend(edit::remove_constraint(c, id)?);
                }
                Ok(notes)
            },
            Goal::Settled,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn code(e: &anyhow::Error) -> Option<u8> {
        e.downcast_ref::<Exit>().map(|x| x.code)
    }

    #[test]
    fn location_prefers_and_avoids_with_default_and_given_scores() {
        let nodes = |w: &str| match parse_location("web", &words(w)).expect("parses") {
            LocationCmd::Nodes(s) => s,
            LocationCmd::Rule(r) => panic!("not a rule: {r:?}"),
        };
        let s = nodes("prefers n1 n2=50 role=Promoted");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].node.as_str(), s[0].score), ("n1", Score::INF));
        assert_eq!((s[1].node.as_str(), s[1].score, s[1].role), ("n2", Score::new(50), Some(Role::Promoted)));
        let s = nodes("avoids n3 n4=200");
        assert_eq!((s[0].score, s[1].score), (Score::NEG_INF, Score::new(-200)));
        let e = parse_location("web", &words("prefers n1=lots")).unwrap_err();
        assert_eq!(code(&e), Some(Exit::INVALID_PARAM), "{e}");
        assert!(e.to_string().contains("score of n1"), "{e}");
        assert_eq!(code(&parse_location("web", &words("likes n1")).unwrap_err()), Some(Exit::USAGE));
        assert_eq!(code(&parse_location("web", &words("prefers id=x n1 n2")).unwrap_err()), Some(Exit::USAGE));
    }

    #[test]
    fn location_rule_takes_options_then_the_expression() {
        let LocationCmd::Rule(r) = parse_location(
            "web",
            &words("rule id=r1 score-attribute=pingd role=Promoted defined pingd and pingd gt 0"),
        )
        .expect("parses") else {
            panic!("a rule")
        };
        assert_eq!(
            (r.id.as_deref(), r.score_attribute.as_deref(), r.role),
            (Some("r1"), Some("pingd"), Some(Role::Promoted))
        );
        assert_eq!(r.expression, words("defined pingd and pingd gt 0"));
        let LocationCmd::Rule(r) = parse_location("web", &words("rule score=-100 #uname eq n1")).expect("parses")
        else {
            panic!("a rule")
        };
        assert_eq!(r.score, Some(Score::new(-100)));
    }

    #[test]
    fn order_takes_optional_actions_and_options() {
        let o = parse_order(&words("promote db then start app kind=Optional symmetrical=false id=o1")).expect("ok");
        assert_eq!((o.first_action.as_deref(), o.first.as_str()), (Some("promote"), "db"));
        assert_eq!((o.then_action.as_deref(), o.then.as_str()), (Some("start"), "app"));
        assert_eq!((o.kind, o.symmetrical, o.id.as_deref()), (OrderKind::Optional, Some(false), Some("o1")));
        let o = parse_order(&words("db then app")).expect("ok");
        assert_eq!((o.first_action, o.then_action, o.kind), (None, None, OrderKind::Mandatory));
        assert!(parse_order(&words("db app")).is_err());
        assert!(parse_order(&words("db then app kind=Sometimes")).is_err());
    }

    #[test]
    fn colocation_takes_roles_and_a_score() {
        let c = parse_colocation(&words("add Promoted db with Started app score=-100 influence=false")).expect("ok");
        assert_eq!((c.rsc_role, c.rsc.as_str()), (Some(Role::Promoted), "db"));
        assert_eq!((c.with_role, c.with_rsc.as_str()), (Some(Role::Started), "app"));
        assert_eq!((c.score, c.influence), (Score::new(-100), Some(false)));
        let c = parse_colocation(&words("vip with web INFINITY")).expect("ok");
        assert_eq!(c.score, Score::INF);
        let c = parse_colocation(&words("add Master db with app")).expect("legacy role");
        assert_eq!(c.rsc_role, Some(Role::Promoted));
        assert!(parse_colocation(&words("vip web")).is_err());
    }

    #[test]
    fn sets_collect_resources_options_and_setoptions() {
        let (id, kind, sets) =
            parse_sets(&words("set a b sequential=false set c action=promote setoptions id=os kind=Serialize"), true)
                .expect("ok");
        assert_eq!(id.as_deref(), Some("os"));
        assert_eq!(kind, SetKind::Order(OrderKind::Serialize));
        assert_eq!(sets[0].resources, ["a", "b"]);
        assert!(!sets[0].sequential);
        assert_eq!(sets[1].action.as_deref(), Some("promote"));
        let (_, kind, _) = parse_sets(&words("set a b setoptions score=500"), false).expect("ok");
        assert_eq!(kind, SetKind::Colocation(Score::new(500)));
        assert!(parse_sets(&words("set a action=start"), false).is_err(), "no action in colocation sets");
        assert!(parse_sets(&words("a b"), true).is_err());
    }
}
