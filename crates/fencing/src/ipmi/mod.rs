//! Native IPMI-over-LAN agent (RMCP+ "lanplus", cipher suite 3), written from the IPMI v2.0
//! specification over a plain `UdpSocket`.
//!
//! Each attempt opens a session (Open Session, RAKP 1–4), raises the session privilege with
//! Set Session Privilege Level (a session starts at User level; Chassis Control needs
//! Operator), sends its commands, and closes the session. Every wait is bounded by the
//! attempt's deadline; datagrams are retransmitted with a growing interval. Power changes are
//! confirmed by polling Get Chassis Status.

mod packet;

use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use packet::{PayloadType, SessionKeys};

use crate::agent::{AgentError, FenceAgent, Outcome, Plug, PowerState, confirm_power};
use crate::metadata::{Metadata, fencer_parameters, param};
use crate::params::Params;
use crate::secret::Secret;

/// Session privilege levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Privilege {
    User = 2,
    Operator = 3,
    Administrator = 4,
}

/// How `reboot` is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RebootMethod {
    /// Off (confirmed), then on.
    OnOff,
    /// Chassis Control "power cycle": the BMC's completion code is the confirmation.
    Cycle,
}

/// The native IPMI lanplus agent.
#[derive(Debug)]
pub struct IpmiAgent {
    host: String,
    port: u16,
    username: String,
    password: Secret,
    kg: Option<Secret>,
    privilege: Privilege,
    method: RebootMethod,
    power_wait: Duration,
    packet_timeout: Duration,
}

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;
const CMD_GET_DEVICE_ID: u8 = 0x01;
const CMD_CHASSIS_STATUS: u8 = 0x01;
const CMD_CHASSIS_CONTROL: u8 = 0x02;
const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3b;
const CMD_CLOSE_SESSION: u8 = 0x3c;
const CONTROL_POWER_DOWN: u8 = 0x00;
const CONTROL_POWER_UP: u8 = 0x01;
const CONTROL_POWER_CYCLE: u8 = 0x02;

const KNOWN: &[&str] = &[
    "ip",
    "ipaddr",
    "ipport",
    "username",
    "login",
    "password",
    "passwd",
    "privlvl",
    "lanplus",
    "cipher",
    "method",
    "power_wait",
    "hexadecimal_kg",
    "packet_timeout",
];

impl IpmiAgent {
    /// Builds the agent from fence_ipmilan-compatible parameters.
    pub fn from_params(p: &Params) -> Result<IpmiAgent, AgentError> {
        p.check_known("ipmi", KNOWN)?;
        let host = p.require(&["ip", "ipaddr"], "BMC address")?.to_owned();
        let port = p.number(&["ipport"], 623u16)?;
        let username = p.require(&["username", "login"], "BMC user")?.to_owned();
        if username.len() > 16 {
            return Err(AgentError::Config {
                field: "username".into(),
                problem: "IPMI user names are at most 16 bytes".into(),
            });
        }
        let password = p.secret(&["password", "passwd"]);
        if password.expose().len() > 20 {
            return Err(AgentError::Config {
                field: "password".into(),
                problem: "IPMI v2.0 passwords are at most 20 bytes".into(),
            });
        }
        if !p.flag(&["lanplus"], true)? {
            return Err(AgentError::Config {
                field: "lanplus".into(),
                problem: "IPMI 1.5 (MD5, no encryption) is not supported; remove lanplus=0".into(),
            });
        }
        match p.number(&["cipher"], 3u8)? {
            3 => {}
            0 => {
                return Err(AgentError::Config {
                    field: "cipher".into(),
                    problem: "cipher suite 0 has no authentication: anyone could power nodes off; use cipher=3".into(),
                });
            }
            c => {
                return Err(AgentError::Config {
                    field: "cipher".into(),
                    problem: format!(
                        "cipher suite {c} is not supported; use cipher=3 (HMAC-SHA1, AES-CBC-128)"
                    ),
                });
            }
        }
        let privilege = match p.get(&["privlvl"]).unwrap_or("administrator") {
            "administrator" | "admin" => Privilege::Administrator,
            "operator" => Privilege::Operator,
            "user" => Privilege::User,
            other => {
                return Err(AgentError::Config {
                    field: "privlvl".into(),
                    problem: format!(
                        "`{other}` is not a level; use administrator, operator or user"
                    ),
                });
            }
        };
        let method = match p.get(&["method"]).unwrap_or("onoff") {
            "onoff" => RebootMethod::OnOff,
            "cycle" => RebootMethod::Cycle,
            other => {
                return Err(AgentError::Config {
                    field: "method".into(),
                    problem: format!("`{other}` is not a reboot method; use onoff or cycle"),
                });
            }
        };
        let kg = match p.get(&["hexadecimal_kg"]) {
            None | Some("") => None,
            Some(hex) => {
                let bytes = decode_hex(hex).ok_or_else(|| AgentError::Config {
                    field: "hexadecimal_kg".into(),
                    problem: "expected up to 40 hex digits".into(),
                })?;
                Some(Secret::new(
                    bytes.iter().map(|b| char::from(*b)).collect::<String>(),
                ))
            }
        };
        Ok(IpmiAgent {
            host,
            port,
            username,
            password,
            kg,
            privilege,
            method,
            power_wait: p.duration(&["power_wait"], Duration::ZERO)?,
            packet_timeout: p.duration(&["packet_timeout"], Duration::from_millis(500))?,
        })
    }

    fn device(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The built-in metadata.
    pub fn describe() -> Metadata {
        let mut parameters = vec![
            param("ip", true, "string", None, "BMC address or host name"),
            param("ipport", false, "integer", Some("623"), "BMC UDP port"),
            param("username", true, "string", None, "BMC user name"),
            param("password", true, "string", None, "BMC password (secret)"),
            param(
                "privlvl",
                false,
                "select",
                Some("administrator"),
                "Session privilege: administrator, operator or user",
            ),
            param(
                "cipher",
                false,
                "integer",
                Some("3"),
                "RMCP+ cipher suite; only 3 (HMAC-SHA1, AES-CBC-128) is accepted",
            ),
            param(
                "method",
                false,
                "select",
                Some("onoff"),
                "Reboot as off+on (confirmed) or as a BMC power cycle",
            ),
            param(
                "power_wait",
                false,
                "second",
                Some("0"),
                "Wait after a power change before confirming it",
            ),
            param(
                "hexadecimal_kg",
                false,
                "string",
                None,
                "BMC key Kg in hex (secret), when the BMC has one",
            ),
            param(
                "packet_timeout",
                false,
                "second",
                Some("0.5"),
                "First retransmission interval",
            ),
        ];
        parameters.extend(fencer_parameters());
        Metadata {
            name: "ipmi".into(),
            shortdesc: "Native IPMI v2.0 lanplus fencing".into(),
            longdesc: "Powers a node off and on through its BMC over RMCP+ (cipher suite 3), confirming every power change with Get Chassis Status. Accepts fence_ipmilan's parameter names.".into(),
            parameters,
            actions: ["on", "off", "reboot", "status", "monitor", "metadata"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn session(&self, deadline: Instant) -> Result<Session, AgentError> {
        Session::open(self, deadline)
    }

    fn with_session<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Session) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let mut s = self.session(deadline)?;
        let r = f(&mut s);
        s.close(deadline);
        r
    }

    fn power_state(&self, s: &mut Session, deadline: Instant) -> Result<PowerState, AgentError> {
        let data = s.command(NETFN_CHASSIS, CMD_CHASSIS_STATUS, &[], deadline)?;
        match data.first() {
            Some(b) if b & 1 == 1 => Ok(PowerState::On),
            Some(_) => Ok(PowerState::Off),
            None => Err(AgentError::Protocol {
                device: self.device(),
                detail: "Get Chassis Status returned no data".into(),
            }),
        }
    }

    fn set_power(&self, want: PowerState, deadline: Instant) -> Outcome<()> {
        let action = match want {
            PowerState::Off => crate::Action::Off,
            PowerState::On => crate::Action::On,
        };
        let mut s = match self.session(deadline) {
            Ok(s) => s,
            Err(e) => return Outcome::from(e),
        };
        let result = (|| {
            match self.power_state(&mut s, deadline) {
                Ok(state) if state == want => return Outcome::Done(()),
                Ok(_) => {}
                Err(e) => return Outcome::from(e),
            }
            let control = match want {
                PowerState::Off => CONTROL_POWER_DOWN,
                PowerState::On => CONTROL_POWER_UP,
            };
            // From here on the command may have reached the BMC: lost contact is Unknown.
            if let Err(e) = s.command(NETFN_CHASSIS, CMD_CHASSIS_CONTROL, &[control], deadline) {
                return match e {
                    AgentError::Refused { .. } | AgentError::Auth { .. } => Outcome::Failed(e),
                    e => Outcome::Unknown(e),
                };
            }
            if !self.power_wait.is_zero() {
                std::thread::sleep(
                    self.power_wait
                        .min(deadline.saturating_duration_since(Instant::now())),
                );
            }
            let device = self.device();
            confirm_power(
                &device,
                action,
                want,
                deadline,
                Duration::from_millis(50),
                || match self.power_state(&mut s, deadline) {
                    Ok(p) => Outcome::Done(p),
                    Err(e) => Outcome::Unknown(e),
                },
            )
        })();
        s.close(deadline);
        result
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) || s.len() > 40 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl FenceAgent for IpmiAgent {
    fn agent_type(&self) -> &str {
        "ipmi"
    }

    fn off(&self, _plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.set_power(PowerState::Off, deadline)
    }

    fn on(&self, _plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.set_power(PowerState::On, deadline)
    }

    fn reboot(&self, plug: Option<&str>, deadline: Instant) -> Outcome<Option<String>> {
        if self.method == RebootMethod::OnOff {
            return match self.off(plug, deadline) {
                Outcome::Done(()) => match self.on(plug, deadline) {
                    Outcome::Done(()) => Outcome::Done(None),
                    Outcome::Failed(e) | Outcome::Unknown(e) => Outcome::Done(Some(e.to_string())),
                },
                Outcome::Failed(e) => Outcome::Failed(e),
                Outcome::Unknown(e) => Outcome::Unknown(e),
            };
        }
        let mut s = match self.session(deadline) {
            Ok(s) => s,
            Err(e) => return Outcome::from(e),
        };
        let outcome = match self.power_state(&mut s, deadline) {
            Err(e) => Outcome::from(e),
            Ok(state) => {
                // A power cycle of a chassis that is off is refused by the spec; it is
                // already fenced, so just power it on.
                let control = if state == PowerState::Off {
                    CONTROL_POWER_UP
                } else {
                    CONTROL_POWER_CYCLE
                };
                match s.command(NETFN_CHASSIS, CMD_CHASSIS_CONTROL, &[control], deadline) {
                    // The BMC's completion code confirms the cycle.
                    Ok(_) => Outcome::Done(None),
                    Err(e @ (AgentError::Refused { .. } | AgentError::Auth { .. })) => {
                        Outcome::Failed(e)
                    }
                    // Sent, answer lost: not confirmed.
                    Err(e) => Outcome::Unknown(e),
                }
            }
        };
        s.close(deadline);
        outcome
    }

    fn status(&self, _plug: Option<&str>, deadline: Instant) -> Outcome<PowerState> {
        match self.with_session(deadline, |s| self.power_state(s, deadline)) {
            Ok(p) => Outcome::Done(p),
            Err(e) => Outcome::from(e),
        }
    }

    fn list(&self, _deadline: Instant) -> Outcome<Vec<Plug>> {
        Outcome::Failed(AgentError::Unsupported {
            agent: "ipmi".into(),
            action: crate::Action::List,
        })
    }

    fn monitor(&self, deadline: Instant) -> Outcome<()> {
        match self.with_session(deadline, |s| {
            s.command(NETFN_APP, CMD_GET_DEVICE_ID, &[], deadline)
        }) {
            Ok(_) => Outcome::Done(()),
            Err(e) => Outcome::from(e),
        }
    }

    fn metadata(&self, _deadline: Instant) -> Outcome<Metadata> {
        Outcome::Done(Self::describe())
    }
}

/// An established RMCP+ session.
struct Session {
    sock: UdpSocket,
    device: String,
    packet_timeout: Duration,
    /// Our (remote console) session id: the BMC addresses its packets with it.
    console_id: u32,
    /// The BMC's (managed system) session id: we address our packets with it.
    bmc_id: u32,
    seq: u32,
    rq_seq: u8,
    keys: SessionKeys,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable in any meaningful way; a zero nonce would still
    // be authenticated by the password, so carry on rather than refuse to fence.
    let _ = getrandom::fill(&mut b);
    b
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Session {
    fn open(agent: &IpmiAgent, deadline: Instant) -> Result<Session, AgentError> {
        let device = agent.device();
        let addr = (agent.host.as_str(), agent.port)
            .to_socket_addrs()
            .map_err(|e| AgentError::Unreachable {
                device: device.clone(),
                detail: format!("cannot resolve: {e}"),
            })?
            .next()
            .ok_or_else(|| AgentError::Unreachable {
                device: device.clone(),
                detail: "name resolves to no address".into(),
            })?;
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = UdpSocket::bind(bind)
            .and_then(|s| s.connect(addr).map(|()| s))
            .map_err(|e| AgentError::Unreachable {
                device: device.clone(),
                detail: e.to_string(),
            })?;
        let mut s = Session {
            sock,
            device,
            packet_timeout: agent.packet_timeout,
            console_id: u32::from_le_bytes(random::<4>()) | 1,
            bmc_id: 0,
            seq: 0,
            rq_seq: 0,
            keys: SessionKeys::derive(&[0; 20]),
        };
        let requested = agent.privilege as u8;

        // Open Session: propose exactly suite 3; refuse anything else the BMC picks.
        let tag = random::<1>()[0];
        let mut req = vec![tag, requested, 0, 0];
        req.extend_from_slice(&s.console_id.to_le_bytes());
        req.extend_from_slice(&[0x00, 0, 0, 8, 0x01, 0, 0, 0]); // RAKP-HMAC-SHA1
        req.extend_from_slice(&[0x01, 0, 0, 8, 0x01, 0, 0, 0]); // HMAC-SHA1-96
        req.extend_from_slice(&[0x02, 0, 0, 8, 0x01, 0, 0, 0]); // AES-CBC-128
        let pkt = packet::encode(PayloadType::OpenSessionRequest, 0, 0, &req, None);
        let resp = s.exchange_clear(
            &pkt,
            PayloadType::OpenSessionResponse,
            deadline,
            "open session",
        )?;
        if resp.len() < 8 || resp[0] != tag {
            return Err(s.garbage("short or mismatched open session response"));
        }
        if resp[1] != 0 {
            let e = AgentError::Refused {
                device: s.device.clone(),
                what: "open session".into(),
                detail: packet::rmcp_status_name(resp[1]).into(),
            };
            return Err(if resp[1] == 0x0d || resp[1] == 0x09 || resp[1] == 0x0a {
                AgentError::Auth {
                    device: s.device.clone(),
                    detail: e.to_string(),
                }
            } else {
                e
            });
        }
        if resp.len() < 36 || resp[4..8] != s.console_id.to_le_bytes() {
            return Err(s.garbage("open session response for another session"));
        }
        s.bmc_id = u32::from_le_bytes([resp[8], resp[9], resp[10], resp[11]]);
        if resp[12] != 0x00
            || resp[16] != 0x01
            || resp[20] != 0x01
            || resp[24] != 0x01
            || resp[28] != 0x02
            || resp[32] != 0x01
        {
            return Err(AgentError::Refused {
                device: s.device.clone(),
                what: "open session".into(),
                detail: "BMC chose algorithms other than cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)".into(),
            });
        }

        // RAKP 1: our random number, the role (name-only lookup), the user name.
        let rm = random::<16>();
        let role = 0x10 | requested;
        let uname = agent.username.as_bytes();
        let ulen = u8::try_from(uname.len()).unwrap_or(16);
        let mut r1 = vec![tag, 0, 0, 0];
        r1.extend_from_slice(&s.bmc_id.to_le_bytes());
        r1.extend_from_slice(&rm);
        r1.extend_from_slice(&[role, 0, 0, ulen]);
        r1.extend_from_slice(uname);
        let pkt = packet::encode(PayloadType::Rakp1, 0, 0, &r1, None);
        let r2 = s.exchange_clear(&pkt, PayloadType::Rakp2, deadline, "RAKP 1")?;
        if r2.len() < 8 || r2[0] != tag {
            return Err(s.garbage("short or mismatched RAKP 2"));
        }
        if r2[1] != 0 {
            return Err(AgentError::Auth {
                device: s.device.clone(),
                detail: format!(
                    "user `{}` rejected: {}",
                    agent.username,
                    packet::rmcp_status_name(r2[1])
                ),
            });
        }
        if r2.len() < 60 || r2[4..8] != s.console_id.to_le_bytes() {
            return Err(s.garbage("RAKP 2 too short or for another session"));
        }
        let rc = &r2[8..24];
        let guid = &r2[24..40];
        let mut kuid = [0u8; 20];
        let pw = agent.password.expose().as_bytes();
        kuid[..pw.len()].copy_from_slice(pw);
        let expect = packet::hmac_sha1(
            &kuid,
            &[
                &s.console_id.to_le_bytes(),
                &s.bmc_id.to_le_bytes(),
                &rm,
                rc,
                guid,
                &[role, ulen],
                uname,
            ],
        );
        if !constant_time_eq(&expect, &r2[40..60]) {
            return Err(AgentError::Auth {
                device: s.device.clone(),
                detail: format!(
                    "wrong password for user `{}` (RAKP 2 key exchange code mismatch)",
                    agent.username
                ),
            });
        }

        // RAKP 3: prove we know the password too; derive the session keys.
        let kg: Vec<u8> = match &agent.kg {
            Some(k) => {
                let mut v = k.expose().chars().map(|c| c as u8).collect::<Vec<u8>>();
                v.resize(20, 0);
                v
            }
            None => kuid.to_vec(),
        };
        let sik = packet::hmac_sha1(&kg, &[&rm, rc, &[role, ulen], uname]);
        let auth3 = packet::hmac_sha1(
            &kuid,
            &[rc, &s.console_id.to_le_bytes(), &[role, ulen], uname],
        );
        let mut r3 = vec![tag, 0, 0, 0];
        r3.extend_from_slice(&s.bmc_id.to_le_bytes());
        r3.extend_from_slice(&auth3);
        let pkt = packet::encode(PayloadType::Rakp3, 0, 0, &r3, None);
        let r4 = s.exchange_clear(&pkt, PayloadType::Rakp4, deadline, "RAKP 3")?;
        if r4.len() < 8 || r4[0] != tag {
            return Err(s.garbage("short or mismatched RAKP 4"));
        }
        if r4[1] != 0 {
            return Err(AgentError::Auth {
                device: s.device.clone(),
                detail: format!(
                    "session refused after RAKP 3: {}",
                    packet::rmcp_status_name(r4[1])
                ),
            });
        }
        let icv = packet::hmac_sha1(&sik, &[&rm, &s.bmc_id.to_le_bytes(), guid]);
        if r4.len() < 20 || !constant_time_eq(&icv[..12], &r4[8..20]) {
            return Err(AgentError::Auth {
                device: s.device.clone(),
                detail: "RAKP 4 integrity check failed (wrong BMC key Kg?)".into(),
            });
        }
        s.keys = SessionKeys::derive(&sik);

        // Sessions start at User privilege; raise to what was asked for.
        let granted = s
            .command(NETFN_APP, CMD_SET_SESSION_PRIVILEGE, &[requested], deadline)
            .map_err(|e| match e {
                AgentError::Refused { device, detail, .. } => AgentError::Auth {
                    device,
                    detail: format!(
                        "privilege level {:?} not granted: {detail}",
                        agent.privilege
                    ),
                },
                e => e,
            })?;
        if granted.first().is_some_and(|g| g & 0x0f < requested) {
            return Err(AgentError::Auth {
                device: s.device.clone(),
                detail: format!("privilege level {:?} not granted", agent.privilege),
            });
        }
        Ok(s)
    }

    fn garbage(&self, detail: &str) -> AgentError {
        AgentError::Protocol {
            device: self.device.clone(),
            detail: detail.into(),
        }
    }

    /// Sends until an answer accepted by `accept` arrives or the deadline passes. Datagrams
    /// that `accept` rejects are counted and reported if nothing valid ever comes.
    fn exchange<T>(
        &mut self,
        what: &str,
        deadline: Instant,
        mut make: impl FnMut(&mut Session) -> Vec<u8>,
        mut accept: impl FnMut(&Session, &[u8]) -> Result<Option<T>, AgentError>,
    ) -> Result<T, AgentError> {
        let start = Instant::now();
        let mut interval = self.packet_timeout;
        let mut buf = [0u8; 1024];
        let mut garbage: Option<String> = None;
        loop {
            let pkt = make(self);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.sock.send(&pkt) {
                return Err(AgentError::Unreachable {
                    device: self.device.clone(),
                    detail: e.to_string(),
                });
            }
            let resend_at = (now + interval).min(deadline);
            interval = (interval * 2).min(Duration::from_secs(2));
            loop {
                let now = Instant::now();
                if now >= resend_at {
                    break;
                }
                let _ = self
                    .sock
                    .set_read_timeout(Some((resend_at - now).max(Duration::from_millis(1))));
                match self.sock.recv(&mut buf) {
                    Ok(n) => match accept(self, &buf[..n]) {
                        Ok(Some(v)) => return Ok(v),
                        Ok(None) => {}
                        Err(AgentError::Protocol { detail, .. }) => garbage = Some(detail),
                        Err(e) => return Err(e),
                    },
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(AgentError::Unreachable {
                            device: self.device.clone(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        Err(match garbage {
            Some(detail) => AgentError::Protocol {
                device: self.device.clone(),
                detail: format!("{detail} (while waiting for {what})"),
            },
            None => AgentError::Timeout {
                device: self.device.clone(),
                what: what.into(),
                waited_ms: millis(start.elapsed()),
            },
        })
    }

    fn exchange_clear(
        &mut self,
        pkt: &[u8],
        want: PayloadType,
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<u8>, AgentError> {
        let pkt = pkt.to_vec();
        self.exchange(
            what,
            deadline,
            |_| pkt.clone(),
            |s, bytes| match packet::decode(bytes, None) {
                Ok(p) if p.payload_type == want => Ok(Some(p.payload)),
                Ok(_) => Ok(None),
                Err(e) => Err(s.garbage(e)),
            },
        )
    }

    /// Sends one IPMI command inside the session; returns the response data on completion
    /// code 0.
    fn command(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, AgentError> {
        let sent = std::cell::RefCell::new(Vec::<u8>::new());
        let resp = self.exchange(
            "an IPMI response",
            deadline,
            |s| {
                s.seq = s.seq.wrapping_add(1).max(1);
                s.rq_seq = (s.rq_seq + 1) & 0x3f;
                sent.borrow_mut().push(s.rq_seq);
                let msg = packet::ipmi_request(netfn, cmd, s.rq_seq, data);
                packet::encode(
                    PayloadType::Ipmi,
                    s.bmc_id,
                    s.seq,
                    &msg,
                    Some((&s.keys, random::<16>())),
                )
            },
            |s, bytes| {
                let p = packet::decode(bytes, Some(&s.keys)).map_err(|e| s.garbage(e))?;
                if p.session_id != s.console_id || p.payload_type != PayloadType::Ipmi {
                    return Ok(None);
                }
                for rq in sent.borrow().iter() {
                    if let Some(r) = packet::ipmi_response(&p.payload, netfn, cmd, *rq)
                        .map_err(|e| s.garbage(e))?
                    {
                        return Ok(Some(r));
                    }
                }
                Ok(None)
            },
        )?;
        if resp.completion != 0 {
            return Err(AgentError::Refused {
                device: self.device.clone(),
                what: format!("command netfn {netfn:#04x} cmd {cmd:#04x}"),
                detail: format!(
                    "completion code {:#04x} ({})",
                    resp.completion,
                    packet::completion_name(resp.completion)
                ),
            });
        }
        Ok(resp.data)
    }

    /// Closes the session; best effort (the BMC times idle sessions out anyway).
    fn close(mut self, deadline: Instant) {
        let id = self.bmc_id.to_le_bytes();
        let short = deadline.min(Instant::now() + Duration::from_millis(300));
        let _ = self.command(NETFN_APP, CMD_CLOSE_SESSION, &id, short);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
