//! A minimal HTTP/1.0 GET for status URLs (`http://host[:port]/path`), bounded by a deadline.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Fetches `url` and returns the status code and body (at most 64 KiB).
pub(crate) fn get(url: &str, deadline: Instant) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in `{url}`"))?,
        ),
        _ => (hostport.trim_start_matches('[').trim_end_matches(']'), 80),
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&addr, left())
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: ha-agent\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| {
            format!(
                "{addr} did not answer HTTP (got `{}`)",
                status_line.chars().take(60).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn fetches_status_and_body_from_a_local_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut chunk = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut chunk).unwrap();
                assert!(n > 0, "request ended early");
                req.extend_from_slice(&chunk[..n]);
            }
            assert!(String::from_utf8_lossy(&req).starts_with("GET /status HTTP/1.0"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let (code, body) = get(
            &format!("http://127.0.0.1:{port}/status"),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        t.join().unwrap();
        assert_eq!(code, 200);
        assert_eq!(body, "ok");
    }

    #[test]
    fn garbage_and_bad_urls_are_errors() {
        assert!(get("https://x/", Instant::now() + Duration::from_secs(1)).is_err());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let _ = c.write_all(b"\x00\x01garbage");
        });
        let e = get(
            &format!("http://127.0.0.1:{port}/"),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap_err();
        t.join().unwrap();
        assert!(e.contains("did not answer HTTP"), "{e}");
    }
}
