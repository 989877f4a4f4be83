//! Per-registry TLS settings from a hosts directory, laid out like
//! containerd's and Docker's `certs.d`:
//!
//! ```text
//! HOSTS_DIR/<host[:port]>/ca.crt            extra CA certificates (any *.crt)
//! HOSTS_DIR/<host[:port]>/client.cert       a client certificate (any *.cert)
//! HOSTS_DIR/<host[:port]>/client.key        and its key (same stem, .key)
//! ```
//!
//! The system's CA roots are always trusted as well.

use std::path::Path;

use super::RegistryError;

/// The TLS settings for one registry.
pub struct Tls {
    /// CA certificates to trust besides the system's (`*.crt`).
    pub roots: Vec<reqwest::Certificate>,
    /// The client certificate and key to present (`*.cert` with its `.key`),
    /// if any.
    pub identity: Option<reqwest::Identity>,
}

fn config_err(msg: String) -> RegistryError {
    RegistryError::Config(msg)
}

/// The TLS settings for `registry` (host[:port]).
pub fn load(hosts_dir: Option<&Path>, registry: &str) -> Result<Tls, RegistryError> {
    let mut tls = Tls {
        roots: vec![],
        identity: None,
    };
    let Some(dir) = hosts_dir else {
        return Ok(tls);
    };
    // Port separators are kept as is; `[::1]:5000` style names too.
    let d = dir.join(registry);
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(tls);
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in &names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let read = || std::fs::read(p).map_err(|e| config_err(format!("{}: {e}", p.display())));
        match ext {
            "crt" => {
                let pem = read()?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| config_err(format!("{}: {e}", p.display())))?;
                tls.roots.extend(certs);
            }
            "cert" => {
                let key = p.with_extension("key");
                let mut pem = read()?;
                let k = std::fs::read(&key).map_err(|e| {
                    config_err(format!(
                        "{}: client key for {}: {e}",
                        key.display(),
                        p.display()
                    ))
                })?;
                pem.extend_from_slice(b"\n");
                pem.extend_from_slice(&k);
                tls.identity = Some(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|e| config_err(format!("{}: {e}", p.display())))?,
                );
            }
            _ => {}
        }
    }
    Ok(tls)
}
