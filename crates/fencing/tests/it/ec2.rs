//! The native EC2 agent against moto.
//!
//! Safety: moto and the code under test both run inside a network namespace that has only
//! loopback. The test re-executes its own binary inside that namespace (`nsenter --net`) to
//! run the agent there, so no request the agent makes can leave the namespace; before the
//! first request, both the outer and the inner process check that the namespace has no route.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fencing::{Action, AgentError, Ec2Agent, Outcome, Params, PowerState, Request, execute};

use crate::rigs::Background;

const INNER: &str = "FENCING_IT_EC2_INNER";
const TEST_NAME: &str = "ec2::ec2_agent_fences_instances_on_moto_inside_a_loopback_only_namespace";

/// `MOTO_SERVER` (path to moto_server), else `/opt/hc-venv/bin/moto_server`, else PATH.
fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/opt/hc-venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

fn python_next_to(moto: &std::path::Path) -> PathBuf {
    let p = moto.with_file_name("python3");
    if p.exists() {
        p
    } else {
        PathBuf::from("python3")
    }
}

const SETUP: &str = r#"
import sys, boto3
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
r = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=3, MaxCount=3,
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "node"}]}])
ids = [i["InstanceId"] for i in r["Instances"]]
if len(sys.argv) > 2:
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="fencer")
    iam.put_user_policy(UserName="fencer", PolicyName="ec2all", PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}')
    k = iam.create_access_key(UserName="fencer")["AccessKey"]
    ids += [k["AccessKeyId"], k["SecretAccessKey"]]
print(" ".join(ids))
"#;

const OBSERVE: &str = r#"
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
print(ec2.describe_instances(InstanceIds=[sys.argv[2]])["Reservations"][0]["Instances"][0]["State"]["Name"])
"#;

fn ns_is_loopback_only_here() -> bool {
    let route = Command::new("ip").args(["route", "show"]).output().unwrap();
    let route6 = Command::new("ip")
        .args(["-6", "route", "show"])
        .output()
        .unwrap();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    route.stdout.trim_ascii().is_empty()
        && String::from_utf8_lossy(&route6.stdout)
            .lines()
            .all(|l| l.starts_with("::1 "))
        && links.lines().count() == 1
        && links.contains(": lo:")
}

#[test]
fn ec2_agent_fences_instances_on_moto_inside_a_loopback_only_namespace() {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    if !rig::require_root_and(&["ip", "nsenter"]) {
        return;
    }
    let Some(moto) = moto_server() else {
        rig::require(
            "moto_server (set MOTO_SERVER, or pip install 'moto[server,ec2]' into /opt/hc-venv)",
            false,
        );
        return;
    };
    let python = python_next_to(&moto);
    let ns = rig::Netns::new();
    assert!(
        rig::sh(&format!("ip -n {} route show", ns.name()))
            .trim()
            .is_empty(),
        "namespace has a route: refusing to run AWS code"
    );
    let spawn_moto = |port: &str, auth: bool| {
        let mut c = ns.command(moto.to_str().unwrap());
        c.args(["-H", "127.0.0.1", "-p", port])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if auth {
            c.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
        }
        Background(c.spawn().expect("start moto_server"))
    };
    let _moto = spawn_moto("5000", false);
    let _moto_auth = spawn_moto("5001", true);
    let py = |args: &[&str]| {
        let out = ns
            .command(python.to_str().unwrap())
            .args(args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for port in ["5000", "5001"] {
        let probe = format!(
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/moto-api/')"
        );
        assert!(
            rig::wait_until(Duration::from_secs(30), || py(&["-c", &probe]).0),
            "moto_server on {port} did not come up"
        );
    }
    let (ok, ids, err) = py(&["-c", SETUP, "http://127.0.0.1:5000"]);
    assert!(ok, "moto setup failed: {err}");
    // Auth mode: the first calls create the user whose key the agent then uses.
    let (ok, auth, err) = py(&["-c", SETUP, "http://127.0.0.1:5001", "iam"]);
    assert!(ok, "moto auth setup failed: {err}");

    // fence_aws for comparison: it always asks IMDS for its own instance id, so a fake IMDS
    // inside the namespace answers with the third instance, and a shim points boto3 at moto.
    let ids_v: Vec<&str> = ids.split(' ').collect();
    let shim = rig::ScratchDir::new();
    std::fs::copy(
        crate::rigs::shared().join("rigs/aws/sitecustomize.py"),
        shim.path().join("sitecustomize.py"),
    )
    .unwrap();
    std::fs::write(shim.path().join("self_iid"), ids_v[2]).unwrap();
    let with_fence_aws = rig::have_program("fence_aws");
    let _imds = with_fence_aws.then(|| {
        let imds = Background(
            ns.command("python3")
                .arg(crate::rigs::shared().join("rigs/aws/fake_imds.py"))
                .args(["127.0.0.1", "5002"])
                .arg(shim.path().join("self_iid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let probe = "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:5002/latest/api/token', method='PUT'))";
        assert!(rig::wait_until(Duration::from_secs(10), || py(&["-c", probe]).0), "fake IMDS did not come up");
        imds
    });

    let exe = std::env::current_exe().unwrap();
    let out = ns
        .command(exe.to_str().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env("FENCING_IT_EC2_IDS", &ids)
        .env("FENCING_IT_EC2_AUTH", &auth)
        .env("FENCING_IT_PYTHON", &python)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5000")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env(
            "FENCING_IT_FENCE_AWS",
            if with_fence_aws { "1" } else { "" },
        )
        .env("PYTHONPATH", shim.path())
        .env("FENCE_AWS_ENDPOINT", "http://127.0.0.1:5000")
        .env("FENCE_AWS_IMDS", "http://127.0.0.1:5002")
        .output()
        .unwrap();
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
    let t = fencing::testing::conformance(&a, Some(&ids[0]), &|| observe(&ids[0]));
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
        let t = fencing::testing::conformance(&script, Some(&ids[0]), &|| observe(&ids[0]));
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
