//! Finding and starting the user's program.
//!
//! `process.args[0]` is looked up like execvp(3) does, but in the
//! container's filesystem and with the container's `PATH` (from
//! `process.env`), not the runtime's. The lookup happens before the init
//! reports "ready", so a missing program fails `create` with a clear error
//! instead of a container that dies at `start`. Right before execve(2)
//! every descriptor above stderr (and the ones passed on purpose) is closed,
//! so nothing of the runtime leaks in (runc CVE-2024-21626).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ProcessError;

/// Resolve `name` against `PATH` in `env` (or use it as a path if it has a `/`).
pub fn find(name: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        let meta = std::fs::metadata(&p).map_err(|err| ProcessError::NotFound {
            name: name.into(),
            path: p.clone(),
            err,
        })?;
        if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
            return Err(ProcessError::NotExecutable { name: name.into() });
        }
        return Ok(p);
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("");
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(ProcessError::NotInPath { name: name.into() })
}

fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<CString> {
    items.filter_map(|b| CString::new(b).ok()).collect()
}

/// Close every runtime descriptor but `keep` (which must be close-on-exec)
/// and execve(2). Returns only on error.
pub fn exec(
    path: &Path,
    args: &[String],
    env: &[String],
    preserve_fds: i32,
    keep: &[i32],
) -> ProcessError {
    if let Err(e) = crate::utils::close_from(3 + preserve_fds.max(0), keep) {
        return ProcessError::Sys {
            op: "close runtime descriptors".into(),
            err: nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
        };
    }
    crate::explain!(
        "execve(2)",
        "executing {} — from here on this process is the container's program",
        path.display()
    );
    let c_path = match CString::new(path.as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return ProcessError::NotInPath {
                name: path.display().to_string(),
            }
        }
    };
    let c_args = cstrings(args.iter().map(|a| a.as_bytes()));
    let c_env = cstrings(env.iter().map(|a| a.as_bytes()));
    match nix::unistd::execve(&c_path, &c_args, &c_env) {
        Err(err) => ProcessError::Exec {
            name: args.first().cloned().unwrap_or_default(),
            err,
        },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_uses_the_given_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find("sh", &env).is_ok());
        assert!(matches!(
            find("definitely-not-here", &env),
            Err(ProcessError::NotInPath { .. })
        ));
        assert!(matches!(
            find("/nope", &env),
            Err(ProcessError::NotFound { .. })
        ));
        assert!(matches!(
            find("/", &env),
            Err(ProcessError::NotExecutable { .. })
        ));
    }
}
