//! Native AWS EC2 agent: SigV4-signed EC2 Query API calls (DescribeInstances, StopInstances
//! with `Force=true`, StartInstances) over a small blocking HTTP client.
//!
//! Safety: the agent only ever talks to the one endpoint it was configured with (parameter
//! `endpoint`, else `AWS_ENDPOINT_URL_EC2`/`AWS_ENDPOINT_URL`, else the regional endpoint).
//! It never contacts the instance metadata service: credentials come from the parameters or
//! the standard environment variables, and there is no fallback chain. Redirects and proxy
//! environment variables are ignored.
//!
//! `reboot` is a forced stop (confirmed `stopped`) followed by a start: EC2's own
//! RebootInstances is an unconfirmable request to the guest OS and cannot fence.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::agent::{Action, AgentError, FenceAgent, Outcome, Plug, PowerState, confirm_power};
use crate::metadata::{Metadata, fencer_parameters, param};
use crate::params::Params;
use crate::secret::Secret;

/// The EC2 API version of the Query protocol.
const API_VERSION: &str = "2016-11-15";
/// Largest response body accepted.
const MAX_BODY: u64 = 4 << 20;

/// The native EC2 agent.
#[derive(Debug)]
pub struct Ec2Agent {
    endpoint: String,
    /// `host[:port]` as sent in the Host header and signed.
    host: String,
    region: String,
    access_key: String,
    secret_key: Secret,
    session_token: Option<Secret>,
    default_plug: Option<String>,
    poll_interval: Duration,
}

const KNOWN: &[&str] = &[
    "region",
    "endpoint",
    "access_key",
    "secret_key",
    "session_token",
    "poll_interval",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config(field: &str, problem: impl Into<String>) -> AgentError {
    AgentError::Config {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Ec2Agent {
    /// Builds the agent from parameters, falling back to `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL_EC2`/`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub fn from_params(p: &Params) -> Result<Ec2Agent, AgentError> {
        p.check_known("ec2", KNOWN)?;
        let region = p
            .get(&["region"])
            .map(str::to_owned)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                config(
                    "region",
                    "missing: set region=<e.g. eu-west-1> or AWS_REGION",
                )
            })?;
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(config(
                "region",
                format!("`{region}` is not an AWS region name"),
            ));
        }
        let endpoint = p
            .get(&["endpoint"])
            .map(str::to_owned)
            .or_else(|| env("AWS_ENDPOINT_URL_EC2"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
            config(
                "endpoint",
                format!("`{endpoint}` is not a URL (http://host:port)"),
            )
        })?;
        let host = rest.trim_end_matches('/').to_owned();
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(config(
                "endpoint",
                "expected scheme://host[:port] with no path",
            ));
        }
        match scheme {
            "http" => {}
            "https" if cfg!(feature = "ec2-tls") => {}
            "https" => {
                return Err(config(
                    "endpoint",
                    "this build has no TLS client: build with the `ec2-tls` feature for https endpoints",
                ));
            }
            other => return Err(config("endpoint", format!("unsupported scheme `{other}`"))),
        }
        let access_key = p
            .get(&["access_key"])
            .map(str::to_owned)
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .ok_or_else(|| {
                config(
                    "access_key",
                    "missing: set access_key= or AWS_ACCESS_KEY_ID (the instance metadata service is never asked)",
                )
            })?;
        let secret_key = p
            .get(&["secret_key"])
            .map(Secret::new)
            .or_else(|| env("AWS_SECRET_ACCESS_KEY").map(Secret::new))
            .ok_or_else(|| {
                config(
                    "secret_key",
                    "missing: set secret_key= or AWS_SECRET_ACCESS_KEY",
                )
            })?;
        let session_token = p
            .get(&["session_token"])
            .map(Secret::new)
            .or_else(|| env("AWS_SESSION_TOKEN").map(Secret::new));
        let default_plug = p.get(&["plug", "port"]).map(str::to_owned);
        if let Some(id) = &default_plug {
            check_instance(id)?;
        }
        Ok(Ec2Agent {
            endpoint: format!("{scheme}://{host}/"),
            host,
            region,
            access_key,
            secret_key,
            session_token,
            default_plug,
            poll_interval: p.duration(&["poll_interval"], Duration::from_millis(500))?,
        })
    }

    /// The built-in metadata.
    pub fn describe() -> Metadata {
        let mut parameters = vec![
            param(
                "region",
                false,
                "string",
                None,
                "AWS region (else AWS_REGION / AWS_DEFAULT_REGION)",
            ),
            param(
                "endpoint",
                false,
                "string",
                None,
                "EC2 endpoint URL (else AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL, else the regional endpoint)",
            ),
            param(
                "access_key",
                false,
                "string",
                None,
                "Access key id (else AWS_ACCESS_KEY_ID)",
            ),
            param(
                "secret_key",
                false,
                "string",
                None,
                "Secret access key (secret; else AWS_SECRET_ACCESS_KEY)",
            ),
            param(
                "session_token",
                false,
                "string",
                None,
                "Session token (secret; else AWS_SESSION_TOKEN)",
            ),
            param(
                "plug",
                false,
                "string",
                None,
                "Instance id, when not given per action",
            ),
            param(
                "poll_interval",
                false,
                "second",
                Some("0.5"),
                "Longest pause between state polls",
            ),
        ];
        parameters.extend(fencer_parameters());
        Metadata {
            name: "ec2".into(),
            shortdesc: "Native AWS EC2 fencing (forced stop, confirmed)".into(),
            longdesc: "Fences an EC2 instance with StopInstances Force=true and confirms the instance is stopped. Never contacts the instance metadata service; credentials come from parameters or the environment.".into(),
            parameters,
            actions: ["on", "off", "reboot", "status", "list", "monitor", "metadata"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn instance<'a>(&'a self, plug: Option<&'a str>) -> Result<&'a str, AgentError> {
        let id = plug
            .or(self.default_plug.as_deref())
            .ok_or_else(|| config("plug", "no instance given: set plug=<instance id>"))?;
        check_instance(id)?;
        Ok(id)
    }

    /// One signed Query API call; returns the parsed XML body of a 2xx answer.
    fn call(&self, params: &[(&str, &str)], deadline: Instant) -> Result<String, AgentError> {
        let mut body = String::new();
        for (i, (k, v)) in [("Version", API_VERSION)].iter().chain(params).enumerate() {
            if i > 0 {
                body.push('&');
            }
            body.push_str(&form_encode(k));
            body.push('=');
            body.push_str(&form_encode(v));
        }
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = Credentials::new(
            self.access_key.clone(),
            self.secret_key.expose().to_owned(),
            self.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "fencing-config",
        )
        .into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| config("access_key", format!("cannot sign: {e}")))?
            .into();
        let headers = [("host", self.host.as_str()), ("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| config("endpoint", format!("cannot sign a request to it: {e}")))?;
        let (instructions, _) = sign(signable, &signing)
            .map_err(|e| config("secret_key", format!("cannot sign: {e}")))?
            .into_parts();

        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AgentError::Timeout {
                device: self.endpoint.clone(),
                what: params.first().map_or("a call", |p| p.1).to_owned(),
                waited_ms: 0,
            });
        }
        let http = ureq::AgentBuilder::new()
            .timeout(remaining)
            .redirects(0)
            .try_proxy_from_env(false)
            .build();
        let mut req = http
            .post(&self.endpoint)
            .set("Host", &self.host)
            .set("Content-Type", content_type);
        for (name, value) in instructions.headers() {
            req = req.set(name, value);
        }
        let action = params.first().map_or("", |p| p.1);
        match req.send_string(&body) {
            Ok(resp) => read_body(resp).map_err(|detail| AgentError::Protocol {
                device: self.endpoint.clone(),
                detail,
            }),
            Err(ureq::Error::Status(code, resp)) => {
                let text = read_body(resp).unwrap_or_default();
                let (code_name, message) = parse_error(&text)
                    .unwrap_or_else(|| (format!("HTTP {code}"), text.chars().take(200).collect()));
                Err(
                    if code_name == "AuthFailure"
                        || code_name == "SignatureDoesNotMatch"
                        || code_name.starts_with("InvalidClientTokenId")
                        || code_name == "UnauthorizedOperation"
                        || code == 401
                        || code == 403
                    {
                        AgentError::Auth {
                            device: self.endpoint.clone(),
                            detail: format!("{code_name}: {message}"),
                        }
                    } else if code_name.starts_with("InvalidInstanceID") {
                        AgentError::NoSuchPlug {
                            device: self.endpoint.clone(),
                            plug: message,
                        }
                    } else if code >= 500 {
                        // The server failed mid-request: it may or may not have acted.
                        AgentError::Protocol {
                            device: self.endpoint.clone(),
                            detail: format!("{action}: {code_name}: {message}"),
                        }
                    } else {
                        AgentError::Refused {
                            device: self.endpoint.clone(),
                            what: action.to_owned(),
                            detail: format!("{code_name}: {message}"),
                        }
                    },
                )
            }
            Err(ureq::Error::Transport(t)) => Err(match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                    AgentError::Unreachable {
                        device: self.endpoint.clone(),
                        detail: t.to_string(),
                    }
                }
                ureq::ErrorKind::Io if t.to_string().contains("timed out") => AgentError::Timeout {
                    device: self.endpoint.clone(),
                    what: action.to_owned(),
                    waited_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
                },
                _ => AgentError::Protocol {
                    device: self.endpoint.clone(),
                    detail: t.to_string(),
                },
            }),
        }
    }

    fn describe_instances(
        &self,
        ids: &[&str],
        deadline: Instant,
    ) -> Result<Vec<Instance>, AgentError> {
        let keys: Vec<String> = (1..=ids.len()).map(|i| format!("InstanceId.{i}")).collect();
        let mut params = vec![("Action", "DescribeInstances")];
        params.extend(keys.iter().map(String::as_str).zip(ids.iter().copied()));
        let xml = self.call(&params, deadline)?;
        parse_instances(&xml).map_err(|detail| AgentError::Protocol {
            device: self.endpoint.clone(),
            detail,
        })
    }

    fn state(&self, id: &str, deadline: Instant) -> Result<PowerState, AgentError> {
        let found = self.describe_instances(&[id], deadline)?;
        let inst =
            found
                .into_iter()
                .find(|i| i.id == id)
                .ok_or_else(|| AgentError::NoSuchPlug {
                    device: self.endpoint.clone(),
                    plug: id.to_owned(),
                })?;
        Ok(inst.power())
    }

    fn change(&self, plug: Option<&str>, want: PowerState, deadline: Instant) -> Outcome<()> {
        let id = match self.instance(plug) {
            Ok(id) => id,
            Err(e) => return Outcome::Failed(e),
        };
        match self.state(id, deadline) {
            Ok(s) if s == want => return Outcome::Done(()),
            Ok(_) => {}
            Err(e) => return Outcome::from(e),
        }
        let (api, action) = match want {
            PowerState::Off => ("StopInstances", Action::Off),
            PowerState::On => ("StartInstances", Action::On),
        };
        let mut params = vec![("Action", api), ("InstanceId.1", id)];
        if want == PowerState::Off {
            params.push(("Force", "true"));
        }
        match self.call(&params, deadline) {
            Ok(_) => {}
            Err(
                e @ (AgentError::Auth { .. }
                | AgentError::Refused { .. }
                | AgentError::NoSuchPlug { .. }
                | AgentError::Unreachable { .. }
                | AgentError::Config { .. }),
            ) => {
                return Outcome::Failed(e);
            }
            Err(e) => return Outcome::Unknown(e),
        }
        // Poll at once (an API that acts instantly answers the first time), then back off
        // from 25 ms up to `poll_interval`.
        let mut interval = Duration::ZERO;
        let max = self.poll_interval;
        confirm_power(
            &self.endpoint,
            action,
            want,
            deadline,
            Duration::ZERO,
            || {
                std::thread::sleep(
                    interval.min(deadline.saturating_duration_since(Instant::now())),
                );
                interval = (interval * 2).clamp(
                    Duration::from_millis(25),
                    max.max(Duration::from_millis(25)),
                );
                match self.state(id, deadline) {
                    Ok(p) => Outcome::Done(p),
                    Err(e) => Outcome::Unknown(e),
                }
            },
        )
    }
}

fn read_body(resp: ureq::Response) -> Result<String, String> {
    use std::io::Read;
    let mut s = String::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut s)
        .map_err(|e| format!("unreadable response body: {e}"))?;
    Ok(s)
}

fn check_instance(id: &str) -> Result<(), AgentError> {
    let ok = id.strip_prefix("i-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 32 && h.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if ok {
        Ok(())
    } else {
        Err(config(
            "plug",
            format!("`{id}` is not an EC2 instance id (i-0123456789abcdef0)"),
        ))
    }
}

/// `application/x-www-form-urlencoded` with RFC 3986 unreserved characters kept, as SigV4
/// canonicalisation expects.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug)]
struct Instance {
    id: String,
    state: String,
    name: Option<String>,
}

impl Instance {
    /// Only `stopped` and `terminated` are off: `stopping` still runs.
    fn power(&self) -> PowerState {
        match self.state.as_str() {
            "stopped" | "terminated" => PowerState::Off,
            _ => PowerState::On,
        }
    }
}

fn child_text<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<&'a str> {
    n.children()
        .find(|c| c.has_tag_name(tag))
        .and_then(|c| c.text())
}

fn parse_instances(xml: &str) -> Result<Vec<Instance>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("response is not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "DescribeInstancesResponse" {
        return Err(format!(
            "unexpected response element `{}`",
            root.tag_name().name()
        ));
    }
    let mut out = Vec::new();
    for item in root.descendants().filter(|n| {
        n.has_tag_name("item") && n.parent().is_some_and(|p| p.has_tag_name("instancesSet"))
    }) {
        let id = child_text(item, "instanceId").ok_or("instance without instanceId")?;
        let state = item
            .children()
            .find(|c| c.has_tag_name("instanceState"))
            .and_then(|s| child_text(s, "name"))
            .ok_or("instance without instanceState/name")?;
        let name = item
            .children()
            .find(|c| c.has_tag_name("tagSet"))
            .and_then(|ts| {
                ts.children()
                    .filter(|i| i.has_tag_name("item"))
                    .find(|i| child_text(*i, "key") == Some("Name"))
                    .and_then(|i| child_text(i, "value"))
            });
        out.push(Instance {
            id: id.to_owned(),
            state: state.to_owned(),
            name: name.map(str::to_owned),
        });
    }
    Ok(out)
}

fn parse_error(xml: &str) -> Option<(String, String)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let err = doc.descendants().find(|n| n.has_tag_name("Error"))?;
    Some((
        child_text(err, "Code")?.to_owned(),
        child_text(err, "Message")
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    ))
}

impl FenceAgent for Ec2Agent {
    fn agent_type(&self) -> &str {
        "ec2"
    }

    fn off(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.change(plug, PowerState::Off, deadline)
    }

    fn on(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.change(plug, PowerState::On, deadline)
    }

    fn status(&self, plug: Option<&str>, deadline: Instant) -> Outcome<PowerState> {
        match self.instance(plug).and_then(|id| self.state(id, deadline)) {
            Ok(s) => Outcome::Done(s),
            Err(e) => Outcome::from(e),
        }
    }

    fn list(&self, deadline: Instant) -> Outcome<Vec<Plug>> {
        match self.describe_instances(&[], deadline) {
            Ok(all) => Outcome::Done(
                all.into_iter()
                    .map(|i| Plug {
                        power: Some(i.power()),
                        id: i.id,
                        alias: i.name,
                    })
                    .collect(),
            ),
            Err(e) => Outcome::from(e),
        }
    }

    fn monitor(&self, deadline: Instant) -> Outcome<()> {
        match self.describe_instances(&[], deadline) {
            Ok(_) => Outcome::Done(()),
            Err(e) => Outcome::from(e),
        }
    }

    fn metadata(&self, _deadline: Instant) -> Outcome<Metadata> {
        Outcome::Done(Self::describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_response_is_parsed_and_only_stopped_is_off() {
        let xml = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <reservationSet><item><instancesSet>
            <item><instanceId>i-1</instanceId><instanceState><code>64</code><name>stopping</name></instanceState>
              <tagSet><item><key>Name</key><value>node1</value></item></tagSet></item>
            <item><instanceId>i-2</instanceId><instanceState><code>80</code><name>stopped</name></instanceState></item>
          </instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let v = parse_instances(xml).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name.as_deref(), Some("node1"));
        assert_eq!(v[0].power(), PowerState::On);
        assert_eq!(v[1].power(), PowerState::Off);
        assert!(parse_instances("<Response/>").is_err());
        assert!(parse_instances("garbage").is_err());
    }

    #[test]
    fn errors_and_ids_are_recognised() {
        let xml = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors></Response>";
        assert_eq!(parse_error(xml).unwrap().0, "InvalidInstanceID.NotFound");
        assert!(check_instance("i-0123abc").is_ok());
        assert!(check_instance("i-").is_err());
        assert!(check_instance("i-1&Action=TerminateInstances").is_err());
        assert_eq!(form_encode("a b&c=d~"), "a%20b%26c%3Dd~");
    }
}
