//! `skiff list`: every container under `--root`, as a table (laid out like
//! Go's tabwriter in runc), ids only (`-q`), or JSON.

use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use crate::container::{Container, OciState};

/// One row of `list --format json`: the OCI state with the owner's name.
#[derive(Serialize)]
pub struct ListEntry<'a> {
    /// The container's OCI state, with `owner` filled in.
    #[serde(flatten)]
    pub state: OciState<'a>,
}

fn owner_name(c: &Container) -> String {
    let uid = std::fs::metadata(&c.dir).map(|m| m.uid()).unwrap_or(0);
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Lay out rows like Go's tabwriter with minwidth 12, padding 3: every
/// column but the last is padded to its widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + 3).max(12);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

/// `skiff list`: the containers, refreshed, as a `table`, as `json` (`null`
/// when there are none), or ids only with `quiet`. Any other format is an
/// error.
pub fn render(containers: &mut [Container], format: &str, quiet: bool) -> Result<String, String> {
    for c in containers.iter_mut() {
        c.refresh();
        c.state.owner = owner_name(c);
    }
    if quiet {
        return Ok(containers.iter().map(|c| format!("{}\n", c.id())).collect());
    }
    match format {
        "table" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for c in containers.iter() {
                let s = c.oci_state();
                rows.push(vec![
                    s.id.to_string(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.to_string(),
                    s.owner.to_string(),
                ]);
            }
            Ok(table(&rows))
        }
        "json" => {
            if containers.is_empty() {
                return Ok("null\n".into());
            }
            let v: Vec<ListEntry<'_>> = containers
                .iter()
                .map(|c| ListEntry {
                    state: c.oci_state(),
                })
                .collect();
            Ok(format!(
                "{}\n",
                serde_json::to_string(&v).map_err(|e| e.to_string())?
            ))
        }
        _ => Err("invalid format option".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_like_tabwriter() {
        let rows = vec![
            vec!["ID".to_string(), "PID".into(), "X".into()],
            vec!["a-long-container".into(), "1".into(), "y".into()],
        ];
        let t = table(&rows);
        assert_eq!(
            t,
            "ID                 PID         X\na-long-container   1           y\n"
        );
    }
}
