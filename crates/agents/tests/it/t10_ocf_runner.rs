//! The OCF runner against small scripts: environment, exit codes and reasons, garbage output,
//! meta-data parsing, and a hanging agent whose whole process group dies at the timeout.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agents::testing::kv;
use agents::{Action, ExecStatus, OcfAgent, OcfRc, Registry, Request, ResourceAgent, execute};

const META: &str = r#"<?xml version="1.0"?>
<resource-agent name="t" version="0.1">
<version>1.1</version>
<shortdesc lang="en">test</shortdesc>
<parameters>
<parameter name="state" required="1" unique="1"><shortdesc lang="en">state file</shortdesc><content type="string"/></parameter>
<parameter name="count" unique-group="g"><content type="integer" default="3"/></parameter>
<parameter name="mode"><content type="select" default="a"><option value="a"/><option value="b"/></content></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/><action name="stop" timeout="30"/>
<action name="monitor" timeout="20s" interval="10s" depth="10"/><action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>"#;

fn write_agent(root: &Path, name: &str, body: &str) -> OcfAgent {
    let dir = root.join("resource.d/test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    OcfAgent::new(root, "test", name).unwrap()
}

fn dummy(root: &Path) -> OcfAgent {
    let body = format!(
        r#"case "$1" in
meta-data) cat <<'XML'
{META}
XML
exit 0;;
start) [ -n "$OCF_RESKEY_state" ] || exit 6; env > "$OCF_RESKEY_state.env"; touch "$OCF_RESKEY_state"; exit 0;;
stop) rm -f "$OCF_RESKEY_state"; exit 0;;
monitor) [ -e "$OCF_RESKEY_state" ] && exit 0; echo "ocf-exit-reason:no state file" >&2; exit 7;;
validate-all) [ -n "$OCF_RESKEY_state" ] || {{ echo "ocf-exit-reason:state is required" >&2; exit 6; }}; exit 0;;
*) exit 3;;
esac"#
    );
    write_agent(root, "dummy", &body)
}

#[test]
fn a_script_passes_conformance_and_sees_the_standard_environment() {
    let dir = rig::ScratchDir::new();
    let agent = dummy(dir.path());
    let state = dir.path().join("st").display().to_string();
    let case = agents::testing::Case::new("d1", &[("state", &state)]).depths(&[10]);
    let report = agents::testing::conformance(&agent, "ocf:test:dummy", &case);
    report.assert_passed();

    let mut req = Request::new(Action::Start, "d1", kv(&[("state", &state), ("count", "4")]));
    req.meta = kv(&[("notify", "true")]);
    assert_eq!(execute(&agent, &req).rc, OcfRc::Success);
    let env = std::fs::read_to_string(format!("{state}.env")).unwrap();
    for line in [
        "OCF_ROOT=",
        "OCF_RESOURCE_INSTANCE=d1",
        "OCF_RESOURCE_TYPE=dummy",
        "OCF_RESOURCE_PROVIDER=test",
        "OCF_RA_VERSION_MAJOR=1",
        "OCF_RESKEY_count=4",
        "OCF_RESKEY_CRM_meta_notify=true",
        "OCF_RESKEY_CRM_meta_timeout=20000",
    ] {
        assert!(env.lines().any(|l| l.starts_with(line)), "{line} missing from:\n{env}");
    }
    let monitor = execute(&agent, &Request::new(Action::Monitor, "d1", kv(&[("state", "/nonexistent")])));
    assert_eq!(monitor.rc, OcfRc::NotRunning);
    assert_eq!(monitor.reason.as_deref(), Some("no state file"));
}

#[test]
fn meta_data_becomes_the_native_schema() {
    let dir = rig::ScratchDir::new();
    let md = dummy(dir.path()).meta_data().unwrap();
    let state = md.param("state").unwrap();
    assert!(state.required && state.unique);
    assert!(md.param("count").unwrap().unique, "unique-group counts as unique");
    assert_eq!(md.param("count").unwrap().default.as_deref(), Some("3"));
    assert_eq!(md.param("mode").unwrap().kind, agents::ParamType::Select(vec!["a".into(), "b".into()]));
    assert_eq!(md.action("stop").unwrap().timeout, Duration::from_secs(30));
    assert_eq!(md.monitor_depths(), vec![0, 10]);
    let typed = md.validate(&kv(&[("state", "x")])).unwrap();
    assert_eq!(typed.int("count"), Some(3));
    let errs = md.validate(&kv(&[("count", "x")])).unwrap_err();
    assert_eq!(errs.iter().map(|e| e.param()).collect::<Vec<_>>(), ["state", "count"]);
}

#[test]
fn a_hanging_agent_is_killed_with_its_whole_process_group() {
    let dir = rig::ScratchDir::new();
    let pidfile = dir.path().join("bg.pid");
    let agent = write_agent(
        dir.path(),
        "hang",
        &format!("sleep 60 & echo $! > {}; echo partial output; sleep 60", pidfile.display()),
    );
    let t0 = Instant::now();
    let r = execute(&agent, &Request::new(Action::Start, "h", kv(&[])).timeout(Duration::from_millis(400)));
    assert_eq!(r.status, ExecStatus::TimedOut, "{r}");
    assert_eq!(r.rc, OcfRc::ErrGeneric);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(r.reason.unwrap().contains("process group was killed"));
    let bg: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(
        rig::wait_until(Duration::from_secs(3), || !rig::process_alive(bg)),
        "background child {bg} of the hung agent survived"
    );
}

#[test]
fn garbage_output_and_odd_exit_codes_are_reported_plainly() {
    let dir = rig::ScratchDir::new();
    let agent = write_agent(
        dir.path(),
        "junk",
        r#"case "$1" in
meta-data) printf '\001\002<not xml'; exit 0;;
start) head -c 3000000 /dev/zero | tr '\0' 'x'; printf '\377\376 ocf-exit-reason:\n' >&2; exit 42;;
stop) kill -9 $$;;
*) exit 190;;
esac"#,
    );
    let r = execute(&agent, &Request::new(Action::Start, "j", kv(&[])));
    assert_eq!(r.rc, OcfRc::Other(42));
    assert_eq!(r.rc.recovery(), agents::Recovery::Soft);
    assert_eq!(r.reason, None, "an empty exit reason is no reason");
    assert!(r.output.len() <= 1 << 20, "output is capped");
    let r = execute(&agent, &Request::new(Action::Stop, "j", kv(&[])));
    assert_eq!(r.rc, OcfRc::ErrGeneric);
    assert!(r.reason.unwrap().contains("signal 9"));
    assert_eq!(execute(&agent, &Request::new(Action::Monitor, "j", kv(&[]))).rc, OcfRc::Degraded);
    let err = agent.meta_data().unwrap_err().to_string();
    assert!(err.contains("not well-formed XML"), "{err}");
}

#[test]
fn registry_resolves_names_and_explains_misses() {
    let dir = rig::ScratchDir::new();
    dummy(dir.path());
    write_agent(dir.path(), "nginx", "exit 0");
    let reg = Registry::new(dir.path());
    assert_eq!(reg.resolve("dummy").unwrap().to_string(), "ocf:test:dummy");
    assert_eq!(reg.resolve("vip").unwrap().to_string(), "native:builtin:vip");
    let amb = reg.resolve("nginx").unwrap_err().to_string();
    assert!(amb.contains("native:builtin:nginx") && amb.contains("ocf:test:nginx"), "{amb}");
    assert_eq!(reg.resolve("test:nginx").unwrap().to_string(), "ocf:test:nginx");
    let miss = reg.resolve("Dummy").unwrap_err().to_string();
    assert!(miss.contains("did you mean ocf:test:dummy"), "{miss}");
    assert!(reg.get("ocf:test:missing").is_err());
    assert!(reg.resolve("a:b:c:d").is_err());
    // A table keyed by full name holds any agent behind one trait object type.
    let mut table = agents::AgentTable::new();
    for n in ["vip", "dummy"] {
        table.insert(reg.resolve(n).unwrap(), reg.get(n).unwrap());
    }
    let boxed: Vec<Box<dyn ResourceAgent>> = vec![Box::new(dummy(dir.path()))];
    assert_eq!(boxed.len() + table.len(), 3);
    if agents::systemd_available() {
        assert!(reg.get("systemd:ssh").is_ok());
    } else {
        let e = reg.get("systemd:ssh").err().unwrap().to_string();
        assert!(e.contains("systemd is not running"), "{e}");
    }
}

#[test]
fn native_agents_refuse_bad_parameters_naming_them() {
    let vip = crate::support::agent("vip");
    let r = execute(
        vip.as_ref(),
        &Request::new(Action::Start, "v", kv(&[("ip", "10.0.0.1"), ("cidr_netmask", "abc"), ("nic", "")])),
    );
    assert_eq!(r.rc, OcfRc::ErrConfigured);
    assert!(r.reason.as_deref().unwrap().contains("`cidr_netmask`: `abc` is not an integer"), "{r}");
    let r = execute(vip.as_ref(), &Request::new(Action::Validate, "v", kv(&[("ip", "10.0.0.300")])));
    assert_eq!(r.rc, OcfRc::ErrConfigured);
    assert!(r.reason.as_deref().unwrap().contains("`ip`"), "{r}");
    let fs = crate::support::agent("filesystem");
    let r = execute(
        fs.as_ref(),
        &Request::new(
            Action::Validate,
            "f",
            kv(&[("device", "/dev/nonexistent-disk"), ("directory", "/mnt/x"), ("fstype", "ext4")]),
        ),
    );
    assert_eq!(r.rc, OcfRc::ErrInstalled, "{r}");
    let r = execute(
        fs.as_ref(),
        &Request::new(Action::Validate, "f", kv(&[("device", "tmpfs"), ("directory", "rel/dir"), ("fstype", "tmpfs")])),
    );
    assert_eq!(r.rc, OcfRc::ErrConfigured, "{r}");
    let nginx = crate::support::agent("native:builtin:nginx");
    let r =
        execute(nginx.as_ref(), &Request::new(Action::Start, "n", kv(&[("configfile", "/nonexistent/nginx.conf")])));
    assert_eq!(r.rc, OcfRc::ErrConfigured);
    assert!(r.reason.as_deref().unwrap().contains("`configfile`"), "{r}");
    let vm = crate::support::agent("vm");
    let r = execute(
        vm.as_ref(),
        &Request::new(Action::Monitor, "m", kv(&[("config", "/nonexistent.xml"), ("force_stop", "perhaps")])),
    );
    assert_eq!(r.rc, OcfRc::ErrConfigured);
    assert!(r.reason.as_deref().unwrap().contains("`force_stop`"), "{r}");
}

#[test]
fn conformance_catches_an_agent_that_is_not_idempotent_and_confuses_failed_with_stopped() {
    let dir = rig::ScratchDir::new();
    let good = dummy(dir.path());
    let xml = good.meta_data_xml().unwrap();
    // Stop fails when already stopped, monitor says "failed" instead of "stopped", and a hung
    // start ignores its timeout only as far as the runner lets it.
    let broken = write_agent(
        dir.path(),
        "broken",
        &format!(
            r#"case "$1" in
meta-data) cat <<'XML'
{xml}
XML
exit 0;;
start) touch "$OCF_RESKEY_state"; exit 0;;
stop) [ -e "$OCF_RESKEY_state" ] || exit 1; rm -f "$OCF_RESKEY_state"; exit 0;;
monitor) [ -e "$OCF_RESKEY_state" ] && exit 0; exit 1;;
validate-all) exit 0;;
*) exit 3;;
esac"#
        ),
    );
    let state = dir.path().join("b").display().to_string();
    let case = agents::testing::Case::new("b1", &[("state", &state)]);
    let report = agents::testing::conformance(&broken, "ocf:test:broken", &case);
    let failed: Vec<&str> = report.failures().iter().map(|s| s.label.as_str()).collect();
    for expected in [
        "probe while stopped",
        "stop while stopped",
        "monitor after stop",
        "stop again",
        "validate-all: missing required `state`",
    ] {
        assert!(failed.contains(&expected), "{expected} not caught:\n{report}");
    }
    assert!(!failed.contains(&"start"), "{report}");
}

#[test]
fn a_script_sets_and_withdraws_its_promotion_score_with_crm_master() {
    let dir = rig::ScratchDir::new();
    let body = format!(
        r#"case "$1" in
meta-data) cat <<'XML'
{META}
XML
exit 0;;
start) ${{HA_SBIN_DIR}}/crm_master -l reboot -v 50 || exit 1; exit 0;;
promote) crm_attribute -N "$(uname -n)" -n "master-${{OCF_RESOURCE_INSTANCE%%:*}}" -l reboot -v INFINITY; exit 0;;
stop) crm_master -l reboot -D; exit 0;;
monitor) crm_master -Q -G >/dev/null 2>&1; [ $? = 105 ] || exit 1; crm_attribute -n other -v 1; exit 7;;
*) exit 3;;
esac"#
    );
    let agent = write_agent(dir.path(), "promo", &body);
    let state = dir.path().join("s").display().to_string();
    let run = |action: Action| {
        let r = execute(&agent, &Request::new(action, "promo:1", kv(&[("state", &state)])));
        assert_eq!(r.status, ExecStatus::Done, "{r}");
        r
    };
    let started = run(Action::Start);
    assert_eq!((started.rc, started.promotion), (OcfRc::Success, Some(Some(50))), "{started}");
    let promoted = run(Action::Promote);
    assert_eq!(promoted.promotion, Some(Some(agents::SCORE_INFINITY)), "INFINITY spelled out");
    let probed = run(Action::Monitor);
    assert_eq!(
        (probed.rc, probed.promotion),
        (OcfRc::NotRunning, None),
        "a query changes nothing; other attributes are ignored"
    );
    let stopped = run(Action::Stop);
    assert_eq!(stopped.promotion, Some(None), "withdrawn at stop");
}
