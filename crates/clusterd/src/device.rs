//! The IO side of this node's arbiter client: a QUIC connection to `qnetd` (redialled every
//! 200 ms while down) and the heuristics commands. The decisions stay in the sans-IO
//! [`quorum::device::DeviceClient`], which the node's main loop drives.

use std::time::Duration;

use quorum::arbiter::{ARBITER_WIRE_KIND, ArbiterMsg, ClientMsg, Heuristics};
use tokio::sync::mpsc;

use crate::arbiterd::{ARBITER_ALPN, MAX_ARBITER_FRAME};
use crate::config::{DeviceSection, HeuristicCommand};
use crate::quic::{TlsMaterial, read_frame, tls_configs};

/// What the IO tasks report to the main loop.
#[derive(Debug)]
pub(crate) enum DeviceEvent {
    Connected,
    Disconnected,
    Msg(ArbiterMsg),
    Heuristics(Heuristics),
}

/// The running IO side. After a refusal the arbiter is dialled again only every 5 s.
pub(crate) struct DeviceIo {
    /// Messages for the arbiter.
    pub(crate) out: mpsc::UnboundedSender<ClientMsg>,
    /// Events for the main loop.
    pub(crate) events: mpsc::Receiver<DeviceEvent>,
    _endpoint: quinn::Endpoint,
}

impl DeviceIo {
    /// Starts dialling the arbiter and running the heuristics.
    pub(crate) fn start(cfg: &DeviceSection, tls: &TlsMaterial) -> Result<DeviceIo, String> {
        let (_, cc) = tls_configs(tls, ARBITER_ALPN, Duration::from_millis(100), Duration::from_secs(2), false)?;
        let bind: std::net::SocketAddr = if cfg.host.contains(':') && !cfg.host.contains('.') {
            "[::]:0".parse().map_err(|e| format!("{e}"))?
        } else {
            "0.0.0.0:0".parse().map_err(|e| format!("{e}"))?
        };
        let mut ep = quinn::Endpoint::client(bind).map_err(|e| format!("quorum.device: cannot open a socket: {e}"))?;
        ep.set_default_client_config(cc);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(256);
        tokio::spawn(dial_loop(ep.clone(), cfg.host.clone(), cfg.port, out_rx, ev_tx.clone()));
        if !cfg.heuristics.is_empty() {
            tokio::spawn(heuristics_loop(
                cfg.heuristics.clone(),
                Duration::from_millis(cfg.heuristics_interval_ms),
                ev_tx,
            ));
        }
        Ok(DeviceIo { out: out_tx, events: ev_rx, _endpoint: ep })
    }
}

async fn connect(ep: &quinn::Endpoint, host: &str, port: u16) -> Option<quinn::Connection> {
    let addr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let connecting = ep.connect(addr, "qnetd").ok()?;
    tokio::time::timeout(Duration::from_secs(2), connecting).await.ok()?.ok()
}

async fn dial_loop(
    ep: quinn::Endpoint,
    host: String,
    port: u16,
    mut out: mpsc::UnboundedReceiver<ClientMsg>,
    events: mpsc::Sender<DeviceEvent>,
) {
    let mut warned = false;
    loop {
        if events.is_closed() {
            // The arbiter was removed (the node dropped its side).
            return;
        }
        let mut pause = Duration::from_millis(200);
        match connect(&ep, &host, port).await {
            Some(conn) => {
                warned = false;
                if let Ok((send, recv)) = conn.open_bi().await {
                    // Drop what was queued for an earlier connection.
                    while out.try_recv().is_ok() {}
                    if events.send(DeviceEvent::Connected).await.is_err() {
                        return;
                    }
                    if serve(send, recv, &mut out, &events).await {
                        // Refused: retrying at once would only repeat the refusal.
                        pause = Duration::from_secs(5);
                    }
                    if events.send(DeviceEvent::Disconnected).await.is_err() {
                        return;
                    }
                }
                conn.close(0u32.into(), b"bye");
            }
            None if !warned => {
                tracing::warn!(%host, port, "cannot reach the arbiter; retrying every 200 ms");
                warned = true;
            }
            None => {}
        }
        tokio::time::sleep(pause).await;
    }
}

async fn serve(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    out: &mut mpsc::UnboundedReceiver<ClientMsg>,
    events: &mpsc::Sender<DeviceEvent>,
) -> bool {
    // A connection starts with Hello: anything the client queued before it learnt of this
    // connection is stale.
    let mut hello_sent = false;
    loop {
        tokio::select! {
            msg = out.recv() => {
                let Some(msg) = msg else { return false };
                if !hello_sent && !matches!(msg, ClientMsg::Hello { .. }) {
                    continue;
                }
                hello_sent = true;
                let bytes = wire::encode(ARBITER_WIRE_KIND, &msg).unwrap_or_default();
                if send.write_all(&bytes).await.is_err() {
                    return false;
                }
            }
            frame = read_frame(&mut recv, MAX_ARBITER_FRAME) => {
                let Some(frame) = frame else { return false };
                match wire::decode::<ArbiterMsg>(ARBITER_WIRE_KIND, &frame) {
                    Ok(m) => {
                        let refused = matches!(m, ArbiterMsg::Refused { .. });
                        if events.send(DeviceEvent::Msg(m)).await.is_err() || refused {
                            return refused;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed message from the arbiter; reconnecting");
                        return false;
                    }
                }
            }
        }
    }
}

/// Runs every command; passes when all exit 0 within their timeouts.
async fn run_heuristics(cmds: &[HeuristicCommand]) -> Heuristics {
    for c in cmds {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&c.command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(mut child) = child else {
            tracing::warn!(command = %c.command, "heuristics command could not start");
            return Heuristics::Fail;
        };
        match tokio::time::timeout(Duration::from_millis(c.timeout_ms), child.wait()).await {
            Ok(Ok(st)) if st.success() => {}
            Ok(_) => return Heuristics::Fail,
            Err(_) => {
                tracing::warn!(command = %c.command, timeout_ms = c.timeout_ms, "heuristics command timed out");
                return Heuristics::Fail;
            }
        }
    }
    Heuristics::Pass
}

async fn heuristics_loop(cmds: Vec<HeuristicCommand>, every: Duration, events: mpsc::Sender<DeviceEvent>) {
    let mut last = None;
    loop {
        let h = run_heuristics(&cmds).await;
        if last != Some(h) {
            tracing::info!(result = ?h, "heuristics result changed");
            if events.send(DeviceEvent::Heuristics(h)).await.is_err() {
                return;
            }
            last = Some(h);
        }
        tokio::time::sleep(every).await;
    }
}
