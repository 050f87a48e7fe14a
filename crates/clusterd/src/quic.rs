//! The QUIC transport: one quinn endpoint per link, TLS 1.3 with mutual authentication from
//! the cluster CA (ring crypto provider), ring frames in QUIC datagrams, and frames larger than
//! a datagram on a unidirectional stream each.
//!
//! Between two nodes, on each link, the lower id connects and the higher id accepts. The client
//! checks that the server's certificate is issued by the cluster CA for `node<id>` of the peer
//! it dialled; the server checks that the client's certificate is issued by the cluster CA for
//! `node<id>` of the node whose configured address on that link the connection comes from. A connection
//! that dies (peer restarted, partition) is dialled again every 200 ms.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use wire::{LinkId, NodeId};

use crate::node::{Incoming, NodeError};

/// Reads one `wire` frame (at most `max` bytes of body) from a QUIC stream.
pub(crate) async fn read_frame(s: &mut quinn::RecvStream, max: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; wire::FRAME_HEADER_LEN];
    s.read_exact(&mut buf).await.ok()?;
    let h = wire::decode_header(&buf).ok()?;
    if h.body_len > max {
        return None;
    }
    buf.resize(h.frame_len(), 0);
    s.read_exact(&mut buf[wire::FRAME_HEADER_LEN..]).await.ok()?;
    Some(buf)
}

/// Largest frame accepted on a stream.
const MAX_STREAM_FRAME: usize = 2 << 20;

/// The cluster CA certificate and this node's certificate and key.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial { ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone_key() }
    }
}

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Generation failed.
    #[error("cannot make certificates: {0}")]
    Generate(String),
}

impl TlsMaterial {
    /// This side's certificate.
    pub(crate) fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Reads PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsMaterial, CertError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| CertError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        Ok(TlsMaterial {
            ca: CertificateDer::from_pem_file(ca).map_err(|e| err(ca, &e))?,
            cert: CertificateDer::from_pem_file(cert).map_err(|e| err(cert, &e))?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, &e))?,
        })
    }
}

/// Makes a cluster CA and one certificate per node id in `ids`, written to `dir` as `ca.pem`,
/// `ca.key`, `node<id>.pem` and `node<id>.key` (keys mode 0600).
pub fn gen_certs(dir: &Path, ids: &[u32]) -> Result<(), CertError> {
    let leaves: Vec<(String, String)> = ids.iter().map(|id| (format!("node{id}"), format!("node{id}"))).collect();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| CertError::Generate(e.to_string()))?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "clusterd cluster CA");
    gen_ca_and_leaves(dir, ca, &leaves)
}

/// Makes an arbiter CA, the arbiter's certificate (`qnetd.pem`/`qnetd.key`, name `qnetd`) and
/// one client certificate per node of `cluster` (`<cluster>-node<id>.pem`, name
/// `node<id>.<cluster>`), which is how the arbiter learns a client's cluster and node id. With no
/// ids, only the CA and the arbiter's certificate (nodes then join with a join code).
pub fn gen_arbiter_certs(dir: &Path, cluster: &str, ids: &[u32]) -> Result<(), CertError> {
    if !valid_label(cluster) {
        return Err(CertError::Generate(format!(
            "cluster name {cluster:?} cannot appear in a certificate name; use letters, digits and '-'"
        )));
    }
    let mut leaves = vec![("qnetd".to_string(), "qnetd".to_string())];
    leaves.extend(ids.iter().map(|id| (format!("{cluster}-node{id}"), arbiter_client_name(cluster, NodeId(*id)))));
    let ca = crate::join::arbiter_ca_params().map_err(|e| CertError::Generate(e.to_string()))?;
    gen_ca_and_leaves(dir, ca, &leaves)
}

/// Makes only the arbiter CA and the arbiter's certificate in `dir` (nodes then get theirs with
/// a join code).
pub fn gen_arbiter_server_certs(dir: &Path) -> Result<(), CertError> {
    let ca = crate::join::arbiter_ca_params().map_err(|e| CertError::Generate(e.to_string()))?;
    gen_ca_and_leaves(dir, ca, &[("qnetd".to_string(), "qnetd".to_string())])
}

/// The certificate name of node `id` of `cluster` at the arbiter.
pub(crate) fn arbiter_client_name(cluster: &str, id: NodeId) -> String {
    format!("node{}.{cluster}", id.0)
}

/// Whether `s` is one DNS label (so that it can be part of a certificate name).
pub(crate) fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Makes a CA (`ca.pem`, `ca.key`) from `ca_params` and leaf certificates `(file stem, DNS name)` in `dir`.
fn gen_ca_and_leaves(
    dir: &Path,
    ca_params: rcgen::CertificateParams,
    leaves: &[(String, String)],
) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let write = |name: String, text: String, secret: bool| -> Result<(), CertError> {
        let path = dir.join(&name);
        let io = |e: std::io::Error| CertError::File { path: path.clone(), message: e.to_string() };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)
    };
    std::fs::create_dir_all(dir).map_err(|e| CertError::File { path: dir.to_path_buf(), message: e.to_string() })?;
    let ca_key = rcgen::KeyPair::generate().map_err(g)?;
    let ca = ca_params.self_signed(&ca_key).map_err(g)?;
    write("ca.pem".into(), ca.pem(), false)?;
    write("ca.key".into(), ca_key.serialize_pem(), true)?;
    for (stem, name) in leaves {
        let key = rcgen::KeyPair::generate().map_err(g)?;
        let mut params = rcgen::CertificateParams::new(vec![name.clone()]).map_err(g)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name.clone());
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(g)?;
        write(format!("{stem}.pem"), cert.pem(), false)?;
        write(format!("{stem}.key"), key.serialize_pem(), true)?;
    }
    Ok(())
}

type Conns = Arc<Mutex<BTreeMap<(NodeId, LinkId), quinn::Connection>>>;

/// The running QUIC side of a node.
pub(crate) struct Quic {
    conns: Conns,
    _endpoints: Vec<quinn::Endpoint>,
    /// Handshakes that failed (no certificate from the cluster CA, wrong name, garbage).
    pub(crate) handshake_failures: Arc<AtomicU64>,
    /// Authenticated connections from an address that is no configured node on that link.
    pub(crate) refused: Arc<AtomicU64>,
}

fn configs(tls: &TlsMaterial) -> Result<(quinn::ServerConfig, quinn::ClientConfig), String> {
    tls_configs(tls, b"clusterd-ring/1", Duration::from_millis(250), Duration::from_secs(2), false)
}

/// QUIC server and client configurations with mutual TLS 1.3 from one CA: each side presents
/// `tls.cert` and accepts only certificates issued by `tls.ca`. With `anonymous_clients`, the
/// server also accepts clients without a certificate (they are then identified as nobody: see
/// [`certified_name`]).
pub(crate) fn tls_configs(
    tls: &TlsMaterial,
    alpn: &[u8],
    keep_alive: Duration,
    idle: Duration,
    anonymous_clients: bool,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.ca.clone()).map_err(|e| format!("ca: {e}"))?;
    let roots = Arc::new(roots);
    let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if anonymous_clients {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| format!("client verifier: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![tls.cert.clone()], tls.key.clone_key())
        .map_err(|e| format!("node certificate: {e}"))?;
    server.alpn_protocols = vec![alpn.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![tls.cert.clone()], tls.key.clone_key())
        .map_err(|e| format!("node certificate: {e}"))?;
    client.alpn_protocols = vec![alpn.to_vec()];
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(8 << 20));
    transport.datagram_send_buffer_size(8 << 20);
    transport.keep_alive_interval(Some(keep_alive));
    // Cluster links and the arbiter are a LAN or a near WAN away: the default 333 ms guess makes
    // a handshake whose first packet found the peer not yet listening wait about a second before
    // trying again, which leaves a node's redundant links down for that long after a start.
    transport.initial_rtt(Duration::from_millis(10));
    let idle = quinn::IdleTimeout::try_from(idle).map_err(|e| e.to_string())?;
    transport.max_idle_timeout(Some(idle));
    let transport = Arc::new(transport);
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(|e| e.to_string())?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(server));
    sc.transport_config(transport.clone());
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
    let mut cc = quinn::ClientConfig::new(Arc::new(client));
    cc.transport_config(transport);
    Ok((sc, cc))
}

/// Whether the peer's certificate (already verified against the cluster CA) names `node<id>`.
fn certified_as(conn: &quinn::Connection, peer: NodeId) -> bool {
    certified_name(conn, &format!("node{}", peer.0))
}

/// Whether the peer's certificate (already verified against the CA) is valid for `name`.
pub(crate) fn certified_name(conn: &quinn::Connection, name: &str) -> bool {
    let Some(identity) = conn.peer_identity() else { return false };
    let Ok(chain) = identity.downcast::<Vec<CertificateDer<'static>>>() else { return false };
    let Some(leaf) = chain.first() else { return false };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return false };
    let Ok(name) = rustls::pki_types::ServerName::try_from(name.to_string()) else { return false };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

fn register(conns: &Conns, key: (NodeId, LinkId), conn: &quinn::Connection, tx: &mpsc::Sender<Incoming>) {
    if let Ok(mut m) = conns.lock() {
        m.insert(key, conn.clone());
    }
    let (from, link) = key;
    let (c, t) = (conn.clone(), tx.clone());
    tokio::spawn(async move {
        while let Ok(d) = c.read_datagram().await {
            if t.send(Incoming::Frame { from, link, bytes: d.to_vec() }).await.is_err() {
                return;
            }
        }
    });
    let (c, t) = (conn.clone(), tx.clone());
    tokio::spawn(async move {
        while let Ok(mut s) = c.accept_uni().await {
            let t = t.clone();
            tokio::spawn(async move {
                if let Ok(bytes) = s.read_to_end(MAX_STREAM_FRAME).await {
                    let _ = t.send(Incoming::Frame { from, link, bytes }).await;
                }
            });
        }
    });
}

fn unregister(conns: &Conns, key: (NodeId, LinkId), conn: &quinn::Connection) {
    if let Ok(mut m) = conns.lock()
        && m.get(&key).is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        m.remove(&key);
    }
}

impl Quic {
    /// Binds one endpoint per link and starts dialling and accepting.
    pub(crate) fn start(
        me: NodeId,
        my_links: &[SocketAddr],
        addr_of: &BTreeMap<(NodeId, LinkId), SocketAddr>,
        by_addr: &BTreeMap<SocketAddr, (NodeId, LinkId)>,
        tls: &TlsMaterial,
        tx: mpsc::Sender<Incoming>,
    ) -> Result<Quic, NodeError> {
        let (sc, cc) = configs(tls).map_err(NodeError::Config)?;
        let conns: Conns = Arc::default();
        let handshake_failures: Arc<AtomicU64> = Arc::default();
        let refused: Arc<AtomicU64> = Arc::default();
        let mut endpoints = Vec::new();
        for (i, addr) in my_links.iter().enumerate() {
            let link = LinkId(i as u8);
            let mut ep = quinn::Endpoint::server(sc.clone(), *addr).map_err(|source| NodeError::Bind {
                link,
                addr: *addr,
                source,
            })?;
            ep.set_default_client_config(cc.clone());
            // Accept from lower ids.
            {
                let (ep, conns, tx, by_addr) = (ep.clone(), conns.clone(), tx.clone(), by_addr.clone());
                let (failures, refused) = (handshake_failures.clone(), refused.clone());
                tokio::spawn(async move {
                    while let Some(incoming) = ep.accept().await {
                        let (conns, tx, by_addr) = (conns.clone(), tx.clone(), by_addr.clone());
                        let (failures, refused) = (failures.clone(), refused.clone());
                        tokio::spawn(async move {
                            let conn = match incoming.await {
                                Ok(c) => c,
                                Err(e) => {
                                    let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                                    if n.is_power_of_two() {
                                        tracing::warn!(%link, error = %e, count = n, "refused a connection that failed the TLS handshake (certificate not from the cluster CA?)");
                                    }
                                    return;
                                }
                            };
                            match by_addr.get(&conn.remote_address()) {
                                Some(&(peer, l)) if l == link && peer < me && certified_as(&conn, peer) => {
                                    register(&conns, (peer, link), &conn, &tx);
                                    let _ = conn.closed().await;
                                    unregister(&conns, (peer, link), &conn);
                                }
                                _ => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                    conn.close(1u32.into(), b"not a configured peer on this link");
                                }
                            }
                        });
                    }
                });
            }
            // Dial higher ids.
            for (&(peer, l), &peer_addr) in addr_of {
                if l != link || peer <= me {
                    continue;
                }
                let (ep, conns, tx) = (ep.clone(), conns.clone(), tx.clone());
                tokio::spawn(async move {
                    loop {
                        if let Ok(connecting) = ep.connect(peer_addr, &format!("node{}", peer.0))
                            && let Ok(conn) = connecting.await
                        {
                            register(&conns, (peer, link), &conn, &tx);
                            let _ = conn.closed().await;
                            unregister(&conns, (peer, link), &conn);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
            }
            endpoints.push(ep);
        }
        Ok(Quic { conns, _endpoints: endpoints, handshake_failures, refused })
    }

    /// Sends a frame: as a datagram when it fits, else on a stream of its own. Returns false
    /// when there is no connection to the peer on that link.
    pub(crate) fn send(&self, to: NodeId, link: LinkId, bytes: Vec<u8>) -> bool {
        let Some(conn) = self.conns.lock().ok().and_then(|m| m.get(&(to, link)).cloned()) else { return false };
        if conn.max_datagram_size().is_some_and(|max| bytes.len() <= max) {
            return conn.send_datagram(bytes::Bytes::from(bytes)).is_ok();
        }
        tokio::spawn(async move {
            if let Ok(mut s) = conn.open_uni().await
                && s.write_all(&bytes).await.is_ok()
            {
                let _ = s.finish();
            }
        });
        true
    }
}
