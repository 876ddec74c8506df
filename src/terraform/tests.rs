use super::*;
use crate::model;
use crate::model::Kind;
use crate::spec::defaults::{NewCluster, new_cluster};
use crate::spec::{Cluster, DnsType, InstanceGroup, TopologyKind};

fn specs(name: &str, dns: Option<(&str, DnsType)>) -> (Cluster, Vec<InstanceGroup>) {
    new_cluster(&NewCluster {
        name: name.into(),
        zones: vec![
            "us-east-1a".into(),
            "us-east-1b".into(),
            "us-east-1c".into(),
        ],
        master_count: Some(3),
        node_count: Some(3),
        topology: TopologyKind::Private,
        bastion: true,
        dns_zone: dns.map(|(z, _)| z.to_string()),
        dns: dns.map(|(_, t)| t),
        ..Default::default()
    })
    .unwrap()
}

fn build(c: &Cluster, g: &[InstanceGroup]) -> Desired {
    let images = g
        .iter()
        .map(|g| (g.spec.image.clone(), "ami-0123456789abcdef0".to_string()))
        .collect();
    let key = crate::spec::ssh_key::SshPublicKey::parse(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJlU/LYUVmNa5ryLb+i/gjjrF0cnQumo/6n217TlW2IJ demo@keelson",
    )
    .unwrap();
    model::build(&model::Inputs {
        cluster: c,
        groups: g,
        ssh_key: Some(&key),
        images: &images,
        node_agent: &model::instances::NodeAgent {
            sha256: "0".repeat(64),
        },
    })
    .unwrap()
}

fn rendered(name: &str, dns: Option<(&str, DnsType)>) -> (Desired, Rendered) {
    let (c, g) = specs(name, dns);
    let d = build(&c, &g);
    let r = render(&d, &Context { cluster: &c }).unwrap();
    (d, r)
}

/// Every `${TYPE.NAME.ATTR}` in a value.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            // Each `${` starts an expression; its leading traversal is the
            // reference (`file(...)` and `path.module` are not resources).
            for (i, _) in s.match_indices("${") {
                let tail = &s[i + 2..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
                    .unwrap_or(tail.len());
                let traversal = &tail[..end];
                if traversal.contains('.') && !traversal.starts_with("path.") {
                    out.push(traversal.to_string());
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        Value::Object(m) => m.values().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn every_model_resource_is_one_terraform_resource_with_its_references() {
    let (d, r) = rendered("tf.k8s.local", None);
    let res = r.main["resource"].as_object().unwrap();
    for (a, dr) in &d.resources {
        let ty = resource_type(a.kind).unwrap();
        let name = sanitize(&a.name);
        let body = &res[ty][&name];
        assert!(body.is_object(), "{a} is not rendered as {ty}.{name}");
        // Each dependency edge of the model is a reference in terraform, so
        // terraform orders the work as keelson's executor does (the DHCP
        // options' VPC is their association's).
        let mut refs = Vec::new();
        references(body, &mut refs);
        if a.kind == Kind::DhcpOptions {
            references(&res["aws_vpc_dhcp_options_association"][&name], &mut refs);
        }
        for dep in dr.resource.deps() {
            let want = format!(
                "{}.{}.",
                resource_type(dep.kind).unwrap(),
                sanitize(&dep.name)
            );
            assert!(
                refs.iter().any(|r| r.starts_with(&want)),
                "{a} does not refer to {dep}: {refs:?}"
            );
        }
    }
    // Beside the model's resources: the DHCP options' association only.
    let rendered_count: usize = res.values().map(|m| m.as_object().unwrap().len()).sum();
    assert_eq!(rendered_count, d.resources.len() + 1);
    assert_eq!(
        res["aws_vpc_dhcp_options_association"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn every_reference_names_a_rendered_resource_and_every_file_exists() {
    let (_, r) = rendered("tf.k8s.local", None);
    let mut refs = Vec::new();
    references(&r.main["resource"], &mut refs);
    references(&r.main["output"], &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let parts: Vec<&str> = reference.split('.').collect();
        let (ty, name) = (parts[0], parts[1]);
        let resource = &r.main["resource"][ty][name];
        assert!(resource.is_object(), "{reference} names no resource");
    }
    // data/ files: each is read by exactly one expression.
    let text = r.main_text();
    for f in r.files.keys() {
        assert_eq!(
            // Inside a JSON string, the closing quote is escaped.
            text.matches(&format!("/{DATA_DIR}/{f}\\\"")).count(),
            1,
            "{f} is not read once"
        );
    }
    assert!(
        r.files
            .keys()
            .any(|f| f.starts_with("aws_launch_template_"))
    );
    assert!(
        r.files
            .keys()
            .any(|f| f.starts_with("aws_iam_role_policy_"))
    );
    assert!(r.files.keys().any(|f| f.starts_with("aws_key_pair_")));
}

#[test]
fn user_data_files_hold_what_keelson_sends() {
    let (d, r) = rendered("tf.k8s.local", None);
    for (a, dr) in &d.resources {
        let Resource::LaunchTemplate(t) = &dr.resource else {
            continue;
        };
        let file = format!("aws_launch_template_{}_user_data", sanitize(&a.name));
        assert_eq!(
            r.files[&file],
            crate::aws::launch_template::encode_user_data(&t.user_data),
            "{file}"
        );
    }
}

#[test]
fn outputs_are_kops_outputs() {
    let (_, r) = rendered("tf.k8s.local", None);
    let out = r.main["output"].as_object().unwrap();
    let keys: Vec<&str> = out.keys().map(String::as_str).collect();
    insta::assert_json_snapshot!("outputs_gossip", keys);
    assert_eq!(out["cluster_name"]["value"], "tf.k8s.local");
    assert_eq!(out["region"]["value"], "us-east-1");
    assert_eq!(out["vpc_id"]["value"], "${aws_vpc.tf-k8s-local.id}");
    // Gossip: the API answers at the load balancer's own name.
    assert_eq!(
        out["kube_api_endpoint"]["value"],
        "${aws_lb.api-tf-k8s-local.dns_name}"
    );
    assert_eq!(
        out["masters_role_arn"]["value"],
        "${aws_iam_role.masters-tf-k8s-local.arn}"
    );
}

#[test]
fn a_dns_cluster_looks_its_zone_up_and_owns_its_records() {
    let (_, r) = rendered("tf.example.com", Some(("example.com", DnsType::Public)));
    assert_eq!(
        r.main["data"]["aws_route53_zone"]["example-com"],
        json!({ "name": "example.com", "private_zone": false })
    );
    let records = r.main["resource"]["aws_route53_record"]
        .as_object()
        .unwrap();
    let api = &records["api-tf-example-com"];
    assert_eq!(api["type"], "A");
    assert_eq!(
        api["zone_id"],
        "${data.aws_route53_zone.example-com.zone_id}"
    );
    assert_eq!(
        api["alias"][0]["name"],
        "${aws_lb.api-tf-example-com.dns_name}"
    );
    let owner = &records["api-tf-example-com-owner"];
    assert_eq!(owner["type"], "TXT");
    assert_eq!(owner["records"], json!(["keelson-owner=tf.example.com"]));
    assert_eq!(
        r.main["output"]["kube_api_endpoint"]["value"],
        "api.tf.example.com"
    );
}

#[test]
fn a_shared_vpc_is_referred_to_by_id_and_not_rendered() {
    let (mut c, g) = specs("tf.k8s.local", None);
    c.spec.network_id = Some("vpc-0abc".into());
    let d = build(&c, &g);
    let r = render(&d, &Context { cluster: &c }).unwrap();
    let res = &r.main["resource"];
    assert!(res.get("aws_vpc").is_none());
    let subnet = res["aws_subnet"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(subnet["vpc_id"], "vpc-0abc");
    assert_eq!(r.main["output"]["vpc_id"]["value"], "vpc-0abc");
    // The shared VPC's gateway is found by its attachment.
    let igw = r.main["data"]["aws_internet_gateway"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(igw["filter"][0]["values"], json!(["vpc-0abc"]));
}

#[test]
fn names_are_terraform_identifiers() {
    assert_eq!(
        sanitize("us-east-1a.demo.k8s.local"),
        "us-east-1a-demo-k8s-local"
    );
    assert_eq!(
        sanitize("masters.c:ingress:tcp:443-443:0.0.0.0/0"),
        "masters-c-ingress-tcp-443-443-0-0-0-0-0"
    );
    assert_eq!(sanitize("10.0.0.0/8"), "_10-0-0-0-8");
}

#[test]
fn rendering_is_deterministic() {
    let (_, a) = rendered("tf.k8s.local", None);
    let (_, b) = rendered("tf.k8s.local", None);
    assert_eq!(a.main_text(), b.main_text());
    assert_eq!(a.files, b.files);
}

/// The golden file, as kops' `tests/integration/update_cluster/*/kubernetes.tf`:
/// the reference cluster (3 zones, private, a bastion, 3 masters, 3 nodes).
#[test]
fn golden_reference_cluster() {
    let (_, r) = rendered("golden.k8s.local", None);
    insta::assert_snapshot!("reference_cluster", r.main_text());
    let files: Vec<&String> = r.files.keys().collect();
    insta::assert_json_snapshot!("reference_cluster_files", files);
}
