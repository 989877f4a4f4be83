//! Turning an HTTP request into a SPDY/3.1 connection.
//!
//! A streaming request (exec, attach, port-forward) asks for two things in
//! its headers (apimachinery's `httpstream` package):
//! - `Connection: Upgrade` and `Upgrade: SPDY/3.1`: switch protocols;
//! - one or more `X-Stream-Protocol-Version` values, newest first: the
//!   stream protocol to speak over it (`v4.channel.k8s.io` ...). The server
//!   picks the first one it supports. None supported is a 403 that lists
//!   what is, in `X-Accepted-Stream-Protocol-Versions`.
//!
//! The answer is `101 Switching Protocols` naming the chosen protocol;
//! after it the connection belongs to SPDY (see [`crate::spdy`]).

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::status_error;

/// The protocols a client offers in header `name` (repeated, or
/// comma-separated), in its order of preference.
pub(crate) fn offered(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first of the client's offers that the server supports: the client's
/// preference wins, as in apimachinery's `httpstream.Handshake`.
pub(crate) fn first_supported(
    offered: &[String],
    supported: &[&'static str],
) -> Option<&'static str> {
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| **s == o).copied())
}

/// The stream protocol the client and we both speak.
pub fn negotiate(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<&'static str, Box<Response>> {
    let offered = offered(headers, "x-stream-protocol-version");
    if offered.is_empty() {
        return Err(Box::new(status_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        )));
    }
    if let Some(p) = first_supported(&offered, supported) {
        return Ok(p);
    }
    let mut resp = (
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
        ),
    )
        .into_response();
    for s in supported {
        resp.headers_mut().append(
            "x-accepted-stream-protocol-versions",
            axum::http::HeaderValue::from_static(s),
        );
    }
    Err(Box::new(resp))
}

fn header_has(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the request asks for a WebSocket.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    header_has(headers, "connection", "upgrade") && header_has(headers, "upgrade", "websocket")
}

/// Answer `req` with `101 Switching Protocols` to SPDY/3.1 speaking
/// `protocol`; the connection is handed to `serve` once upgraded.
pub fn spdy<F, Fut>(mut req: Request, protocol: &'static str, serve: F) -> Response
where
    F: FnOnce(crate::spdy::Session) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let h = req.headers();
    if !header_has(h, "connection", "upgrade") || !header_has(h, "upgrade", "spdy/3.1") {
        return status_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                serve(crate::spdy::Session::new(hyper_util::rt::TokioIo::new(up))).await;
            }
            Err(e) => tracing::debug!("kubelet API: upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|e| status_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_protocol_wins() {
        let mut h = HeaderMap::new();
        h.append(
            "x-stream-protocol-version",
            "v5.channel.k8s.io".parse().unwrap(),
        );
        h.append(
            "x-stream-protocol-version",
            "v3.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        let p = negotiate(&h, &["v4.channel.k8s.io", "v3.channel.k8s.io"]).unwrap();
        assert_eq!(p, "v3.channel.k8s.io");
        let r = negotiate(&HeaderMap::new(), &["x"]).unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = negotiate(&h, &["portforward.k8s.io"]).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()["x-accepted-stream-protocol-versions"],
            "portforward.k8s.io"
        );
    }
}
