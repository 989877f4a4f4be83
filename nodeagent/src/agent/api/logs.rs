//! `GET /pods/{ns}/{name}/log`: a container's output from its CRI log
//! files, plain text; the same options and code as the kubelet API's
//! `/containerLogs` (see [`crate::agent::kubelet_api::logs`]), with the
//! container named in the query (`container=`; the only one if not).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{err, find, Shared};
use crate::agent::kubelet_api::logs::{respond, LogOptions};

/// The handler.
pub async fn logs(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogOptions>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    respond(agent, &r, q.container.clone().as_deref(), &q)
}
