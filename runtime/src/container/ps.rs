//! `skiff ps`: the processes of a container, found through its cgroup's
//! `cgroup.procs`, shown with the host's ps(1) or as a JSON list of pids.

use std::process::Command;

use crate::container::Container;
use crate::Result;

/// What can stop `ps`.
#[derive(Debug, thiserror::Error)]
pub enum PsError {
    /// ps(1) cannot be run.
    #[error("run ps")]
    Run(#[source] std::io::Error),
    /// ps(1) exited with an error.
    #[error("{status}: {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// ps(1)'s header has no `PID` column (`ps_args` left it out).
    #[error("couldn't find PID field in ps output")]
    NoPidColumn,
    /// A format other than `table` or `json`.
    #[error("invalid format option")]
    Format,
}

/// `skiff ps`: the container's pids as a JSON list (`json`), or the lines
/// of `ps` (`-ef` unless `ps_args` are given) for those pids (`table`).
pub fn ps(c: &Container, format: &str, ps_args: &[String]) -> Result<String> {
    let pids = super::processes::pids(c)?;
    match format {
        "json" => Ok(serde_json::Value::from(pids).to_string() + "\n"),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = Command::new("ps")
                .args(&args)
                .output()
                .map_err(PsError::Run)?;
            if !out.status.success() {
                return Err(PsError::Failed {
                    status: out.status,
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }
                .into());
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or(PsError::NoPidColumn)?;
            let mut result = format!("{header}\n");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    result.push_str(line);
                    result.push('\n');
                }
            }
            Ok(result)
        }
        _ => Err(PsError::Format.into()),
    }
}
