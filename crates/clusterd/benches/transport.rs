//! The transport choice, measured: 1 KiB ring datagrams between two endpoints on loopback,
//! (a) QUIC datagrams (quinn, TLS 1.3 with mutual authentication from a cluster CA made with
//! rcgen, ring provider) and (b) plain UDP sealed with ChaCha20-Poly1305 (what clusterd uses).
//! Prints round-trip p50 / p99 and one-way throughput for each.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use tokio::net::UdpSocket;

const SIZE: usize = 1024;
const PINGS: usize = 5000;
const BLAST: usize = 100_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        println!("transport: 1 KiB datagrams over loopback, {PINGS} round trips, {BLAST} one-way");
        let (rtt, tput, lost) = udp_aead().await;
        report("UDP + ChaCha20-Poly1305", &rtt, tput, lost);
        let (rtt, tput, lost) = quic().await;
        report("QUIC datagrams (quinn, mutual TLS)", &rtt, tput, lost);
        println!("largest QUIC datagram on this path: {:?} bytes (ring batches are up to 32 KiB)", quic_max().await);
    });
}

fn report(name: &str, rtt: &[Duration], tput: f64, lost: usize) {
    let mut v = rtt.to_vec();
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "  {name:36} round trip p50 {:6.1} us  p99 {:6.1} us   one-way {:8.0} msg/s ({lost} lost)",
        p(0.5),
        p(0.99),
        tput
    );
}

fn free_addr() -> SocketAddr {
    StdUdp::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port")
}

async fn udp_aead() -> (Vec<Duration>, f64, usize) {
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let ba = b.local_addr().expect("addr");
    let key = ChaCha20Poly1305::new(Key::from_slice(&[3u8; 32]));
    let seal = |k: &ChaCha20Poly1305, n: u64, body: &[u8]| -> Vec<u8> {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_le_bytes());
        let mut out = body.to_vec();
        let tag = k.encrypt_in_place_detached(Nonce::from_slice(&nonce), &n.to_le_bytes(), &mut out).expect("seal");
        out.extend_from_slice(&tag);
        out.extend_from_slice(&n.to_le_bytes());
        out
    };
    let open = |k: &ChaCha20Poly1305, d: &[u8]| -> Option<Vec<u8>> {
        let (rest, n) = d.split_at(d.len() - 8);
        let (body, tag) = rest.split_at(rest.len() - 16);
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(n);
        let mut out = body.to_vec();
        k.decrypt_in_place_detached(Nonce::from_slice(&nonce), n, &mut out, Tag::from_slice(tag)).ok()?;
        Some(out)
    };
    // Echo server: opens and re-seals.
    let kb = key.clone();
    let bs = b.clone();
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut n = 1u64 << 40;
        loop {
            let Ok((len, from)) = bs.recv_from(&mut buf).await else { return };
            if let Some(p) = open(&kb, &buf[..len])
                && p[0] == 1
            {
                n += 1;
                let _ = bs.send_to(&seal(&kb, n, &p), from).await;
            }
        }
    });
    let mut rtt = Vec::with_capacity(PINGS);
    let mut buf = vec![0u8; 65536];
    let mut body = vec![0u8; SIZE];
    body[0] = 1;
    for i in 0..PINGS as u64 {
        let t = Instant::now();
        a.send_to(&seal(&key, i, &body), ba).await.expect("send");
        let (len, _) = a.recv_from(&mut buf).await.expect("recv");
        assert!(open(&key, &buf[..len]).is_some());
        rtt.push(t.elapsed());
    }
    echo.abort();
    // One-way throughput: b counts what it can open.
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c2, kb) = (counter.clone(), key.clone());
    let b2 = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b2a = b2.local_addr().expect("addr");
    let rx = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(300), b2.recv_from(&mut buf)).await {
            if open(&kb, &buf[..len]).is_some() {
                c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    body[0] = 2;
    let t = Instant::now();
    for i in 0..BLAST as u64 {
        let _ = a.send_to(&seal(&key, 1_000_000 + i, &body), b2a).await;
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _ = rx.await;
    let got = counter.load(std::sync::atomic::Ordering::Relaxed);
    (rtt, got as f64 / t.elapsed().saturating_sub(Duration::from_millis(300)).as_secs_f64(), BLAST - got)
}

struct Pki {
    ca: rustls::pki_types::CertificateDer<'static>,
    certs: Vec<(rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>)>,
}

fn pki(nodes: usize) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "cluster CA");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let certs = (1..=nodes)
        .map(|i| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(vec![format!("node{i}")]).expect("params");
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert.der().clone(), rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        })
        .collect();
    Pki { ca: ca.der().clone(), certs }
}

fn endpoint(pki: &Pki, me: usize, addr: SocketAddr) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let roots = Arc::new(roots);
    let (cert, key) = &pki.certs[me];
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .expect("verifier");
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .expect("server cert");
    server.alpn_protocols = vec![b"ring".to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.clone()], key.clone_key())
        .expect("client cert");
    client.alpn_protocols = vec![b"ring".to_vec()];
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(16 << 20));
    transport.datagram_send_buffer_size(16 << 20);
    let transport = Arc::new(transport);
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server).expect("quic server"),
    ));
    sc.transport_config(transport.clone());
    let mut cc = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client).expect("quic client"),
    ));
    cc.transport_config(transport);
    let mut ep = quinn::Endpoint::server(sc, addr).expect("endpoint");
    ep.set_default_client_config(cc);
    ep
}

async fn connected() -> (quinn::Connection, quinn::Connection, quinn::Endpoint, quinn::Endpoint) {
    let p = pki(2);
    let (aa, ba) = (free_addr(), free_addr());
    let a = endpoint(&p, 0, aa);
    let b = endpoint(&p, 1, ba);
    let accept = tokio::spawn({
        let b = b.clone();
        async move { b.accept().await.expect("incoming").await.expect("accepted") }
    });
    let ca = a.connect(ba, "node2").expect("connect").await.expect("handshake");
    let cb = accept.await.expect("join");
    (ca, cb, a, b)
}

async fn quic() -> (Vec<Duration>, f64, usize) {
    let (ca, cb, _a, _b) = connected().await;
    let echo = tokio::spawn({
        let cb = cb.clone();
        async move {
            while let Ok(d) = cb.read_datagram().await {
                if d[0] == 1 && cb.send_datagram(d).is_err() {
                    return;
                }
            }
        }
    });
    let mut body = vec![0u8; SIZE];
    body[0] = 1;
    let body = bytes::Bytes::from(body);
    let mut rtt = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = Instant::now();
        ca.send_datagram(body.clone()).expect("send");
        let _ = tokio::time::timeout(Duration::from_secs(1), ca.read_datagram()).await;
        rtt.push(t.elapsed());
    }
    echo.abort();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rx = tokio::spawn({
        let (cb, c2) = (cb.clone(), counter.clone());
        async move {
            while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), cb.read_datagram()).await {
                c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let mut body = vec![0u8; SIZE];
    body[0] = 2;
    let body = bytes::Bytes::from(body);
    let t = Instant::now();
    for i in 0..BLAST {
        let _ = ca.send_datagram(body.clone());
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _ = rx.await;
    let got = counter.load(std::sync::atomic::Ordering::Relaxed);
    (rtt, got as f64 / t.elapsed().saturating_sub(Duration::from_millis(300)).as_secs_f64(), BLAST - got)
}

async fn quic_max() -> Option<usize> {
    let (ca, _cb, _a, _b) = connected().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ca.max_datagram_size()
}
