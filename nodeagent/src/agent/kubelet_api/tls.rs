//! TLS for the kubelet API: the node's serving certificate, and the
//! client certificate authority.
//!
//! The serving certificate is `--tls-cert-file` and
//! `--tls-private-key-file` (PEM) when given. Otherwise the agent does
//! what kubelet does without them: it makes a self-signed certificate for
//! the node's name and address and keeps it in its state directory
//! (`pki/kubelet.crt`, `pki/kubelet.key`, mode 0600), reused while it
//! still names them. The API server does not check a kubelet's
//! certificate unless it was given `--kubelet-certificate-authority`.
//!
//! Client certificates are asked for, not required: a client without one
//! may still authenticate with a bearer token. A certificate that is
//! presented must chain to `--client-ca-file` (see RFC 8446 §4.3.2,
//! CertificateRequest); without that flag no client certificate is
//! accepted at all.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::agent::node::NodeConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("read {path}: {err}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        err: String,
    },
    /// The generated certificate cannot be made or stored.
    #[error("make the kubelet serving certificate in {path}: {err}")]
    Generate {
        /// Where it goes.
        path: PathBuf,
        /// Why.
        err: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("kubelet API TLS: {0}")]
    Config(String),
}

fn pem_err(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.to_path_buf(),
        err: e.to_string(),
    }
}

/// The server's TLS configuration: its certificate, and client
/// certificates verified against the client CA when there is one.
pub fn server_config(
    cfg: &NodeConfig,
    state_dir: &Path,
    node_name: &str,
    ip: IpAddr,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = match (&cfg.tls_cert_file, &cfg.tls_private_key_file) {
        (Some(c), Some(k)) => load(c, k)?,
        _ => generated(&state_dir.join("pki"), node_name, ip)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(pem_err(ca))? {
                roots
                    .add(c.map_err(pem_err(ca))?)
                    .map_err(|e| TlsError::Pem {
                        path: ca.clone(),
                        err: e.to_string(),
                    })?;
            }
            if roots.is_empty() {
                return Err(TlsError::Pem {
                    path: ca.clone(),
                    err: "no certificate in it".into(),
                });
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // Upgrades (exec, port-forward) need HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            err: "no certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    Ok((chain, key))
}

/// The self-signed certificate in `dir`, made (again) unless one there
/// already names `node_name` and `ip`.
fn generated(
    dir: &Path,
    node_name: &str,
    ip: IpAddr,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if let Ok((chain, k)) = load(&crt, &key) {
        if names(&chain[0], node_name, ip) {
            return Ok((chain, k));
        }
    }
    let gen_err = |err: String| TlsError::Generate {
        path: dir.to_path_buf(),
        err,
    };
    let mut params = rcgen::CertificateParams::new(vec![node_name.to_string()])
        .map_err(|e| gen_err(e.to_string()))?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{node_name}@skiff-agent"),
    );
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 86400)).into();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let k = rcgen::KeyPair::generate().map_err(|e| gen_err(e.to_string()))?;
    let cert = params.self_signed(&k).map_err(|e| gen_err(e.to_string()))?;
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| gen_err(e.to_string()))?;
        for (path, text) in [(&crt, cert.pem()), (&key, k.serialize_pem())] {
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| gen_err(e.to_string()))?;
        }
    }
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(k.serialize_der().into()),
    ))
}

/// Whether the certificate's subject alternative names hold `name` and
/// `ip`.
fn names(cert: &CertificateDer<'_>, name: &str, ip: IpAddr) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert) else {
        return false;
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return false;
    };
    let octets = match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let dns = san
        .value
        .general_names
        .iter()
        .any(|g| matches!(g, GeneralName::DNSName(d) if *d == name));
    let addr = san
        .value
        .general_names
        .iter()
        .any(|g| matches!(g, GeneralName::IPAddress(a) if *a == octets.as_slice()));
    dns && addr
}

/// The user name (CN) and groups (O) of a client certificate, as
/// Kubernetes' x509 authenticator reads them.
pub fn subject(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = c.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_while_it_names_the_node() {
        let d = tempfile::tempdir().unwrap();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let (a, _) = generated(d.path(), "node-a", ip).unwrap();
        assert!(names(&a[0], "node-a", ip));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("kubelet.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, _) = generated(d.path(), "node-a", ip).unwrap();
        assert_eq!(a, b, "reused");
        let (c, _) = generated(d.path(), "node-a", "10.1.2.4".parse().unwrap()).unwrap();
        assert_ne!(a, c, "a new address needs a new certificate");
        let (cn, _) = subject(&c[0]).unwrap();
        assert_eq!(cn, "node-a@skiff-agent");
    }

    fn config(dir: &Path) -> NodeConfig {
        NodeConfig {
            kubeconfig: dir.join("kubeconfig"),
            labels: Default::default(),
            taints: vec![],
            max_pods: 110,
            kubelet_port: 10250,
            ip: None,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
        }
    }

    #[test]
    fn given_certificate_and_client_ca_are_used() {
        let d = tempfile::tempdir().unwrap();
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        // A certificate of the operator's, and a CA for clients.
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["given".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        std::fs::write(d.path().join("tls.crt"), c.pem()).unwrap();
        std::fs::write(d.path().join("tls.key"), k.serialize_pem()).unwrap();
        let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cak = rcgen::KeyPair::generate().unwrap();
        std::fs::write(d.path().join("ca.crt"), ca.self_signed(&cak).unwrap().pem()).unwrap();
        let mut cfg = config(d.path());
        cfg.tls_cert_file = Some(d.path().join("tls.crt"));
        cfg.tls_private_key_file = Some(d.path().join("tls.key"));
        cfg.client_ca_file = Some(d.path().join("ca.crt"));
        server_config(&cfg, &d.path().join("state"), "n", ip).unwrap();
        // Nothing was generated: the given certificate serves.
        assert!(!d.path().join("state/pki").exists());
        // A client CA file without a certificate is an error naming it.
        std::fs::write(d.path().join("empty.crt"), "").unwrap();
        cfg.client_ca_file = Some(d.path().join("empty.crt"));
        let e = server_config(&cfg, &d.path().join("state"), "n", ip)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.crt"), "{e}");
        // Without a given certificate, one is made for the node.
        let cfg = config(d.path());
        server_config(&cfg, &d.path().join("state"), "n", ip).unwrap();
        assert!(d.path().join("state/pki/kubelet.crt").exists());
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let d = tempfile::tempdir().unwrap();
        let bad = d.path().join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let e = load(&bad, &bad).unwrap_err().to_string();
        assert!(e.contains("bad.pem"), "{e}");
    }
}
