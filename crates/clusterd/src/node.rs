//! The driver: runs the membership core over UDP sockets (one per link), the control socket and
//! the state file.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use membership::{Effect, Input, Membership, PersistedState, View};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::{mpsc, oneshot, watch};
use wire::{LinkId, NodeId, RingId};

use crate::config::FileConfig;
use crate::control::{self, NodeStatus, QuorumReport, Request, Response, TransportCounters};
use crate::crypto::{Crypto, OpenError};
use crate::mux::{self, Demuxed};

/// A message delivered in total order, as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The view it was sent in.
    pub ring: RingId,
    /// Who broadcast it.
    pub sender: NodeId,
    /// Its sequence number in that view.
    pub seq: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What the receive tasks hand to the main loop.
pub(crate) enum Incoming {
    /// A sealed UDP datagram, still to be authenticated.
    Raw { link: LinkId, src: SocketAddr, bytes: Vec<u8> },
    /// A frame from an authenticated QUIC connection.
    Frame { from: NodeId, link: LinkId, bytes: Vec<u8> },
}

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The file `config` was read from. Cluster-wide changes (`crmctl quorum device add` with a
    /// join code) rewrite it; without it they are refused.
    pub config_path: Option<PathBuf>,
    /// The parsed, validated configuration.
    pub config: FileConfig,
    /// The cluster authkey (transport `udp`).
    pub authkey: Vec<u8>,
    /// Certificates (transport `quic`).
    pub tls: Option<crate::quic::TlsMaterial>,
    /// Where the control socket goes.
    pub run_dir: PathBuf,
    /// Where the ring sequence number and the CIB are kept (created at start when missing).
    pub state_dir: PathBuf,
}

/// The application side of a running node (for embedding and benchmarks).
#[derive(Debug)]
pub struct AppPort {
    /// Payloads to multicast in total order.
    pub broadcast: mpsc::Sender<Vec<u8>>,
    /// Messages delivered.
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// The current view.
    pub views: watch::Receiver<Option<View>>,
}

/// The node's side of an [`AppPort`].
#[derive(Debug)]
pub struct AppSide {
    broadcasts: mpsc::Receiver<Vec<u8>>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    views: watch::Sender<Option<View>>,
}

impl AppPort {
    /// A port for the application and the side to hand to [`run`]. `queue` bounds the
    /// broadcasts waiting to enter the node.
    pub fn new(queue: usize) -> (AppPort, AppSide) {
        let (btx, brx) = mpsc::channel(queue.max(1));
        let (dtx, drx) = mpsc::unbounded_channel();
        let (vtx, vrx) = watch::channel(None);
        (
            AppPort { broadcast: btx, deliveries: drx, views: vrx },
            AppSide { broadcasts: brx, deliveries: dtx, views: vtx },
        )
    }
}

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A link socket could not be bound.
    #[error("cannot bind link {link} to {addr}: {source}")]
    Bind {
        /// The link.
        link: LinkId,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The state file could not be read, parsed or written.
    #[error("state file {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The control socket could not be created.
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

const STATE_FILE: &str = "membership.state";

fn read_state(dir: &Path) -> Result<Option<PersistedState>, NodeError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => PersistedState::decode(&bytes).map(Some).map_err(|e| NodeError::State {
            path,
            message: format!("{e}; move the file away to start with a fresh ring sequence"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::State { path, message: e.to_string() }),
    }
}

/// Writes the state atomically (a crash leaves the old or the new state, never a mix).
fn write_state(dir: &Path, state: &PersistedState) -> std::io::Result<()> {
    durable::write_atomic(&dir.join(STATE_FILE), &state.encode(), 0o644)
}

pub(crate) type ControlReq = (Request, oneshot::Sender<Response>);

/// Runs a node until `shutdown` completes (then leaves the cluster cleanly). With `app`, the
/// node's deliveries and views are handed to the caller, which may also broadcast.
pub async fn run(opts: NodeOptions, shutdown: impl Future<Output = ()>, app: Option<AppSide>) -> Result<(), NodeError> {
    let cfg = &opts.config;
    let me = NodeId(cfg.node_id);
    let mcfg = cfg.membership_config().map_err(NodeError::Config)?;
    mcfg.validate().map_err(|e| NodeError::Config(e.to_string()))?;
    let my_entry = cfg.node(cfg.node_id).ok_or_else(|| NodeError::Config("node_id is not in nodes".into()))?;
    // The membership state and the CIB are written there; a new directory's entry is synced too.
    durable::create_dir_all(&opts.state_dir).map_err(|e| NodeError::State {
        path: opts.state_dir.join(STATE_FILE),
        message: format!("cannot create its directory: {e}"),
    })?;
    let persisted = read_state(&opts.state_dir)?;
    let session = crate::crypto::new_session();
    let mut core = Membership::new(mcfg.clone(), persisted, session ^ u64::from(me.0).rotate_left(48));
    let qcfg = cfg.quorum_config().map_err(|p| NodeError::Config(p.join("; ")))?;
    qcfg.validate().map_err(|e| NodeError::Config(e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    let node_votes = qcfg.node_votes.clone();
    let mut vq = quorum::Votequorum::new(qcfg);
    let mut qfx: Vec<quorum::Effect> = Vec::new();
    // The arbiter client, when [quorum.device] is configured.
    let mut dev = match &cfg.quorum.device {
        Some(d) => Some(start_device(cfg, d, me)?),
        None => None,
    };
    // Cluster-wide arbiter addition with a join code.
    let mut join = crate::admin::DeviceJoin::new(me, cfg.nodes.iter().map(|n| NodeId(n.id)).collect(), dev.is_some());
    let mut jfx: Vec<crate::admin::JoinEffect> = Vec::new();
    let mut join_reply: Option<(u64, oneshot::Sender<Response>)> = None;
    let (enrolled_tx, mut enrolled_rx) = mpsc::channel::<(u64, Result<(), String>)>(4);
    let mut dfx: Vec<quorum::device::DeviceEffect> = Vec::new();
    // The replicated CIB.
    let mut cib = crate::cibd::CibService::load(
        &opts.state_dir,
        me,
        cfg.nodes.iter().map(|n| (NodeId(n.id), n.name.clone())).collect(),
    )?;
    // This node's executor, and the controller it runs while it is the DC.
    let (mut executor, mut finished_rx) = crate::execd::Executor::new(me, &cfg.executor.ocf_root, &cfg.executor.rsctmp);
    let (mut fence, mut fence_rx) = crate::fenced::FenceService::new(&my_entry.name, session);
    let mut ctl = Controller {
        me,
        ctl: crm::node::NodeController::new(me, &my_entry.name, &format!("{}-{session:016x}", me.0)),
        tokens: BTreeMap::new(),
    };
    let peers: Vec<NodeId> = cfg.nodes.iter().map(|n| NodeId(n.id)).filter(|&n| n != me).collect();
    let mut crypto = Crypto::new(&opts.authkey, &cfg.cluster_name, me, peers, session);
    let mut by_addr: BTreeMap<SocketAddr, (NodeId, LinkId)> = BTreeMap::new();
    let mut addr_of: BTreeMap<(NodeId, LinkId), SocketAddr> = BTreeMap::new();
    for n in &cfg.nodes {
        for (i, a) in n.links.iter().enumerate() {
            by_addr.insert(*a, (NodeId(n.id), LinkId(i as u8)));
            addr_of.insert((NodeId(n.id), LinkId(i as u8)), *a);
        }
    }
    // One socket per link, each with a reader task; or one QUIC endpoint per link.
    let (rx_tx, mut rx) = mpsc::channel::<Incoming>(4096);
    let mut sockets = Vec::new();
    let mut quic = None;
    match cfg.transport {
        crate::config::Transport::Udp => {
            for (i, addr) in my_entry.links.iter().enumerate() {
                let link = LinkId(i as u8);
                let sock =
                    UdpSocket::bind(addr).await.map_err(|source| NodeError::Bind { link, addr: *addr, source })?;
                let sock = Arc::new(sock);
                sockets.push(sock.clone());
                let tx = rx_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match sock.recv_from(&mut buf).await {
                            Ok((n, src)) => {
                                if tx.send(Incoming::Raw { link, src, bytes: buf[..n].to_vec() }).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::debug!(%link, error = %e, "receive error"),
                        }
                    }
                });
            }
        }
        crate::config::Transport::Quic => {
            let tls = opts.tls.as_ref().ok_or_else(|| NodeError::Config("transport quic needs certificates".into()))?;
            quic = Some(crate::quic::Quic::start(me, &my_entry.links, &addr_of, &by_addr, tls, rx_tx.clone())?);
        }
    }
    drop(rx_tx);
    // The control socket.
    std::fs::create_dir_all(&opts.run_dir)
        .map_err(|source| NodeError::Control { path: opts.run_dir.clone(), source })?;
    let sock_path = opts.run_dir.join(control::SOCKET_NAME);
    let _ = std::fs::remove_file(&sock_path);
    let listener =
        UnixListener::bind(&sock_path).map_err(|source| NodeError::Control { path: sock_path.clone(), source })?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlReq>(16);
    tokio::spawn(serve_control(listener, ctl_tx));

    let (mut bcast_rx, deliver_tx, view_tx) = match app {
        Some(a) => (Some(a.broadcasts), Some(a.deliveries), Some(a.views)),
        None => (None, None, None),
    };
    tracing::info!(node = %me, name = %my_entry.name, cluster = %cfg.cluster_name, links = my_entry.links.len(), "clusterd starting");

    let max_pending = mcfg.max_pending;
    let start = tokio::time::Instant::now();
    let now = move || wire::Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let mut counters = TransportCounters::default();
    let mut last_view: Option<View> = None;
    let mut fx: Vec<Effect> = Vec::new();
    tokio::pin!(shutdown);
    let mut leaving: Option<Leaving> = None;
    let mut exec = Exec {
        crypto: &mut crypto,
        sockets: &sockets,
        quic: quic.as_ref(),
        addr_of: &addr_of,
        state_dir: &opts.state_dir,
        quorum_in: Vec::new(),
    };
    core.handle(now(), Input::Wakeup, &mut fx);
    exec.run(&mut fx, &mut counters, &mut last_view, deliver_tx.as_ref(), view_tx.as_ref())?;
    loop {
        let dev_wake = dev.as_ref().and_then(|d| d.0.next_wakeup());
        let wake = [core.next_wakeup(), vq.next_wakeup(), dev_wake, ctl.ctl.next_wakeup(), fence.next_wakeup()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| start + std::time::Duration::from_nanos(t.as_nanos()));
        let mut wake_at = wake.unwrap_or(start + std::time::Duration::from_secs(86400 * 365));
        if let Some(l) = &leaving {
            wake_at = wake_at.min(if l.escalated { l.give_up } else { l.escalate });
        }
        let sleep = tokio::time::sleep_until(wake_at);
        tokio::select! {
            biased;
            () = &mut shutdown, if leaving.is_none() => {
                tracing::info!(node = %me, "shutting down: moving this node's resources away first");
                ctl.ctl.shutdown(unix_now(), cib.is_synced(), vq.is_quorate());
                let escalate = tokio::time::Instant::now() + std::time::Duration::from_secs(cfg.executor.shutdown_escalation_s);
                leaving = Some(Leaving { escalate, give_up: escalate + std::time::Duration::from_secs(120), escalated: false });
            }
            got = rx.recv() => {
                let Some(first) = got else { return Ok(()) };
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(d) => batch.push(d),
                        Err(_) => break,
                    }
                }
                for incoming in batch {
                    counters.datagrams_in += 1;
                    let (from, link, frame) = match incoming {
                        Incoming::Frame { from, link, bytes } => (from, link, bytes),
                        Incoming::Raw { link, src, bytes } => {
                            let Some(&(claimed, src_link)) = by_addr.get(&src) else {
                                counters.unknown_source += 1;
                                continue;
                            };
                            match exec.crypto.open(&bytes) {
                                Ok((from, frame)) if from == claimed && src_link == link => (from, link, frame),
                                Ok(_) => { counters.unknown_source += 1; continue; }
                                Err(OpenError::Short | OpenError::BadMagic | OpenError::NotForUs | OpenError::UnknownPeer) => { counters.malformed += 1; continue; }
                                Err(OpenError::Replay | OpenError::StaleSession) => { counters.replays += 1; continue; }
                                Err(OpenError::Auth) => {
                                    counters.auth_failures += 1;
                                    if counters.auth_failures.is_power_of_two() {
                                        tracing::warn!(node = %me, peer = %claimed, %link, count = counters.auth_failures, "dropped a datagram that failed authentication (authkey or cluster name differ?)");
                                    }
                                    continue;
                                }
                            }
                        }
                    };
                    core.handle(now(), Input::Datagram { from, link, bytes: &frame }, &mut fx);
                }
            }
            // Backpressure: take broadcasts only while the core has room for a batch.
            Some(payload) = async { match bcast_rx.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } }, if core.pending() + 256 < max_pending => {
                core.handle(now(), Input::Broadcast(mux::app(payload)), &mut fx);
                if let Some(r) = bcast_rx.as_mut() {
                    for _ in 0..256 {
                        match r.try_recv() {
                            Ok(p) => core.handle(now(), Input::Broadcast(mux::app(p)), &mut fx),
                            Err(_) => break,
                        }
                    }
                }
            }
            Some((req, reply)) = ctl_rx.recv() => {
                if let Request::ResourceCleanup { rsc, node } = req {
                    let resp = if !vq.is_quorate() {
                        Response::Error("this partition is not quorate: the CIB cannot change".into())
                    } else if rsc.is_empty() {
                        Response::Error("cleanup: name a resource".into())
                    } else {
                        let on = node.clone().unwrap_or_else(|| "every node".into());
                        core.handle(now(), Input::Broadcast(mux::exec(&crm::exec::ExecMsg::Cleanup { rsc: rsc.clone(), node })), &mut fx);
                        Response::Done(format!("cleaned up {rsc} on {on}: it is probed again"))
                    };
                    let _ = reply.send(resp);
                } else if let Request::CibReplaceConfiguration { xml, if_epoch } = req {
                    cib.write(crm::replica::CibChange::ReplaceConfiguration { xml, if_epoch }, vq.is_quorate(), reply);
                } else if let Request::DeviceAdd(_) | Request::DeviceRemove = req {
                    let change = match req {
                        Request::DeviceAdd(add) => crate::admin::DeviceChange::Add(add),
                        _ => crate::admin::DeviceChange::Remove,
                    };
                    let checked = match &opts.config_path {
                        None => Err("this node was started without a configuration file to change".to_string()),
                        Some(path) => join.check_start(vq.is_quorate(), &change).and_then(|()| crate::join::check_device_change(path, &change)),
                    };
                    match checked {
                        Err(e) => { let _ = reply.send(Response::Error(format!("arbiter not changed: {e}"))); }
                        Ok(()) => {
                            let mut op = [0u8; 8];
                            let _ = getrandom::fill(&mut op);
                            let op = u64::from_le_bytes(op);
                            match &change {
                                crate::admin::DeviceChange::Add(add) => tracing::info!(node = %me, arbiter = %add.host, port = add.port, algorithm = %add.algorithm, "adding an arbiter on every node (join code)"),
                                crate::admin::DeviceChange::Remove => tracing::info!(node = %me, "removing the arbiter on every node"),
                            }
                            join_reply = Some((op, reply));
                            let msg = crate::admin::AdminMsg::DevicePrepare { op, initiator: me, change };
                            core.handle(now(), Input::Broadcast(mux::admin(&msg)), &mut fx);
                        }
                    }
                } else {
                let resp = match req {
                    Request::MembershipStatus => Response::MembershipStatus(Box::new(NodeStatus {
                        name: my_entry.name.clone(),
                        cluster_name: cfg.cluster_name.clone(),
                        names: cfg.nodes.iter().map(|n| (NodeId(n.id), n.name.clone())).collect(),
                        membership: core.status(),
                        last_view: last_view.clone(),
                        transport: {
                            let mut t = counters;
                            if let Some(q) = exec.quic {
                                t.auth_failures += q.handshake_failures.load(std::sync::atomic::Ordering::Relaxed);
                                t.unknown_source += q.refused.load(std::sync::atomic::Ordering::Relaxed);
                            }
                            t
                        },
                        uptime_ms: start.elapsed().as_millis() as u64,
                    })),
                    Request::QuorumStatus => Response::QuorumStatus(Box::new(QuorumReport {
                        name: my_entry.name.clone(),
                        node_id: me,
                        cluster_name: cfg.cluster_name.clone(),
                        nodes: cfg
                            .nodes
                            .iter()
                            .map(|n| (NodeId(n.id), n.name.clone(), node_votes.get(&NodeId(n.id)).copied().unwrap_or(1)))
                            .collect(),
                        status: vq.status(),
                        arbiter: dev.as_ref().map(|(client, _, link)| control::ArbiterLink {
                            has_vote: client.has_vote(now()),
                            ..link.clone()
                        }),
                    })),
                    Request::ArbiterStatus | Request::ArbiterTokenCreate { .. } => Response::Error("this is clusterd: ask qnetd (on the arbiter host) for that".into()),
                    Request::DeviceAdd(_) | Request::DeviceRemove | Request::CibReplaceConfiguration { .. } | Request::ResourceCleanup { .. } => Response::Error("handled above".into()),
                    Request::CibQuery => {
                        let mut report = cib.report(vq.is_quorate());
                        report.transition_running = ctl.ctl.dc_busy();
                        Response::Cib(Box::new(report))
                    }
                    Request::SetExpectedVotes(n) => match vq.check_expected_votes(n) {
                        Ok(()) => {
                            core.handle(now(), Input::Broadcast(mux::quorum(&quorum::QuorumMsg::SetExpected { expected_votes: n })), &mut fx);
                            tracing::info!(node = %me, expected_votes = n, "expected votes changed by the administrator");
                            Response::Done(format!("expected votes set to {n} on every member"))
                        }
                        Err(e) => Response::Error(format!("expected votes {n} refused: {e}")),
                    },
                };
                let _ = reply.send(resp);
                }
            }
            Some(ev) = async { match dev.as_mut() { Some(d) => d.1.events.recv().await, None => std::future::pending().await } } => {
                if let Some((client, _, link)) = dev.as_mut() {
                    let input = match ev {
                        crate::device::DeviceEvent::Connected => {
                            tracing::info!(node = %me, arbiter = %link.address, "connected to the arbiter");
                            link.connected = true;
                            link.refused = None;
                            quorum::device::DeviceInput::Connected
                        }
                        crate::device::DeviceEvent::Disconnected => {
                            tracing::warn!(node = %me, arbiter = %link.address, "lost the arbiter connection");
                            link.connected = false;
                            quorum::device::DeviceInput::Disconnected
                        }
                        crate::device::DeviceEvent::Msg(m) => quorum::device::DeviceInput::Arbiter(m),
                        crate::device::DeviceEvent::Heuristics(h) => quorum::device::DeviceInput::Heuristics(h),
                    };
                    client.handle(now(), input, &mut dfx);
                }
            }
            Some((op, result)) = enrolled_rx.recv() => {
                if let Err(e) = &result {
                    tracing::warn!(node = %me, error = %e, "could not get this node's arbiter certificate");
                }
                let msg = crate::admin::AdminMsg::DevicePrepared { op, node: me, result };
                core.handle(now(), Input::Broadcast(mux::admin(&msg)), &mut fx);
            }
            Some(f) = finished_rx.recv() => {
                log_result(me, &f);
                ctl.ctl.finished(&f.req, &f.result, f.generation, unix_now());
            }
            Some(step) = fence_rx.recv() => {
                for (order, result) in fence.step(now(), step) {
                    ctl.ctl.fenced(now(), order, result);
                }
            }
            () = sleep => {
                for (order, result) in fence.wakeup(now()) {
                    ctl.ctl.fenced(now(), order, result);
                }
                core.handle(now(), Input::Wakeup, &mut fx);
                vq.handle(now(), quorum::Input::Wakeup, &mut qfx);
                if let Some(d) = dev.as_mut() {
                    d.0.handle(now(), quorum::device::DeviceInput::Wakeup, &mut dfx);
                }
            }
        }
        loop {
            exec.run(&mut fx, &mut counters, &mut last_view, deliver_tx.as_ref(), view_tx.as_ref())?;
            for ev in std::mem::take(&mut exec.quorum_in) {
                match ev {
                    QuorumEvent::View { ring, members, left } => {
                        ctl.ctl.view(now(), ring, &members);
                        join.view(&members, &mut jfx);
                        cib.view(ring, &members, &left);
                        vq.handle(now(), quorum::Input::View { ring, members: &members, left: &left }, &mut qfx);
                        if let Some(d) = dev.as_mut() {
                            d.0.handle(now(), quorum::device::DeviceInput::View { ring, members }, &mut dfx);
                        }
                    }
                    QuorumEvent::Msg { from, msg } => {
                        vq.handle(now(), quorum::Input::Delivered { from, msg }, &mut qfx)
                    }
                    QuorumEvent::Admin { from, msg } => join.delivered(from, msg, &mut jfx),
                    QuorumEvent::Cib { from, seq, msg } => cib.delivered(from, seq, msg),
                    QuorumEvent::Stable { ring, upto } => cib.stable(ring, upto),
                    QuorumEvent::Exec { from, msg } => ctl.ctl.delivered(from, msg),
                }
                for e in jfx.drain(..) {
                    run_join_effect(e, &opts, me, &enrolled_tx, &mut join_reply, |new_cfg| {
                        let Some(d) = new_cfg.quorum.device.as_ref() else {
                            // Removed: stop the client, give back the votes.
                            dev = None;
                            vq.handle(
                                now(),
                                quorum::Input::DeviceRemoved { two_node: new_cfg.quorum.two_node },
                                &mut qfx,
                            );
                            return Ok(());
                        };
                        let votes = new_cfg
                            .quorum_config()
                            .map_err(|p| p.join("; "))?
                            .device_votes
                            .ok_or("the new configuration gives the arbiter no votes")?;
                        let mut started = start_device(&new_cfg, d, me).map_err(|e| e.to_string())?;
                        if let Some(v) = &last_view {
                            started.0.handle(
                                now(),
                                quorum::device::DeviceInput::View { ring: v.ring, members: v.members.clone() },
                                &mut dfx,
                            );
                        }
                        dev = Some(started);
                        vq.handle(now(), quorum::Input::DeviceAdded { votes }, &mut qfx);
                        Ok(())
                    });
                }
            }
            if let Some((_, io, link)) = dev.as_mut() {
                for e in dfx.drain(..) {
                    match e {
                        quorum::device::DeviceEffect::Send(m) => {
                            let _ = io.out.send(m);
                        }
                        quorum::device::DeviceEffect::Cast(cast) => {
                            tracing::info!(node = %me, cast, "arbiter vote for this view");
                            vq.handle(now(), quorum::Input::Device { cast }, &mut qfx);
                        }
                        quorum::device::DeviceEffect::Refused(reason) => {
                            tracing::error!(node = %me, arbiter = %link.address, %reason, "the arbiter refused this node");
                            link.refused = Some(reason);
                        }
                    }
                }
            }
            cib.drain(&mut core, now(), &mut fx)?;
            cib.duty(vq.is_quorate());
            cib.drain(&mut core, now(), &mut fx)?;
            ctl.run(now(), &mut cib, &mut executor, &mut fence, vq.is_quorate(), |m| {
                core.handle(now(), Input::Broadcast(mux::exec(&m)), &mut fx)
            });
            cib.drain(&mut core, now(), &mut fx)?;
            if qfx.is_empty() && fx.is_empty() {
                break;
            }
            for e in qfx.drain(..) {
                match e {
                    quorum::Effect::Broadcast(m) => core.handle(now(), Input::Broadcast(mux::quorum(&m)), &mut fx),
                    quorum::Effect::Changed(st) => log_quorum(me, &st),
                }
            }
        }
        if let Some(l) = &mut leaving {
            let at = tokio::time::Instant::now();
            if ctl.ctl.may_leave() {
                tracing::info!(node = %me, "nothing runs here any more: leaving the cluster");
                core.handle(now(), Input::Leave, &mut fx);
                exec.run(&mut fx, &mut counters, &mut last_view, deliver_tx.as_ref(), view_tx.as_ref())?;
                let _ = std::fs::remove_file(&sock_path);
                return Ok(());
            }
            if !l.escalated && at >= l.escalate {
                tracing::warn!(node = %me, "the cluster did not move this node's resources in time: stopping them here");
                l.escalated = true;
                ctl.ctl.shutdown_escalate();
                // The stops are carried out by the next round.
                core.handle(now(), Input::Wakeup, &mut fx);
            } else if l.escalated && at >= l.give_up {
                // Leaving cleanly would let the others start what may still run here: exit as
                // if crashed, so that they fence this node first.
                tracing::error!(node = %me, running = ?ctl.ctl.exec().running(), "resources could not be stopped: exiting without leaving, the cluster will fence this node");
                let _ = std::fs::remove_file(&sock_path);
                return Err(NodeError::Config("stopped without leaving: resources could not be stopped".into()));
            }
        }
    }
}

/// Logs an agent run's result: plainly when it is the expected one, loudly otherwise (a
/// recurring monitor only when it is not).
fn log_result(me: NodeId, f: &crate::execd::Finished) {
    let (req, r) = (&f.req, &f.result);
    let probe = req.operation == "monitor" && req.interval_ms == 0;
    let expected = r.op_status == 0 && (r.rc == req.target_rc || (probe && matches!(r.rc, 0 | 7 | 8)));
    if expected && f.generation == 0 {
        tracing::info!(node = %me, rsc = %req.rsc, op = %req.operation, rc = r.rc, ms = r.exec_ms, "done");
    } else if !expected {
        tracing::warn!(node = %me, rsc = %req.rsc, op = %req.operation, interval_ms = req.interval_ms, rc = r.rc, expected = req.target_rc, op_status = r.op_status, reason = ?r.reason, ms = r.exec_ms, "operation result is not the expected one");
    }
}

/// A shutdown in progress: resources are moved away first.
struct Leaving {
    /// When the node stops its resources itself.
    escalate: tokio::time::Instant,
    /// When it gives up (a stop failed) and exits without leaving.
    give_up: tokio::time::Instant,
    escalated: bool,
}

/// Unix seconds, the policy engine's clock and the records' `last-rc-change`.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The node's controller ([`crm::node::NodeController`]) tied to the CIB service, the executor
/// and ordered delivery.
struct Controller {
    me: NodeId,
    ctl: crm::node::NodeController,
    /// CIB write id → the controller's token for it.
    tokens: BTreeMap<u64, u64>,
}

impl Controller {
    /// One round: finished writes in, a step, and the effects carried out.
    fn run(
        &mut self,
        now: wire::Instant,
        cib: &mut crate::cibd::CibService,
        executor: &mut crate::execd::Executor,
        fence: &mut crate::fenced::FenceService,
        quorate: bool,
        mut broadcast: impl FnMut(crm::exec::ExecMsg),
    ) {
        for (id, result) in cib.take_written() {
            if let Some(token) = self.tokens.remove(&id) {
                if let Err(e) = &result {
                    tracing::debug!(node = %self.me, error = %e, "a record did not reach the CIB");
                }
                self.ctl.written(now, token, result.is_ok());
            }
        }
        for r in cib.take_applied() {
            self.ctl.recorded(now, &r);
        }
        self.ctl.step(now, unix_now(), cib.document(), cib.is_synced(), quorate, cib.dc());
        loop {
            let fx = self.ctl.drain();
            if fx.is_empty() {
                break;
            }
            for e in fx {
                match e {
                    crm::node::CtlEffect::Broadcast(m) => broadcast(m),
                    crm::node::CtlEffect::Exec(a) => executor.run(a),
                    crm::node::CtlEffect::Write { token, change } => {
                        let id = cib.write_internal(change, quorate);
                        self.tokens.insert(id, token);
                    }
                    crm::node::CtlEffect::Fence(order) => {
                        for (order, result) in fence.fence(now, cib.document(), order) {
                            self.ctl.fenced(now, order, result);
                        }
                    }
                    crm::node::CtlEffect::QuorumLost { policy, stopping } => {
                        tracing::warn!(node = %self.me, %policy, ?stopping, "quorum lost: stopping every resource here");
                    }
                    crm::node::CtlEffect::Transition(crm::dc::DcEffect::Started { number, summary, actions }) => {
                        tracing::info!(node = %self.me, transition = number, actions, summary = %summary.join("; "), "transition started");
                    }
                    crm::node::CtlEffect::Transition(crm::dc::DcEffect::Ended {
                        number,
                        end: crm::controller::RunEnd::Complete,
                    }) => {
                        tracing::info!(node = %self.me, transition = number, "transition complete");
                    }
                    crm::node::CtlEffect::Transition(crm::dc::DcEffect::Ended {
                        number,
                        end: crm::controller::RunEnd::Aborted(why),
                    }) => {
                        tracing::warn!(node = %self.me, transition = number, reason = ?why, "transition aborted; scheduling again");
                    }
                    crm::node::CtlEffect::Transition(_) => {}
                }
            }
        }
    }
}

/// A running arbiter client: the sans-IO core, its IO side, and what status shows of it.
type Device = (quorum::device::DeviceClient, crate::device::DeviceIo, control::ArbiterLink);

fn start_device(cfg: &FileConfig, d: &crate::config::DeviceSection, me: NodeId) -> Result<Device, NodeError> {
    let tls = crate::quic::TlsMaterial::load(&d.tls.ca, &d.tls.cert, &d.tls.key)
        .map_err(|e| NodeError::Config(format!("quorum.device.tls: {e}")))?;
    let io = crate::device::DeviceIo::start(d, &tls).map_err(NodeError::Config)?;
    let mut dcfg = quorum::device::DeviceConfig::new(
        &cfg.cluster_name,
        me,
        cfg.nodes.iter().map(|n| NodeId(n.id)).collect(),
        d.algorithm().map_err(NodeError::Config)?,
    );
    dcfg.tie_breaker = d.tie_breaker().map_err(NodeError::Config)?;
    let link = control::ArbiterLink {
        address: format!("{}:{}", d.host, d.port),
        connected: false,
        has_vote: false,
        refused: None,
    };
    Ok((quorum::device::DeviceClient::new(dcfg), io, link))
}

/// Runs one step of the cluster-wide arbiter addition. `install` starts the arbiter client from
/// the committed configuration.
fn run_join_effect(
    e: crate::admin::JoinEffect,
    opts: &NodeOptions,
    me: NodeId,
    enrolled: &mpsc::Sender<(u64, Result<(), String>)>,
    reply: &mut Option<(u64, oneshot::Sender<Response>)>,
    install: impl FnOnce(FileConfig) -> Result<(), String>,
) {
    use crate::admin::JoinEffect;
    match e {
        JoinEffect::Prepare { op, change } => {
            let tx = enrolled.clone();
            let Some(path) = opts.config_path.clone() else {
                let _ = tx.try_send((op, Err("this node was started without a configuration file to change".into())));
                return;
            };
            let cluster = opts.config.cluster_name.clone();
            tokio::spawn(async move {
                let result = match change {
                    crate::admin::DeviceChange::Add(req) => crate::join::prepare_device(path, cluster, me, req).await,
                    crate::admin::DeviceChange::Remove => crate::join::prepare_removal(&path),
                };
                let _ = tx.send((op, result)).await;
            });
        }
        JoinEffect::Commit { op: _, change } => {
            let Some(path) = &opts.config_path else { return };
            let done = match &change {
                crate::admin::DeviceChange::Add(_) => crate::join::commit_device(path),
                crate::admin::DeviceChange::Remove => crate::join::commit_removal(path),
            }
            .and_then(install);
            match (done, change) {
                (Ok(()), crate::admin::DeviceChange::Add(req)) => {
                    tracing::info!(node = %me, arbiter = %req.host, port = req.port, config = %path.display(), "arbiter added; configuration file rewritten")
                }
                (Ok(()), crate::admin::DeviceChange::Remove) => {
                    tracing::info!(node = %me, config = %path.display(), "arbiter removed; configuration file rewritten")
                }
                (Err(e), _) => {
                    tracing::error!(node = %me, error = %e, "the arbiter change committed cluster-wide but failed here; fix the cause and restart clusterd")
                }
            }
        }
        JoinEffect::Abort { op: _, reason } => {
            if let Some(path) = &opts.config_path {
                crate::join::discard_device(path);
            }
            tracing::warn!(node = %me, %reason, "arbiter change aborted; nothing changed");
        }
        JoinEffect::Reply { op, result } => {
            if reply.as_ref().is_some_and(|(o, _)| *o == op)
                && let Some((_, tx)) = reply.take()
            {
                let _ = tx.send(match result {
                    Ok(done) => Response::Done(done),
                    Err(e) => Response::Error(format!("arbiter not changed: {e}")),
                });
            }
        }
    }
}

/// Logs a quorum change in plain words.
fn log_quorum(me: NodeId, st: &quorum::QuorumStatus) {
    let flags = st.flags.join(" ");
    if st.quorate {
        tracing::info!(node = %me, votes = st.total_votes, expected = st.expected_votes, quorum = st.quorum, %flags, "quorate: {}", st.explanation);
    } else {
        tracing::warn!(node = %me, votes = st.total_votes, expected = st.expected_votes, quorum = st.quorum, %flags, "NOT quorate: {}", st.explanation);
    }
}

/// What membership hands to votequorum and the administrative changes, in delivery order.
enum QuorumEvent {
    View { ring: RingId, members: Vec<NodeId>, left: Vec<NodeId> },
    Msg { from: NodeId, msg: quorum::QuorumMsg },
    Admin { from: NodeId, msg: crate::admin::AdminMsg },
    Cib { from: NodeId, seq: u64, msg: crm::replica::ReplicaMsg<crm::replica::CibChange> },
    Stable { ring: RingId, upto: u64 },
    Exec { from: NodeId, msg: crm::exec::ExecMsg },
}

struct Exec<'a> {
    crypto: &'a mut Crypto,
    sockets: &'a [Arc<UdpSocket>],
    quic: Option<&'a crate::quic::Quic>,
    addr_of: &'a BTreeMap<(NodeId, LinkId), SocketAddr>,
    state_dir: &'a Path,
    quorum_in: Vec<QuorumEvent>,
}

impl Exec<'_> {
    fn run(
        &mut self,
        fx: &mut Vec<Effect>,
        counters: &mut TransportCounters,
        last_view: &mut Option<View>,
        deliver: Option<&mpsc::UnboundedSender<Delivery>>,
        views: Option<&watch::Sender<Option<View>>>,
    ) -> Result<(), NodeError> {
        for e in fx.drain(..) {
            match e {
                Effect::Transmit { to, link, bytes } => {
                    if let Some(q) = self.quic {
                        if q.send(to, link, bytes) {
                            counters.datagrams_out += 1;
                        } else {
                            counters.send_errors += 1;
                        }
                        continue;
                    }
                    let (Some(sock), Some(addr)) = (self.sockets.get(link.0 as usize), self.addr_of.get(&(to, link)))
                    else {
                        counters.send_errors += 1;
                        continue;
                    };
                    let sealed = self.crypto.seal(to, &bytes);
                    match sock.try_send_to(&sealed, *addr) {
                        Ok(_) => counters.datagrams_out += 1,
                        Err(_) => counters.send_errors += 1,
                    }
                }
                Effect::Deliver { ring, sender, seq, payload } => match mux::demux(&payload) {
                    Demuxed::App(body) => {
                        if let Some(d) = deliver {
                            let _ = d.send(Delivery { ring, sender, seq, payload: body.to_vec() });
                        }
                    }
                    Demuxed::Quorum(msg) => self.quorum_in.push(QuorumEvent::Msg { from: sender, msg }),
                    Demuxed::Admin(msg) => self.quorum_in.push(QuorumEvent::Admin { from: sender, msg }),
                    Demuxed::Cib(msg) => self.quorum_in.push(QuorumEvent::Cib { from: sender, seq, msg }),
                    Demuxed::Exec(msg) => self.quorum_in.push(QuorumEvent::Exec { from: sender, msg }),
                    Demuxed::Unknown => counters.malformed += 1,
                },
                Effect::ViewChanged(v) => {
                    self.quorum_in.push(QuorumEvent::View {
                        ring: v.ring,
                        members: v.members.clone(),
                        left: v
                            .departed
                            .iter()
                            .filter(|(_, why)| *why == membership::Departure::Left)
                            .map(|(n, _)| *n)
                            .collect(),
                    });
                    if let Some(w) = views {
                        let _ = w.send(Some(v.clone()));
                    }
                    *last_view = Some(v);
                }
                Effect::Persist(p) => {
                    if let Err(e) = write_state(self.state_dir, &p) {
                        // Without a durable ring sequence a restart could reuse a ring id: stop
                        // participating (a fatal node error; the service manager restarts us).
                        tracing::error!(path = %self.state_dir.display(), error = %e, "cannot write the membership state; stopping");
                        return Err(NodeError::State { path: self.state_dir.join(STATE_FILE), message: e.to_string() });
                    }
                }
                Effect::Stable { ring, upto } => self.quorum_in.push(QuorumEvent::Stable { ring, upto }),
                Effect::LinkStatus { .. } => {}
            }
        }
        Ok(())
    }
}

pub(crate) async fn serve_control(listener: UnixListener, tx: mpsc::Sender<ControlReq>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; wire::FRAME_HEADER_LEN];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let resp = match wire::decode_header(&head) {
                Ok(h) if h.body_len <= 4096 => {
                    head.resize(h.frame_len(), 0);
                    if stream.read_exact(&mut head[wire::FRAME_HEADER_LEN..]).await.is_err() {
                        return;
                    }
                    match wire::decode::<Request>(control::KIND, &head) {
                        Ok(req) => {
                            let (rtx, rrx) = oneshot::channel();
                            if tx.send((req, rtx)).await.is_err() {
                                return;
                            }
                            rrx.await.unwrap_or_else(|_| Response::Error("daemon is stopping".into()))
                        }
                        Err(e) => Response::Error(format!("bad request: {e}")),
                    }
                }
                Ok(_) => Response::Error("request too large".into()),
                Err(e) => Response::Error(format!("bad request: {e}")),
            };
            let bytes = wire::encode(control::KIND, &resp).unwrap_or_default();
            let _ = stream.write_all(&bytes).await;
        });
    }
}
