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

/// What happens between closing the runtime's descriptors and execve(2):
/// the seccomp filter, and the capabilities held for loading it (see
/// [`super::finalize::finalize_process`]).
#[derive(Default)]
pub struct LastSteps<'a> {
    /// The seccomp filter to load last (none, or already loaded because it
    /// notifies a listener).
    pub filter: Option<&'a crate::seccomp::Filter>,
    /// The capability sets to write after loading the filter, when
    /// CAP_SYS_ADMIN was held for it.
    pub caps: Option<super::capabilities::Sets>,
}

/// Close every runtime descriptor but `keep` (which must be close-on-exec
/// and not directories), load the seccomp filter, drop what was held for
/// it, and execve(2). Returns only on error.
///
/// Everything that allocates or may fail for reasons of its own is done
/// before the filter is loaded: after it come at most one capset(2) and
/// the execve(2).
pub fn exec(
    path: &Path,
    args: &[String],
    env: &[String],
    preserve_fds: i32,
    keep: &[i32],
    last: &LastSteps<'_>,
) -> ProcessError {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return ProcessError::NotInPath {
            name: path.display().to_string(),
        };
    };
    let c_args = cstrings(args.iter().map(|a| a.as_bytes()));
    let c_env = cstrings(env.iter().map(|a| a.as_bytes()));
    // The NULL-terminated pointer arrays execve(2) reads, made now: no
    // allocation may happen once the filter is in.
    let argv = pointers(&c_args);
    let envp = pointers(&c_env);
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
    if let Some(f) = last.filter {
        if let Err(e) = f.load() {
            return ProcessError::Seccomp(e);
        }
    }
    if let Some(sets) = last.caps {
        if let Err(e) = super::capabilities::set(sets) {
            return e;
        }
    }
    crate::trace::end();
    // SAFETY: the path and every pointer in `argv` and `envp` point at
    // NUL-terminated strings in `c_path`, `c_args` and `c_env`, alive for
    // the call; both arrays end with a null pointer.
    unsafe { libc::execve(c_path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    ProcessError::Exec {
        name: args.first().cloned().unwrap_or_default(),
        err: nix::Error::last(),
    }
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
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
