//! Scheduling benchmark: generated clusters, cold start and steady state. Prints wall time and
//! peak memory; optionally times `crm_simulate` on the same XML when it is installed.

use std::fmt::Write as _;
use std::time::Instant;

struct Shape {
    nodes: usize,
    resources: usize,
}

/// A deterministic generator (no RNG needed): a mix of primitives, groups of three and clones,
/// with location, colocation and order constraints.
fn generate(shape: &Shape, placement: Option<&[(String, Option<String>, crm::cib::Role)]>) -> String {
    let mut x = String::new();
    let _ = write!(
        x,
        r#"<cib admin_epoch="0" epoch="1" num_updates="1" have-quorum="1" dc-uuid="1" validate-with="pacemaker-3.0"><configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/><nvpair id="o2" name="no-quorum-policy" value="ignore"/></cluster_property_set></crm_config><nodes>"#
    );
    for n in 0..shape.nodes {
        let _ = write!(x, r#"<node id="{}" uname="node{n}"/>"#, n + 1);
    }
    x.push_str("</nodes><resources>");
    let mut r = 0;
    let mut tops = Vec::new();
    let mut i = 0;
    while r < shape.resources {
        match i % 10 {
            0..=5 => {
                let _ = write!(
                    x,
                    r#"<primitive id="p{i}" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes id="p{i}-m"><nvpair id="p{i}-s" name="resource-stickiness" value="100"/></meta_attributes><operations><op id="p{i}-mon" name="monitor" interval="10s"/></operations></primitive>"#
                );
                tops.push(format!("p{i}"));
                r += 1;
            }
            6..=8 => {
                let _ = write!(x, r#"<group id="g{i}">"#);
                for m in 0..3 {
                    let _ = write!(x, r#"<primitive id="g{i}m{m}" class="ocf" provider="pacemaker" type="Dummy"/>"#);
                }
                x.push_str("</group>");
                tops.push(format!("g{i}"));
                r += 3;
            }
            _ => {
                let max = shape.nodes.min(4);
                let _ = write!(
                    x,
                    r#"<clone id="c{i}"><meta_attributes id="c{i}-m"><nvpair id="c{i}-max" name="clone-max" value="{max}"/><nvpair id="c{i}-il" name="interleave" value="true"/></meta_attributes><primitive id="c{i}p" class="ocf" provider="pacemaker" type="Dummy"/></clone>"#
                );
                tops.push(format!("c{i}"));
                r += max;
            }
        }
        i += 1;
    }
    x.push_str("</resources><constraints>");
    for (k, t) in tops.iter().enumerate() {
        if k % 3 == 0 {
            let _ = write!(
                x,
                r#"<rsc_location id="l{k}" rsc="{t}" node="node{}" score="{}"/>"#,
                k % shape.nodes,
                50 + k % 7
            );
        }
        if k % 5 == 1 && !t.starts_with('c') {
            let _ = write!(x, r#"<rsc_colocation id="co{k}" rsc="{t}" with-rsc="{}" score="200"/>"#, tops[k - 1]);
        }
        if k % 4 == 2 {
            let _ = write!(x, r#"<rsc_order id="or{k}" first="{}" then="{t}" kind="Mandatory"/>"#, tops[k - 1]);
        }
    }
    x.push_str("</constraints></configuration><status>");
    for n in 0..shape.nodes {
        let name = format!("node{n}");
        let _ = write!(
            x,
            r#"<node_state id="{}" uname="{name}" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="{}"><lrm_resources>"#,
            n + 1,
            n + 1
        );
        if let Some(p) = placement {
            for (rsc, node, _) in p {
                if node.as_deref() == Some(name.as_str()) {
                    let base = rsc.split(':').next().unwrap_or(rsc);
                    let _ = write!(
                        x,
                        r#"<lrm_resource id="{rsc}" class="ocf" provider="pacemaker" type="Dummy"><lrm_rsc_op id="{base}_start_0" operation="start" interval="0" rc-code="0" op-status="0" call-id="1" transition-key="1:1:0:x"/></lrm_resource>"#
                    );
                }
            }
        }
        x.push_str("</lrm_resources></lrm></node_state>");
    }
    x.push_str("</status></cib>");
    x
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn run(label: &str, xml: &str) -> (f64, crm::Transition) {
    let t0 = Instant::now();
    let (cib, _) = crm::cib::parse_cib(xml).expect("generated CIB parses");
    let parsed = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let tr = crm::schedule(&cib, None, 1_700_000_000);
    let sched = t1.elapsed().as_secs_f64();
    println!(
        "{label:<32} parse {:>8.1} ms  schedule {:>8.1} ms  actions {:>6}  summary lines {:>5}  peak rss {} MiB",
        parsed * 1e3,
        sched * 1e3,
        tr.actions.len(),
        tr.summary.len(),
        peak_rss_kib().map_or("?".to_string(), |k| (k / 1024).to_string()),
    );
    (parsed + sched, tr)
}

/// Records on every operation the digest of its parameters (as executors do), timing the
/// digests, then schedules again: the digest checks must find nothing changed.
fn with_digests(xml: &str) {
    let (mut cib, _) = crm::cib::parse_cib(xml).expect("generated CIB parses");
    let t0 = Instant::now();
    let calc = crm::digest::Calculator::new(&cib);
    let mut count = 0usize;
    for ns in &mut cib.status {
        let node = ns.uname.clone();
        for lr in &mut ns.resources {
            for op in &mut lr.ops {
                if let Some(d) = calc.digest(&lr.id, node.as_deref(), &op.operation, op.interval_ms) {
                    op.extra.push(("op-digest".into(), d));
                    count += 1;
                }
            }
        }
    }
    let digests = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let tr = crm::schedule(&cib, None, 1_700_000_000);
    let sched = t1.elapsed().as_secs_f64();
    println!(
        "{:<32} digests {count} in {:.1} ms ({:.2} us each, unpacking included)  schedule with digests {:.1} ms  changes {}",
        "",
        digests * 1e3,
        digests * 1e6 / count.max(1) as f64,
        sched * 1e3,
        tr.summary.len()
    );
}

fn crm_simulate(xml: &str, ours: f64) {
    let Ok(path) = which("crm_simulate") else {
        return;
    };
    let file = std::env::temp_dir().join(format!("crm-bench-{}.xml", std::process::id()));
    if std::fs::write(&file, xml).is_err() {
        return;
    }
    let t = Instant::now();
    let ok =
        std::process::Command::new(path).args(["-R", "-Q", "-x"]).arg(&file).output().is_ok_and(|o| o.status.success());
    let theirs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    if ok {
        println!("{:<32} crm_simulate {:>8.1} ms  ratio {:.1}x", "", theirs * 1e3, theirs / ours.max(1e-9));
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let paths = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()).ok_or(())
}

fn main() {
    let compare = std::env::var_os("BENCH_CRM_SIMULATE").is_some();
    for (label, shape, steady) in [
        ("16 nodes / 200 rsc, cold", Shape { nodes: 16, resources: 200 }, false),
        ("32 nodes / 1000 rsc, cold", Shape { nodes: 32, resources: 1000 }, false),
        ("64 nodes / 5000 rsc, steady", Shape { nodes: 64, resources: 5000 }, true),
    ] {
        let cold = generate(&shape, None);
        if steady {
            let (_, first) = run(&format!("{label} (placing)"), &cold);
            let xml = generate(&shape, Some(&first.placement));
            let (secs, tr) = run(label, &xml);
            println!("{:<32} changes in steady state: {}", "", tr.summary.len());
            with_digests(&xml);
            if compare {
                crm_simulate(&xml, secs);
            }
        } else {
            let (secs, _) = run(label, &cold);
            if compare {
                crm_simulate(&cold, secs);
            }
        }
    }
}
