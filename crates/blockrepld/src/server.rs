//! The control socket server: one JSON request per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use blockrepl::control::{Request, Response};

use crate::node::Node;

pub(crate) fn serve(node: &Arc<Node>, path: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let down = handle(node, s);
        if down {
            node.stop.store(true, Ordering::Relaxed);
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
    }
    Ok(())
}

fn handle(node: &Arc<Node>, s: UnixStream) -> bool {
    let mut line = String::new();
    let Ok(w) = s.try_clone() else { return false };
    if BufReader::new(s).read_line(&mut line).is_err() {
        return false;
    }
    let (resp, down) = match serde_json::from_str::<Request>(&line) {
        Err(e) => (Response::Error { message: format!("malformed request: {e}") }, false),
        Ok(req) => {
            let down = req == Request::Down;
            (execute(node, req), down)
        }
    };
    let mut w = w;
    let mut out = serde_json::to_string(&resp).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    let _ = w.write_all(out.as_bytes());
    down
}

/// Waits until a promotion on a connected pair is acknowledged by the peer or lost to the
/// peer's own promotion (the lower node id wins), and reports which.
fn promoted(node: &Node) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = node.status();
        if !s.promotion_pending {
            if s.role == blockrepl::Role::Primary {
                return Ok(());
            }
            return Err(s.last_error.unwrap_or_else(|| "promotion did not take effect".into()));
        }
        if std::time::Instant::now() > deadline {
            return Err("promotion not acknowledged by the peer within 10 s; the link timeout decides".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn execute(node: &Arc<Node>, req: Request) -> Response {
    let r: Result<(), String> = match req {
        Request::Status | Request::Down => Ok(()),
        Request::Primary { force } => node
            .admin(|e, now, out| e.promote(now, force, out))
            .map_err(|e| e.to_string())
            .and_then(|()| promoted(node)),
        Request::Secondary => node.admin(|e, now, out| e.demote(now, out)).map_err(|e| e.to_string()),
        Request::Connect { discard_my_data } => {
            node.admin(|e, now, out| e.connect(now, discard_my_data, out)).map_err(|e| e.to_string())
        }
        Request::Disconnect => {
            node.admin(|e, now, out| e.disconnect(now, out));
            Ok(())
        }
        Request::Verify => node.admin(|e, now, out| e.start_verify(now, out)).map_err(|e| e.to_string()),
    };
    match r {
        Ok(()) => Response::Ok {
            volume: node.name.clone(),
            status: Box::new(node.status()),
            link_bytes_sent: node.link_bytes_sent.load(Ordering::Relaxed),
        },
        Err(message) => Response::Error { message },
    }
}
