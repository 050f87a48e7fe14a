//! The arbiter daemon (`qnetd`): runs the sans-IO [`quorum::arbiter::Arbiter`] behind a QUIC
//! endpoint with mutual TLS, and answers `qnetd status` on a unix socket.
//!
//! Every client opens one bidirectional stream and sends `wire` frames of kind
//! [`ARBITER_WIRE_KIND`]; the first must be a `Hello`. The client certificate, issued by the
//! arbiter CA, must be valid for `node<id>.<cluster>` of the identity the `Hello` claims, so the
//! vote is never given to a client the TLS layer did not authenticate as that node.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use quorum::arbiter::{
    ARBITER_WIRE_KIND, Arbiter, ArbiterConfig, ArbiterEffect, ArbiterInput, ArbiterMsg, ClientMsg, ConnId,
};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::config::{ConfigError, TlsPaths};
use crate::control::{Request, Response};
use crate::join::{ENROLL_WIRE_KIND, EnrollReply, EnrollRequest, Issuer, JoinToken, MAX_ENROLL_FRAME, TokenBook};
use crate::node::{ControlReq, NodeError, serve_control};
use crate::quic::{TlsMaterial, arbiter_client_name, certified_name, read_frame, tls_configs, valid_label};

/// ALPN of the arbiter protocol.
pub(crate) const ARBITER_ALPN: &[u8] = b"qnetd/1";
/// Largest arbiter frame body.
pub(crate) const MAX_ARBITER_FRAME: usize = 64 * 1024;
/// File name of qnetd's status socket inside its run directory.
pub const QNETD_SOCKET: &str = "qnetd.sock";

/// `qnetd.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QnetdConfig {
    /// Address to listen on (UDP, QUIC).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long a vote lasts without renewal, in ms (clients renew every 100 ms). A hung node's
    /// side loses the vote, and the other side gets it, within about one lease.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// Runtime directory (the status socket).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// The arbiter CA, the arbiter's certificate (name `qnetd`) and key (`qnetd gen-certs`).
    pub tls: TlsPaths,
    /// The arbiter CA's private key. With it qnetd signs node certificates for join codes
    /// (`crmctl arbiter token create`); without it, node certificates are made and copied by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5403))
}
fn default_lease() -> u64 {
    500
}
fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/qnetd")
}

impl QnetdConfig {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<QnetdConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let cfg: QnetdConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        cfg.validate().map_err(|problems| ConfigError::Invalid { path: path.to_path_buf(), problems })?;
        Ok(cfg)
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if !(100..=60_000).contains(&self.lease_ms) {
            p.push(format!("lease_ms: {} is out of range; use 100 to 60000 (default 500)", self.lease_ms));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// The effective configuration (for `--check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Sets up an arbiter host in `dir`: the arbiter CA and key, the arbiter's certificate, and
/// `qnetd.toml` (with `ca_key`, so qnetd can answer join codes). Returns the configuration
/// file and whether it was made now (false: it was there already and is kept, keys included).
pub fn setup_arbiter(dir: &Path, listen: SocketAddr, run_dir: &Path) -> Result<(PathBuf, bool), String> {
    let config = dir.join("qnetd.toml");
    if config.exists() {
        QnetdConfig::load(&config).map_err(|e| e.to_string())?;
        return Ok((config, false));
    }
    if dir.join("ca.key").exists() {
        return Err(format!(
            "{} holds an arbiter CA but no qnetd.toml; move the directory away or write qnetd.toml by hand",
            dir.display()
        ));
    }
    crate::quic::gen_arbiter_server_certs(dir).map_err(|e| e.to_string())?;
    let cfg = QnetdConfig {
        listen,
        lease_ms: default_lease(),
        run_dir: run_dir.to_path_buf(),
        tls: TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("qnetd.pem"), key: dir.join("qnetd.key") },
        ca_key: Some(dir.join("ca.key")),
    };
    cfg.validate().map_err(|p| p.join("; "))?;
    let text = format!(
        "# qnetd configuration, made by `crmctl arbiter setup`. Check it with\n# `qnetd --config {} --check-config`.\n{}",
        config.display(),
        cfg.to_toml()
    );
    durable::write_atomic(&config, text.as_bytes(), 0o644).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok((config, true))
}

/// `qnetd status` / `crmctl arbiter status` in text.
pub fn render_arbiter_status(clusters: &[quorum::arbiter::ClusterStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if clusters.is_empty() {
        out.push_str("No cluster has connected.\n");
    }
    for c in clusters {
        let nodes: Vec<String> = c.nodes.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "Cluster {}   algorithm {}   nodes {}", c.cluster, c.algorithm, nodes.join(" "));
        match &c.holder {
            Some(h) => {
                let h: Vec<String> = h.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "  vote: partition of nodes {}", h.join(" "));
            }
            None => out.push_str("  vote: nobody\n"),
        }
        for cl in &c.clients {
            let members: Vec<String> = cl.members.iter().map(ToString::to_string).collect();
            let ring = cl.ring.map_or_else(|| "none".to_string(), |r| r.to_string());
            let _ = writeln!(
                out,
                "  node {}: view {ring} members [{}]  heuristics {:?}  {}",
                cl.node,
                members.join(" "),
                cl.heuristics,
                if cl.has_vote { "HAS THE VOTE" } else { "no vote" }
            );
        }
    }
    out
}

enum Event {
    Enroll { req: EnrollRequest, reply: tokio::sync::oneshot::Sender<EnrollReply> },
    Connected { conn: ConnId, cluster: String, node: wire::NodeId, hello: ClientMsg, tx: mpsc::UnboundedSender<Out> },
    Msg { conn: ConnId, msg: ClientMsg },
    Gone { conn: ConnId },
}

enum Out {
    Msg(ArbiterMsg),
    Close,
}

/// Runs the arbiter until `shutdown` completes.
pub async fn run_qnetd(
    cfg: QnetdConfig,
    tls: TlsMaterial,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let issuer = match &cfg.ca_key {
        Some(key) => Some(Issuer::load(&cfg.tls.ca, key).map_err(|e| NodeError::Config(format!("ca_key: {e}")))?),
        None => None,
    };
    let mut tokens = TokenBook::default();
    let (sc, _) =
        tls_configs(&tls, ARBITER_ALPN, StdDuration::from_millis(100), StdDuration::from_secs(2), issuer.is_some())
            .map_err(NodeError::Config)?;
    let ep = quinn::Endpoint::server(sc, cfg.listen).map_err(|source| NodeError::Bind {
        link: wire::LinkId(0),
        addr: cfg.listen,
        source,
    })?;
    std::fs::create_dir_all(&cfg.run_dir).map_err(|source| NodeError::Control { path: cfg.run_dir.clone(), source })?;
    let sock_path = cfg.run_dir.join(QNETD_SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let listener =
        UnixListener::bind(&sock_path).map_err(|source| NodeError::Control { path: sock_path.clone(), source })?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlReq>(16);
    tokio::spawn(serve_control(listener, ctl_tx));
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(1024);
    tokio::spawn(accept_loop(ep.clone(), ev_tx));
    tracing::info!(listen = %cfg.listen, lease_ms = cfg.lease_ms, join_codes = issuer.is_some(), "qnetd starting");

    let acfg = ArbiterConfig { lease: wire::Duration::from_millis(cfg.lease_ms), ..ArbiterConfig::default() };
    let mut arb = Arbiter::new(acfg);
    let start = tokio::time::Instant::now();
    let now = move || wire::Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let mut conns: BTreeMap<ConnId, mpsc::UnboundedSender<Out>> = BTreeMap::new();
    let mut fx = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let wake = arb.next_wakeup().map(|t| start + StdDuration::from_nanos(t.as_nanos()));
        let sleep = tokio::time::sleep_until(wake.unwrap_or(start + StdDuration::from_secs(86400 * 365)));
        tokio::select! {
            biased;
            () = &mut shutdown => {
                let _ = std::fs::remove_file(&sock_path);
                ep.close(0u32.into(), b"qnetd stopping");
                return Ok(());
            }
            Some(ev) = ev_rx.recv() => match ev {
                Event::Enroll { req: EnrollRequest::Enroll { secret, cluster, node, public_key }, reply } => {
                    let answer = match &issuer {
                        None => Err("this arbiter does not issue certificates (ca_key is not set in qnetd.toml)".to_string()),
                        Some(issuer) => tokens
                            .admit(now(), &secret, &cluster, node)
                            .and_then(|()| issuer.issue(&cluster, node, &public_key))
                            .map(|cert_pem| EnrollReply::Issued { ca_pem: issuer.ca_pem().to_string(), cert_pem }),
                    };
                    let answer = answer.unwrap_or_else(|reason| {
                        tracing::warn!(%cluster, %node, %reason, "refused a join request");
                        EnrollReply::Refused { reason }
                    });
                    if matches!(answer, EnrollReply::Issued { .. }) {
                        tracing::info!(%cluster, %node, "issued a certificate for a join code");
                    }
                    let _ = reply.send(answer);
                }
                Event::Connected { conn, cluster, node, hello, tx } => {
                    tracing::info!(%cluster, %node, "client connected");
                    conns.insert(conn, tx);
                    arb.handle(now(), ArbiterInput::Connected { conn, cluster, node }, &mut fx);
                    arb.handle(now(), ArbiterInput::Message { conn, msg: hello }, &mut fx);
                }
                Event::Msg { conn, msg } => arb.handle(now(), ArbiterInput::Message { conn, msg }, &mut fx),
                Event::Gone { conn } => {
                    if conns.remove(&conn).is_some() {
                        arb.handle(now(), ArbiterInput::Disconnected { conn }, &mut fx);
                    }
                }
            },
            Some((req, reply)) = ctl_rx.recv() => {
                let resp = match req {
                    Request::ArbiterStatus => Response::ArbiterStatus(arb.status(now())),
                    Request::ArbiterTokenCreate { ttl_ms, cluster } => match (&issuer, JoinToken::new(tls.cert())) {
                        (None, _) => Response::Error("this arbiter does not issue certificates: set ca_key in qnetd.toml (`crmctl arbiter setup` does)".into()),
                        (Some(_), Err(e)) => Response::Error(e),
                        (Some(_), Ok(t)) => {
                            let ttl = ttl_ms.clamp(1000, crate::join::MAX_TOKEN_TTL.as_millis() as u64);
                            tokens.insert(now(), &t.secret, wire::Duration::from_millis(ttl), cluster.clone());
                            tracing::info!(cluster = cluster.as_deref().unwrap_or("(first to use it)"), ttl_ms = ttl, valid_codes = tokens.len(), "made a join code");
                            Response::Token { token: t.to_string(), expires_in_ms: ttl }
                        }
                    },
                    _ => Response::Error("this is qnetd: only arbiter status is served here".into()),
                };
                let _ = reply.send(resp);
            }
            () = sleep => arb.handle(now(), ArbiterInput::Wakeup, &mut fx),
        }
        for e in fx.drain(..) {
            match e {
                ArbiterEffect::Send { conn, msg } => {
                    if let ArbiterMsg::Refused { reason } = &msg {
                        tracing::warn!(conn = conn.0, %reason, "refused a client");
                    }
                    if let Some(tx) = conns.get(&conn) {
                        let _ = tx.send(Out::Msg(msg));
                    }
                }
                ArbiterEffect::Close { conn } => {
                    if let Some(tx) = conns.remove(&conn) {
                        let _ = tx.send(Out::Close);
                    }
                }
                ArbiterEffect::VoteChanged { cluster, holder } => match holder {
                    Some(h) => {
                        let ids: Vec<String> = h.iter().map(ToString::to_string).collect();
                        tracing::info!(%cluster, "vote given to the partition of nodes {}", ids.join(" "));
                    }
                    None => tracing::info!(%cluster, "vote held by no partition"),
                },
            }
        }
    }
}

async fn accept_loop(ep: quinn::Endpoint, tx: mpsc::Sender<Event>) {
    let mut next = 0u64;
    while let Some(incoming) = ep.accept().await {
        next += 1;
        let conn_id = ConnId(next);
        let tx = tx.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "refused a connection that failed the TLS handshake (certificate not from the arbiter CA?)");
                    return;
                }
            };
            serve_client(conn_id, conn, tx).await;
        });
    }
}

async fn serve_client(conn_id: ConnId, conn: quinn::Connection, tx: mpsc::Sender<Event>) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
    if conn.peer_identity().is_none() {
        // No certificate: the only thing such a connection may do is ask for one.
        serve_enroll(&conn, send, recv, &tx).await;
        return;
    }
    let refuse = |reason: String| ArbiterMsg::Refused { reason };
    let first = read_frame(&mut recv, MAX_ARBITER_FRAME).await.and_then(|f| wire::decode(ARBITER_WIRE_KIND, &f).ok());
    let (cluster, node, hello) = match first {
        Some(h @ ClientMsg::Hello { .. }) => {
            let ClientMsg::Hello { cluster, node, .. } = &h else { return };
            (cluster.clone(), *node, h)
        }
        _ => {
            let msg = refuse("the first message must be a Hello".into());
            let _ = send.write_all(&wire::encode(ARBITER_WIRE_KIND, &msg).unwrap_or_default()).await;
            conn.close(1u32.into(), b"protocol");
            return;
        }
    };
    if !valid_label(&cluster) || !certified_name(&conn, &arbiter_client_name(&cluster, node)) {
        let msg = refuse(format!(
            "the client certificate is not valid for {}: use the certificate made for node {node} of cluster {cluster}",
            arbiter_client_name(&cluster, node)
        ));
        tracing::warn!(%cluster, %node, "refused a client whose certificate does not name it");
        let _ = send.write_all(&wire::encode(ARBITER_WIRE_KIND, &msg).unwrap_or_default()).await;
        let _ = send.finish();
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        conn.close(1u32.into(), b"identity");
        return;
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    if tx.send(Event::Connected { conn: conn_id, cluster, node, hello, tx: out_tx }).await.is_err() {
        return;
    }
    let writer = {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Some(out) = out_rx.recv().await {
                match out {
                    Out::Msg(m) => {
                        let bytes = wire::encode(ARBITER_WIRE_KIND, &m).unwrap_or_default();
                        if send.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Out::Close => {
                        let _ = send.finish();
                        tokio::time::sleep(StdDuration::from_millis(100)).await;
                        conn.close(0u32.into(), b"closed");
                        break;
                    }
                }
            }
        })
    };
    while let Some(frame) = read_frame(&mut recv, MAX_ARBITER_FRAME).await {
        match wire::decode::<ClientMsg>(ARBITER_WIRE_KIND, &frame) {
            Ok(msg) => {
                if tx.send(Event::Msg { conn: conn_id, msg }).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(conn = conn_id.0, error = %e, "malformed message; closing the connection");
                break;
            }
        }
    }
    conn.close(0u32.into(), b"bye");
    writer.abort();
    let _ = tx.send(Event::Gone { conn: conn_id }).await;
}

/// A connection without a certificate: one enrollment request, one answer, then closed.
async fn serve_enroll(
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    tx: &mpsc::Sender<Event>,
) {
    let read = tokio::time::timeout(StdDuration::from_secs(5), read_frame(&mut recv, MAX_ENROLL_FRAME)).await;
    let answer = match read.ok().flatten().map(|f| wire::decode::<EnrollRequest>(ENROLL_WIRE_KIND, &f)) {
        Some(Ok(req)) => {
            let (rtx, rrx) = tokio::sync::oneshot::channel();
            if tx.send(Event::Enroll { req, reply: rtx }).await.is_err() {
                return;
            }
            rrx.await.unwrap_or_else(|_| EnrollReply::Refused { reason: "qnetd is stopping".into() })
        }
        _ => {
            tracing::warn!(remote = %conn.remote_address(), "refused a connection without a certificate that sent no join request");
            EnrollReply::Refused {
                reason: "a connection without a certificate may only send a join request; the vote needs the node's certificate".into(),
            }
        }
    };
    let _ = send.write_all(&wire::encode(ENROLL_WIRE_KIND, &answer).unwrap_or_default()).await;
    let _ = send.finish();
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    conn.close(0u32.into(), b"done");
}
