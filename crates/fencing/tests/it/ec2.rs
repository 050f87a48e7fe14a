//! The native EC2 agent against moto.
//!
//! Safety: moto and the code under test both run inside a network namespace that has only
//! loopback. The test re-executes its own binary inside that namespace (`nsenter --net`) to
//! run the agent there, so no request the agent makes can leave the namespace; before the
//! first request, both the outer and the inner process check that the namespace has no route.

use std::process::Command;
use std::time::Duration;

use fencing::{Action, AgentError, Ec2Agent, Outcome, Params, PowerState, Request, execute};

use crate::moto::{MotoRig, ns_is_loopback_only_here};

const INNER: &str = "FENCING_IT_EC2_INNER";
const TEST_NAME: &str = "ec2::ec2_agent_fences_instances_on_moto_inside_a_loopback_only_namespace";

const OBSERVE: &str = r#"
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
print(ec2.describe_instances(InstanceIds=[sys.argv[2]])["Reservations"][0]["Instances"][0]["State"]["Name"])
"#;

#[test]
fn ec2_agent_fences_instances_on_moto_inside_a_loopback_only_namespace() {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    let Some(moto) = MotoRig::start() else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = moto.inner(
        &exe,
        &["--exact", TEST_NAME, "--nocapture", "--test-threads=1"],
        INNER,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "inner EC2 test failed"
    );
}

fn agent(words: &[&str]) -> Ec2Agent {
    Ec2Agent::from_params(&Params::from_words(words).unwrap()).unwrap()
}

/// Runs inside the namespace.
fn inner() {
    assert!(
        ns_is_loopback_only_here(),
        "not inside a loopback-only namespace"
    );
    let ids: Vec<String> = std::env::var("FENCING_IT_EC2_IDS")
        .unwrap()
        .split(' ')
        .map(String::from)
        .collect();
    let auth: Vec<String> = std::env::var("FENCING_IT_EC2_AUTH")
        .unwrap()
        .split(' ')
        .map(String::from)
        .collect();
    let python = std::env::var("FENCING_IT_PYTHON").unwrap();
    let observe = |id: &str| {
        let out = Command::new(&python)
            .args(["-c", OBSERVE, "http://127.0.0.1:5000", id])
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        match String::from_utf8_lossy(&out.stdout).trim() {
            "stopped" | "terminated" => PowerState::Off,
            _ => PowerState::On,
        }
    };

    // Region, endpoint and credentials from the standard environment variables.
    let a = agent(&[]);
    let t = fencing::testing::conformance(&a, Some(&ids[0]), Some("i-00000000000000000"), &|| {
        observe(&ids[0])
    });
    eprintln!("ec2 (moto): {:?}", t.actions);
    assert_eq!(
        observe(&ids[1]),
        PowerState::On,
        "fencing one instance touched another"
    );

    // The same scenarios through the runner with fence_aws.
    if std::env::var("FENCING_IT_FENCE_AWS").is_ok_and(|v| v == "1") {
        let p = Params::from_words(&[
            "region=us-east-1",
            "access_key=testing",
            "secret_key=testing",
        ])
        .unwrap();
        let script = fencing::ScriptAgent::new("fence_aws", &p).unwrap();
        let t = fencing::testing::conformance(
            &script,
            Some(&ids[0]),
            Some("i-00000000000000000"),
            &|| observe(&ids[0]),
        );
        eprintln!("fence_aws (moto): {:?}", t.actions);
        let r = execute(
            &script,
            &Request::new(Action::Off, Some("i-00000000000000000")),
        );
        assert!(!r.confirms_fenced(), "{r:?}");
    } else {
        eprintln!("skipped: fence_aws comparison (fence-agents not installed)");
    }

    // Explicit parameters win over the environment.
    let a = agent(&[
        "endpoint=http://127.0.0.1:5000",
        "region=us-east-1",
        "access_key=testing",
        "secret_key=testing",
    ]);
    let r = execute(&a, &Request::new(Action::Off, Some(&ids[1])));
    assert!(r.confirms_fenced(), "{r:?}");
    assert_eq!(observe(&ids[1]), PowerState::Off);

    // Unknown instance: failed, not fenced.
    let r = execute(&a, &Request::new(Action::Off, Some("i-00000000000000000")));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::NoSuchPlug { .. })),
        "{r:?}"
    );

    // Nothing listening: failed at once.
    let dead = agent(&["endpoint=http://127.0.0.1:5999"]);
    let r = execute(&dead, &Request::new(Action::Off, Some(&ids[0])));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Unreachable { .. })),
        "{r:?}"
    );
    assert!(r.elapsed < Duration::from_secs(2), "{r:?}");

    // Auth mode: the right key works, a wrong secret is an authentication failure.
    let (key_id, secret) = (&auth[auth.len() - 2], &auth[auth.len() - 1]);
    let good_key = format!("access_key={key_id}");
    let good_secret = format!("secret_key={secret}");
    let good = agent(&[
        "endpoint=http://127.0.0.1:5001",
        "region=us-east-1",
        &good_key,
        &good_secret,
    ]);
    let r = execute(&good, &Request::new(Action::Status, Some(&auth[0])));
    assert!(matches!(r.outcome, Outcome::Done(_)), "{r:?}");
    let wrong = agent(&[
        "endpoint=http://127.0.0.1:5001",
        "region=us-east-1",
        &good_key,
        "secret_key=wrong-secret",
    ]);
    let r = execute(&wrong, &Request::new(Action::Off, Some(&auth[0])));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Auth { .. })),
        "{r:?}"
    );
    assert_eq!(r.attempts, 1, "authentication failures are not retried");
    assert!(
        !format!("{r:?} {wrong:?}").contains("wrong-secret"),
        "secret leaked"
    );
}
