//! Join codes: how a cluster gets its arbiter certificates without anyone copying files.
//!
//! `crmctl arbiter token create` asks qnetd for a code: `hc1-` and the base32 of a 16-byte
//! secret followed by the first 16 bytes of the SHA-256 of the arbiter's own certificate. A
//! cluster node holding the code connects to the arbiter without a client certificate, accepts
//! the arbiter only if its certificate matches the pin, and sends the secret, its cluster name,
//! its node id and a public key it has just made. If the code is known, unexpired and not bound
//! to another cluster, the arbiter signs a certificate named `node<id>.<cluster>` for that key
//! with its CA and returns it with the CA certificate. Private keys never leave the host that
//! made them. A connection without a certificate can do nothing else: the vote is only ever
//! given to a connection whose certificate names the node it speaks for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wire::{Instant, NodeId};

use crate::config::TlsPaths;
use crate::quic::{CertError, arbiter_client_name, read_frame, valid_label};

/// The `wire` frame kind of enrollment messages.
pub(crate) const ENROLL_WIRE_KIND: u8 = 0x52;
/// Largest enrollment frame body.
pub(crate) const MAX_ENROLL_FRAME: usize = 16 * 1024;
/// The prefix of every join code (and its format version).
const PREFIX: &str = "hc1-";
/// Longest lifetime of a join code.
pub const MAX_TOKEN_TTL: StdDuration = StdDuration::from_secs(7 * 24 * 3600);

/// A join code: the secret that admits a cluster, and the pin of the arbiter's certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct JoinToken {
    /// Proves to the arbiter that its administrator let this cluster in.
    pub secret: [u8; 16],
    /// The first 16 bytes of the SHA-256 of the arbiter's certificate (DER).
    pub pin: [u8; 16],
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret by accident.
        f.debug_struct("JoinToken").field("pin", &data_encoding::HEXLOWER.encode(&self.pin)).finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&self.secret);
        bytes[16..].copy_from_slice(&self.pin);
        write!(f, "{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
    }
}

/// Why a join code could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("token: {0}; paste the whole code printed by `crmctl arbiter token create` on the arbiter host")]
pub struct TokenError(String);

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<JoinToken, TokenError> {
        let s = s.trim();
        let body = s
            .strip_prefix(PREFIX)
            .or_else(|| s.strip_prefix(&PREFIX.to_ascii_uppercase()))
            .ok_or_else(|| TokenError(format!("it does not start with {PREFIX}")))?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| TokenError("it is not valid base32 (a character was lost or changed?)".into()))?;
        if bytes.len() != 32 {
            return Err(TokenError(format!("it holds {} bytes instead of 32 (cut short?)", bytes.len())));
        }
        let mut t = JoinToken { secret: [0; 16], pin: [0; 16] };
        t.secret.copy_from_slice(&bytes[..16]);
        t.pin.copy_from_slice(&bytes[16..]);
        Ok(t)
    }
}

impl JoinToken {
    /// A fresh code for the arbiter whose certificate is `cert`.
    pub fn new(cert: &CertificateDer<'_>) -> Result<JoinToken, String> {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness available: {e}"))?;
        Ok(JoinToken { secret, pin: pin_of(cert) })
    }
}

/// The pin of a certificate: the first 16 bytes of its SHA-256.
pub(crate) fn pin_of(cert: &CertificateDer<'_>) -> [u8; 16] {
    let digest = Sha256::digest(cert.as_ref());
    let mut pin = [0u8; 16];
    pin.copy_from_slice(&digest[..16]);
    pin
}

/// What a node asks the arbiter on a connection without a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EnrollRequest {
    /// Sign `public_key` (an uncompressed P-256 point) for `node<node>.<cluster>`.
    Enroll { secret: [u8; 16], cluster: String, node: NodeId, public_key: Vec<u8> },
}

/// The arbiter's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EnrollReply {
    /// The node's certificate and the arbiter CA, both PEM.
    Issued { ca_pem: String, cert_pem: String },
    /// Why not, in words.
    Refused { reason: String },
}

/// The join codes qnetd has handed out (keyed by the SHA-256 of the secret, so a lookup takes
/// the same time whatever the guess). Codes live in memory: a restart of qnetd forgets them.
#[derive(Debug, Default)]
pub(crate) struct TokenBook {
    tokens: BTreeMap<[u8; 32], TokenEntry>,
}

#[derive(Debug)]
struct TokenEntry {
    expires: Instant,
    cluster: Option<String>,
    nodes: BTreeSet<NodeId>,
}

fn secret_key(secret: &[u8; 16]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl TokenBook {
    /// Remembers a new code, valid until `now + ttl`, for `cluster` (or the first cluster to use it).
    pub(crate) fn insert(&mut self, now: Instant, secret: &[u8; 16], ttl: wire::Duration, cluster: Option<String>) {
        self.purge(now);
        self.tokens.insert(secret_key(secret), TokenEntry { expires: now + ttl, cluster, nodes: BTreeSet::new() });
    }

    /// Whether `secret` admits `node` of `cluster` now. The first use binds the code to that
    /// cluster; every node of it may then enroll (again, after a failed attempt) until expiry.
    pub(crate) fn admit(&mut self, now: Instant, secret: &[u8; 16], cluster: &str, node: NodeId) -> Result<(), String> {
        self.purge(now);
        let Some(t) = self.tokens.get_mut(&secret_key(secret)) else {
            return Err("unknown or expired join code; make a new one with `crmctl arbiter token create` on the arbiter host (codes also end when qnetd restarts)".into());
        };
        match &t.cluster {
            Some(c) if c != cluster => {
                return Err(format!(
                    "this join code was made for cluster {c:?}, not {cluster:?}; make one for this cluster"
                ));
            }
            Some(_) => {}
            None => t.cluster = Some(cluster.to_string()),
        }
        t.nodes.insert(node);
        Ok(())
    }

    /// Codes still valid.
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    fn purge(&mut self, now: Instant) {
        self.tokens.retain(|_, t| t.expires > now);
    }
}

/// The name of the arbiter CA (the same in every certificate it issues).
const ARBITER_CA_NAME: &str = "qnetd arbiter CA";

/// The parameters of an arbiter CA certificate. Built the same way at creation and when qnetd
/// signs node certificates, so that issuer names match byte for byte.
pub(crate) fn arbiter_ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, ARBITER_CA_NAME);
    Ok(p)
}

/// A raw P-256 public key sent by an enrolling node.
struct P256Key<'a>(&'a [u8]);

impl rcgen::PublicKeyData for P256Key<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Signs node certificates with the arbiter CA.
pub(crate) struct Issuer {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    ca_pem: String,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer").finish_non_exhaustive()
    }
}

impl Issuer {
    /// Reads the arbiter CA certificate and its key, and checks that they belong together.
    pub(crate) fn load(ca: &Path, ca_key: &Path) -> Result<Issuer, CertError> {
        let file = |path: &Path, message: String| CertError::File { path: path.to_path_buf(), message };
        let ca_pem = std::fs::read_to_string(ca).map_err(|e| file(ca, e.to_string()))?;
        let key_pem = std::fs::read_to_string(ca_key).map_err(|e| file(ca_key, e.to_string()))?;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| file(ca_key, e.to_string()))?;
        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| file(ca, e.to_string()))?;
        let anchor =
            webpki::anchor_from_trusted_cert(&der).map_err(|e| file(ca, format!("not a CA certificate: {e:?}")))?;
        if !key.public_key_der().ends_with(anchor.subject_public_key_info.as_ref()) {
            return Err(file(ca_key, format!("this key does not belong to the CA certificate {}", ca.display())));
        }
        let g = |e: rcgen::Error| CertError::Generate(e.to_string());
        let params = arbiter_ca_params().map_err(g)?;
        let rebuilt = params.self_signed(&key).map_err(g)?;
        Ok(Issuer { ca: rebuilt, ca_key: key, ca_pem })
    }

    /// A certificate for `node<node>.<cluster>` with `public_key` (an uncompressed P-256 point).
    pub(crate) fn issue(&self, cluster: &str, node: NodeId, public_key: &[u8]) -> Result<String, String> {
        if !valid_label(cluster) {
            return Err(format!(
                "cluster name {cluster:?} cannot appear in a certificate; use letters, digits and '-'"
            ));
        }
        if node.0 == 0 {
            return Err("node id 0 is reserved".into());
        }
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err("the public key is not an uncompressed P-256 point".into());
        }
        let name = arbiter_client_name(cluster, node);
        let mut params = rcgen::CertificateParams::new(vec![name.clone()]).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&P256Key(public_key), &self.ca, &self.ca_key).map_err(|e| e.to_string())?;
        Ok(cert.pem())
    }

    /// The CA certificate, PEM.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// Accepts exactly the server certificate whose SHA-256 starts with the pin (the enrolling node
/// has no CA to check against yet; the join code carries the pin instead).
#[derive(Debug)]
struct PinnedServer {
    pin: [u8; 16],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if pin_of(end_entity) == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the arbiter's certificate does not match the join code (wrong host, or a new arbiter certificate?)"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn enroll_client_config(pin: [u8; 16]) -> Result<quinn::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { pin, provider }))
        .with_no_client_auth();
    client.alpn_protocols = vec![crate::arbiterd::ARBITER_ALPN.to_vec()];
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(client)))
}

/// Where a node keeps its arbiter certificates: `arbiter/` next to its clusterd.toml.
pub(crate) fn cert_dir(config_path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join("arbiter")
}

/// The files of [`cert_dir`].
pub(crate) fn cert_paths(dir: &Path) -> TlsPaths {
    TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("node.pem"), key: dir.join("node.key") }
}

/// Makes a key, has the arbiter at `host:port` sign it for `node` of `cluster` using `token`,
/// and writes `ca.pem`, `node.pem` and `node.key` (0600) into `dir` (created, emptied first).
pub(crate) async fn enroll(
    host: &str,
    port: u16,
    token: &JoinToken,
    cluster: &str,
    node: NodeId,
    dir: &Path,
) -> Result<TlsPaths, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve the arbiter {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("the arbiter {host} has no address"))?;
    let bind: std::net::SocketAddr =
        if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(|e| format!("{e}"))?;
    let ep = quinn::Endpoint::client(bind).map_err(|e| format!("cannot open a socket: {e}"))?;
    let cc = enroll_client_config(token.pin)?;
    let exchange = async {
        let conn = ep
            .connect_with(cc, addr, "qnetd")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("cannot reach the arbiter at {addr}: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let req = EnrollRequest::Enroll {
            secret: token.secret,
            cluster: cluster.to_string(),
            node,
            public_key: key.public_key_raw().to_vec(),
        };
        let bytes = wire::encode(ENROLL_WIRE_KIND, &req).map_err(|e| e.to_string())?;
        send.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        let frame = read_frame(&mut recv, MAX_ENROLL_FRAME).await.ok_or("the arbiter closed the connection")?;
        conn.close(0u32.into(), b"enrolled");
        wire::decode::<EnrollReply>(ENROLL_WIRE_KIND, &frame).map_err(|e| format!("bad answer from the arbiter: {e}"))
    };
    let reply = tokio::time::timeout(StdDuration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("the arbiter at {addr} did not answer within 10 s"))??;
    let _ = tokio::time::timeout(StdDuration::from_secs(1), ep.wait_idle()).await;
    let (ca_pem, cert_pem) = match reply {
        EnrollReply::Issued { ca_pem, cert_pem } => (ca_pem, cert_pem),
        EnrollReply::Refused { reason } => return Err(format!("the arbiter refused: {reason}")),
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paths = cert_paths(dir);
    durable::write_atomic(&paths.ca, ca_pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
    durable::write_atomic(&paths.cert, cert_pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
    durable::write_atomic(&paths.key, key.serialize_pem().as_bytes(), 0o600).map_err(|e| e.to_string())?;
    // What was written must work as it will be used.
    crate::quic::TlsMaterial::load(&paths.ca, &paths.cert, &paths.key).map_err(|e| e.to_string())?;
    Ok(paths)
}

/// `clusterd.toml.new`: the configuration prepared for a cluster-wide change, not yet in use.
fn pending_config(config_path: &Path) -> PathBuf {
    let mut name = config_path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    config_path.with_file_name(name)
}

fn pending_cert_dir(config_path: &Path) -> PathBuf {
    cert_dir(config_path).with_extension("new")
}

/// The `[quorum.device]` a join request leads to on this node.
pub(crate) fn device_section(config_path: &Path, req: &crate::control::DeviceAddRequest) -> crate::DeviceSection {
    crate::DeviceSection {
        host: req.host.clone(),
        port: req.port,
        algorithm: req.algorithm.clone(),
        tie_breaker: req.tie_breaker.clone(),
        votes: req.votes,
        tls: cert_paths(&cert_dir(config_path)),
        heuristics: Vec::new(),
        heuristics_interval_ms: 3000,
    }
}

/// Checks an arbiter change against this node's configuration file without changing anything.
pub(crate) fn check_device_change(config_path: &Path, change: &crate::admin::DeviceChange) -> Result<(), String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    match change {
        crate::admin::DeviceChange::Add(req) => {
            req.token.parse::<JoinToken>().map_err(|e| e.to_string())?;
            crate::FileConfig::add_device_section(&text, &device_section(config_path, req))
        }
        crate::admin::DeviceChange::Remove => crate::FileConfig::remove_device_section(&text),
    }
    .map(|_| ())
    .map_err(|p| p.join("; "))
}

/// Phase one of a removal on this node: write `clusterd.toml.new` without `[quorum.device]`.
pub(crate) fn prepare_removal(config_path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let new = crate::FileConfig::remove_device_section(&text)
        .map_err(|p| format!("{}: {}", config_path.display(), p.join("; ")))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(config_path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644)
    };
    let pending = pending_config(config_path);
    durable::write_atomic(&pending, new.as_bytes(), mode).map_err(|e| format!("{}: {e}", pending.display()))
}

/// Phase two of a removal: the new configuration into place; the certificates move aside to
/// `arbiter.removed/`.
pub(crate) fn commit_removal(config_path: &Path) -> Result<crate::FileConfig, String> {
    durable::rename(&pending_config(config_path), config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let dir = cert_dir(config_path);
    if dir.exists() {
        // Best effort: the configuration in use no longer names these certificates.
        let aside = dir.with_extension("removed");
        let _ = std::fs::remove_dir_all(&aside);
        let _ = durable::rename(&dir, &aside);
    }
    crate::FileConfig::load(config_path).map_err(|e| e.to_string())
}

/// Phase one on this node: fetch the certificate into `arbiter.new/` and write the new
/// configuration to `clusterd.toml.new`. Nothing in use changes.
pub(crate) async fn prepare_device(
    config_path: PathBuf,
    cluster: String,
    me: NodeId,
    req: crate::control::DeviceAddRequest,
) -> Result<(), String> {
    let token: JoinToken = req.token.parse().map_err(|e: TokenError| e.to_string())?;
    enroll(&req.host, req.port, &token, &cluster, me, &pending_cert_dir(&config_path)).await?;
    let text = std::fs::read_to_string(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let new = crate::FileConfig::add_device_section(&text, &device_section(&config_path, &req))
        .map_err(|p| format!("{}: {}", config_path.display(), p.join("; ")))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&config_path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644)
    };
    let pending = pending_config(&config_path);
    durable::write_atomic(&pending, new.as_bytes(), mode).map_err(|e| format!("{}: {e}", pending.display()))
}

/// Phase two: move the prepared certificate directory and configuration into place (an
/// `arbiter/` directory already there is kept as `arbiter.replaced/`) and return the new
/// configuration.
pub(crate) fn commit_device(config_path: &Path) -> Result<crate::FileConfig, String> {
    let dir = cert_dir(config_path);
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    if dir.exists() {
        let aside = dir.with_extension("replaced");
        let _ = std::fs::remove_dir_all(&aside);
        durable::rename(&dir, &aside).map_err(|e| io(&dir, e))?;
    }
    // Each rename is on disk before the next: the configuration never names certificates that a
    // crash could take back.
    durable::rename(&pending_cert_dir(config_path), &dir).map_err(|e| io(&dir, e))?;
    durable::rename(&pending_config(config_path), config_path).map_err(|e| io(config_path, e))?;
    crate::FileConfig::load(config_path).map_err(|e| e.to_string())
}

/// Throws away what [`prepare_device`] made.
pub(crate) fn discard_device(config_path: &Path) {
    let _ = std::fs::remove_dir_all(pending_cert_dir(config_path));
    let _ = std::fs::remove_file(pending_config(config_path));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_code_round_trips_and_damage_is_named() {
        let t = JoinToken { secret: [7; 16], pin: [9; 16] };
        let s = t.to_string();
        assert!(s.starts_with("hc1-") && s.len() == 4 + 52, "{s}");
        assert_eq!(s.parse::<JoinToken>(), Ok(t));
        assert_eq!(s.to_ascii_uppercase().parse::<JoinToken>(), Ok(t));
        assert!(!format!("{t:?}").contains("0707"), "Debug must not print the secret");
        let short = &s[..4 + 40];
        assert!(short.parse::<JoinToken>().unwrap_err().to_string().contains("25 bytes instead of 32"));
        let cut = &s[..s.len() - 1];
        assert!(cut.parse::<JoinToken>().unwrap_err().to_string().contains("base32"));
        assert!("xyz".parse::<JoinToken>().unwrap_err().to_string().contains("does not start with hc1-"));
        let mut bad = s.clone();
        bad.replace_range(10..11, "1");
        assert!(bad.parse::<JoinToken>().is_err());
    }

    #[test]
    fn a_code_binds_to_its_first_cluster_and_expires() {
        let mut book = TokenBook::default();
        let t0 = Instant::from_nanos(0);
        let s = [1u8; 16];
        book.insert(t0, &s, wire::Duration::from_secs(60), None);
        assert!(book.admit(t0, &[2; 16], "alpha", NodeId(1)).unwrap_err().contains("unknown or expired"));
        book.admit(t0, &s, "alpha", NodeId(1)).expect("first use");
        book.admit(t0, &s, "alpha", NodeId(2)).expect("another node of the same cluster");
        book.admit(t0, &s, "alpha", NodeId(1)).expect("a retry");
        assert!(book.admit(t0, &s, "beta", NodeId(1)).unwrap_err().contains("made for cluster \"alpha\""));
        let later = t0 + wire::Duration::from_secs(61);
        assert!(book.admit(later, &s, "alpha", NodeId(3)).unwrap_err().contains("expired"));
        assert_eq!(book.len(), 0);
        book.insert(t0, &s, wire::Duration::from_secs(60), Some("gamma".into()));
        assert!(book.admit(t0, &s, "alpha", NodeId(1)).is_err(), "bound at creation");
    }

    #[test]
    fn the_issuer_signs_certificates_the_arbiter_accepts_and_refuses_bad_keys() {
        let dir = std::env::temp_dir().join(format!("hc-join-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::gen_arbiter_certs(&dir, "alpha", &[]).expect("arbiter CA");
        let issuer = Issuer::load(&dir.join("ca.pem"), &dir.join("ca.key")).expect("loads");
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = issuer.issue("alpha", NodeId(2), key.public_key_raw()).expect("issued");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca");
        let anchor = webpki::anchor_from_trusted_cert(&ca).expect("anchor");
        let ee = webpki::EndEntityCert::try_from(&der).expect("parses");
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        ee.verify_for_usage(algs.all, &[anchor], &[], UnixTime::now(), webpki::KeyUsage::client_auth(), None, None)
            .expect("chains to the arbiter CA");
        let name = ServerName::try_from("node2.alpha").expect("name");
        ee.verify_is_valid_for_subject_name(&name).expect("named node2.alpha");
        assert!(issuer.issue("alpha", NodeId(2), &[4; 10]).unwrap_err().contains("P-256"));
        assert!(issuer.issue("a b", NodeId(2), key.public_key_raw()).is_err());
        // A key that is not the CA's is refused at load.
        std::fs::write(dir.join("other.key"), key.serialize_pem()).expect("write");
        let e = Issuer::load(&dir.join("ca.pem"), &dir.join("other.key")).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A real qnetd on loopback: a join code gets a certificate only from the pinned arbiter,
    /// and a connection without a certificate never gets past enrollment, let alone the vote.
    #[tokio::test]
    async fn an_anonymous_connection_may_enroll_with_a_code_and_nothing_else() {
        use crate::arbiterd::{QNETD_SOCKET, QnetdConfig, run_qnetd};
        use crate::control::{Request, Response};
        let dir = std::env::temp_dir().join(format!("hc-join-q-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::gen_arbiter_server_certs(&dir).expect("arbiter certificates");
        let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
        let cfg = QnetdConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            lease_ms: 500,
            run_dir: dir.join("run"),
            tls: TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("qnetd.pem"), key: dir.join("qnetd.key") },
            ca_key: Some(dir.join("ca.key")),
        };
        let tls = crate::TlsMaterial::load(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key).expect("tls");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let qnetd = tokio::spawn(run_qnetd(cfg, tls, async move {
            let _ = stopped.await;
        }));
        let sock = dir.join("run").join(QNETD_SOCKET);
        let token = tokio::task::spawn_blocking(move || {
            for _ in 0..200 {
                let req = Request::ArbiterTokenCreate { ttl_ms: 60_000, cluster: None };
                if let Ok(Response::Token { token, .. }) = crate::control::query_socket(&sock, &req) {
                    return token;
                }
                std::thread::sleep(StdDuration::from_millis(20));
            }
            panic!("qnetd did not answer");
        })
        .await
        .expect("token");
        let token: JoinToken = token.parse().expect("parses");

        // The wrong pin: the node refuses the arbiter, nothing is written.
        let wrong = JoinToken { pin: [0; 16], ..token };
        assert!(enroll("127.0.0.1", port, &wrong, "alpha", NodeId(1), &dir.join("n0")).await.is_err());
        assert!(!dir.join("n0").join("node.key").exists());
        // The wrong secret: the arbiter refuses.
        let guess = JoinToken { secret: [0; 16], ..token };
        let e = enroll("127.0.0.1", port, &guess, "alpha", NodeId(1), &dir.join("n0")).await.unwrap_err();
        assert!(e.contains("unknown or expired join code"), "{e}");

        // Without a certificate, a Hello (asking for the vote) is answered with a refusal.
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        let conn = ep
            .connect_with(enroll_client_config(token.pin).expect("config"), ([127, 0, 0, 1], port).into(), "qnetd")
            .expect("connect")
            .await
            .expect("handshake without a client certificate");
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let hello = quorum::arbiter::ClientMsg::Hello {
            cluster: "alpha".into(),
            node: NodeId(1),
            nodes: vec![NodeId(1), NodeId(2)],
            algorithm: quorum::arbiter::Algorithm::Ffsplit,
            tie_breaker: quorum::TieBreaker::Lowest,
        };
        let bytes = wire::encode(quorum::arbiter::ARBITER_WIRE_KIND, &hello).expect("encode");
        send.write_all(&bytes).await.expect("send");
        let frame = read_frame(&mut recv, MAX_ENROLL_FRAME).await.expect("an answer");
        match wire::decode::<EnrollReply>(ENROLL_WIRE_KIND, &frame).expect("decodes") {
            EnrollReply::Refused { reason } => assert!(reason.contains("may only send a join request"), "{reason}"),
            other => panic!("{other:?}"),
        }

        // The right code: a certificate for node1.alpha, and the key stays here.
        let paths = enroll("127.0.0.1", port, &token, "alpha", NodeId(1), &dir.join("n1")).await.expect("enrolled");
        let pem = std::fs::read_to_string(&paths.cert).expect("cert");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let ee = webpki::EndEntityCert::try_from(&der).expect("parses");
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("node1.alpha").expect("name")).expect("named");
        // The same code for another cluster is refused (bound at first use).
        let e = enroll("127.0.0.1", port, &token, "beta", NodeId(1), &dir.join("n2")).await.unwrap_err();
        assert!(e.contains("made for cluster \"alpha\""), "{e}");

        let _ = stop.send(());
        let _ = qnetd.await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
