//! Once every action of a transition has succeeded, scheduling again finds nothing to do: the
//! scheduler's decisions are stable. Each corpus case is scheduled, its executable actions are
//! recorded into the status section as successful operations (fencing takes the node down),
//! and the next transition's summary must be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crm::cib::{Cib, LrmOp, LrmResource, Resource, ResourceKind};
use crm::controller::{Dispatch, GraphRun, Outcome};
use crm::{ActionKind, Transition};
use wire::{Duration, Instant};

/// Primitive ids that belong to a globally-unique clone (their history is kept per instance).
fn unique_clone_primitives(rs: &[Resource], in_unique: bool, out: &mut BTreeSet<String>) {
    for r in rs {
        match &r.kind {
            ResourceKind::Primitive { .. } => {
                if in_unique {
                    out.insert(r.id.clone());
                }
            }
            ResourceKind::Group { members } => unique_clone_primitives(members, in_unique, out),
            ResourceKind::Clone { child, .. } => {
                let meta = |name: &str| {
                    r.meta.iter().flat_map(|s| &s.pairs).find(|p| p.name == name).and_then(|p| p.value.clone())
                };
                // Unset, globally-unique follows whether an instance may run twice on a node.
                let unique = match meta("globally-unique") {
                    Some(v) => matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1" | "y"),
                    None => meta("clone-node-max").and_then(|v| v.parse::<u32>().ok()).is_some_and(|n| n > 1),
                };
                unique_clone_primitives(std::slice::from_ref(child), unique, out);
            }
        }
    }
}

fn agent_of(rs: &[Resource], id: &str) -> Option<(String, Option<String>, String)> {
    for r in rs {
        match &r.kind {
            ResourceKind::Primitive { class, provider, agent } if r.id == id => {
                return Some((class.clone(), provider.clone(), agent.clone()));
            }
            ResourceKind::Primitive { .. } => {}
            ResourceKind::Group { members } => {
                if let Some(a) = agent_of(members, id) {
                    return Some(a);
                }
            }
            ResourceKind::Clone { child, .. } => {
                if let Some(a) = agent_of(std::slice::from_ref(child), id) {
                    return Some(a);
                }
            }
        }
    }
    None
}

/// Records every executable action of `t` into `cib` as a success, in a valid order.
fn apply(cib: &mut Cib, t: &Transition, now: i64) {
    let mut unique = BTreeSet::new();
    unique_clone_primitives(&cib.config.resources, false, &mut unique);
    let cib_rscs = cib.config.resources.clone();
    // The executor records, with each result, the digest of the parameters it ran with.
    let digests = crm::digest::Calculator::new(cib);
    let mut run = GraphRun::new(t, Duration::from_secs(60));
    let mut out = Vec::new();
    run.poll(Instant::ZERO, &mut out);
    let mut order = Vec::new();
    while let Some(d) = out.pop() {
        let action = match d {
            Dispatch::Execute { action, .. } | Dispatch::Fence { action, .. } => action,
        };
        order.push(action);
        run.result(Instant::ZERO, action, Outcome::Ok, &mut out);
    }
    // Probes report what was there before anything else ran.
    order.sort_by_key(|&i| !(t.actions[i].kind == ActionKind::Monitor && t.actions[i].interval_ms == 0));
    let mut promoted: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut active: BTreeMap<(String, String), bool> = BTreeMap::new();
    for a in order.into_iter().map(|i| &t.actions[i]) {
        let Some(n) = a.node else { continue };
        let node = t.node_name(n).to_string();
        // A node the cluster never heard from gets its status entry when it is fenced.
        if a.kind == ActionKind::Fence
            && !cib.status.iter().any(|s| s.uname.as_deref() == Some(node.as_str()) || s.id == node)
        {
            let id = cib.config.nodes.iter().find(|c| c.uname == node).map_or_else(|| node.clone(), |c| c.id.clone());
            cib.status.push(crm::cib::NodeState { id, uname: Some(node.clone()), ..Default::default() });
        }
        let Some(ns) = cib.status.iter_mut().find(|s| s.uname.as_deref() == Some(node.as_str()) || s.id == node) else {
            continue;
        };
        if a.kind == ActionKind::Fence {
            ns.in_ccm = Some("false".into());
            ns.crmd = Some("offline".into());
            ns.join = Some("down".into());
            ns.expected = Some("down".into());
            ns.resources.clear();
            continue;
        }
        let Some(r) = a.rsc else { continue };
        let name = t.resource_name(r).to_string();
        let base = name.split(':').next().unwrap_or(&name).to_string();
        // Histories may be recorded under the instance name (older anonymous clones, and
        // unique clones) or under the base name.
        let same_base = |id: &str| id == base || id.split_once(':').is_some_and(|(b, _)| b == base);
        // An anonymous instance may be reported under another instance number than the one its
        // history carries on that node: stopping or demoting acts on the history that is active
        // there, starting on one that is not.
        // Only a stop or a probe that found nothing leaves a history inactive; a failed
        // recurring monitor leaves the resource to be recovered, which stops it first.
        let is_active = |ns: &crm::cib::NodeState, id: &str| {
            active.get(&(id.to_string(), node.clone())).copied().unwrap_or_else(|| {
                ns.resources
                    .iter()
                    .find(|lr| lr.id == id)
                    .and_then(|lr| lr.ops.iter().max_by_key(|o| o.call_id))
                    .is_some_and(|o| {
                        !(o.operation == "stop" || (o.operation == "monitor" && o.interval_ms == 0 && o.rc == 7))
                    })
            })
        };
        let wants_active = !matches!(a.kind, ActionKind::Start);
        let probe = a.kind == ActionKind::Monitor && a.interval_ms == 0;
        let fitting = (!unique.contains(&base) && !probe)
            .then(|| {
                let mut ids: Vec<&str> =
                    ns.resources.iter().map(|lr| lr.id.as_str()).filter(|id| same_base(id)).collect();
                ids.sort_by_key(|id| *id != name);
                ids.into_iter().find(|id| is_active(ns, id) == wants_active).map(str::to_string)
            })
            .flatten();
        let lrm_id = if let Some(id) = fitting {
            id
        } else if ns.resources.iter().any(|lr| lr.id == name) || unique.contains(&base) {
            name.clone()
        } else if let Some(lr) = ns.resources.iter().find(|lr| same_base(&lr.id)) {
            lr.id.clone()
        } else {
            base.clone()
        };
        let task = match a.kind {
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Promote => "promote",
            ActionKind::Demote => "demote",
            ActionKind::Monitor => "monitor",
            ActionKind::Reload => "reload-agent",
            _ => continue,
        };
        let call = ns.resources.iter().flat_map(|lr| &lr.ops).map(|o| o.call_id).max().unwrap_or(0) + 1;
        let key = (lrm_id.clone(), node.clone());
        // Whether the resource is active there: recorded by this run, else by the history.
        let active_before = active.get(&key).copied().unwrap_or_else(|| {
            ns.resources
                .iter()
                .find(|lr| lr.id == lrm_id)
                .and_then(|lr| lr.ops.iter().max_by_key(|o| o.call_id))
                .is_some_and(|o| {
                    !(o.operation == "stop" || (o.operation == "monitor" && o.interval_ms == 0 && o.rc == 7))
                })
        });
        let rc = match (task, a.interval_ms) {
            ("monitor", 0) => 7,
            ("monitor", _) if !active_before => 7,
            ("monitor", _) if promoted.get(&key).copied().unwrap_or(false) => 8,
            _ => 0,
        };
        match task {
            "start" => {
                active.insert(key.clone(), true);
            }
            "stop" => {
                active.insert(key.clone(), false);
            }
            _ => {}
        }
        match task {
            "promote" => {
                promoted.insert(key, true);
            }
            "demote" | "stop" => {
                promoted.insert(key, false);
            }
            _ => {}
        }
        let lr = match ns.resources.iter().position(|lr| lr.id == lrm_id) {
            Some(i) => &mut ns.resources[i],
            None => {
                let (class, provider, agent) = agent_of(&cib_rscs, &base).unwrap_or_default();
                ns.resources.push(LrmResource {
                    id: lrm_id.clone(),
                    class: Some(class),
                    provider,
                    agent: Some(agent),
                    shutdown_lock: None,
                    ops: Vec::new(),
                });
                ns.resources.last_mut().expect("just pushed")
            }
        };
        // The executor runs one operation of a resource at a time: by the time a new one is
        // recorded, an operation that was in flight has completed and left its pending state.
        lr.ops.retain(|o| o.op_status != -1);
        // A start runs the configured agent, and the history records that agent from then on.
        if task == "start"
            && let Some((class, provider, agent)) = agent_of(&cib_rscs, &base)
        {
            lr.class = Some(class);
            lr.provider = provider;
            lr.agent = Some(agent);
        }
        let digest = digests.digest(&lrm_id, Some(&node), task, a.interval_ms);
        lr.ops.push(LrmOp {
            extra: digest.map(|d| vec![("op-digest".to_string(), d)]).unwrap_or_default(),
            id: format!("{lrm_id}_{task}_{}", a.interval_ms),
            operation: task.into(),
            interval_ms: a.interval_ms,
            rc,
            op_status: 0,
            call_id: call,
            target_rc: Some(rc),
            last_rc_change: Some(now),
            on_node: Some(node.clone()),
            ..LrmOp::default()
        });
    }
}

/// What a second scheduling run of `xml` still finds to do once its first transition succeeded
/// (blocked actions excepted).
pub(crate) fn left_after_one_transition(xml: &str, now: i64) -> Vec<String> {
    left_after_transitions(xml, now, 1)
}

/// What is still to do after `rounds` transitions were each recorded as succeeded.
pub(crate) fn left_after_transitions(xml: &str, now: i64, rounds: usize) -> Vec<String> {
    let Ok((mut cib, _)) = crm::cib::parse_cib(xml) else { return Vec::new() };
    let mut again = crm::schedule(&cib, None, now);
    for _ in 0..rounds {
        apply(&mut cib, &again, now);
        again = crm::schedule(&cib, None, now);
    }
    again
        .summary
        .iter()
        .filter(|l| !l.trim_end().ends_with("blocked)") && !l.trim_end().ends_with(" blocked"))
        .cloned()
        .collect()
}

#[test]
fn a_completed_transition_leaves_nothing_to_do() {
    // Diagnostics: STABILITY_FILE=cib.xml prints the summaries of successive transitions.
    if let Ok(file) = std::env::var("STABILITY_FILE") {
        let text = std::fs::read_to_string(&file).expect("readable");
        let (mut cib, _) = crm::cib::parse_cib(&text).expect("parses");
        let now = cib.execution_date.unwrap_or(1_700_000_000);
        for round in 0..6 {
            let t = crm::schedule(&cib, None, now);
            eprintln!("round {round}: {:?}", t.summary);
            apply(&mut cib, &t, now);
        }
        return;
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases/xml"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("corpus present").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut unstable = Vec::new();
    let mut checked = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let Ok((mut cib, _)) = crm::cib::parse_cib(&text) else { continue };
        let now = cib.execution_date.unwrap_or(1_700_000_000);
        let t = crm::schedule(&cib, None, now);
        apply(&mut cib, &t, now);
        let mut again = crm::schedule(&cib, None, now);
        // Diagnostics: run a few more transitions, to tell slow settling from oscillation.
        if std::env::var("STABILITY_ROUNDS").is_ok() {
            for _ in 0..3 {
                apply(&mut cib, &again, now);
                again = crm::schedule(&cib, None, now);
            }
        }
        if std::env::var("STABILITY_DUMP").ok().as_deref() == path.file_stem().and_then(|s| s.to_str()) {
            std::fs::write("/tmp/stability-dump.xml", crm::cib::to_xml(&cib)).expect("dump");
            for r in std::env::var("STABILITY_EXPLAIN").unwrap_or_default().split(',').filter(|r| !r.is_empty()) {
                eprintln!("{}", crm::simulate::explain(&t, r).unwrap_or_default());
                eprintln!("{}", crm::simulate::explain(&again, r).unwrap_or_default());
            }
        }
        checked += 1;
        // Blocked actions are wishes, not work left undone.
        let left: Vec<&String> = again
            .summary
            .iter()
            .filter(|l| !l.trim_end().ends_with("blocked)") && !l.trim_end().ends_with(" blocked"))
            .collect();
        if !left.is_empty() {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
            unstable.push(format!("{name}:\n    first: {:?}\n    then:  {:?}", t.summary, again.summary));
        }
    }
    if std::env::var("STABILITY_VERBOSE").is_ok() {
        eprintln!("{}", unstable.join("\n"));
    }
    let stable = checked - unstable.len();
    println!("stable {stable} / {checked}");
    // Some corpus cases are legitimately not at rest after one transition (no stickiness and
    // a count tie-break, clone histories recorded under several instance names on one node,
    // nodes with no status entry); the rest must stay stable.
    assert!(stable >= 319, "only {stable} of {checked} corpus transitions leave the cluster at rest");
}
