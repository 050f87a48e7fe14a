//! Nodes in one process over loopback (two links each), over UDP and QUIC: views, total order,
//! recovery after a crash under load, status, and hostile datagrams or certificates refused and
//! counted.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clusterd::control::{self, Request, Response};
use clusterd::{AppPort, FileConfig, NodeEntry, NodeOptions, TlsMaterial, TlsPaths, Totem, Transport};
use rustls::pki_types::pem::PemObject;
use wire::NodeId;

pub(crate) fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("a free port")
}

pub(crate) fn loopback_config(
    nodes: u32,
    me: u32,
    ports: &[u16],
    dir: &std::path::Path,
    transport: Transport,
) -> FileConfig {
    FileConfig {
        node_id: me,
        cluster_name: "loop".into(),
        transport,
        authkey: Some(dir.join("authkey")),
        tls: Some(TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("node{me}.pem")),
            key: dir.join(format!("node{me}.key")),
        }),
        run_dir: dir.join(format!("run{me}")),
        state_dir: dir.join(format!("state{me}")),
        nodes: (1..=nodes)
            .map(|i| NodeEntry {
                id: i,
                name: format!("node{i}"),
                links: vec![
                    SocketAddr::from(([127, 0, 0, 1], ports[i as usize - 1])),
                    SocketAddr::from(([127, 0, 0, 2], ports[i as usize - 1])),
                ],
            })
            .collect(),
        totem: Totem::default(),
        quorum: Default::default(),
        executor: clusterd::ExecutorSection { rsctmp: dir.join(format!("rsctmp{me}")), ..Default::default() },
    }
}

struct Cluster {
    ports: Vec<AppPort>,
    run_dirs: Vec<PathBuf>,
    /// Link-0 address of every configured node.
    addrs: Vec<SocketAddr>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: rig::ScratchDir,
}

async fn start(nodes: u32, running: u32) -> Cluster {
    start_with(nodes, running, Transport::Udp).await
}

async fn start_with(nodes: u32, running: u32, transport: Transport) -> Cluster {
    start_certified(nodes, running, transport, |me| me).await
}

/// Like `start_with`, but node `me` presents the certificate made for `cert_for(me)`.
async fn start_certified(nodes: u32, running: u32, transport: Transport, cert_for: impl Fn(u32) -> u32) -> Cluster {
    start_custom(nodes, running, transport, cert_for, rig::ScratchDir::new(), |_| {}).await
}

/// Like `start_certified`, in `dir`, with `tweak` applied to every node's configuration.
async fn start_custom(
    nodes: u32,
    running: u32,
    transport: Transport,
    cert_for: impl Fn(u32) -> u32,
    dir: rig::ScratchDir,
    tweak: impl Fn(&mut FileConfig),
) -> Cluster {
    std::fs::write(dir.path().join("authkey"), [42u8; 32]).expect("key");
    clusterd::gen_certs(dir.path(), &(1..=nodes + 1).collect::<Vec<_>>()).expect("certificates");
    let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
    let addrs = ports.iter().map(|&p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
    let mut c =
        Cluster { ports: Vec::new(), run_dirs: Vec::new(), addrs, stops: Vec::new(), tasks: Vec::new(), _dir: dir };
    for me in 1..=running {
        let mut config = loopback_config(nodes, me, &ports, c._dir.path(), transport);
        tweak(&mut config);
        if let Some(t) = config.tls.as_mut() {
            t.cert = c._dir.path().join(format!("node{}.pem", cert_for(me)));
            t.key = c._dir.path().join(format!("node{}.key", cert_for(me)));
        }
        let tls = config.tls.as_ref().map(|t| TlsMaterial::load(&t.ca, &t.cert, &t.key).expect("load certificates"));
        let (port, side) = AppPort::new(10_000);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        c.run_dirs.push(config.run_dir.clone());
        let opts = NodeOptions {
            config_path: None,
            run_dir: config.run_dir.clone(),
            state_dir: config.state_dir.clone(),
            config,
            authkey: vec![42u8; 32],
            tls,
        };
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            clusterd::run(opts, stop, Some(side)).await.expect("node runs");
        });
        c.tasks.push(task);
        c.ports.push(port);
        c.stops.push(stop_tx);
    }
    c
}

async fn wait_view(c: &mut Cluster, members: &[NodeId]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let all = c.ports.iter().all(|p| p.views.borrow().as_ref().is_some_and(|v| v.members == members));
        if all {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no common view {members:?} within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn three_nodes_form_one_view_and_deliver_in_one_order() {
    for transport in [Transport::Udp, Transport::Quic] {
        three_nodes_deliver_in_one_order(transport).await;
    }
}

async fn three_nodes_deliver_in_one_order(transport: Transport) {
    let mut c = start_with(3, 3, transport).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    for (i, p) in c.ports.iter().enumerate() {
        for k in 0..200u32 {
            p.broadcast.send(format!("{i}:{k}").into_bytes()).await.expect("queued");
        }
    }
    let mut orders = Vec::new();
    for p in c.ports.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 600 {
            let d = tokio::time::timeout(Duration::from_secs(10), p.deliveries.recv())
                .await
                .expect("delivered within 10 s")
                .expect("node alive");
            got.push((d.ring, d.seq, d.payload));
        }
        orders.push(got);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn hostile_datagrams_are_dropped_and_counted_and_status_is_served() {
    // Node 3 is configured but not running: the test sends from its address.
    let mut c = start(3, 2).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2)]).await;
    let run_dir = c.run_dirs[0].clone();
    let status = move || match control::query(&run_dir, &Request::MembershipStatus).expect("status") {
        Response::MembershipStatus(s) => *s,
        other => panic!("unexpected {other:?}"),
    };
    let before = tokio::task::spawn_blocking(status.clone()).await.expect("joins");
    assert_eq!(before.membership.node, NodeId(1));
    assert_eq!(before.transport.auth_failures, 0);
    let (target, node3) = (c.addrs[0], c.addrs[2]);
    let sock = UdpSocket::bind(node3).expect("bind node 3's address");
    sock.send_to(b"garbage", target).expect("send");
    let mut forged = b"HU\x01\x00".to_vec();
    forged.extend_from_slice(&3u32.to_le_bytes());
    forged.extend_from_slice(&1u32.to_le_bytes());
    forged.extend_from_slice(&[9u8; 16]);
    forged.extend_from_slice(&[0u8; 40]);
    sock.send_to(&forged, target).expect("send");
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(b"hello", target).expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = tokio::task::spawn_blocking(status.clone()).await.expect("joins");
        let t = s.transport;
        let text = clusterd::render_status(&s);
        if t.malformed >= 1 && t.auth_failures >= 1 && t.unknown_source >= 1 && text.contains("node2 link1: up") {
            assert_eq!(s.membership.members, vec![NodeId(1), NodeId(2)], "the view is untouched");
            assert_eq!(s.membership.counters.views, 1, "no view change");
            assert!(text.contains("Ring id:"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counters: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn survivors_of_a_crash_under_load_deliver_the_same_messages_of_the_old_view() {
    let mut c = start(3, 3).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    let first_ring = c.ports[0].views.borrow().as_ref().map(|v| v.ring).expect("a view");
    // Everyone floods 1 KiB messages; node 3 dies abruptly in the middle.
    let mut senders = Vec::new();
    for (i, p) in c.ports.iter().enumerate() {
        let tx = p.broadcast.clone();
        senders.push(tokio::spawn(async move {
            for k in 0..3000u32 {
                let mut m = vec![i as u8; 1024];
                m[1..5].copy_from_slice(&k.to_le_bytes());
                if tx.send(m).await.is_err() {
                    return;
                }
                if k % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.tasks[2].abort();
    c.ports.truncate(2);
    wait_view(&mut c, &[NodeId(1), NodeId(2)]).await;
    for s in senders.drain(..2) {
        let _ = s.await;
    }
    // Both survivors delivered the same messages of the first view, in the same order.
    let mut got = Vec::new();
    for p in c.ports.iter_mut() {
        let mut old = Vec::new();
        while let Ok(d) = p.deliveries.try_recv() {
            if d.ring == first_ring {
                old.push((d.seq, d.sender, d.payload[..5].to_vec()));
            }
        }
        got.push(old);
    }
    assert!(!got[0].is_empty(), "messages were delivered in the first view");
    assert_eq!(got[0], got[1], "survivors moving together delivered the same old-view messages");
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

/// A QUIC client whose certificate comes from another CA: the handshake fails.
async fn foreign_handshake(target: SocketAddr, dir: &std::path::Path) -> bool {
    clusterd::gen_certs(dir, &[1]).expect("foreign certificates");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let ca = rustls::pki_types::CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca");
    let cert = rustls::pki_types::CertificateDer::from_pem_file(dir.join("node1.pem")).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("node1.key")).expect("key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    // The client trusts its own (foreign) CA: each side refuses the other's certificate.
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .expect("client cert");
    client.alpn_protocols = vec![b"clusterd-ring/1".to_vec()];
    let cc = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client).expect("quic client"),
    ));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let Ok(connecting) = ep.connect_with(cc, target, "node1") else { return false };
    tokio::time::timeout(Duration::from_secs(5), connecting).await.is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn quic_refuses_a_certificate_from_another_ca_and_counts_it() {
    let mut c = start_with(2, 2, Transport::Quic).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2)]).await;
    let foreign = rig::ScratchDir::new();
    assert!(!foreign_handshake(c.addrs[0], foreign.path()).await, "the handshake must fail");
    let run_dir = c.run_dirs[0].clone();
    let status = move || match control::query(&run_dir, &Request::MembershipStatus).expect("status") {
        Response::MembershipStatus(s) => *s,
        other => panic!("unexpected {other:?}"),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = tokio::task::spawn_blocking(status.clone()).await.expect("joins");
        if s.transport.auth_failures >= 1 {
            assert_eq!(s.membership.members, vec![NodeId(1), NodeId(2)], "the view is untouched");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counters: {:?}", s.transport);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn quic_refuses_a_cluster_certificate_made_for_another_node() {
    // Node 1 presents node 3's certificate: node 2 accepts nobody from node 1's address with it,
    // and the two never share a view.
    let c = start_certified(2, 2, Transport::Quic, |me| if me == 1 { 3 } else { me }).await;
    let run_dir = c.run_dirs[1].clone();
    // The daemon may not have opened its control socket yet: ask until it answers.
    let status = move || match control::query(&run_dir, &Request::MembershipStatus) {
        Ok(Response::MembershipStatus(s)) => Some(*s),
        _ => None,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = tokio::task::spawn_blocking(status.clone()).await.expect("joins");
        if let Some(s) = s.filter(|s| s.transport.unknown_source >= 1) {
            assert!(!s.membership.members.contains(&NodeId(1)), "node 1 is not a member: {:?}", s.membership.members);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node 2 never refused node 1's connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.ports[0].views.borrow().as_ref().is_none_or(|v| v.members == [NodeId(1)]));
}

async fn quorum_text(run_dir: &std::path::Path) -> String {
    let dir = run_dir.to_path_buf();
    tokio::task::spawn_blocking(move || clusterd::render_quorum(&quorum_of(&dir))).await.expect("joins")
}

fn quorum_of(run_dir: &std::path::Path) -> clusterd::control::QuorumReport {
    match control::query(run_dir, &Request::QuorumStatus).expect("quorum status") {
        Response::QuorumStatus(r) => *r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn wait_quorum(c: &Cluster, what: &str, ok: impl Fn(&quorum::QuorumStatus) -> bool + Clone + Send + 'static) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dirs = c.run_dirs.clone();
        let ok2 = ok.clone();
        let (all, seen) = tokio::task::spawn_blocking(move || {
            let reports: Vec<_> = dirs.iter().map(|d| quorum_of(d)).collect();
            (reports.iter().all(|r| ok2(&r.status)), reports)
        })
        .await
        .expect("joins");
        if all {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn votequorum_runs_over_ordered_delivery_and_expected_votes_change_cluster_wide() {
    // Three nodes configured, two running: 2 of 3 votes is a majority.
    let mut c = start(3, 2).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2)]).await;
    wait_quorum(&c, "2 of 3 votes quorate", |s| s.quorate && s.total_votes == 2 && s.quorum == 2).await;
    let text = quorum_text(&c.run_dirs[0]).await;
    assert!(text.contains("Quorate:          Yes"), "{text}");
    assert!(text.contains("node3") && text.contains("absent"), "{text}");
    // Application payloads still arrive untagged alongside quorum traffic.
    c.ports[0].broadcast.send(b"app".to_vec()).await.expect("queued");
    let d = tokio::time::timeout(Duration::from_secs(5), c.ports[1].deliveries.recv()).await.expect("in time");
    assert_eq!(d.expect("alive").payload, b"app");
    // Below the votes present: refused with the reason.
    let dir = c.run_dirs[1].clone();
    let refused = tokio::task::spawn_blocking(move || control::query(&dir, &Request::SetExpectedVotes(1)))
        .await
        .expect("joins")
        .expect("answer");
    assert!(matches!(&refused, Response::Error(e) if e.contains("below the 2 votes present")), "{refused:?}");
    // Raised to 5 from node 2: every member follows and the partition loses quorum (2 < 3).
    let dir = c.run_dirs[1].clone();
    let done = tokio::task::spawn_blocking(move || control::query(&dir, &Request::SetExpectedVotes(5)))
        .await
        .expect("joins")
        .expect("answer");
    assert!(matches!(done, Response::Done(_)), "{done:?}");
    wait_quorum(&c, "expected 5 everywhere", |s| s.expected_votes == 5 && s.quorum == 3 && !s.quorate).await;
    let text = quorum_text(&c.run_dirs[0]).await;
    assert!(text.contains("Quorate:          No"), "{text}");
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn the_arbiter_vote_keeps_a_lone_survivor_quorate_and_qnetd_reports_it() {
    let dir = rig::ScratchDir::new();
    let adir = dir.path().join("arbiter");
    clusterd::gen_arbiter_certs(&adir, "loop", &[1, 2]).expect("arbiter certificates");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let qcfg = clusterd::arbiterd::QnetdConfig {
        listen,
        lease_ms: 500,
        run_dir: dir.path().join("qnetd"),
        tls: TlsPaths { ca: adir.join("ca.pem"), cert: adir.join("qnetd.pem"), key: adir.join("qnetd.key") },
        ca_key: None,
    };
    let qrun = qcfg.run_dir.clone();
    let tls = TlsMaterial::load(&qcfg.tls.ca, &qcfg.tls.cert, &qcfg.tls.key).expect("load");
    let (qstop_tx, qstop_rx) = tokio::sync::oneshot::channel::<()>();
    let qnetd = tokio::spawn(async move {
        clusterd::arbiterd::run_qnetd(qcfg, tls, async move {
            let _ = qstop_rx.await;
        })
        .await
        .expect("qnetd runs");
    });
    let mut c = start_custom(
        2,
        2,
        Transport::Udp,
        |me| me,
        dir,
        |cfg| {
            let me = cfg.node_id;
            cfg.quorum.device = Some(clusterd::DeviceSection {
                host: "127.0.0.1".into(),
                port: listen.port(),
                algorithm: "ffsplit".into(),
                tie_breaker: "lowest".into(),
                votes: None,
                tls: TlsPaths {
                    ca: adir.join("ca.pem"),
                    cert: adir.join(format!("loop-node{me}.pem")),
                    key: adir.join(format!("loop-node{me}.key")),
                },
                heuristics: vec![clusterd::HeuristicCommand { command: "true".into(), timeout_ms: 1000 }],
                heuristics_interval_ms: 1000,
            });
        },
    )
    .await;
    wait_view(&mut c, &[NodeId(1), NodeId(2)]).await;
    wait_quorum(&c, "both nodes quorate with the arbiter vote", |s| {
        s.quorate && s.total_votes == 3 && s.expected_votes == 3 && s.device == Some((1, true))
    })
    .await;
    let text = quorum_text(&c.run_dirs[0]).await;
    assert!(text.contains("connected, this node holds the vote"), "{text}");
    let qrun2 = qrun.clone();
    let text = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_qnetd")).arg("status").arg("--run-dir").arg(&qrun2).output()
    })
    .await
    .expect("joins")
    .expect("qnetd status runs");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("Cluster loop   algorithm ffsplit   nodes 1 2"), "{text}");
    assert!(text.contains("vote: partition of nodes 1 2") && text.contains("HAS THE VOTE"), "{text}");
    let status = tokio::task::spawn_blocking(move || {
        control::query_socket(&qrun.join(clusterd::arbiterd::QNETD_SOCKET), &Request::ArbiterStatus)
    })
    .await
    .expect("joins")
    .expect("qnetd answers");
    let Response::ArbiterStatus(clusters) = status else { panic!("unexpected {status:?}") };
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].cluster, "loop");
    assert_eq!(clusters[0].holder, Some(vec![NodeId(1), NodeId(2)]));
    // Node 2 stops: node 1 keeps quorum with its vote and the arbiter's (2 of 3).
    let _ = c.stops.remove(1).send(());
    c.ports.remove(1);
    c.run_dirs.remove(1);
    wait_view(&mut c, &[NodeId(1)]).await;
    wait_quorum(&c, "the survivor quorate through the arbiter", |s| {
        s.quorate && s.members == [NodeId(1)] && s.total_votes == 2 && s.device == Some((1, true))
    })
    .await;
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
    let _ = qstop_tx.send(());
    let _ = qnetd.await;
}

#[tokio::test]
async fn the_arbiter_refuses_a_node_presenting_another_nodes_certificate() {
    let dir = rig::ScratchDir::new();
    let adir = dir.path().join("arbiter");
    clusterd::gen_arbiter_certs(&adir, "loop", &[1, 2]).expect("arbiter certificates");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let qcfg = clusterd::arbiterd::QnetdConfig {
        listen,
        lease_ms: 500,
        run_dir: dir.path().join("qnetd"),
        tls: TlsPaths { ca: adir.join("ca.pem"), cert: adir.join("qnetd.pem"), key: adir.join("qnetd.key") },
        ca_key: None,
    };
    let tls = TlsMaterial::load(&qcfg.tls.ca, &qcfg.tls.cert, &qcfg.tls.key).expect("load");
    let (qstop_tx, qstop_rx) = tokio::sync::oneshot::channel::<()>();
    let qnetd = tokio::spawn(async move {
        let _ = clusterd::arbiterd::run_qnetd(qcfg, tls, async move {
            let _ = qstop_rx.await;
        })
        .await;
    });
    // Node 1 presents node 2's arbiter certificate.
    let mut c = start_custom(
        2,
        1,
        Transport::Udp,
        |me| me,
        dir,
        |cfg| {
            cfg.quorum.device = Some(clusterd::DeviceSection {
                host: "127.0.0.1".into(),
                port: listen.port(),
                algorithm: "ffsplit".into(),
                tie_breaker: "lowest".into(),
                votes: None,
                tls: TlsPaths {
                    ca: adir.join("ca.pem"),
                    cert: adir.join("loop-node2.pem"),
                    key: adir.join("loop-node2.key"),
                },
                heuristics: Vec::new(),
                heuristics_interval_ms: 1000,
            });
        },
    )
    .await;
    wait_view(&mut c, &[NodeId(1)]).await;
    let run_dir = c.run_dirs[0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dir = run_dir.clone();
        let r = tokio::task::spawn_blocking(move || quorum_of(&dir)).await.expect("joins");
        let link = r.arbiter.clone().expect("arbiter configured");
        if let Some(why) = &link.refused {
            assert!(why.contains("not valid for node1.loop"), "{why}");
            assert!(!link.has_vote && !r.status.quorate && r.status.device == Some((1, false)), "{r:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in c.stops {
        let _ = s.send(());
    }
    let _ = qstop_tx.send(());
    let _ = qnetd.await;
}

/// Polls `check` every 20 ms until it passes; fails with `what` and the last state after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) => assert!(std::time::Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ask_blocking(run_dir: &std::path::Path, req: Request) -> Response {
    control::query_socket_within(&run_dir.join(control::SOCKET_NAME), &req, Duration::from_secs(20)).expect("answer")
}

async fn ask(run_dir: &std::path::Path, req: Request) -> Response {
    let dir = run_dir.to_path_buf();
    tokio::task::spawn_blocking(move || ask_blocking(&dir, req)).await.expect("joins")
}

async fn cib_of(run_dir: &std::path::Path) -> clusterd::CibReport {
    match ask(run_dir, Request::CibQuery).await {
        Response::Cib(r) => *r,
        other => panic!("unexpected {other:?}"),
    }
}

/// One harmless resource (its state file lives in the node's own rsctmp), fencing off.
const VIP_CONFIG: &str = r#"<configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes/><resources><primitive id="vip" class="ocf" provider="heartbeat" type="Dummy"/></resources><constraints/></configuration>"#;

#[tokio::test]
async fn the_cib_is_replicated_changed_only_with_quorum_and_persisted() {
    let mut c = start(3, 3).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    wait_quorum(&c, "quorate", |s| s.quorate).await;

    // The DC (node 1) records the three members in the status, and adds them to <nodes>.
    for d in &c.run_dirs {
        eventually("membership never recorded", || async {
            let r = cib_of(d).await;
            if r.synced && r.xml.matches(r#"crmd="online""#).count() == 3 { Ok(()) } else { Err(format!("{r:?}")) }
        })
        .await;
    }
    let r = cib_of(&c.run_dirs[2]).await;
    assert!(r.xml.contains(r#"<node id="3" uname="node3""#), "{}", r.xml);
    let epoch = r.version.1;

    // A change from node 2 is on every node once acknowledged.
    let req = Request::CibReplaceConfiguration { xml: VIP_CONFIG.into(), if_epoch: Some(epoch) };
    let done = ask(&c.run_dirs[1], req).await;
    let want = format!("version 0.{}.0", epoch + 1);
    assert!(matches!(&done, Response::Done(w) if w.contains(&want)), "{done:?}");
    for d in &c.run_dirs {
        let r = cib_of(d).await;
        assert!(r.version.1 > epoch);
        assert!(r.xml.contains(r#"<primitive id="vip""#), "{}", r.xml);
    }
    // A stale read and an invalid configuration are refused, and nothing changes.
    let stale =
        ask(&c.run_dirs[0], Request::CibReplaceConfiguration { xml: VIP_CONFIG.into(), if_epoch: Some(epoch) }).await;
    assert!(matches!(&stale, Response::Error(e) if e.contains("changed meanwhile")), "{stale:?}");
    let dup = VIP_CONFIG
        .replace("</resources>", r#"<primitive id="vip" class="ocf" provider="heartbeat" type="Dummy"/></resources>"#);
    let bad = ask(&c.run_dirs[2], Request::CibReplaceConfiguration { xml: dup, if_epoch: None }).await;
    assert!(matches!(&bad, Response::Error(e) if e.contains("used more than once")), "{bad:?}");
    // The import dropped the nodes from <nodes>; the DC adds them back.
    eventually("the DC did not re-add the nodes", || async {
        let xml = cib_of(&c.run_dirs[0]).await.xml;
        if xml.contains(r#"<node id="2" uname="node2""#) { Ok(()) } else { Err(xml) }
    })
    .await;

    // Node 3 dies (no clean leave): the DC records it lost (expected up, not in the view),
    // which the policy engine fences; the survivors stay quorate.
    c.tasks[2].abort();
    let lost = r#"<node_state id="3" uname="node3" in_ccm="false" crmd="offline" join="down" expected="member""#;
    eventually("node 3's loss never recorded", || async {
        let xml = cib_of(&c.run_dirs[1]).await.xml;
        if xml.contains(lost) { Ok(()) } else { Err(xml) }
    })
    .await;

    // Node 2 stops cleanly: node 1 alone is not quorate and refuses changes.
    let _ = c.stops.remove(1).send(());
    let d1 = c.run_dirs[0].clone();
    eventually("node 1 stayed quorate alone", || async {
        let q = quorum_of_async(&d1).await;
        if q.status.quorate { Err(format!("{:?}", q.status)) } else { Ok(()) }
    })
    .await;
    let refused = ask(&d1, Request::CibReplaceConfiguration { xml: VIP_CONFIG.into(), if_epoch: None }).await;
    assert!(matches!(&refused, Response::Error(e) if e.contains("not quorate")), "{refused:?}");

    // What every node acknowledged is on its disk.
    for i in 1..=3 {
        let path = c._dir.path().join(format!("state{i}")).join("cib.state");
        let bytes = std::fs::read(&path).expect("persisted");
        let r = crm::replica::Replica::<crm::cib::Cib>::restore(NodeId(i), &bytes).expect("restores");
        assert_eq!(r.document().config.resources[0].id, "vip", "node {i}");
        assert_eq!(r.document().dc_uuid.as_deref(), Some("1"), "node {i}: the DC recorded itself");
    }
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

async fn quorum_of_async(run_dir: &std::path::Path) -> clusterd::control::QuorumReport {
    let dir = run_dir.to_path_buf();
    tokio::task::spawn_blocking(move || quorum_of(&dir)).await.expect("joins")
}

#[tokio::test]
async fn when_the_dc_dies_the_lowest_survivor_takes_over_and_records_itself() {
    let mut c = start(3, 3).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    wait_quorum(&c, "quorate", |s| s.quorate).await;
    let recorded = |i: u32, dir: &std::path::Path| {
        std::fs::read(dir.join(format!("state{i}")).join("cib.state"))
            .ok()
            .and_then(|b| crm::replica::Replica::<crm::cib::Cib>::restore(NodeId(i), &b).ok())
            .and_then(|r| r.document().dc_uuid.clone())
    };
    let dc_is = |want: &'static str| {
        let dir = c._dir.path().to_path_buf();
        move || {
            let got = recorded(3, &dir);
            async move { if got.as_deref() == Some(want) { Ok(()) } else { Err(format!("recorded DC {got:?}")) } }
        }
    };
    eventually("node 1 never recorded itself as DC", dc_is("1")).await;
    assert_eq!(cib_of(&c.run_dirs[2]).await.dc.as_deref(), Some("node1"));
    // The DC dies: node 2, the lowest survivor, takes over and records itself everywhere.
    c.tasks[0].abort();
    eventually("node 2 never took over as DC", dc_is("2")).await;
    assert_eq!(cib_of(&c.run_dirs[2]).await.dc.as_deref(), Some("node2"));
    for s in c.stops.drain(1..) {
        let _ = s.send(());
    }
}

/// A resource with a 1 s monitor, fencing off (the nodes share this machine, so a lost node
/// cannot be fenced here; the fenced case runs in namespaces).
const DUMMY_CONFIG: &str = r#"<configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes/><resources><primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="d1-mon" name="monitor" interval="1s" timeout="10s"/></operations></primitive></resources><constraints/></configuration>"#;

/// Nodes (1-based) whose agent state says `rsc` runs there.
fn running_on(dir: &std::path::Path, nodes: u32, rsc: &str) -> Vec<u32> {
    (1..=nodes).filter(|i| dir.join(format!("rsctmp{i}")).join(format!("Dummy-{rsc}.state")).exists()).collect()
}

#[tokio::test]
async fn the_dc_starts_monitors_recovers_and_moves_a_resource_through_the_executors() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = clusterd::init_logging(None);
    }
    let mut c = start(3, 3).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    wait_quorum(&c, "quorate", |s| s.quorate).await;
    let dir = c._dir.path().to_path_buf();
    let done = ask(&c.run_dirs[1], Request::CibReplaceConfiguration { xml: DUMMY_CONFIG.into(), if_epoch: None }).await;
    assert!(matches!(&done, Response::Done(_)), "{done:?}");

    // Probes everywhere, then one start and its monitor, recorded by the node that ran them.
    let started = |xml: &str| {
        xml.contains(r#"id="d1_last_0" operation="start""#)
            && xml.contains(r#"id="d1_monitor_1000" operation="monitor""#)
    };
    eventually("d1 never started and monitored", || async {
        let r = cib_of(&c.run_dirs[0]).await;
        let on = running_on(&dir, 3, "d1");
        if started(&r.xml) && on.len() == 1 { Ok(()) } else { Err(format!("running on {on:?}:\n{}", r.xml)) }
    })
    .await;
    let host = running_on(&dir, 3, "d1")[0];
    // Every node probed it (rc 7 where it does not run).
    let xml = cib_of(&c.run_dirs[2]).await.xml;
    assert_eq!(xml.matches(r#"id="d1_last_0""#).count(), 3, "one history entry per node:\n{xml}");

    // The resource dies behind the cluster's back: the monitor notices, the DC restarts it in
    // place (fail count 1).
    std::fs::remove_file(dir.join(format!("rsctmp{host}")).join("Dummy-d1.state")).expect("state file");
    eventually("the failure was never recovered", || async {
        let xml = cib_of(&c.run_dirs[0]).await.xml;
        let on = running_on(&dir, 3, "d1");
        if xml.contains(r#"name="fail-count-d1#monitor_1000" value="1""#) && on == [host] && started(&xml) {
            Ok(())
        } else {
            Err(format!("running on {on:?}:\n{xml}"))
        }
    })
    .await;

    // Cleanup forgets the failure everywhere; the probes find it running where it is (no restart).
    let done = ask(&c.run_dirs[2], Request::ResourceCleanup { rsc: "d1".into(), node: None }).await;
    assert!(matches!(&done, Response::Done(_)), "{done:?}");
    eventually("cleanup never took effect", || async {
        let xml = cib_of(&c.run_dirs[0]).await.xml;
        let probed = xml.matches(r#"id="d1_last_0" operation="monitor""#).count();
        if !xml.contains("fail-count-d1") && probed == 3 && xml.contains(r#"id="d1_monitor_1000""#) {
            Ok(())
        } else {
            Err(xml)
        }
    })
    .await;
    assert_eq!(running_on(&dir, 3, "d1"), [host]);

    // The node running it crashes: with fencing off the survivors start it elsewhere.
    c.tasks[host as usize - 1].abort();
    eventually("d1 never moved to a survivor", || async {
        let on: Vec<u32> = running_on(&dir, 3, "d1").into_iter().filter(|&n| n != host).collect();
        if on.len() == 1 { Ok(()) } else { Err(format!("survivors running it: {on:?}")) }
    })
    .await;
    for (i, s) in c.stops.drain(..).enumerate() {
        if i + 1 != host as usize {
            let _ = s.send(());
        }
    }
}

/// Three quorate nodes, d1 (1 s monitor, fencing off) running on node 3, which it prefers.
async fn three_nodes_running_d1_on_node3() -> (Cluster, std::path::PathBuf) {
    let mut c = start(3, 3).await;
    wait_view(&mut c, &[NodeId(1), NodeId(2), NodeId(3)]).await;
    wait_quorum(&c, "quorate", |s| s.quorate).await;
    let dir = c._dir.path().to_path_buf();
    let config = DUMMY_CONFIG.replace(
        "<constraints/>",
        r#"<constraints><rsc_location id="d1-on-3" rsc="d1" node="node3" score="100"/></constraints>"#,
    );
    let done = ask(&c.run_dirs[0], Request::CibReplaceConfiguration { xml: config, if_epoch: None }).await;
    assert!(matches!(&done, Response::Done(_)), "{done:?}");
    eventually("d1 never ran on node3", || async {
        let on = running_on(&dir, 3, "d1");
        if on == [3] { Ok(()) } else { Err(format!("running on {on:?}")) }
    })
    .await;
    (c, dir)
}

#[tokio::test]
async fn a_node_left_without_quorum_stops_its_resources() {
    let (mut c, dir) = three_nodes_running_d1_on_node3().await;
    // Nodes 1 and 2 stop: node 3 alone has 1 of 3 votes; no-quorum-policy=stop (the default).
    for s in c.stops.drain(..2) {
        let _ = s.send(());
    }
    let d3 = c.run_dirs[2].clone();
    eventually("node 3 stayed quorate", || async {
        if quorum_of_async(&d3).await.status.quorate { Err("quorate".into()) } else { Ok(()) }
    })
    .await;
    eventually("node 3 kept running d1 without quorum", || async {
        let on = running_on(&dir, 3, "d1");
        if on.is_empty() { Ok(()) } else { Err(format!("running on {on:?}")) }
    })
    .await;
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn a_node_that_stops_hands_its_resources_over_before_it_leaves() {
    let (mut c, dir) = three_nodes_running_d1_on_node3().await;
    // Node 3 is asked to stop: the DC moves d1 away; node 3 leaves once nothing runs there (the
    // start on a survivor may complete after it left).
    let _ = c.stops.remove(2).send(());
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let on = running_on(&dir, 3, "d1");
        assert!(on.len() <= 1, "d1 runs on {on:?} at once");
        if seen.last() != Some(&on) {
            seen.push(on.clone());
        }
        let left = c.ports[0].views.borrow().as_ref().is_some_and(|v| v.members == [NodeId(1), NodeId(2)]);
        if left {
            assert!(!on.contains(&3), "node 3 left while d1 still ran there: {seen:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node 3 never left; d1 on {seen:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eventually("d1 never started on a survivor", || async {
        let on = running_on(&dir, 3, "d1");
        if on.len() == 1 && on[0] != 3 { Ok(()) } else { Err(format!("running on {on:?}")) }
    })
    .await;
    eventually("node 3's clean departure never recorded", || async {
        let xml = cib_of(&c.run_dirs[0]).await.xml;
        let down = r#"<node_state id="3" uname="node3" in_ccm="false" crmd="offline" join="down" expected="down""#;
        if xml.contains(down) { Ok(()) } else { Err(xml) }
    })
    .await;
    for s in c.stops.drain(..) {
        let _ = s.send(());
    }
}
