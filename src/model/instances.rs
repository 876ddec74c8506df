//! Instances: a launch template and an ASG per instance group (kops' names:
//! `master-ZONE.masters.NAME`, `nodes-ZONE.NAME`, `bastions.NAME`).

use sha2::{Digest, Sha256};

use super::*;
use crate::spec::{Cluster, InstanceGroup, Role};

pub const CLOUD_CONFIG: &str = include_str!("../../templates/bootstrap/cloud-config.yaml.j2");
/// What masters and nodes run from cloud-init: fetch and check the node agent,
/// which systemd then runs (`keelson node bootstrap`, and `node agent` on masters).
pub const FETCH_AGENT: &str = include_str!("../../templates/bootstrap/fetch-agent.sh");
pub const BASTION_BOOTSTRAP: &str = include_str!("../../templates/bootstrap/bastion.sh");
/// The instance tag rolling-update compares with the template's revision.
pub const REVISION_TAG: &str = "keelson.dev/revision";

/// The node agent the instances run: its SHA-256 names it in the state store
/// (`NAME/agent/keelson-<sha256>`) and is checked before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgent {
    pub sha256: String,
}

/// The CPU architecture of an EC2 machine type, where it is known: AWS Graviton
/// families carry a `g` right after their generation digit (`m6g`, `c7gn`,
/// `t4g`, `r8gd`), and `a1` is the first Graviton.
pub fn machine_arch(machine_type: &str) -> Option<&'static str> {
    let family = machine_type.split('.').next()?;
    if family == "a1" {
        return Some("arm64");
    }
    let digit = family.find(|c: char| c.is_ascii_digit())?;
    let after = family[digit..].trim_start_matches(|c: char| c.is_ascii_digit());
    Some(if after.starts_with('g') {
        "arm64"
    } else {
        "x86_64"
    })
}

pub fn group_resource_name(g: &InstanceGroup, cluster: &str) -> String {
    match g.spec.role {
        Role::Master => format!("{}.masters.{cluster}", g.name()),
        _ => format!("{}.{cluster}", g.name()),
    }
}

fn role_tag(role: Role) -> String {
    format!("k8s.io/role/{}", role.as_str().to_lowercase())
}

/// POSIX shell single quoting, for values in the sourced env file.
fn shell_quote(v: String) -> String {
    format!("'{}'", v.replace('\'', r#"'\''"#))
}

/// Text as the content of a cloud-config `write_files` block (six spaces).
fn indent_block(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("      {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The user-data of a group: cloud-config from `templates/bootstrap/`, with the
/// role's script and the values it needs. It holds no secret (see the script).
pub fn user_data(c: &Cluster, g: &InstanceGroup, agent: &NodeAgent) -> Result<String, ModelError> {
    let role = g.spec.role.as_str().to_lowercase();
    let mut env: Vec<(&str, String)> = vec![
        ("KEELSON_CLUSTER", c.name().to_string()),
        ("KEELSON_ROLE", role.clone()),
        ("KEELSON_INSTANCE_GROUP", g.name().to_string()),
    ];
    let script = if g.spec.role == Role::Bastion {
        BASTION_BOOTSTRAP
    } else {
        let (bucket, prefix) = super::iam::state_location(c).unwrap_or_default();
        let labels: Vec<String> = g
            .spec
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let networking: Vec<&str> = c
            .spec
            .networking
            .plugins()
            .iter()
            .map(|p| p.as_str())
            .collect();
        env.extend([
            (
                "KEELSON_KUBERNETES_VERSION",
                c.spec.kubernetes_version.clone(),
            ),
            ("KEELSON_STATE_BUCKET", bucket),
            (
                "KEELSON_AGENT_KEY",
                format!("{prefix}agent/keelson-{}", agent.sha256),
            ),
            ("KEELSON_AGENT_SHA256", agent.sha256.clone()),
            ("KEELSON_STATE_PREFIX", prefix),
            (
                "KEELSON_API_NAME",
                super::load_balancers::api_dns_name(c).unwrap_or_default(),
            ),
            (
                "KEELSON_API_LOAD_BALANCER",
                super::load_balancers::api_name(c.name()),
            ),
            ("KEELSON_POD_CIDR", POD_CIDR.to_string()),
            (
                "KEELSON_SERVICE_CIDR",
                c.spec.service_cluster_ip_range.to_string(),
            ),
            ("KEELSON_NETWORKING", networking.join(",")),
            ("KEELSON_NODE_LABELS", labels.join(",")),
            ("KEELSON_TAINTS", g.spec.taints.join(",")),
        ]);
        FETCH_AGENT
    };
    let node_config = crate::spec::components::NodeConfig::of(c, g);
    let (hooks, files) = crate::spec::components::hooks_and_files(c, g);
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            minijinja::context! {
                name => f.name, path => f.path(), content => indent_block(&f.content)
            }
        })
        .collect();
    let hooks: Vec<_> = hooks
        .iter()
        .map(|h| minijinja::context! { name => h.name, unit => indent_block(&h.unit()) })
        .collect();
    let mut jinja = minijinja::Environment::new();
    jinja.add_filter("shell_quote", shell_quote);
    let ctx = minijinja::context! {
        cluster => c.name(),
        group => g.name(),
        role => role,
        env => env,
        // Indented here for the YAML block: the template engine runs without its
        // optional filters.
        script => indent_block(script),
        files => files,
        hooks => hooks,
        node_config => if node_config.is_empty() {
            String::new()
        } else {
            indent_block(&node_config.to_yaml())
        },
    };
    jinja
        .render_str(CLOUD_CONFIG, ctx)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| ModelError::Invalid(format!("bootstrap template for {}: {e}", g.name())))
        .and_then(|text| {
            // EC2 refuses user-data over 16 KB (RunInstances, UserData); the
            // hooks and file assets are what can grow it.
            if text.len() > 16 * 1024 {
                return Err(ModelError::Invalid(format!(
                    "InstanceGroup {}: its user-data is {} bytes, over EC2's 16 KB; shorten the spec's fileAssets and hooks, or fetch large files from S3 in a hook",
                    g.name(),
                    text.len()
                )));
            }
            Ok(text)
        })
}

/// The group's MixedInstancesPolicy, with AWS's default for each value left out.
pub fn mixed_instances(g: &InstanceGroup) -> Option<MixedInstances> {
    use crate::spec::aws_fields as f;
    let p = g.spec.mixed_instances_policy.as_ref()?;
    Some(MixedInstances {
        instance_types: p.instances.clone(),
        on_demand_base: p.on_demand_base.unwrap_or(f::DEFAULT_ON_DEMAND_BASE),
        on_demand_above_base: p
            .on_demand_above_base
            .unwrap_or(f::DEFAULT_ON_DEMAND_ABOVE_BASE),
        spot_allocation_strategy: p
            .spot_allocation_strategy
            .clone()
            .unwrap_or_else(|| f::DEFAULT_SPOT_ALLOCATION_STRATEGY.to_string()),
    })
}

pub fn build(inputs: &Inputs, d: &mut Desired) -> Result<(), ModelError> {
    let c = inputs.cluster;
    let cluster = c.name();
    for g in inputs.groups {
        let name = group_resource_name(g, cluster);
        let image = inputs.images.get(&g.spec.image).cloned().ok_or_else(|| {
            ModelError::Invalid(format!(
                "InstanceGroup {}: image {} was not resolved to an AMI",
                g.name(),
                g.spec.image
            ))
        })?;
        let sg = match g.spec.role {
            Role::Master => "masters",
            Role::Node => "nodes",
            Role::Bastion => "bastion",
        };
        let mut t = LaunchTemplate {
            name: name.clone(),
            image,
            machine_type: g.spec.machine_type.clone(),
            key_pair: inputs
                .ssh_key
                .map(|k| Address::new(Kind::KeyPair, super::security::key_pair_name(cluster, k))),
            // keelson's group first, then the user's (`<sg-...>`: not keelson's,
            // never changed), in the spec's order, as the template lists them.
            security_groups: std::iter::once(Address::new(
                Kind::SecurityGroup,
                super::security::group_name(sg, cluster),
            ))
            .chain(
                g.spec
                    .additional_security_groups
                    .iter()
                    .map(|id| Address::foreign(Kind::SecurityGroup, id)),
            )
            .collect(),
            instance_profile: Address::new(
                Kind::InstanceProfile,
                super::iam::role_name(g.spec.role, cluster),
            ),
            root_volume_size: g.spec.root_volume.size,
            root_volume_type: g.spec.root_volume.kind.clone(),
            root_volume_encrypted: g.spec.root_volume.encrypted,
            associate_public_ip: g.spec.associate_public_ip,
            // A hop limit of 1: a pod's request to IMDS crosses one more hop (its
            // network namespace) and is dropped, so pods cannot take the node's
            // role (which reads the cluster's keys on masters). What must call AWS
            // from the cluster (the cloud controller) runs with hostNetwork on the
            // control plane, as kops does without IRSA.
            metadata_hop_limit: 1,
            user_data: user_data(c, g, inputs.node_agent)?,
            instance_tags: Tags::new(),
            tags: Tags::new(),
        };
        // The revision covers everything an instance is launched with.
        let revision = {
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(&t).expect("templates serialize"));
            h.update(serde_json::to_vec(&g.spec.cloud_labels).expect("labels serialize"));
            crate::plan::hex(&h.finalize())[..16].to_string()
        };
        let mut labels = c.spec.cloud_labels.clone();
        labels.extend(g.spec.cloud_labels.clone());
        let mut instance_tags = ownership_tags(cluster, &name, &labels);
        instance_tags.insert(role_tag(g.spec.role), "1".into());
        instance_tags.insert("kops.k8s.io/instancegroup".into(), g.name().into());
        instance_tags.insert(REVISION_TAG.into(), revision);
        t.instance_tags = instance_tags;
        // Not on the template's own tags: a new version does not change those.
        t.tags = ownership_tags(cluster, &name, &c.spec.cloud_labels);
        let template = d.ensure(Lifecycle::Owned, Resource::LaunchTemplate(t))?;

        let mut tags = ownership_tags(cluster, &name, &labels);
        tags.insert(role_tag(g.spec.role), "1".into());
        tags.insert("kops.k8s.io/instancegroup".into(), g.name().into());
        if g.spec.role == Role::Node {
            // Discovery tags of the cluster autoscaler.
            tags.insert("k8s.io/cluster-autoscaler/enabled".into(), "1".into());
            tags.insert(
                format!("k8s.io/cluster-autoscaler/{cluster}"),
                "owned".into(),
            );
        }
        let subnets = g
            .spec
            .subnets
            .iter()
            .map(|s| Address::new(Kind::Subnet, format!("{s}.{cluster}")))
            .collect();
        d.ensure(
            Lifecycle::Owned,
            Resource::AutoScalingGroup(AutoScalingGroup {
                name,
                launch_template: template,
                min_size: g.spec.min_size,
                max_size: g.spec.max_size,
                subnets,
                target_groups: super::load_balancers::target_groups_of(c, g.spec.role),
                mixed_instances: mixed_instances(g),
                tags,
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TopologyKind;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn specs() -> (Cluster, Vec<InstanceGroup>) {
        let (c, mut groups) = new_cluster(&NewCluster {
            name: "boot.example.com".into(),
            zones: vec!["us-east-1a".into()],
            topology: TopologyKind::Private,
            bastion: true,
            dns_zone: Some("example.com".into()),
            config_base: Some("s3://state-bucket/team/boot.example.com".into()),
            ..Default::default()
        })
        .unwrap();
        let nodes = groups
            .iter_mut()
            .find(|g| g.spec.role == Role::Node)
            .unwrap();
        nodes
            .spec
            .node_labels
            .insert("team".into(), "it's-ours".into());
        nodes.spec.taints = vec!["dedicated=batch:NoSchedule".into()];
        (c, groups)
    }

    #[test]
    fn user_data_per_role() {
        let (c, groups) = specs();
        for role in [Role::Master, Role::Node, Role::Bastion] {
            let g = groups.iter().find(|g| g.spec.role == role).unwrap();
            let text = user_data(&c, g, &test_agent()).unwrap();
            assert!(text.starts_with("#cloud-config\n"));
            // AWS refuses user-data over 16 KB.
            assert!(text.len() < 16 * 1024, "{role:?}: {} bytes", text.len());
            insta::assert_snapshot!(format!("user_data_{}", role.as_str().to_lowercase()), text);
        }
    }

    /// The node config a user-data carries, read back as the node reads it.
    fn carried(text: &str) -> Option<(String, crate::spec::components::NodeConfig)> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let file = doc["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|f| f["path"] == crate::spec::components::NODE_CONFIG_PATH)?;
        let content = file["content"].as_str().unwrap().to_string();
        let parsed = crate::spec::components::NodeConfig::parse(&content).unwrap();
        Some((content, parsed))
    }

    #[test]
    fn user_data_carries_the_component_settings() {
        let (mut c, mut groups) = specs();
        let before: Vec<String> = groups
            .iter()
            .map(|g| user_data(&c, g, &test_agent()).unwrap())
            .collect();
        assert!(
            before.iter().all(|t| carried(t).is_none()),
            "nothing set, no file"
        );
        c.spec.kube_api_server = Some(
            serde_yaml::from_str(
                "auditLogPath: /var/log/kube-apiserver/audit.log\n\
                 oidcIssuerURL: https://sso.example.com\noidcClientID: kubernetes\n",
            )
            .unwrap(),
        );
        c.spec.kubelet =
            Some(serde_yaml::from_str("maxPods: 50\nkubeReserved: {cpu: 100m}\n").unwrap());
        let nodes = groups
            .iter_mut()
            .find(|g| g.spec.role == Role::Node)
            .unwrap();
        nodes.spec.kubelet = Some(serde_yaml::from_str("maxPods: 30\n").unwrap());
        for (g, before) in groups.iter().zip(&before) {
            let text = user_data(&c, g, &test_agent()).unwrap();
            let got = carried(&text);
            match g.spec.role {
                Role::Bastion => {
                    assert_eq!(&text, before, "a bastion runs no Kubernetes");
                    assert!(got.is_none());
                }
                Role::Master => {
                    let (content, config) = got.unwrap();
                    insta::assert_snapshot!("node_config_master", content);
                    assert_eq!(config.kube_api_server, c.spec.kube_api_server);
                    assert_eq!(config.kubelet, c.spec.kubelet);
                }
                Role::Node => {
                    let (content, config) = got.unwrap();
                    insta::assert_snapshot!("node_config_node", content);
                    assert_eq!(
                        config.kube_api_server, None,
                        "only masters run the API server"
                    );
                    let k = config.kubelet.unwrap();
                    assert_eq!(k.max_pods, Some(30), "the group's own wins");
                    assert_eq!(k.kube_reserved["cpu"], "100m");
                }
            }
            // A different user-data is a different launch template and so a new
            // revision: rolling-update replaces these instances.
            assert_eq!(
                &text == before,
                g.spec.role == Role::Bastion,
                "{}",
                g.name()
            );
            assert!(text.len() < 16 * 1024);
        }
    }

    #[test]
    fn hooks_and_file_assets_in_the_user_data() {
        let (mut c, mut groups) = specs();
        c.spec.hooks = serde_yaml::from_str(
            "- name: cachefiles.service\n  before: [kubelet.service]\n  manifest: |\n    Type=oneshot\n    ExecStart=/sbin/modprobe cachefiles\n",
        )
        .unwrap();
        c.spec.file_assets = serde_yaml::from_str(
            "- name: motd\n  path: /etc/motd\n  content: |\n    hello\n\n    it's ours\n- name: rules\n  roles: [Node]\n  content: \"a: 1\\n\"\n",
        )
        .unwrap();
        // The group's own asset of the same path wins.
        let nodes = groups
            .iter_mut()
            .find(|g| g.spec.role == Role::Node)
            .unwrap();
        nodes.spec.file_assets = serde_yaml::from_str(
            "- {name: motd2, path: /etc/motd, content: \"  indented\\nnodes\"}\n",
        )
        .unwrap();
        for g in &groups {
            let text = user_data(&c, g, &test_agent()).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            let file = |path: &str| {
                doc["write_files"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|f| f["path"] == path)
                    .map(|f| f["content"].as_str().unwrap().to_string())
            };
            let runcmd = serde_yaml::to_string(&doc["runcmd"]).unwrap();
            match g.spec.role {
                Role::Bastion => {
                    assert_eq!(file("/etc/motd").unwrap(), "hello\n\nit's ours\n");
                    assert_eq!(file("/srv/kubernetes/assets/rules"), None);
                    assert_eq!(file("/etc/systemd/system/cachefiles.service"), None);
                }
                Role::Master => {
                    assert_eq!(file("/srv/kubernetes/assets/rules"), None, "roles: [Node]");
                    assert!(file("/etc/systemd/system/cachefiles.service").is_some());
                }
                Role::Node => {
                    assert_eq!(file("/etc/motd").unwrap(), "  indented\nnodes\n");
                    assert_eq!(file("/srv/kubernetes/assets/rules").unwrap(), "a: 1\n");
                    let unit = file("/etc/systemd/system/cachefiles.service").unwrap();
                    assert!(unit.contains("Before=kubelet.service\n"), "{unit}");
                    let hook = runcmd.find("cachefiles.service").unwrap();
                    assert!(
                        hook < runcmd.find("keelson-bootstrap.service").unwrap(),
                        "{runcmd}"
                    );
                    insta::assert_snapshot!("user_data_node_hooks_files", text);
                }
            }
        }
        // Too much for EC2: refused by the model, naming the group.
        c.spec.file_assets[0].content = "x".repeat(17 * 1024);
        let e = user_data(&c, &groups[0], &test_agent())
            .unwrap_err()
            .to_string();
        assert!(e.contains("16 KB") && e.contains(groups[0].name()), "{e}");
    }

    pub(crate) fn test_agent() -> NodeAgent {
        NodeAgent {
            sha256: "5e1f0e5a".repeat(8),
        }
    }

    #[test]
    fn graviton_machine_types_are_arm64() {
        for t in [
            "m6g.large",
            "c7gn.xlarge",
            "t4g.medium",
            "r8gd.2xlarge",
            "a1.large",
            "im4gn.large",
            "g5g.xlarge",
        ] {
            assert_eq!(machine_arch(t), Some("arm64"), "{t}");
        }
        for t in [
            "m6i.large",
            "t3.medium",
            "c5.xlarge",
            "g5.xlarge",
            "m7a.large",
            "inf2.xlarge",
        ] {
            assert_eq!(machine_arch(t), Some("x86_64"), "{t}");
        }
    }

    #[test]
    fn values_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("a b".into()), "'a b'");
        assert_eq!(shell_quote("it's".into()), r#"'it'\''s'"#);
    }
}
