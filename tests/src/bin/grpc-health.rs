//! A gRPC health server (grpc.health.v1) for the agent's probe tests.
//!
//! `grpc-health PORT [SERVING_SECS]`: answers SERVING for the empty service
//! name and for "app", then NOT_SERVING after SERVING_SECS seconds (never,
//! when absent). Linked statically, it runs in a busybox pod.

use std::time::Duration;

use tonic_health::ServingStatus;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: grpc-health PORT [SECS]");
    let secs: Option<u64> = args.get(2).and_then(|s| s.parse().ok());
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("app", ServingStatus::Serving)
        .await;
    if let Some(s) = secs {
        let r = reporter.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(s)).await;
            r.set_service_status("", ServingStatus::NotServing).await;
            r.set_service_status("app", ServingStatus::NotServing).await;
            println!("not serving");
        });
    }
    println!("serving on {port}");
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(([0, 0, 0, 0], port).into())
        .await
        .expect("serve");
}
