//! `skiff-agent describe pod`: a pod in detail, as `kubectl describe`
//! prints it, with its events.

use anyhow::Result;
use serde_json::Value;

use super::{call, get_pod, status, table, DescribeArgs};

pub fn describe(a: &DescribeArgs) -> Result<()> {
    let p = get_pod(&a.conn, &a.name)?;
    let st = p.status.clone().unwrap_or_default();
    let spec = p.spec.clone().unwrap_or_default();
    let mut o = String::new();
    let line =
        |o: &mut String, k: &str, v: &str| o.push_str(&format!("{:<14}{v}\n", format!("{k}:")));
    line(&mut o, "Name", p.metadata.name.as_deref().unwrap_or(""));
    line(
        &mut o,
        "Namespace",
        p.metadata.namespace.as_deref().unwrap_or(""),
    );
    line(
        &mut o,
        "Node",
        spec.node_name.as_deref().unwrap_or("<none>"),
    );
    line(
        &mut o,
        "Start Time",
        &st.start_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or("<none>".into()),
    );
    let labels = p.metadata.labels.clone().unwrap_or_default();
    line(
        &mut o,
        "Labels",
        &if labels.is_empty() {
            "<none>".into()
        } else {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    line(&mut o, "Status", &status::display_status(&p));
    if let Some(r) = &st.reason {
        line(&mut o, "Reason", r);
    }
    if let Some(m) = &st.message {
        line(&mut o, "Message", m);
    }
    line(&mut o, "IP", st.pod_ip.as_deref().unwrap_or(""));
    let section = |o: &mut String,
                   title: &str,
                   specs: &[k8s_openapi::api::core::v1::Container],
                   statuses: &[k8s_openapi::api::core::v1::ContainerStatus]| {
        if specs.is_empty() {
            return;
        }
        o.push_str(&format!("{title}:\n"));
        for c in specs {
            let s = statuses.iter().find(|s| s.name == c.name);
            o.push_str(&format!("  {}:\n", c.name));
            let kv = |o: &mut String, k: &str, v: String| {
                o.push_str(&format!("    {:<16}{v}\n", format!("{k}:")))
            };
            kv(
                o,
                "Container ID",
                s.and_then(|s| s.container_id.clone()).unwrap_or_default(),
            );
            kv(o, "Image", c.image.clone().unwrap_or_default());
            kv(
                o,
                "Image ID",
                s.map(|s| s.image_id.clone()).unwrap_or_default(),
            );
            if let Some(cmd) = &c.command {
                kv(o, "Command", cmd.join(" "));
            }
            if let Some(args) = &c.args {
                kv(o, "Args", args.join(" "));
            }
            let state_lines =
                |o: &mut String,
                 label: &str,
                 cs: Option<&k8s_openapi::api::core::v1::ContainerState>| {
                    let Some(cs) = cs else { return };
                    if let Some(w) = &cs.waiting {
                        kv(o, label, "Waiting".into());
                        kv(o, "  Reason", w.reason.clone().unwrap_or_default());
                        if let Some(m) = &w.message {
                            kv(o, "  Message", m.clone());
                        }
                    } else if let Some(r) = &cs.running {
                        kv(o, label, "Running".into());
                        kv(
                            o,
                            "  Started",
                            r.started_at
                                .as_ref()
                                .map(|t| t.0.to_string())
                                .unwrap_or_default(),
                        );
                    } else if let Some(t) = &cs.terminated {
                        kv(o, label, "Terminated".into());
                        kv(o, "  Reason", t.reason.clone().unwrap_or_default());
                        if let Some(m) = &t.message {
                            kv(o, "  Message", m.clone());
                        }
                        kv(o, "  Exit Code", t.exit_code.to_string());
                        if let Some(s) = t.signal {
                            kv(o, "  Signal", s.to_string());
                        }
                        kv(
                            o,
                            "  Started",
                            t.started_at
                                .as_ref()
                                .map(|t| t.0.to_string())
                                .unwrap_or_default(),
                        );
                        kv(
                            o,
                            "  Finished",
                            t.finished_at
                                .as_ref()
                                .map(|t| t.0.to_string())
                                .unwrap_or_default(),
                        );
                    }
                };
            state_lines(o, "State", s.and_then(|s| s.state.as_ref()));
            if let Some(l) = s
                .and_then(|s| s.last_state.as_ref())
                .filter(|l| l.running.is_some() || l.waiting.is_some() || l.terminated.is_some())
            {
                state_lines(o, "Last State", Some(l));
            }
            kv(
                o,
                "Ready",
                s.is_some_and(|s| s.ready)
                    .to_string()
                    .replace("true", "True")
                    .replace("false", "False"),
            );
            kv(
                o,
                "Restart Count",
                s.map_or(0, |s| s.restart_count).to_string(),
            );
            for (k, p) in [
                ("Liveness", &c.liveness_probe),
                ("Readiness", &c.readiness_probe),
                ("Startup", &c.startup_probe),
            ] {
                if let Some(p) = p {
                    kv(o, k, describe_probe(p));
                }
            }
        }
    };
    section(
        &mut o,
        "Init Containers",
        spec.init_containers.as_deref().unwrap_or(&[]),
        st.init_container_statuses.as_deref().unwrap_or(&[]),
    );
    section(
        &mut o,
        "Containers",
        &spec.containers,
        st.container_statuses.as_deref().unwrap_or(&[]),
    );
    o.push_str("Conditions:\n  Type                        Status\n");
    for c in st.conditions.iter().flatten() {
        o.push_str(&format!("  {:<28}{}\n", c.type_, c.status));
    }
    let ev: Value = serde_json::from_slice(&call(
        &a.conn,
        "GET",
        &format!("/events?namespace={}&pod={}", a.conn.namespace, a.name),
        Vec::new(),
    )?)?;
    let items = ev["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        o.push_str("Events:       <none>\n");
    } else {
        o.push_str("Events:\n");
        let mut rows = vec![vec![
            "  Type".to_string(),
            "Reason".into(),
            "Age".into(),
            "From".into(),
            "Message".into(),
        ]];
        rows.push(vec![
            "  ----".to_string(),
            "------".into(),
            "----".into(),
            "----".into(),
            "-------".into(),
        ]);
        for e in items {
            let ts = |k: &str| {
                e[k].as_str()
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            };
            let age = match (
                ts("firstTimestamp"),
                ts("lastTimestamp"),
                e["count"].as_u64(),
            ) {
                (Some(f), Some(l), Some(n)) if n > 1 => {
                    format!("{} (x{n} over {})", status::age(l), status::age(f))
                }
                (_, Some(l), _) => status::age(l),
                _ => String::new(),
            };
            rows.push(vec![
                format!("  {}", e["type"].as_str().unwrap_or("")),
                e["reason"].as_str().unwrap_or("").into(),
                age,
                "skiff-agent".into(),
                e["message"].as_str().unwrap_or("").into(),
            ]);
        }
        let mut buf = Vec::new();
        table(&mut buf, &rows)?;
        o.push_str(&String::from_utf8_lossy(&buf));
    }
    print!("{o}");
    Ok(())
}

pub(super) fn describe_probe(p: &k8s_openapi::api::core::v1::Probe) -> String {
    let t = skiff_agent::probe::Timing::of(p);
    let port = |p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| match p {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    };
    let handler = if let Some(e) = &p.exec {
        format!("exec [{}]", e.command.clone().unwrap_or_default().join(" "))
    } else if let Some(h) = &p.http_get {
        format!(
            "http-get {}://{}:{}{}",
            h.scheme.as_deref().unwrap_or("HTTP").to_lowercase(),
            h.host.as_deref().unwrap_or(""),
            port(&h.port),
            h.path.as_deref().unwrap_or("/")
        )
    } else if let Some(s) = &p.tcp_socket {
        format!(
            "tcp-socket {}:{}",
            s.host.as_deref().unwrap_or(""),
            port(&s.port)
        )
    } else if let Some(g) = &p.grpc {
        format!(
            "grpc <pod>:{} {}",
            g.port,
            g.service.as_deref().unwrap_or("")
        )
    } else {
        String::new()
    };
    format!(
        "{handler} delay={}s timeout={}s period={}s #success={} #failure={}",
        t.initial_delay.as_secs(),
        t.timeout.as_secs(),
        t.period.as_secs(),
        t.success_threshold,
        t.failure_threshold
    )
}
