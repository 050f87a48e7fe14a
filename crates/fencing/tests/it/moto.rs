//! The EC2 rig: moto (plus a fake IMDS for fence_aws) inside a loopback-only namespace, and
//! a way to run code under test inside that namespace by re-executing a binary there.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::rigs::{Background, shared};

/// `MOTO_SERVER` (path to moto_server), else `/opt/hc-venv/bin/moto_server`, else PATH.
pub(crate) fn moto_server() -> Option<PathBuf> {
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

/// True when this process's network namespace has only `lo` and no route.
pub(crate) fn ns_is_loopback_only_here() -> bool {
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

/// moto on 127.0.0.1:5000 (no auth) and :5001 (SigV4 verified), a fake IMDS on :5002, all
/// inside `ns`. Field order is drop order: servers first, then the namespace.
pub(crate) struct MotoRig {
    _servers: Vec<Background>,
    /// Space-separated instance ids on :5000 (the third is fence_aws's "own" instance).
    pub(crate) ids: String,
    /// Instance ids on :5001, then the fencer user's access key id and secret.
    pub(crate) auth: String,
    pub(crate) python: PathBuf,
    pub(crate) with_fence_aws: bool,
    shim: rig::ScratchDir,
    pub(crate) ns: rig::Netns,
}

impl MotoRig {
    /// Starts the rig, or returns `None` after `rig::require` reported what is missing.
    pub(crate) fn start() -> Option<MotoRig> {
        if !rig::require_root_and(&["ip", "nsenter"]) {
            return None;
        }
        let Some(moto) = moto_server() else {
            rig::require(
                "moto_server (set MOTO_SERVER, or pip install 'moto[server,ec2]' into /opt/hc-venv)",
                false,
            );
            return None;
        };
        let python = {
            let p = moto.with_file_name("python3");
            if p.exists() {
                p
            } else {
                PathBuf::from("python3")
            }
        };
        rig::sweep_stale_namespaces();
        let ns = rig::Netns::new();
        assert!(
            rig::sh(&format!("ip -n {} route show", ns.name()))
                .trim()
                .is_empty(),
            "namespace has a route: refusing to run AWS code"
        );
        let mut servers = Vec::new();
        for (port, auth) in [("5000", false), ("5001", true)] {
            let mut c = ns.command(moto.to_str().unwrap());
            c.args(["-H", "127.0.0.1", "-p", port])
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            if auth {
                // run_instances, create_user, put_user_policy, create_access_key.
                c.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
            }
            servers.push(Background(c.spawn().expect("start moto_server")));
        }
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
        let (ok, auth, err) = py(&["-c", SETUP, "http://127.0.0.1:5001", "iam"]);
        assert!(ok, "moto auth setup failed: {err}");

        // fence_aws always asks IMDS for its own instance id: a fake IMDS inside the
        // namespace answers with the third instance, and a shim points boto3 at moto.
        let shim = rig::ScratchDir::new();
        std::fs::copy(
            shared().join("rigs/aws/sitecustomize.py"),
            shim.path().join("sitecustomize.py"),
        )
        .unwrap();
        let own = ids.split(' ').nth(2).unwrap_or_default().to_owned();
        std::fs::write(shim.path().join("self_iid"), own).unwrap();
        let with_fence_aws = rig::have_program("fence_aws");
        if with_fence_aws {
            servers.push(Background(
                ns.command("python3")
                    .arg(shared().join("rigs/aws/fake_imds.py"))
                    .args(["127.0.0.1", "5002"])
                    .arg(shim.path().join("self_iid"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap(),
            ));
            let probe = "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:5002/latest/api/token', method='PUT'))";
            assert!(
                rig::wait_until(Duration::from_secs(10), || py(&["-c", probe]).0),
                "fake IMDS did not come up"
            );
        }
        Some(MotoRig {
            _servers: servers,
            ids,
            auth,
            python,
            with_fence_aws,
            shim,
            ns,
        })
    }

    /// Runs `exe args` inside the namespace with the AWS environment pointing at moto and
    /// `marker` set, and returns its output.
    pub(crate) fn inner(&self, exe: &Path, args: &[&str], marker: &str) -> Output {
        self.ns
            .command(exe.to_str().unwrap())
            .args(args)
            .env(marker, "1")
            .env("FENCING_IT_EC2_IDS", &self.ids)
            .env("FENCING_IT_EC2_AUTH", &self.auth)
            .env("FENCING_IT_PYTHON", &self.python)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5000")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_SESSION_TOKEN")
            .env(
                "FENCING_IT_FENCE_AWS",
                if self.with_fence_aws { "1" } else { "" },
            )
            .env("PYTHONPATH", self.shim.path())
            .env("FENCE_AWS_ENDPOINT", "http://127.0.0.1:5000")
            .env("FENCE_AWS_IMDS", "http://127.0.0.1:5002")
            .output()
            .unwrap()
    }
}
