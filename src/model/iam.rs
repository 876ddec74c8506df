//! IAM: a role, its inline policy and an instance profile for each role that has
//! instance groups (`masters.NAME`, `nodes.NAME`, `bastions.NAME`), under the IAM
//! path `/keelson/NAME/` so that one list call finds them all. The policies are
//! rendered from `templates/iam/` and grant least privilege: the masters what the
//! AWS cloud controller and the EBS CSI driver need, on this cluster's resources
//! where IAM can tell; nodes to describe and pull from ECR; all only this cluster's
//! part of the state store.

use super::*;
use crate::spec::{Cluster, InstanceGroup, Role};
use serde_json::Value;

pub const ASSUME_ROLE: &str = include_str!("../../templates/iam/assume-role-ec2.json.j2");
pub const MASTERS: &str = include_str!("../../templates/iam/masters.json.j2");
pub const NODES: &str = include_str!("../../templates/iam/nodes.json.j2");
pub const BASTIONS: &str = include_str!("../../templates/iam/bastions.json.j2");
pub const OPERATOR: &str = include_str!("../../templates/iam/operator.json.j2");

/// The policy an operator needs to run keelson: everything it discovers, creates
/// only with tags, changes only what is tagged for a cluster, IAM only under the
/// `/keelson/` path, and the state store (when `state` is an S3 URL).
pub fn operator_policy(state: Option<&str>) -> Result<Value, ModelError> {
    let (bucket, prefix) = match state.and_then(|b| b.strip_prefix("s3://")) {
        Some(rest) => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let key = key.trim_matches('/');
            (
                Some(bucket.to_string()),
                if key.is_empty() {
                    String::new()
                } else {
                    format!("{key}/")
                },
            )
        }
        None => (None, String::new()),
    };
    let env = minijinja::Environment::new();
    let text = env
        .render_str(OPERATOR, minijinja::context! { state_bucket => bucket, state_prefix => prefix, partition => "aws" })
        .map_err(|e| ModelError::Invalid(format!("operator policy template: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Invalid(format!("operator policy renders invalid JSON: {e}")))
}

pub fn path(cluster: &str) -> String {
    format!("/keelson/{cluster}/")
}

/// `masters.NAME`, `nodes.NAME`, `bastions.NAME` (kops' names).
pub fn role_name(role: Role, cluster: &str) -> String {
    let prefix = match role {
        Role::Master => "masters",
        Role::Node => "nodes",
        Role::Bastion => "bastions",
    };
    format!("{prefix}.{cluster}")
}

/// The S3 bucket and key prefix (ending in `/`) of the cluster's state, from its
/// configBase `s3://BUCKET/PREFIX/NAME`; None for a file:// store.
pub fn state_location(cluster: &Cluster) -> Option<(String, String)> {
    let rest = cluster.spec.config_base.as_deref()?.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Some((
        bucket.to_string(),
        format!("{}/", key.trim_end_matches('/')),
    ))
}

/// Renders a policy template; the result must be JSON.
pub fn render(template: &str, cluster: &Cluster) -> Result<Value, ModelError> {
    render_with(template, cluster, &serde_yaml::Mapping::new())
}

/// Renders an addon bundle's policy template, which may also use the cluster's
/// `dns_zone` and the bundle's `settings`.
pub fn render_with(
    template: &str,
    cluster: &Cluster,
    settings: &serde_yaml::Mapping,
) -> Result<Value, ModelError> {
    let (bucket, prefix) = match state_location(cluster) {
        Some((bucket, prefix)) => (Some(bucket), prefix),
        None => (None, String::new()),
    };
    let region = cluster.region().unwrap_or_default();
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    let env = minijinja::Environment::new();
    let ctx = minijinja::context! { cluster => cluster.name(), state_bucket => bucket, state_prefix => prefix, partition => partition, region => region, dns_zone => cluster.spec.dns_zone.clone().unwrap_or_default(), settings => settings };
    let text = env
        .render_str(template, ctx)
        .map_err(|e| ModelError::Invalid(format!("IAM template: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Invalid(format!("IAM template renders invalid JSON: {e}")))
}

/// The masters' policy grows by the statements of each enabled addon bundle
/// that calls AWS (`addons/<bundle>/iam.json.j2`), and shrinks when it is disabled.
fn add_addon_statements(c: &Cluster, document: &mut Value) -> Result<(), ModelError> {
    let extra = crate::addons::masters_statements(c).map_err(ModelError::Invalid)?;
    let list = document["Statement"]
        .as_array_mut()
        .ok_or_else(|| ModelError::Invalid("masters policy has no Statement list".into()))?;
    for (_, statements) in extra {
        list.extend(statements);
    }
    Ok(())
}

/// The role's inline policy: its template, the addon bundles' statements on
/// the masters, and `spec.additionalPolicies` of the role appended. kops makes
/// a second inline policy (`additional.ROLE`); IAM evaluates all of a role's
/// policies together (an explicit Deny anywhere wins), so one policy grants
/// exactly the same, is read back with the same request, and a removed
/// statement goes with the next update. IAM's size limit covers all of a
/// role's inline policies together either way.
pub fn role_policy(c: &Cluster, role: Role) -> Result<Value, ModelError> {
    let template = match role {
        Role::Master => MASTERS,
        Role::Node => NODES,
        Role::Bastion => BASTIONS,
    };
    let mut document = render(template, c)?;
    if role == Role::Master {
        add_addon_statements(c, &mut document)?;
    }
    let extra = crate::spec::aws_fields::additional_statements(c, role);
    if !extra.is_empty() {
        document["Statement"]
            .as_array_mut()
            .ok_or_else(|| ModelError::Invalid("role policy has no Statement list".into()))?
            .extend(extra);
    }
    Ok(document)
}

/// The refusal of a role policy over IAM's limit.
pub fn too_large(c: &Cluster, role: Role, chars: usize) -> String {
    let limit = crate::spec::aws_fields::ROLE_POLICY_LIMIT;
    format!(
        "with keelson's own statements the {} policy would be {chars} characters, over IAM's {limit}-character limit on a role's inline policies; shorten spec.additionalPolicies (wildcards, fewer statements) or attach a managed policy to the role yourself",
        role_name(role, c.name()),
    )
}

pub fn build(c: &Cluster, groups: &[InstanceGroup], d: &mut Desired) -> Result<(), ModelError> {
    let cluster = c.name();
    let mut roles: Vec<Role> = groups.iter().map(|g| g.spec.role).collect();
    roles.sort();
    roles.dedup();
    for role in roles {
        let name = role_name(role, cluster);
        let tags = ownership_tags(cluster, &name, &c.spec.cloud_labels);
        let r = d.ensure(
            Lifecycle::Owned,
            Resource::IamRole(IamRole {
                name: name.clone(),
                path: path(cluster),
                assume_role_policy: render(ASSUME_ROLE, c)?,
                tags: tags.clone(),
            }),
        )?;
        let document = role_policy(c, role)?;
        let chars = crate::spec::aws_fields::policy_chars(std::slice::from_ref(&document));
        if chars > crate::spec::aws_fields::ROLE_POLICY_LIMIT {
            // Validation refuses this first (spec::aws_fields); kept for specs
            // that reach the model some other way.
            return Err(ModelError::Invalid(too_large(c, role, chars)));
        }
        d.ensure(
            Lifecycle::Owned,
            Resource::IamRolePolicy(IamRolePolicy {
                role: r.clone(),
                document,
            }),
        )?;
        d.ensure(
            Lifecycle::Owned,
            Resource::InstanceProfile(InstanceProfile {
                name,
                path: path(cluster),
                role: r,
                tags,
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::defaults::{NewCluster, new_cluster};

    fn cluster() -> Cluster {
        new_cluster(&NewCluster {
            name: "policy.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            config_base: Some("s3://state-bucket/policy.k8s.local".into()),
            ..Default::default()
        })
        .unwrap()
        .0
    }

    #[test]
    fn rendered_policies() {
        let c = cluster();
        for (name, template) in [
            ("masters", MASTERS),
            ("nodes", NODES),
            ("bastions", BASTIONS),
            ("assume_role", ASSUME_ROLE),
        ] {
            insta::assert_json_snapshot!(format!("iam_{name}"), render(template, &c).unwrap());
        }
        insta::assert_json_snapshot!(
            "iam_operator",
            operator_policy(Some("s3://state-bucket")).unwrap()
        );
    }

    /// Every action a statement allows (wildcards kept), with its statement.
    fn allowed(policy: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for st in policy["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow");
            let actions = match &st["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
                other => panic!("{other}"),
            };
            out.extend(actions.into_iter().map(|a| (a, st.clone())));
        }
        out
    }

    fn grants<'a>(policy: &'a [(String, Value)], action: &str) -> Option<&'a Value> {
        policy.iter().find_map(|(a, st)| {
            let hit = match a.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => a == action,
            };
            hit.then_some(st)
        })
    }

    /// kubernetes/cloud-provider-aws docs/prerequisites.md, the control plane
    /// policy: every action the cloud controller may call.
    const UPSTREAM_CONTROL_PLANE: &[&str] = &[
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeTags",
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVolumes",
        "ec2:DescribeAvailabilityZones",
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "ec2:CreateVolume",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyVolume",
        "ec2:AttachVolume",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateRoute",
        "ec2:DeleteRoute",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteVolume",
        "ec2:DetachVolume",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DescribeVpcs",
        "ec2:DescribeInstanceTopology",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:AttachLoadBalancerToSubnets",
        "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateLoadBalancerPolicy",
        "elasticloadbalancing:CreateLoadBalancerListeners",
        "elasticloadbalancing:ConfigureHealthCheck",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancerListeners",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:DetachLoadBalancerFromSubnets",
        "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
        "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeLoadBalancerPolicies",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
        "iam:CreateServiceLinkedRole",
        "kms:DescribeKey",
    ];

    #[test]
    fn the_cloud_controller_gets_the_upstream_prerequisites_on_this_cluster_only() {
        let masters = render(MASTERS, &cluster()).unwrap();
        let allowed = allowed(&masters);
        let missing: Vec<&&str> = UPSTREAM_CONTROL_PLANE
            .iter()
            .filter(|a| grants(&allowed, a).is_none())
            .collect();
        assert!(missing.is_empty(), "not granted: {missing:?}");
        // Whatever changes or makes a resource is conditioned: on the cluster's
        // tag, on the tag of the request, on the creating call, or (the service
        // role) on the service.
        for a in UPSTREAM_CONTROL_PLANE {
            let st = grants(&allowed, a).unwrap();
            let verb = a.split(':').nth(1).unwrap();
            if verb.starts_with("Describe") {
                continue;
            }
            let condition = st["Condition"].to_string();
            assert!(
                condition.contains("KubernetesCluster\":\"policy.k8s.local")
                    || condition.contains("ec2:CreateAction")
                    || condition.contains("iam:AWSServiceName"),
                "{a} is unconditioned: {st}"
            );
        }
        let role = grants(&allowed, "iam:CreateServiceLinkedRole").unwrap();
        assert_eq!(
            role["Condition"]["StringEquals"]["iam:AWSServiceName"],
            "elasticloadbalancing.amazonaws.com"
        );
        assert_eq!(
            role["Resource"],
            "arn:aws:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/*"
        );
    }

    #[test]
    fn the_operator_may_make_the_load_balancing_service_role() {
        let op = operator_policy(None).unwrap();
        let roles: Vec<&Value> = op["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| {
                st["Action"]
                    .to_string()
                    .contains("iam:CreateServiceLinkedRole")
            })
            .collect();
        assert!(
            roles
                .iter()
                .any(|st| st["Condition"]["StringEquals"]["iam:AWSServiceName"]
                    == "elasticloadbalancing.amazonaws.com"
                    && st["Resource"]
                        .as_str()
                        .unwrap()
                        .contains("/elasticloadbalancing.amazonaws.com/")),
            "{roles:?}"
        );
    }

    #[test]
    fn state_access_is_this_clusters_prefix_only() {
        let nodes = render(NODES, &cluster()).unwrap().to_string();
        assert!(nodes.contains("arn:aws:s3:::state-bucket/policy.k8s.local/addons/*"));
        assert!(
            !nodes.contains("state-bucket/*"),
            "no access beyond the cluster's prefix"
        );
        // Without an S3 state store, no S3 statement at all.
        let mut c = cluster();
        c.spec.config_base = Some("file:///tmp/state/policy.k8s.local".into());
        assert!(!render(MASTERS, &c).unwrap().to_string().contains("s3:"));
    }

    #[test]
    fn the_masters_policy_grows_and_shrinks_with_the_addon_bundles() {
        let sids = |c: &Cluster| -> Vec<String> {
            let mut doc = render(MASTERS, c).unwrap();
            add_addon_statements(c, &mut doc).unwrap();
            doc["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["Sid"].as_str().unwrap().to_string())
                .collect()
        };
        let on = sids(&cluster());
        let ebs: Vec<&String> = on.iter().filter(|s| s.starts_with("EbsCsi")).collect();
        assert_eq!(ebs.len(), 4, "{on:?}");
        let mut c = cluster();
        c.spec.addons = serde_yaml::from_str("{aws-ebs-csi-driver: {enabled: false}}").unwrap();
        let off = sids(&c);
        assert!(!off.iter().any(|s| s.starts_with("EbsCsi")), "{off:?}");
        assert_eq!(off.len() + 4, on.len());
        // The cloud controller's own statements stay either way.
        assert!(off.iter().any(|s| s == "CloudControllerOwnedResources"));
        // The cluster autoscaler (opt-in): two statements while it is enabled.
        assert!(!on.iter().any(|s| s.starts_with("ClusterAutoscaler")));
        let mut c = cluster();
        c.spec.addons = serde_yaml::from_str("{cluster-autoscaler: {enabled: true}}").unwrap();
        let ca = sids(&c);
        assert_eq!(
            ca.iter()
                .filter(|s| s.starts_with("ClusterAutoscaler"))
                .collect::<Vec<_>>(),
            ["ClusterAutoscalerDescribe", "ClusterAutoscalerOwnedGroups"]
        );
        assert_eq!(ca.len(), on.len() + 2);
        let mut doc = render(MASTERS, &c).unwrap();
        add_addon_statements(&c, &mut doc).unwrap();
        let allowed = allowed(&doc);
        for a in [
            "autoscaling:SetDesiredCapacity",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
        ] {
            let st = grants(&allowed, a).unwrap();
            assert_eq!(
                st["Condition"]["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/policy.k8s.local"],
                "owned",
                "{a}: {st}"
            );
        }
        for a in [
            "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeImages",
            "ec2:GetInstanceTypesFromInstanceRequirements",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeScalingActivities",
        ] {
            assert!(grants(&allowed, a).is_some(), "{a}");
        }
        c.spec.addons = serde_yaml::from_str("{cluster-autoscaler: {enabled: false}}").unwrap();
        assert_eq!(sids(&c), on);
    }
}
