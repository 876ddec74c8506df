//! The bootstrap's look-up that reaches AWS beyond S3, on the emulator: the API
//! load balancer's name of a gossip cluster (ELBv2 DescribeLoadBalancers through
//! the SDK, as `keelson node bootstrap` does it). The flow itself, whose host
//! actions cannot run here, is tested with a recording host in
//! src/node/bootstrap_tests.rs.

use keelson::node::agent::{EtcdAccess, Node};
use keelson::node::bootstrap::Remote;
use keelson::node::env::NodeEnv;
use keelson::node::identity::Identity;
use keelson::state::StateStore;

use crate::harness::*;

#[test]
fn a_gossip_clusters_api_balancer_is_found_by_name() {
    let sb = Sandbox::new("node-lb");
    let name = format!("api-nlb-{}", std::process::id() % 100_000);
    let dns = block_on(async {
        let ec2 = ec2();
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.77.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.77.1.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap();
        let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk_config());
        let lb = elb
            .create_load_balancer()
            .name(&name)
            .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Network)
            .subnets(&subnet)
            .send()
            .await
            .unwrap();
        lb.load_balancers()[0].dns_name().unwrap().to_string()
    });
    let store = block_on(StateStore::open(&sb.state(), sdk_config(), false)).unwrap();
    let node = Node::new(
        NodeEnv {
            cluster: "gossip.k8s.local".into(),
            role: "node".into(),
            api_load_balancer: name.clone(),
            ..Default::default()
        },
        Identity {
            instance_id: "i-0node".into(),
            private_ip: "10.77.1.10".into(),
            private_dns: "ip-10-77-1-10.ec2.internal".into(),
            region: "us-east-1".into(),
        },
        store,
        sdk_config(),
        EtcdAccess {
            scheme: "https".into(),
            port: 2379,
            peer_port: 2380,
            pki_dir: sb.path("pki"),
        },
    );
    assert_eq!(
        block_on(node.load_balancer_dns(&name)).unwrap(),
        Some(dns.clone())
    );
    // Not created yet: no name, and no error (the bootstrap retries).
    assert_eq!(
        block_on(node.load_balancer_dns("api-not-there-yet")).unwrap(),
        None
    );
    assert!(!dns.is_empty());
}
