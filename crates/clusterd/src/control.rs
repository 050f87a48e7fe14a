//! The local control socket: one request, one response, each a `wire` frame of kind [`KIND`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `wire` frame kind of control messages.
pub const KIND: u8 = 18;

/// File name of the control socket inside the run directory.
pub const SOCKET_NAME: &str = "clusterd.sock";

/// A request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// The membership status.
    MembershipStatus,
    /// The quorum status.
    QuorumStatus,
    /// Change expected votes cluster-wide (`crmctl quorum expected-votes N`).
    SetExpectedVotes(u32),
    /// The arbiter's clusters, nodes and votes (`qnetd status`).
    ArbiterStatus,
    /// A join code (`crmctl arbiter token create`), valid for `ttl_ms`, for `cluster` or for the
    /// first cluster that uses it.
    ArbiterTokenCreate {
        /// Lifetime in ms (1 s to 7 days).
        ttl_ms: u64,
        /// The cluster it is for.
        cluster: Option<String>,
    },
    /// Add an arbiter to every node with a join code (`crmctl quorum device add ... token=`).
    DeviceAdd(DeviceAddRequest),
    /// Remove the arbiter from every node (`crmctl quorum device remove`).
    DeviceRemove,
    /// The CIB (`crmctl config export`, `crmctl simulate --live`).
    CibQuery,
    /// Replace the CIB's configuration section cluster-wide (`crmctl config import`).
    CibReplaceConfiguration {
        /// The `<configuration>` element.
        xml: String,
        /// Refuse unless the configuration is still at this epoch.
        if_epoch: Option<u64>,
    },
    /// Forget a resource's operation history and fail counts so it is probed again
    /// (`crmctl resource cleanup R [node=N]`).
    ResourceCleanup {
        /// The resource.
        rsc: String,
        /// One node by name; `None`: every node.
        node: Option<String>,
    },
}

/// `crmctl quorum device add model=net host=H token=CODE ...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAddRequest {
    /// The arbiter's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The join code, as printed.
    pub token: String,
    /// ffsplit or lms.
    pub algorithm: String,
    /// lowest, highest, or a node id.
    pub tie_breaker: String,
    /// The arbiter's votes (default: 1 for ffsplit, nodes - 1 for lms).
    pub votes: Option<u32>,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// The membership status.
    MembershipStatus(Box<NodeStatus>),
    /// The quorum status.
    QuorumStatus(Box<QuorumReport>),
    /// The arbiter's clusters.
    ArbiterStatus(Vec<quorum::arbiter::ClusterStatus>),
    /// The request was carried out; what happened, in words.
    Done(String),
    /// The CIB.
    Cib(Box<crate::cibd::CibReport>),
    /// A new join code.
    Token {
        /// The code.
        token: String,
        /// How long it stays valid, in ms.
        expires_in_ms: u64,
    },
    /// The request could not be served.
    Error(String),
}

/// What `crmctl membership status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's name.
    pub name: String,
    /// The cluster name.
    pub cluster_name: String,
    /// Node names by id.
    pub names: Vec<(wire::NodeId, String)>,
    /// The core's status.
    pub membership: membership::Status,
    /// The last view installed, with what changed.
    pub last_view: Option<membership::View>,
    /// Transport counters.
    pub transport: TransportCounters,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
}

/// What `crmctl quorum status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuorumReport {
    /// This node's name.
    pub name: String,
    /// This node's id.
    pub node_id: wire::NodeId,
    /// The cluster name.
    pub cluster_name: String,
    /// Node names and votes by id.
    pub nodes: Vec<(wire::NodeId, String, u32)>,
    /// Votequorum's state.
    pub status: quorum::QuorumStatus,
    /// The connection to the arbiter, when one is configured.
    pub arbiter: Option<ArbiterLink>,
}

/// This node's link to the arbiter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterLink {
    /// host:port.
    pub address: String,
    /// Connected and authenticated.
    pub connected: bool,
    /// The arbiter's vote is currently this node's (a lease, renewed every 100 ms).
    pub has_vote: bool,
    /// Why the arbiter refused this node, if it did.
    pub refused: Option<String>,
}

/// Datagram counters of the transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportCounters {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// From an address that is no configured link of any node (dropped).
    pub unknown_source: u64,
    /// Too short, wrong magic or version (dropped).
    pub malformed: u64,
    /// Failed authentication: wrong key, wrong cluster, tampering (dropped).
    pub auth_failures: u64,
    /// Replayed or from a stale session (dropped).
    pub replays: u64,
    /// Sends that failed (socket buffer full, no route).
    pub send_errors: u64,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket could not be reached.
    #[error("cannot connect to {path} (is clusterd running?): {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The peer sent something we cannot decode.
    #[error("control socket {path}: bad response: {source}")]
    Decode {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: wire::DecodeError,
    },
}

/// Reads one frame from a stream (blocking).
pub(crate) fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; wire::FRAME_HEADER_LEN];
    r.read_exact(&mut buf)?;
    let h = wire::decode_header(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    buf.resize(h.frame_len(), 0);
    r.read_exact(&mut buf[wire::FRAME_HEADER_LEN..])?;
    Ok(buf)
}

/// Sends `req` to the daemon whose run directory is `run_dir` and returns its answer.
pub fn query(run_dir: &Path, req: &Request) -> Result<Response, ControlError> {
    query_socket(&run_dir.join(SOCKET_NAME), req)
}

/// Sends `req` to the daemon listening on the unix socket `path` (answers within 5 s).
pub fn query_socket(path: &Path, req: &Request) -> Result<Response, ControlError> {
    query_socket_within(path, req, std::time::Duration::from_secs(5))
}

/// Sends `req` to the daemon listening on the unix socket `path`, waiting up to `timeout`.
pub fn query_socket_within(path: &Path, req: &Request, timeout: std::time::Duration) -> Result<Response, ControlError> {
    let path = path.to_path_buf();
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|source| ControlError::Connect { path: path.clone(), source })?;
    let _ = s.set_read_timeout(Some(timeout));
    let bytes = wire::encode(KIND, req).unwrap_or_default();
    s.write_all(&bytes).map_err(|source| ControlError::Io { path: path.clone(), source })?;
    let frame = read_frame(&mut s).map_err(|source| ControlError::Io { path: path.clone(), source })?;
    wire::decode(KIND, &frame).map_err(|source| ControlError::Decode { path, source })
}
