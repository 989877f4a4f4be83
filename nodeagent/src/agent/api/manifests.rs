//! `PUT /manifests/{file}` and `DELETE /pods/{ns}/{name}`: the client's
//! `apply` and `delete`, which edit the manifest directory (the file source
//! then does the rest).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{err, find, Shared};

pub async fn put_manifest(
    State(agent): State<Shared>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if file.is_empty() || file.contains('/') || file.starts_with('.') || file.len() > 200 {
        return err(
            StatusCode::BAD_REQUEST,
            format!("invalid manifest file name {file:?}"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return err(StatusCode::BAD_REQUEST, "manifest is not UTF-8");
    };
    let docs = crate::manifest::parse_file(std::path::Path::new(&file), text);
    let errors: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            d.pod
                .as_ref()
                .err()
                .map(|e| format!("pod {:?}: {e}", d.name))
        })
        .collect();
    if !errors.is_empty() || docs.is_empty() {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            if docs.is_empty() {
                "no pod in manifest".into()
            } else {
                errors.join("\n")
            },
        );
    }
    let dir = &agent.cfg.manifests;
    let tmp = dir.join(format!(".{file}.tmp"));
    let done = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, dir.join(&file)));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write {file}: {e}"),
        );
    }
    let names: Vec<String> = docs
        .iter()
        .map(|d| format!("pod/{} configured", d.name))
        .collect();
    (StatusCode::OK, names.join("\n") + "\n").into_response()
}

/// Remove the pod's document from its manifest file (the file goes when
/// it was the only one); the watcher then stops the pod.
pub async fn delete_pod(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    let file = r.file.clone();
    let Ok(text) = std::fs::read_to_string(&file) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("manifest {} is gone", file.display()),
        );
    };
    let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .filter_map(|d| serde_json::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect();
    let keep: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|v| {
            let n = v.pointer("/metadata/name").and_then(|x| x.as_str());
            let s = v
                .pointer("/metadata/namespace")
                .and_then(|x| x.as_str())
                .unwrap_or("default");
            !(n == Some(name.as_str()) && s == ns)
        })
        .collect();
    let result = if keep.is_empty() || keep.len() == docs.len() && r.invalid.is_some() {
        std::fs::remove_file(&file)
    } else {
        let mut out = String::new();
        for v in keep {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(v).unwrap_or_default());
        }
        let tmp = file.with_file_name(format!(
            ".{}.tmp",
            file.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, &file))
    };
    match result {
        Ok(()) => {
            crate::agent::sources::file::rescan(&agent);
            (StatusCode::OK, format!("pod \"{name}\" deleted\n")).into_response()
        }
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", file.display()),
        ),
    }
}
