//! Asking a local daemon (clusterd or qnetd) over its control socket, with its refusals and its
//! absence mapped to Pacemaker's exit codes.

use std::path::Path;
use std::time::Duration;

use clusterd::control::{self, ControlError, Request, Response};

use crate::exit::Exit;

/// How long a request may take: cluster-wide changes wait for every node.
const TIMEOUT: Duration = Duration::from_secs(40);

/// Sends `req` to the daemon listening on `sock`; `daemon` names it in errors and `start_hint`
/// says how to start it when it is not running.
pub(crate) fn ask_at(sock: &Path, req: &Request, daemon: &str, start_hint: &str) -> anyhow::Result<Response> {
    match control::query_socket_within(sock, req, TIMEOUT) {
        Ok(Response::Error(e)) if e.contains("not quorate") => {
            Err(Exit::error(Exit::NO_QUORUM, format!("{daemon} refused: {e}")))
        }
        Ok(Response::Error(e)) => Err(Exit::error(Exit::ERROR, format!("{daemon} refused: {e}"))),
        Ok(r) => Ok(r),
        Err(e @ ControlError::Connect { .. }) => Err(Exit::error(Exit::NOT_CONNECTED, format!("{e}{start_hint}"))),
        Err(e) => Err(Exit::error(Exit::ERROR, e.to_string())),
    }
}

/// Sends `req` to the local clusterd whose runtime directory is `run_dir`.
pub(crate) fn ask(run_dir: &Path, req: &Request) -> anyhow::Result<Response> {
    ask_at(&run_dir.join(control::SOCKET_NAME), req, "clusterd", "")
}
