//! `kube-sim --cluster NAME --dir DIR`: serves until SIGTERM or Ctrl-C and prints
//! the kubeconfig path once listening. AWS comes from the standard environment
//! (AWS_ENDPOINT_URL for the emulator); `--no-aws` serves without mirroring.

use std::path::PathBuf;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: kube-sim --cluster NAME --dir DIR [--port N] [--ready-after SECS] [--poll SECS] [--kubernetes-version vX.Y.Z] [--no-aws] [--node ID:ROLE:GROUP]..."
    );
    std::process::exit(64)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut cluster, mut dir, mut port, mut nodes) = (None, None, 0u16, vec![]);
    let (mut ready_after, mut poll, mut version, mut aws) =
        (3.0f64, 1.0f64, "v1.35.0".to_string(), true);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--cluster" => cluster = Some(value()),
            "--dir" => dir = Some(PathBuf::from(value())),
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--ready-after" => ready_after = value().parse().unwrap_or_else(|_| usage()),
            "--poll" => poll = value().parse().unwrap_or_else(|_| usage()),
            "--kubernetes-version" => version = value(),
            "--no-aws" => aws = false,
            // An instance that exists without EC2, e.g. i-1:master:master-us-east-1a.
            "--node" => {
                let v = value();
                let [id, role, group] = v.splitn(3, ':').collect::<Vec<_>>()[..] else {
                    usage()
                };
                nodes.push(kube_sim::Instance {
                    id: id.into(),
                    private_dns: String::new(),
                    zone: "us-east-1a".into(),
                    instance_type: "t3.medium".into(),
                    role: role.into(),
                    group: group.into(),
                    private_ip: String::new(),
                });
            }
            _ => usage(),
        }
    }
    let (Some(cluster), Some(dir)) = (cluster, dir) else {
        usage()
    };
    let ec2 = if aws {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .load()
            .await;
        Some(aws_sdk_ec2::Client::new(&config))
    } else {
        None
    };
    let handle = kube_sim::start(kube_sim::Config {
        cluster,
        dir,
        port,
        ready_after: Duration::from_secs_f64(ready_after),
        poll: Duration::from_secs_f64(poll),
        kubernetes_version: version,
        ec2,
        extra_instances: nodes,
    })
    .await
    .unwrap_or_else(|e| {
        eprintln!("kube-sim: {e}");
        std::process::exit(1)
    });
    println!("{}", handle.kubeconfig.display());
    eprintln!(
        "kube-sim: serving {} (kubeconfig {})",
        handle.server,
        handle.kubeconfig.display()
    );
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
