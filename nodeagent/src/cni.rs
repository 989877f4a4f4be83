//! Pod networking through CNI plugins.
//!
//! The Container Network Interface (github.com/containernetworking/cni,
//! SPEC.md) is a contract between a runtime and small executables: the
//! runtime runs a plugin with the operation in environment variables
//! (`CNI_COMMAND` ADD, DEL or CHECK, `CNI_CONTAINERID`, `CNI_NETNS` the path
//! of the namespace, `CNI_IFNAME`, `CNI_PATH` where plugins live,
//! `CNI_ARGS`) and the network configuration as JSON on stdin. The plugin
//! answers with a JSON result (interfaces, IPs, routes) or an error object.
//!
//! A *network configuration list* (`.conflist`) chains plugins: ADD runs
//! them in order, each getting the previous result as `prevResult`; DEL
//! runs them in reverse with the result ADD returned; CHECK verifies it.
//! Skiff uses the first configuration file in `--cni-conf-dir` (by name,
//! as libcni does). The pod's `lo` is not CNI's business here: the agent
//! sets it up itself when it makes the namespace ([`crate::netns`]), where
//! containerd's CRI plugin runs the `loopback` plugin for it. With no
//! configuration at all, the agent writes a bridge network for
//! `--pod-cidr` ([`default_conflist`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// Why a network configuration cannot be loaded, or a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A configuration file or directory cannot be read.
    #[error("read CNI configuration {path}: {err}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A configuration file is not a valid network configuration.
    #[error("CNI configuration {path}: {msg}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The directory holds no `.conflist`, `.conf` or `.json` file.
    #[error("no CNI configuration in {0}")]
    NoConfig(PathBuf),
    /// The default configuration cannot be written.
    #[error("write default CNI configuration {path}: {err}")]
    Write {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A plugin failed, ran too long, or answered what is not JSON.
    #[error("CNI plugin {plugin} ({command}): {msg}")]
    Plugin {
        /// The plugin's `type` (its executable's name).
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The plugin's error `msg` (with its `details`), else its stderr or exit
        /// status.
        msg: String,
    },
}

/// A loaded network configuration list.
#[derive(Debug, Clone)]
pub struct Network {
    /// The network's `name`, given to every plugin.
    pub name: String,
    /// Its `cniVersion` (`0.4.0` when absent).
    pub version: String,
    /// The plugins' configurations, in order (a single `.conf` is a list of
    /// one).
    pub plugins: Vec<Value>,
    /// The file it was read from.
    pub file: PathBuf,
}

/// Who the network is for: becomes `CNI_CONTAINERID` and `CNI_ARGS`.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The sandbox's id (`CNI_CONTAINERID`, and `K8S_POD_INFRA_CONTAINER_ID`
    /// in `CNI_ARGS`).
    pub container_id: String,
    /// The pinned network namespace's path (`CNI_NETNS`).
    pub netns: PathBuf,
    /// `K8S_POD_NAMESPACE` in `CNI_ARGS`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME` in `CNI_ARGS`.
    pub pod_name: String,
    /// `K8S_POD_UID` in `CNI_ARGS`.
    pub pod_uid: String,
}

/// The bridge network the agent writes when the directory has none.
pub fn default_conflist(cidr: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "skiff",
        "plugins": [{
            "type": "bridge",
            "bridge": "skiff0",
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
}

/// Load the first configuration in `dir`, writing the default one first
/// when there is none.
pub fn load_or_default(dir: &Path, cidr: &str) -> Result<Network, CniError> {
    match load(dir) {
        Err(CniError::NoConfig(_)) => {
            std::fs::create_dir_all(dir).map_err(|err| CniError::Write {
                path: dir.to_path_buf(),
                err,
            })?;
            let path = dir.join("10-skiff.conflist");
            let text = serde_json::to_string_pretty(&default_conflist(cidr)).unwrap_or_default();
            std::fs::write(&path, text).map_err(|err| CniError::Write { path, err })?;
            load(dir)
        }
        other => other,
    }
}

/// The first `.conflist`, `.conf` or `.json` in `dir`, by file name.
pub fn load(dir: &Path) -> Result<Network, CniError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            return Err(CniError::Read {
                path: dir.to_path_buf(),
                err,
            })
        }
    };
    files.sort();
    let path = files
        .into_iter()
        .next()
        .ok_or_else(|| CniError::NoConfig(dir.to_path_buf()))?;
    let text = std::fs::read(&path).map_err(|err| CniError::Read {
        path: path.clone(),
        err,
    })?;
    let bad = |msg: &str| CniError::Config {
        path: path.clone(),
        msg: msg.to_string(),
    };
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(&e.to_string()))?;
    let name = v["name"]
        .as_str()
        .ok_or_else(|| bad("no \"name\""))?
        .to_string();
    let version = v["cniVersion"].as_str().unwrap_or("0.4.0").to_string();
    // A single .conf is a list of one plugin.
    let plugins = match v.get("plugins") {
        Some(Value::Array(p)) if !p.is_empty() => p.clone(),
        Some(_) => return Err(bad("\"plugins\" must be a non-empty list")),
        None if v.get("type").is_some() => vec![v.clone()],
        None => return Err(bad("no \"plugins\" and no \"type\"")),
    };
    for p in &plugins {
        if p["type"]
            .as_str()
            .is_none_or(|t| t.contains('/') || t.is_empty())
        {
            return Err(bad("every plugin needs a plain \"type\""));
        }
    }
    Ok(Network {
        name,
        version,
        plugins,
        file: path,
    })
}

/// Runs plugins from one directory.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where the plugin executables are (`CNI_PATH`).
    pub bin_dir: PathBuf,
    /// The network pods join.
    pub network: Network,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Cni {
    /// ADD: the network's plugin chain on `eth0`, in order, each plugin
    /// given the previous one's result. Returns the last result. Each
    /// plugin's run is a span of the pod's start `trace`, if one is
    /// written (on a lane of its own: the pause container starts
    /// meanwhile).
    pub async fn add(
        &self,
        a: &Attachment,
        trace: Option<&crate::agent::trace::PodTrace>,
    ) -> Result<Value, CniError> {
        use crate::agent::trace::{start_in, NETWORK_LANE};
        let mut prev: Option<Value> = None;
        for p in &self.network.plugins {
            let conf = self.plugin_conf(p, prev.as_ref());
            let _s = start_in(
                trace,
                NETWORK_LANE,
                format!("CNI ADD {} (eth0)", conf["type"].as_str().unwrap_or("?")),
            );
            prev = Some(self.exec_plugin("ADD", &conf, a, "eth0").await?);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL in reverse order; every plugin runs even when one fails, and the
    /// first error is returned.
    pub async fn del(&self, a: &Attachment, result: Option<&Value>) -> Result<(), CniError> {
        let mut first = None;
        for p in self.network.plugins.iter().rev() {
            let conf = self.plugin_conf(p, result);
            if let Err(e) = self.exec_plugin("DEL", &conf, a, "eth0").await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// CHECK each plugin against the ADD result (CNI 0.4.0 and later).
    pub async fn check(&self, a: &Attachment, result: &Value) -> Result<(), CniError> {
        if self.network.version.starts_with("0.1")
            || self.network.version.starts_with("0.2")
            || self.network.version.starts_with("0.3")
        {
            return Ok(());
        }
        for p in &self.network.plugins {
            let conf = self.plugin_conf(p, Some(result));
            self.exec_plugin("CHECK", &conf, a, "eth0").await?;
        }
        Ok(())
    }

    fn plugin_conf(&self, p: &Value, prev: Option<&Value>) -> Value {
        let mut c = p.clone();
        c["name"] = json!(self.network.name);
        c["cniVersion"] = json!(self.network.version);
        if let Some(r) = prev {
            c["prevResult"] = r.clone();
        }
        c
    }

    async fn exec_plugin(
        &self,
        command: &'static str,
        conf: &Value,
        a: &Attachment,
        ifname: &str,
    ) -> Result<Value, CniError> {
        let plugin = conf["type"].as_str().unwrap_or("").to_string();
        let err = |msg: String| CniError::Plugin {
            plugin: plugin.clone(),
            command,
            msg,
        };
        let bin = self.bin_dir.join(&plugin);
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
        );
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.bin_dir)
            .env("CNI_ARGS", args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("run {}: {e}", bin.display())))?;
        let input = serde_json::to_vec(conf).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&input).await;
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| err(format!("timed out after {}s", TIMEOUT.as_secs())))?
            .map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            // Errors are a JSON object with "msg" (and maybe "details").
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let msg = match (v["msg"].as_str(), v["details"].as_str()) {
                (Some(m), Some(d)) if !d.is_empty() => format!("{m}: {d}"),
                (Some(m), _) => m.to_string(),
                _ => {
                    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    if e.is_empty() {
                        out.status.to_string()
                    } else {
                        e
                    }
                }
            };
            return Err(err(msg));
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("bad result: {e}")))
    }
}

/// The first IPv4 (else any) address of a result, without its prefix length.
pub fn pod_ip(result: &Value) -> Option<String> {
    let ips: Vec<&str> = result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .collect();
    let pick = ips.iter().find(|a| !a.contains(':')).or(ips.first())?;
    Some(pick.split('/').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_first_file_or_writes_default() {
        let d = tempfile::tempdir().unwrap();
        let n = load_or_default(d.path(), "10.1.0.0/16").unwrap();
        assert_eq!(n.name, "skiff");
        assert_eq!(
            n.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.1.0.0/16"
        );
        std::fs::write(
            d.path().join("05-mine.conf"),
            r#"{"cniVersion":"0.4.0","name":"mine","type":"bridge"}"#,
        )
        .unwrap();
        let n = load(d.path()).unwrap();
        assert_eq!((n.name.as_str(), n.plugins.len()), ("mine", 1));
        std::fs::write(
            d.path().join("01-bad.conflist"),
            r#"{"name":"x","plugins":[{"type":"../x"}]}"#,
        )
        .unwrap();
        assert!(load(d.path())
            .unwrap_err()
            .to_string()
            .contains("plain \"type\""));
    }

    #[test]
    fn pod_ip_prefers_ipv4() {
        let r = json!({"ips":[{"address":"fd00::2/64"},{"address":"10.88.0.5/16"}]});
        assert_eq!(pod_ip(&r).as_deref(), Some("10.88.0.5"));
        assert_eq!(pod_ip(&json!({})), None);
    }
}
