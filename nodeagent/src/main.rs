//! `skiff-agent`: the pod daemon (`serve`), its clients (`get`, `describe`,
//! `logs`, `exec`, `apply`, `delete`), the image commands (which work
//! without a daemon), and the internal `monitor` command the daemon runs
//! (one per container) when `skiff-monitor` is not next to it.

mod client;
mod image_cmd;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_agent::agent::{self, api::Listen};

const DEFAULT_LISTEN: &str = "unix:///run/skiff/agent.sock";

#[derive(Parser)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff's node agent: runs Kubernetes pods from manifest files, or as a node of a cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Directory of Pod manifests (YAML or JSON), like kubelet's static pods
    #[arg(long, default_value = "/etc/skiff/manifests")]
    manifests: PathBuf,
    /// Join a Kubernetes cluster as a node: the API server and credentials
    /// (client certificate or token) of this kubeconfig
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Labels the Node registers with (node mode), e.g. zone=a,disk=ssd
    #[arg(long, value_parser = parse_labels, default_value = "")]
    node_labels: std::collections::BTreeMap<String, String>,
    /// Taints the Node registers with (node mode): key[=value]:Effect,...
    #[arg(long, value_parser = parse_taints, default_value = "")]
    register_with_taints: Taints,
    /// Most pods this node runs (node mode; kubelet's default)
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Port of the kubelet API, as reported in the Node's daemonEndpoints
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The node's address in the cluster (default: the source address of
    /// the default route)
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// The kubelet API's serving certificate, PEM (default: a self-signed
    /// one in the state directory, for the node's name and address)
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file, PEM
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates the kubelet API accepts (the API
    /// server's kubelet client); without it, only bearer tokens are
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Images, container layers, volumes and logs
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Pod records, sockets, network namespaces
    #[arg(long, default_value = "/run/skiff/agent")]
    state_dir: PathBuf,
    /// unix:///PATH or tcp://127.0.0.1:PORT
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Bearer token file, required with a TCP listener
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Subnet of the default CNI network (written when --cni-conf-dir has none)
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The skiff runtime (default: next to this binary, else on PATH)
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// Name reported as spec.nodeName (default: the host name)
    #[arg(long)]
    node_name: Option<String>,
    /// Registries to reach over plain HTTP (host:port), repeatable
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Rotate a container's log file past this many bytes
    #[arg(long, default_value_t = 10 << 20)]
    container_log_max_size: u64,
    #[arg(long, default_value_t = 5)]
    container_log_max_files: u32,
    /// Per-registry CA certificates for pulls: DIR/<host>/ca.crt
    #[arg(long, default_value = "/etc/skiff/certs.d")]
    certs_dir: PathBuf,
    /// The cluster DNS service's addresses, for pods with dnsPolicy
    /// ClusterFirst (comma-separated; none: they get the node's resolver)
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    /// The cluster's DNS domain, for pods' search paths
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's resolver file, copied for dnsPolicy Default
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Write a timeline of each pod start to DIR (Chrome trace-event JSON,
    /// one file per pod, with the runtime's own spans; draw it with
    /// scripts/trace-svg.py)
    #[arg(long, value_name = "DIR")]
    trace_dir: Option<PathBuf>,
    /// Testing only: CrashLoopBackOff start and cap, e.g. "1s,8s"
    #[arg(long, hide = true)]
    test_backoff: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run pods from a manifest directory (and, with --kubeconfig, those a
    /// cluster schedules here) and serve their status
    Serve(Box<ServeArgs>),
    /// Show pods
    Get(client::GetArgs),
    /// Show a pod in detail, with its events
    Describe(client::DescribeArgs),
    /// Print a container's logs
    Logs(client::LogsArgs),
    /// Run a command in a container
    Exec(client::ExecArgs),
    /// Add or update a manifest in the agent's manifest directory
    Apply(client::ApplyArgs),
    /// Delete a pod (removes it from its manifest)
    Delete(client::DeleteArgs),
    /// Manage images in the local store
    Image(image_cmd::ImageArgs),
    /// Internal: watch over one container (started by the agent; its flags
    /// are `skiff_agent::monitor::USAGE`)
    #[command(hide = true, disable_help_flag = true)]
    Monitor {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = n.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => anyhow::bail!("bad duration {s:?}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `--register-with-taints`' value.
#[derive(Clone, Debug, Default)]
pub struct Taints(Vec<k8s_openapi::api::core::v1::Taint>);

/// `k=v,k2=v2`, as kubelet's `--node-labels`.
fn parse_labels(s: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for kv in s.split(',').map(str::trim).filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("label {kv:?}: want key=value"))?;
        if k.is_empty() {
            anyhow::bail!("label {kv:?}: empty key");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `key[=value]:Effect,...`, as kubelet's `--register-with-taints`.
fn parse_taints(s: &str) -> anyhow::Result<Taints> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (kv, effect) = t
            .rsplit_once(':')
            .with_context(|| format!("taint {t:?}: want key[=value]:Effect"))?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            anyhow::bail!("taint {t:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            anyhow::bail!("taint {t:?}: empty key");
        }
        out.push(k8s_openapi::api::core::v1::Taint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(Taints(out))
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("find this binary")?;
    let runtime = match a.runtime {
        Some(r) => r,
        None => {
            let sibling = exe.with_file_name("skiff");
            if sibling.exists() {
                sibling
            } else {
                PathBuf::from("skiff")
            }
        }
    };
    let restart_backoff = match &a.test_backoff {
        Some(s) => {
            let (i, m) = s
                .split_once(',')
                .context("--test-backoff: want INITIAL,MAX")?;
            skiff_agent::backoff::Policy {
                initial: parse_duration(i)?,
                max: parse_duration(m)?,
            }
        }
        None => Default::default(),
    };
    let token = match &a.token_file {
        Some(f) => Some(agent::api::read_token(f)?),
        None => None,
    };
    let listen = Listen::parse(&a.listen, token).map_err(anyhow::Error::msg)?;
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let cfg = agent::Config {
        manifests: abs(a.manifests),
        data_dir: abs(a.data_dir),
        state_dir: abs(a.state_dir),
        pod_cidr: a.pod_cidr,
        cni_bin_dir: a.cni_bin_dir,
        cni_conf_dir: a.cni_conf_dir,
        runtime,
        exe: {
            let small = exe.with_file_name("skiff-monitor");
            if small.exists() {
                small
            } else {
                exe
            }
        },
        node_name: a.node_name.unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().to_lowercase())
                .unwrap_or_else(|_| "localhost".into())
        }),
        restart_backoff,
        image_backoff: restart_backoff,
        log_max_size: a.container_log_max_size,
        log_max_files: a.container_log_max_files,
        insecure_registries: a.insecure_registries,
        certs_dir: a.certs_dir,
        dns: agent::engine::etc_files::NodeDns {
            cluster_dns: a.cluster_dns,
            cluster_domain: a.cluster_domain,
            resolv_conf: a.resolv_conf,
        },
        trace_dir: match a.trace_dir {
            Some(d) => {
                let d = abs(d);
                agent::trace::Traces::new(Some(d.clone()))
                    .with_context(|| format!("--trace-dir {}", d.display()))?;
                Some(d)
            }
            None => None,
        },
    };
    let node = a.kubeconfig.map(|k| agent::node::NodeConfig {
        kubeconfig: abs(k),
        labels: a.node_labels,
        taints: a.register_with_taints.0,
        max_pods: a.max_pods,
        kubelet_port: a.kubelet_port,
        ip: a.node_ip.map(|i| i.to_string()),
        tls_cert_file: a.tls_cert_file.map(abs),
        tls_private_key_file: a.tls_private_key_file.map(abs),
        client_ca_file: a.client_ca_file.map(abs),
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(agent::serve(cfg, listen, node))
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Monitor { .. }) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .init();
    }
    let result = match cli.command {
        Command::Serve(a) => serve(*a),
        Command::Get(a) => client::get(&a),
        Command::Describe(a) => client::describe(&a),
        Command::Logs(a) => client::logs(&a),
        Command::Exec(a) => client::exec(&a),
        Command::Apply(a) => client::apply(&a),
        Command::Delete(a) => client::delete(&a),
        Command::Image(a) => image_cmd::run(&a),
        Command::Monitor { args } => {
            std::process::exit(skiff_agent::monitor::main("skiff-agent", args))
        }
    };
    if let Err(e) = result {
        eprintln!("skiff-agent: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, "a: b: c", each cause said once:
/// many of the library errors already include their cause in their own
/// message (so they read well alone), and it is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
