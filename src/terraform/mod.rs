//! The terraform target: the desired model rendered as `kubernetes.tf.json` and
//! the files beside it (`data/`: user-data, IAM policies, the SSH key), as
//! `kops update cluster --target terraform --out DIR` writes them. Pure: the
//! model in, a JSON value and file contents out.
//!
//! One terraform resource per model resource, of the hashicorp/aws provider's
//! types kops uses (`upup/pkg/fi/cloudup/awstasks/*.go`, `RenderTerraform`);
//! references are the model's dependency edges, written as `${TYPE.NAME.ATTR}`,
//! so terraform orders the work as keelson's executor does. Every attribute
//! keelson sets is set here with the same value, so `keelson update cluster` on
//! a cloud terraform made plans nothing (tests/cli/terraform.rs).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Address, Desired, Direction, Kind, Lifecycle, Resource, Tags};

/// The terraform configuration's file name, as kops names it.
pub const MAIN_FILE: &str = "kubernetes.tf.json";
/// The folder of the files the configuration reads with `file()`.
pub const DATA_DIR: &str = "data";
/// The hashicorp/aws provider versions the output is written for (5.x: the
/// `domain` of `aws_eip`, `preserve_client_ip` of target groups).
pub const PROVIDER_VERSION: &str = ">= 5.0.0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerraformError {
    #[error(
        "terraform: {first} and {second} both become the terraform name {name}; this is a bug in keelson"
    )]
    NameClash {
        first: Address,
        second: Address,
        name: String,
    },
    #[error(
        "terraform: {from} refers to {to}, which is not in the model; this is a bug in keelson"
    )]
    Dangling { from: Address, to: Address },
    #[error(
        "terraform: {0} is a shared resource keelson finds by discovery, which the terraform target cannot express; give its id in the spec (spec.networkID, spec.subnets[].id)"
    )]
    SharedWithoutId(Address),
}

/// What the target writes: the configuration, and `data/` file names and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub main: Value,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Rendered {
    /// The configuration as written to [`MAIN_FILE`], stable and diffable.
    pub fn main_text(&self) -> String {
        serde_json::to_string_pretty(&self.main).expect("JSON values serialize") + "\n"
    }
}

/// The provider's resource type for a kind; `None` for kinds never desired.
pub fn resource_type(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Vpc => "aws_vpc",
        Kind::DhcpOptions => "aws_vpc_dhcp_options",
        Kind::InternetGateway => "aws_internet_gateway",
        Kind::Subnet => "aws_subnet",
        Kind::RouteTable => "aws_route_table",
        Kind::ElasticIp => "aws_eip",
        Kind::NatGateway => "aws_nat_gateway",
        Kind::Route => "aws_route",
        Kind::RouteTableAssociation => "aws_route_table_association",
        Kind::SecurityGroup => "aws_security_group",
        Kind::SecurityGroupRule => "aws_security_group_rule",
        Kind::KeyPair => "aws_key_pair",
        Kind::IamRole => "aws_iam_role",
        Kind::IamRolePolicy => "aws_iam_role_policy",
        Kind::InstanceProfile => "aws_iam_instance_profile",
        Kind::LaunchTemplate => "aws_launch_template",
        Kind::LoadBalancer => "aws_lb",
        Kind::TargetGroup => "aws_lb_target_group",
        Kind::Listener => "aws_lb_listener",
        Kind::AutoScalingGroup => "aws_autoscaling_group",
        Kind::DnsRecord => "aws_route53_record",
        Kind::ServiceLoadBalancer | Kind::Volume => return None,
    })
}

/// A terraform name from a model name, as kops' `tfSanitize`: letters, digits,
/// `_` and `-` only, starting with a letter or `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.insert(0, '_');
    }
    s
}

/// How one resource refers to another: by the referent's terraform address, or
/// by the AWS id of a shared resource terraform does not manage.
struct Names {
    names: BTreeMap<Address, String>,
    shared: BTreeMap<Address, String>,
    /// Shared resources found by a data source (`data.TYPE.NAME`).
    looked_up: BTreeMap<Address, String>,
}

impl Names {
    fn of(d: &Desired) -> Result<Names, TerraformError> {
        let mut names = BTreeMap::new();
        let mut shared = BTreeMap::new();
        let mut looked_up = BTreeMap::new();
        let mut taken: BTreeMap<(Kind, String), Address> = BTreeMap::new();
        for (a, r) in &d.resources {
            let name = sanitize(&a.name);
            if let Some(first) = taken.insert((a.kind, name.clone()), a.clone()) {
                return Err(TerraformError::NameClash {
                    first,
                    second: a.clone(),
                    name,
                });
            }
            match &r.lifecycle {
                Lifecycle::Owned => {
                    names.insert(a.clone(), name);
                }
                Lifecycle::Shared(id) if !id.is_empty() => {
                    shared.insert(a.clone(), id.clone());
                }
                // A shared VPC's internet gateway is found by its attachment.
                Lifecycle::Shared(_) if a.kind == Kind::InternetGateway => {
                    looked_up.insert(a.clone(), name);
                }
                Lifecycle::Shared(_) => return Err(TerraformError::SharedWithoutId(a.clone())),
            }
        }
        Ok(Names {
            names,
            shared,
            looked_up,
        })
    }

    /// `${aws_vpc.NAME.ATTR}`, or the shared resource's id (its only attribute
    /// keelson refers to).
    fn r(&self, from: &Address, to: &Address, attr: &str) -> Result<Value, TerraformError> {
        if let Some(id) = self.shared.get(to) {
            return Ok(Value::String(id.clone()));
        }
        // A resource outside the model named by its AWS id (a group's
        // additional security groups).
        if let Some(id) = to.name.strip_prefix('<').and_then(|n| n.strip_suffix('>')) {
            return Ok(Value::String(id.to_string()));
        }
        let ty = resource_type(to.kind).expect("desired kinds have a type");
        if let Some(n) = self.looked_up.get(to) {
            return Ok(Value::String(format!("${{data.{ty}.{n}.{attr}}}")));
        }
        match self.names.get(to) {
            Some(n) => Ok(Value::String(format!("${{{ty}.{n}.{attr}}}"))),
            None => Err(TerraformError::Dangling {
                from: from.clone(),
                to: to.clone(),
            }),
        }
    }

    fn id(&self, from: &Address, to: &Address) -> Result<Value, TerraformError> {
        self.r(from, to, "id")
    }

    fn ids(&self, from: &Address, to: &[Address]) -> Result<Value, TerraformError> {
        Ok(Value::Array(
            to.iter()
                .map(|t| self.id(from, t))
                .collect::<Result<_, _>>()?,
        ))
    }
}

fn tags(t: &Tags) -> Value {
    json!(t)
}

/// A `data/` file and the expression that reads it. Names as kops': the
/// resource's type and name, then the attribute.
fn data_file(
    files: &mut BTreeMap<String, Vec<u8>>,
    ty: &str,
    name: &str,
    attr: &str,
    bytes: Vec<u8>,
    function: &str,
) -> Value {
    let file = format!("{ty}_{name}_{attr}");
    let expr = format!("${{{function}(\"${{path.module}}/{DATA_DIR}/{file}\")}}");
    files.insert(file, bytes);
    Value::String(expr)
}

/// Everything the outputs need that is not in the model.
pub struct Context<'a> {
    pub cluster: &'a crate::spec::Cluster,
}

/// The whole target: resources, data sources, provider, outputs.
pub fn render(d: &Desired, ctx: &Context) -> Result<Rendered, TerraformError> {
    let names = Names::of(d)?;
    let mut files = BTreeMap::new();
    let mut resources: BTreeMap<&'static str, Map<String, Value>> = BTreeMap::new();
    let mut data: BTreeMap<&'static str, Map<String, Value>> = BTreeMap::new();
    let mut zones: BTreeMap<String, (String, bool)> = BTreeMap::new();

    for (a, dr) in &d.resources {
        let Some(name) = names.names.get(a) else {
            if let Some(n) = names.looked_up.get(a)
                && let Resource::InternetGateway(g) = &dr.resource
            {
                data.entry("aws_internet_gateway").or_default().insert(
                    n.clone(),
                    json!({ "filter": [{ "name": "attachment.vpc-id", "values": [names.id(a, &g.vpc)?] }] }),
                );
            }
            continue;
        };
        let ty = resource_type(a.kind).expect("desired kinds have a type");
        let mut extra: Vec<(&'static str, String, Value)> = Vec::new();
        let body = match &dr.resource {
            Resource::Vpc(v) => json!({
                "cidr_block": v.cidr.to_string(),
                "enable_dns_support": v.enable_dns_support,
                "enable_dns_hostnames": v.enable_dns_hostnames,
                "tags": tags(&v.tags),
            }),
            Resource::DhcpOptions(o) => {
                extra.push((
                    "aws_vpc_dhcp_options_association",
                    name.clone(),
                    json!({
                        "vpc_id": names.id(a, &o.vpc)?,
                        "dhcp_options_id": format!("${{aws_vpc_dhcp_options.{name}.id}}"),
                    }),
                ));
                json!({
                    "domain_name": o.domain_name,
                    "domain_name_servers": o.domain_name_servers,
                    "tags": tags(&o.tags),
                })
            }
            // The inline vpc_id attaches it, as AttachInternetGateway does.
            Resource::InternetGateway(g) => json!({
                "vpc_id": names.id(a, &g.vpc)?,
                "tags": tags(&g.tags),
            }),
            Resource::Subnet(s) => json!({
                "vpc_id": names.id(a, &s.vpc)?,
                "cidr_block": s.cidr.to_string(),
                "availability_zone": s.zone,
                "tags": tags(&s.tags),
            }),
            // No inline `route` blocks: the routes are their own resources.
            Resource::RouteTable(t) => json!({
                "vpc_id": names.id(a, &t.vpc)?,
                "tags": tags(&t.tags),
            }),
            Resource::ElasticIp(e) => json!({ "domain": "vpc", "tags": tags(&e.tags) }),
            Resource::NatGateway(n) => json!({
                "allocation_id": names.id(a, &n.elastic_ip)?,
                "subnet_id": names.id(a, &n.subnet)?,
                "tags": tags(&n.tags),
            }),
            Resource::Route(r) => {
                let target = if r.target.kind == Kind::NatGateway {
                    "nat_gateway_id"
                } else {
                    "gateway_id"
                };
                json!({
                    "route_table_id": names.id(a, &r.route_table)?,
                    "destination_cidr_block": r.destination.to_string(),
                    target: names.id(a, &r.target)?,
                })
            }
            Resource::RouteTableAssociation(r) => json!({
                "subnet_id": names.id(a, &r.subnet)?,
                "route_table_id": names.id(a, &r.route_table)?,
            }),
            // No inline rules: each rule is its own resource, as in kops (the
            // provider removes AWS's default egress rule; the model has its own).
            Resource::SecurityGroup(g) => json!({
                "name": g.name,
                "vpc_id": names.id(a, &g.vpc)?,
                "description": g.description,
                "tags": tags(&g.tags),
            }),
            Resource::SecurityGroupRule(r) => {
                let mut m = Map::new();
                m.insert(
                    "type".into(),
                    json!(match r.direction {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    }),
                );
                m.insert("security_group_id".into(), names.id(a, &r.group)?);
                m.insert("protocol".into(), json!(r.protocol));
                // Ports mean something only for TCP and UDP; AWS keeps 0 otherwise.
                let ports = r.protocol == "tcp" || r.protocol == "udp";
                m.insert(
                    "from_port".into(),
                    json!(if ports { r.from_port } else { 0 }),
                );
                m.insert("to_port".into(), json!(if ports { r.to_port } else { 0 }));
                if let Some(c) = &r.cidr {
                    m.insert("cidr_blocks".into(), json!([c.to_string()]));
                }
                if let Some(e) = &r.elastic_ip {
                    let ip = names.r(a, e, "public_ip")?;
                    m.insert(
                        "cidr_blocks".into(),
                        json!([format!("{}/32", ip.as_str().unwrap_or_default())]),
                    );
                }
                if let Some(g) = &r.source_group {
                    m.insert("source_security_group_id".into(), names.id(a, g)?);
                }
                Value::Object(m)
            }
            Resource::KeyPair(k) => json!({
                "key_name": k.name,
                "public_key": data_file(&mut files, ty, name, "public_key", k.public_key.clone().into_bytes(), "file"),
                "tags": tags(&k.tags),
            }),
            Resource::IamRole(r) => json!({
                "name": r.name,
                "path": r.path,
                "assume_role_policy": data_file(&mut files, ty, name, "policy", pretty(&r.assume_role_policy), "file"),
                "tags": tags(&r.tags),
            }),
            // Named after the role, as keelson names it.
            Resource::IamRolePolicy(p) => json!({
                "name": names.r(a, &p.role, "name")?,
                "role": names.r(a, &p.role, "name")?,
                "policy": data_file(&mut files, ty, name, "policy", pretty(&p.document), "file"),
            }),
            Resource::InstanceProfile(p) => json!({
                "name": p.name,
                "path": p.path,
                "role": names.r(a, &p.role, "name")?,
                "tags": tags(&p.tags),
            }),
            Resource::LaunchTemplate(t) => {
                let user_data = crate::aws::launch_template::encode_user_data(&t.user_data);
                let mut m = json!({
                    "name": t.name,
                    "image_id": t.image,
                    "instance_type": t.machine_type,
                    "iam_instance_profile": [{ "name": names.r(a, &t.instance_profile, "name")? }],
                    "block_device_mappings": [{
                        "device_name": crate::aws::launch_template::ROOT_DEVICE,
                        "ebs": [{
                            "volume_size": t.root_volume_size,
                            "volume_type": t.root_volume_type,
                            "encrypted": t.root_volume_encrypted,
                            "delete_on_termination": true,
                        }],
                    }],
                    "network_interfaces": [{
                        "device_index": 0,
                        "associate_public_ip_address": t.associate_public_ip,
                        "delete_on_termination": true,
                        "security_groups": names.ids(a, &t.security_groups)?,
                    }],
                    "metadata_options": [{
                        "http_endpoint": "enabled",
                        "http_tokens": "required",
                        "http_put_response_hop_limit": t.metadata_hop_limit,
                    }],
                    "user_data": data_file(&mut files, ty, name, "user_data", user_data, "filebase64"),
                    "tag_specifications": [
                        { "resource_type": "instance", "tags": tags(&t.instance_tags) },
                        { "resource_type": "volume", "tags": tags(&t.instance_tags) },
                    ],
                    // A change is a new version, made the default, as keelson does.
                    "update_default_version": true,
                    "tags": tags(&t.tags),
                });
                if let Some(k) = &t.key_pair {
                    m["key_name"] = names.id(a, k)?;
                }
                m
            }
            Resource::AutoScalingGroup(g) => {
                let template = json!({
                    "id": names.id(a, &g.launch_template)?,
                    "version": "$Latest",
                });
                let mut m = json!({
                    "name": g.name,
                    "min_size": g.min_size,
                    "max_size": g.max_size,
                    "vpc_zone_identifier": names.ids(a, &g.subnets)?,
                    "target_group_arns": Value::Array(
                        g.target_groups.iter().map(|t| names.r(a, t, "arn")).collect::<Result<_, _>>()?,
                    ),
                    // Instances take their tags from the launch template.
                    "tag": g.tags.iter().map(|(k, v)| json!({
                        "key": k, "value": v, "propagate_at_launch": false,
                    })).collect::<Vec<_>>(),
                });
                match &g.mixed_instances {
                    None => m["launch_template"] = json!([template]),
                    Some(mi) => {
                        m["mixed_instances_policy"] = json!([{
                            "launch_template": [{
                                "launch_template_specification": [{
                                    "launch_template_id": template["id"],
                                    "version": "$Latest",
                                }],
                                "override": mi.instance_types.iter()
                                    .map(|t| json!({ "instance_type": t })).collect::<Vec<_>>(),
                            }],
                            "instances_distribution": [{
                                "on_demand_base_capacity": mi.on_demand_base,
                                "on_demand_percentage_above_base_capacity": mi.on_demand_above_base,
                                "spot_allocation_strategy": mi.spot_allocation_strategy,
                            }],
                        }])
                    }
                }
                m
            }
            Resource::LoadBalancer(l) => json!({
                "name": l.name,
                "load_balancer_type": "network",
                "internal": l.internal,
                "subnets": names.ids(a, &l.subnets)?,
                "security_groups": names.ids(a, &l.security_groups)?,
                "tags": tags(&l.tags),
            }),
            Resource::TargetGroup(t) => json!({
                "name": t.name,
                "port": t.port,
                "protocol": "TCP",
                "target_type": "instance",
                "vpc_id": names.id(a, &t.vpc)?,
                "health_check": [{ "protocol": "TCP" }],
                "preserve_client_ip": t.preserve_client_ip.to_string(),
                "tags": tags(&t.tags),
            }),
            Resource::Listener(l) => json!({
                "load_balancer_arn": names.r(a, &l.load_balancer, "arn")?,
                "port": l.port,
                "protocol": "TCP",
                "default_action": [{
                    "type": "forward",
                    "target_group_arn": names.r(a, &l.target_group, "arn")?,
                }],
            }),
            Resource::DnsRecord(r) => {
                let zone = sanitize(&format!(
                    "{}{}",
                    r.zone,
                    if r.private_zone { "-private" } else { "" }
                ));
                zones.insert(zone.clone(), (r.zone.clone(), r.private_zone));
                let zone_id = format!("${{data.aws_route53_zone.{zone}.zone_id}}");
                let cluster = r.name.split_once('.').map_or(r.name.as_str(), |(_, c)| c);
                // The TXT record that says which cluster owns the alias (aws/dns_record.rs).
                extra.push((
                    "aws_route53_record",
                    sanitize(&format!("{}-owner", r.name)),
                    json!({
                        "zone_id": zone_id,
                        "name": r.name,
                        "type": "TXT",
                        "ttl": 300,
                        "records": [format!("keelson-owner={cluster}")],
                    }),
                ));
                json!({
                    "zone_id": zone_id,
                    "name": r.name,
                    "type": "A",
                    "alias": [{
                        "name": names.r(a, &r.target, "dns_name")?,
                        "zone_id": names.r(a, &r.target, "zone_id")?,
                        "evaluate_target_health": false,
                    }],
                })
            }
            Resource::ServiceLoadBalancer(_) | Resource::Volume(_) => continue,
        };
        resources.entry(ty).or_default().insert(name.clone(), body);
        for (ty, name, body) in extra {
            resources.entry(ty).or_default().insert(name, body);
        }
    }
    for (n, (zone, private)) in zones {
        data.entry("aws_route53_zone")
            .or_default()
            .insert(n, json!({ "name": zone, "private_zone": private }));
    }

    let mut main = Map::new();
    main.insert(
        "locals".into(),
        json!({ "cluster_name": d.cluster, "region": d.region }),
    );
    main.insert("output".into(), outputs(d, &names, ctx)?);
    main.insert(
        "provider".into(),
        json!({ "aws": [{ "region": d.region }] }),
    );
    if !data.is_empty() {
        main.insert("data".into(), json!(data));
    }
    main.insert("resource".into(), json!(resources));
    main.insert(
        "terraform".into(),
        json!({
            "required_version": ">= 1.0.0",
            "required_providers": { "aws": { "source": "hashicorp/aws", "version": PROVIDER_VERSION } },
        }),
    );
    Ok(Rendered {
        main: Value::Object(main),
        files,
    })
}

fn pretty(v: &Value) -> Vec<u8> {
    (serde_json::to_string_pretty(v).expect("JSON values serialize") + "\n").into_bytes()
}

/// kops' outputs: the cluster, its network, its groups' security groups and
/// roles, the Auto Scaling groups and where the API answers.
fn outputs(d: &Desired, names: &Names, ctx: &Context) -> Result<Value, TerraformError> {
    let mut out = Map::new();
    let mut put = |k: String, v: Value| {
        out.insert(k, json!({ "value": v }));
    };
    put("cluster_name".into(), json!(d.cluster));
    put("region".into(), json!(d.region));
    let of = |kind: Kind| d.resources.keys().filter(move |a| a.kind == kind);
    let me = Address::new(Kind::Vpc, "outputs");
    if let Some(vpc) = of(Kind::Vpc).next() {
        put("vpc_id".into(), names.id(&me, vpc)?);
        if names.names.contains_key(vpc) {
            put("vpc_cidr_block".into(), names.r(&me, vpc, "cidr_block")?);
        }
    }
    let subnets: Vec<Address> = of(Kind::Subnet).cloned().collect();
    put("subnet_ids".into(), names.ids(&me, &subnets)?);
    for s in &subnets {
        put(
            format!("subnet_{}_id", sanitize(&s.name)),
            names.id(&me, s)?,
        );
    }
    let cluster = ctx.cluster.name();
    use crate::spec::Role;
    for (prefix, group, role) in [
        ("master", "masters", Role::Master),
        ("node", "nodes", Role::Node),
        ("bastion", "bastion", Role::Bastion),
    ] {
        let sg = Address::new(
            Kind::SecurityGroup,
            crate::model::security::group_name(group, cluster),
        );
        if d.resources.contains_key(&sg) {
            put(
                format!("{prefix}_security_group_ids"),
                json!([names.id(&me, &sg)?]),
            );
        }
        let iam = Address::new(Kind::IamRole, crate::model::iam::role_name(role, cluster));
        if d.resources.contains_key(&iam) {
            put(format!("{prefix}s_role_name"), names.r(&me, &iam, "name")?);
            put(format!("{prefix}s_role_arn"), names.r(&me, &iam, "arn")?);
        }
    }
    let asgs: Vec<Address> = of(Kind::AutoScalingGroup).cloned().collect();
    put("autoscaling_group_ids".into(), names.ids(&me, &asgs)?);
    let api = Address::new(
        Kind::LoadBalancer,
        crate::model::load_balancers::api_name(cluster),
    );
    let endpoint = match crate::model::load_balancers::api_dns_name(ctx.cluster) {
        Some(n) => json!(n),
        None if d.resources.contains_key(&api) => names.r(&me, &api, "dns_name")?,
        None => Value::Null,
    };
    if !endpoint.is_null() {
        put("kube_api_endpoint".into(), endpoint);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
