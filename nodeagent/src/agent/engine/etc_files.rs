//! The files kubelet writes for every pod: `/etc/hosts`, `/etc/hostname`
//! and `/etc/resolv.conf` (pkg/kubelet/kubelet_pods.go and
//! pkg/kubelet/network/dns; "DNS for Services and Pods" and "Adding
//! entries to Pod /etc/hosts with HostAliases" in the Kubernetes docs).
//!
//! All containers of a pod share one copy of each, bound over the image's:
//!
//! - **hostname**: `spec.hostname`, else the pod's name (at most 63
//!   characters); a `hostNetwork` pod has the node's;
//! - **hosts**: localhost, the pod's own address under its hostname (and
//!   its fully qualified name with `spec.subdomain`), then the
//!   `spec.hostAliases` lines; a `hostNetwork` pod gets the node's file
//!   with the aliases appended;
//! - **resolv.conf** by `dnsPolicy`: `Default` copies the node's;
//!   `ClusterFirst` points at the cluster DNS service (`--cluster-dns`)
//!   with the search path `NS.svc.DOMAIN svc.DOMAIN DOMAIN` and
//!   `ndots:5`, or falls back to `Default` (with a `MissingClusterDNS`
//!   event) when the node has none; `ClusterFirstWithHostNet` is
//!   `ClusterFirst` even for a `hostNetwork` pod, which otherwise gets
//!   `Default`; `None` is only `dnsConfig`. `dnsConfig`'s nameservers,
//!   searches and options are then merged in.

use k8s_openapi::api::core::v1::Pod;

/// The node's DNS flags (kubelet's `--cluster-dns`, `--cluster-domain`,
/// `--resolv-conf`).
#[derive(Debug, Clone)]
pub struct NodeDns {
    /// The cluster DNS service's addresses (`--cluster-dns`); with none,
    /// `ClusterFirst` falls back to `Default`.
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain (`--cluster-domain`, `cluster.local`), for
    /// search paths and the hosts file.
    pub cluster_domain: String,
    /// The node's resolver file (`--resolv-conf`), which `dnsPolicy: Default`
    /// copies.
    pub resolv_conf: std::path::PathBuf,
}

impl Default for NodeDns {
    fn default() -> Self {
        NodeDns {
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

impl NodeDns {
    /// The settings, without the node's resolver file read yet.
    pub fn settings(&self) -> DnsSettings {
        DnsSettings {
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            host_resolv: String::new(),
        }
    }
}

/// The DNS settings a pod's files are made from.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The nameservers of `ClusterFirst` pods; empty when the node has none.
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// The node's own resolver file.
    pub host_resolv: String,
}

/// The parts of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolv {
    /// `nameserver` addresses, in order (the resolver reads the first 3).
    pub nameservers: Vec<String>,
    /// The `search` domains (a `domain` line counts as one; the last such line
    /// wins).
    pub searches: Vec<String>,
    /// `options` values, such as `ndots:5` or `edns0`.
    pub options: Vec<String>,
}

impl Resolv {
    /// Read a resolv.conf(5); lines other than `nameserver`, `search`,
    /// `domain` and `options` are ignored.
    pub fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => r.nameservers.extend(f.next().map(String::from)),
                Some("search") | Some("domain") => {
                    r.searches = f.map(String::from).collect();
                }
                Some("options") => r.options.extend(f.map(String::from)),
                _ => {}
            }
        }
        r
    }

    /// Write it out as resolv.conf: the nameservers, then `search` and
    /// `options` lines unless empty.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.nameservers {
            out.push_str(&format!("nameserver {n}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The pod's hostname.
pub fn hostname(pod: &Pod, node_hostname: &str) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return node_hostname.to_string();
    }
    let h = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    // A hostname is at most 63 characters; kubelet cuts, then drops a
    // trailing '-' or '.'.
    let mut h: String = h.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// The pod's /etc/hosts.
pub fn hosts(pod: &Pod, ip: &str, node_hosts: &str, domain: &str) -> String {
    let spec = pod.spec.as_ref();
    let mut out = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        node_hosts.to_string()
    } else {
        let mut s = String::from(
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n",
        );
        if !ip.is_empty() {
            let h = hostname(pod, "");
            match spec
                .and_then(|s| s.subdomain.as_deref())
                .filter(|d| !d.is_empty())
            {
                Some(sub) => {
                    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                    s.push_str(&format!("{ip}\t{h}.{sub}.{ns}.svc.{domain}\t{h}\n"));
                }
                None => s.push_str(&format!("{ip}\t{h}\n")),
            }
        }
        s
    };
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(a) = aliases.filter(|a| !a.is_empty()) {
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
        out.push_str("\n# Entries added by HostAliases.\n");
        for h in a {
            let names = h.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", h.ip));
        }
    }
    out
}

/// Why resolv.conf fell back, for the `MissingClusterDNS` event.
pub const MISSING_CLUSTER_DNS: &str = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";

/// The pod's resolv.conf, and whether it fell back for want of a cluster
/// DNS.
pub fn resolv_conf(pod: &Pod, dns: &DnsSettings) -> (String, bool) {
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host = Resolv::parse(&dns.host_resolv);
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_net,
        _ => false,
    };
    let mut fell_back = false;
    let mut r = match policy {
        "None" => Resolv::default(),
        _ if cluster_first && !dns.cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let d = &dns.cluster_domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(host.searches.iter().cloned());
            Resolv {
                nameservers: dns.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => {
            fell_back = cluster_first;
            host
        }
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in c.nameservers.iter().flatten() {
            if !r.nameservers.contains(n) {
                r.nameservers.push(n.clone());
            }
        }
        for s in c.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in c.options.iter().flatten() {
            let Some(oname) = o.name.clone().filter(|n| !n.is_empty()) else {
                continue;
            };
            let rendered = match &o.value {
                Some(v) => format!("{oname}:{v}"),
                None => oname.clone(),
            };
            let name = |x: &String| x.split(':').next().unwrap_or("").to_string();
            r.options.retain(|x| name(x) != oname);
            r.options.push(rendered);
        }
    }
    // The resolver reads at most 3 servers and 6 search domains.
    r.nameservers.truncate(3);
    r.searches.truncate(6);
    (r.render(), fell_back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = serde_json::json!([{"name": "c"}]);
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec
        }))
        .unwrap()
    }

    fn dns(cluster: &[&str]) -> DnsSettings {
        DnsSettings {
            cluster_dns: cluster.iter().map(|s| s.to_string()).collect(),
            cluster_domain: "cluster.local".into(),
            host_resolv: "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    #[test]
    fn hosts_name_the_pod_and_its_aliases() {
        let p = pod(serde_json::json!({
            "hostname": "db", "subdomain": "sub",
            "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["a.example", "b"]}]
        }));
        let h = hosts(&p, "10.1.0.7", "", "cluster.local");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            h.contains("10.1.0.7\tdb.sub.shop.svc.cluster.local\tdb\n"),
            "{h}"
        );
        assert!(h.ends_with("\n# Entries added by HostAliases.\n10.9.9.9\ta.example\tb\n"));
        let plain = hosts(&pod(serde_json::json!({})), "10.1.0.8", "", "cluster.local");
        assert!(plain.contains("10.1.0.8\tweb-0\n"));
        let hn = pod(
            serde_json::json!({"hostNetwork": true, "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["x"]}]}),
        );
        assert_eq!(
            hosts(&hn, "", "127.0.0.1 localhost\n", "cluster.local"),
            "127.0.0.1 localhost\n\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
        );
    }

    #[test]
    fn resolv_conf_by_policy() {
        let (r, fell) = resolv_conf(&pod(serde_json::json!({})), &dns(&["10.0.0.10"]));
        assert_eq!(
            r,
            "nameserver 10.0.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
        assert!(!fell);
        let (r, fell) = resolv_conf(&pod(serde_json::json!({})), &dns(&[]));
        assert_eq!(
            r,
            "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"
        );
        assert!(fell, "ClusterFirst without a cluster DNS falls back");
        let (r, fell) = resolv_conf(
            &pod(serde_json::json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["a.b"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            &dns(&["10.0.0.10"]),
        );
        assert_eq!(r, "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2 edns0\n");
        assert!(!fell);
        let (r, _) = resolv_conf(
            &pod(serde_json::json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}})),
            &dns(&["10.0.0.10"]),
        );
        assert!(r.ends_with("options ndots:1\n"), "{r}");
        let (r, _) = resolv_conf(
            &pod(serde_json::json!({"hostNetwork": true})),
            &dns(&["10.0.0.10"]),
        );
        assert!(
            r.starts_with("nameserver 192.0.2.53"),
            "hostNetwork ClusterFirst is Default"
        );
    }

    #[test]
    fn hostnames_are_cut_to_63() {
        let mut p = pod(serde_json::json!({}));
        p.metadata.name = Some(format!("{}-x", "a".repeat(62)));
        assert_eq!(hostname(&p, "node"), "a".repeat(62));
    }
}
