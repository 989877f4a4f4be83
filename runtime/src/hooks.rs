//! Lifecycle hooks: programs the runtime spec (config.md "POSIX-platform
//! Hooks") runs at fixed points of a container's life, each given the
//! container's state as JSON on stdin.
//!
//! | hook | when | where it runs |
//! |---|---|---|
//! | `prestart` (deprecated), `createRuntime` | during create, after namespaces and mounts, before pivot_root | runtime namespace |
//! | `createContainer` | right after those | container namespace, before pivot_root |
//! | `startContainer` | during start, just before the user's program | inside the container |
//! | `poststart` | after the user's program started, before `start` returns | runtime namespace |
//! | `poststop` | during delete, after the container is gone | runtime namespace |
//!
//! A hook that exits non-zero or outlives its `timeout` fails the operation
//! (except poststop, whose failure is reported but cannot undo the delete).
//! runc 1.1 runs `poststart` already during `create`; skiff follows the spec
//! and runs it during `start`.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use oci_spec::runtime::Hook;

/// Why a hook failed (`index` counts from 0 within its kind).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be started, or waited for.
    #[error("error running hook #{index}: fork/exec {path}: {err}")]
    Spawn {
        /// The hook's position in its list.
        index: usize,
        /// The hook's `path`.
        path: String,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The hook exited non-zero or was killed by a signal.
    #[error("error running hook #{index}: error running hook: {status}, stdout: {stdout}, stderr: {stderr}")]
    Failed {
        /// The hook's position in its list.
        index: usize,
        /// `exit status N` or `signal: N`.
        status: String,
        /// What it wrote on stdout.
        stdout: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The hook ran past its `timeout` and was killed (SIGKILL).
    #[error("error running hook #{index}: hook ran past specified timeout of {secs:.1}s")]
    Timeout {
        /// The hook's position in its list.
        index: usize,
        /// The timeout, in seconds.
        secs: f64,
    },
}

/// The state JSON a hook reads on stdin (the runtime spec's state, in the
/// field order runc writes it).
pub fn state_json(
    id: &str,
    status: crate::Status,
    pid: Option<i32>,
    bundle: &std::path::Path,
    annotations: &std::collections::HashMap<String, String>,
) -> String {
    let mut m = serde_json::Map::new();
    m.insert("ociVersion".into(), crate::container::OCI_VERSION.into());
    m.insert("id".into(), id.into());
    m.insert("status".into(), status.to_string().into());
    if let Some(p) = pid {
        m.insert("pid".into(), p.into());
    }
    m.insert(
        "bundle".into(),
        bundle.to_string_lossy().into_owned().into(),
    );
    if !annotations.is_empty() {
        m.insert(
            "annotations".into(),
            serde_json::to_value(annotations).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(m).to_string()
}

/// Run `hooks` in order with `state` on stdin. `kind` only names them in
/// `--explain` output.
pub fn run(kind: &str, hooks: Option<&Vec<Hook>>, state: &str) -> Result<(), HookError> {
    for (index, hook) in hooks
        .map(|v| v.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        crate::explain!(
            "",
            "running {kind} hook #{index}: {}",
            hook.path().display()
        );
        run_one(index, hook, state)?;
    }
    Ok(())
}

/// Run hook number `index` with `state` on stdin and wait for it, for at
/// most its `timeout` in seconds if it has one. `args[0]` becomes its
/// `argv[0]`; `env`, if given, replaces the environment.
pub fn run_one(index: usize, hook: &Hook, state: &str) -> Result<(), HookError> {
    let path = hook.path();
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|err| HookError::Spawn {
        index,
        path: path.display().to_string(),
        err,
    })?;
    let pid = child.id() as i32;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state.as_bytes());
    }
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Both pipes are drained at once: a hook filling one while we block
        // on the other would otherwise never finish.
        let stderr_reader = std::thread::spawn(move || {
            let mut se = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut se);
            }
            se
        });
        let mut so = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut so);
        }
        let se = stderr_reader.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((status, so, se));
    });
    let received = match hook.timeout() {
        Some(t) if t > 0 => rx.recv_timeout(Duration::from_secs(t as u64)).ok(),
        _ => rx.recv().ok(),
    };
    match received {
        None => {
            // SAFETY: kill(2) with a pid we spawned; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(HookError::Timeout {
                index,
                secs: hook.timeout().unwrap_or(0) as f64,
            })
        }
        Some((Ok(status), stdout, stderr)) if !status.success() => {
            let status = match status.code() {
                Some(c) => format!("exit status {c}"),
                None => format!(
                    "signal: {}",
                    std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                ),
            };
            Err(HookError::Failed {
                index,
                status,
                stdout,
                stderr,
            })
        }
        Some((Err(e), _, _)) => Err(HookError::Spawn {
            index,
            path: path.display().to_string(),
            err: e,
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn state_json_has_runcs_fields_in_runcs_order() {
        let s = state_json(
            "web",
            crate::Status::Created,
            Some(42),
            std::path::Path::new("/b"),
            &HashMap::new(),
        );
        assert_eq!(
            s,
            format!(
                r#"{{"ociVersion":"{}","id":"web","status":"created","pid":42,"bundle":"/b"}}"#,
                crate::container::OCI_VERSION
            )
        );
        let mut ann = HashMap::new();
        ann.insert("k".to_string(), "v".to_string());
        let v: serde_json::Value = serde_json::from_str(&state_json(
            "x",
            crate::Status::Stopped,
            None,
            std::path::Path::new("/b"),
            &ann,
        ))
        .unwrap();
        assert!(v.get("pid").is_none(), "a stopped container has no pid");
        assert_eq!(v["annotations"]["k"], "v");
        assert_eq!(v["status"], "stopped");
    }
}
