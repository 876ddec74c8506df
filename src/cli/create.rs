use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::output::{SpecFormat, spec_output};
use super::{ClusterArg, Context};
use crate::ops::ClusterSpecs;
use crate::ops::create::{CreateRequest, Prepared, prepare, region_of, write};
use crate::ops::edit::{Target, edit_loop, run_editor};
use crate::ops::group::{NewGroup, build};
use crate::spec::defaults::NewCluster;
use crate::spec::{
    DnsType, Ipv4Cidr, LoadBalancerType, NatMode, NetworkingPlugin, Role, TopologyKind,
};

/// `keelson create cluster|ig ...`, or `keelson create -f FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateTop {
    #[command(subcommand)]
    command: Option<CreateCommand>,
    /// A YAML file (or - for stdin) with a Cluster and its InstanceGroups, as
    /// `kops create -f`; all are checked before anything is written
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: Option<String>,
    /// The admin SSH public key for a cluster from -f; default ~/.ssh/id_ed25519.pub
    /// or ~/.ssh/id_rsa.pub if present
    #[arg(long, value_name = "FILE", requires = "file")]
    ssh_public_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a cluster's specs in the state store
    Cluster(Box<CreateClusterArgs>),
    /// Add an instance group to a cluster
    #[command(visible_alias = "ig")]
    Instancegroup(CreateGroupArgs),
}

#[derive(Debug, Args)]
pub struct CreateClusterArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Availability zones for the cluster, e.g. us-east-1a,us-east-1b,us-east-1c
    #[arg(long, value_delimiter = ',', value_name = "ZONES")]
    zones: Vec<String>,
    /// Zones for the control plane (an odd number); default: the first --master-count zones
    #[arg(
        long,
        visible_alias = "control-plane-zones",
        value_delimiter = ',',
        value_name = "ZONES"
    )]
    master_zones: Vec<String>,
    /// Number of control-plane instances (odd); default: one per --master-zones, else 1
    #[arg(long, visible_alias = "control-plane-count", value_name = "N")]
    master_count: Option<u32>,
    /// Number of worker nodes, spread over the zones; default: one per zone
    #[arg(long, value_name = "N")]
    node_count: Option<u32>,
    /// Instance type of the control plane
    #[arg(long, visible_alias = "control-plane-size", value_name = "TYPE")]
    master_size: Option<String>,
    /// Instance type of the nodes
    #[arg(long, value_name = "TYPE")]
    node_size: Option<String>,
    /// public: instances in public subnets; private: behind NAT, with utility subnets
    #[arg(long, value_enum, default_value = "public")]
    topology: TopologyKind,
    /// Add a bastion (private topology only)
    #[arg(long)]
    bastion: bool,
    /// The CNI plugin
    #[arg(long, value_enum, default_value = "flannel")]
    networking: NetworkingPlugin,
    /// NAT gateways for private subnets: one per zone, or one for all (cheaper, one zone's failure domain)
    #[arg(long, value_enum, default_value = "perZone")]
    nat: NatMode,
    /// SSH public key for the admin user; default ~/.ssh/id_ed25519.pub or ~/.ssh/id_rsa.pub if present
    #[arg(long, value_name = "FILE")]
    ssh_public_key: Option<std::path::PathBuf>,
    /// Machine image for all groups: an AMI id or OWNER/NAME
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Kubernetes version, e.g. 1.35.0
    #[arg(long, value_name = "VERSION")]
    kubernetes_version: Option<String>,
    /// The API load balancer: public, or internal to the VPC
    #[arg(long, value_enum, value_name = "TYPE")]
    api_loadbalancer_type: Option<LoadBalancerType>,
    /// DNS: public or private Route53 zone; none for gossip (names ending .k8s.local)
    #[arg(long, value_enum)]
    dns: Option<DnsType>,
    /// The Route53 zone; default: the parent domain of the cluster name
    #[arg(long, value_name = "ZONE")]
    dns_zone: Option<String>,
    /// The VPC CIDR for a new VPC (default 172.20.0.0/16)
    #[arg(long, value_name = "CIDR")]
    network_cidr: Option<Ipv4Cidr>,
    /// Use an existing VPC (shared: never changed or deleted)
    #[arg(long, visible_alias = "vpc", value_name = "VPC_ID")]
    network_id: Option<String>,
    /// Existing private (or public) subnets, one per zone
    #[arg(long, value_delimiter = ',', value_name = "SUBNET_IDS")]
    subnets: Vec<String>,
    /// Existing utility subnets, one per zone
    #[arg(long, value_delimiter = ',', value_name = "SUBNET_IDS")]
    utility_subnets: Vec<String>,
    /// CIDRs allowed to reach the Kubernetes API (default 0.0.0.0/0)
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    admin_access: Vec<Ipv4Cidr>,
    /// CIDRs allowed to SSH (default 0.0.0.0/0)
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    ssh_access: Vec<Ipv4Cidr>,
    /// Extra tags on every AWS resource, e.g. team=infra,env=dev
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE", value_parser = parse_label)]
    cloud_labels: Vec<(String, String)>,
    /// Print the specs and write nothing
    #[arg(long)]
    dry_run: bool,
    /// Output format for --dry-run
    #[arg(short, long, value_enum, default_value = "yaml", requires = "dry_run")]
    output: SpecFormat,
    /// Also build the cluster in AWS now (without it: write the specs and preview)
    #[arg(short = 'y', long, conflicts_with = "dry_run")]
    yes: bool,
    /// The keelson binary the instances run as their node agent (a Linux build for
    /// the machine types' architecture); default: this keelson
    #[arg(long, value_name = "PATH", env = "KEELSON_NODE_BINARY")]
    node_binary: Option<std::path::PathBuf>,
    /// terraform: after writing the specs, write the cluster as terraform
    /// configuration into --out DIR, as `update cluster --target terraform`
    #[arg(long, value_enum, default_value = "direct", conflicts_with_all = ["dry_run", "yes"],
          requires_if("terraform", "out"))]
    target: super::update::Target,
    /// With --target terraform: the directory the configuration is written to
    #[arg(long, value_name = "DIR", requires = "target")]
    out: Option<std::path::PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Debug, Args)]
pub struct CreateGroupArgs {
    /// The new group's name, e.g. gpu-us-east-1a
    #[arg(value_name = "GROUP")]
    group: String,
    #[arg(long, value_enum, ignore_case = true, default_value = "node")]
    role: Role,
    /// Cluster subnets for the group, e.g. us-east-1a,us-east-1b
    #[arg(
        long = "subnet",
        visible_alias = "subnets",
        value_delimiter = ',',
        value_name = "SUBNETS",
        required = true
    )]
    subnets: Vec<String>,
    #[arg(long, value_name = "TYPE")]
    machine_type: Option<String>,
    #[arg(long, value_name = "N")]
    min_size: Option<u32>,
    #[arg(long, value_name = "N")]
    max_size: Option<u32>,
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Open the new group in $EDITOR before saving
    #[arg(long)]
    edit: bool,
    /// Print the group and write nothing
    #[arg(long)]
    dry_run: bool,
    #[arg(short, long, value_enum, default_value = "yaml", requires = "dry_run")]
    output: SpecFormat,
}

pub async fn run(top: CreateTop, ctx: &Context) -> anyhow::Result<ExitCode> {
    match (top.command, top.file) {
        (Some(CreateCommand::Cluster(a)), _) => create_cluster(*a, ctx).await,
        (Some(CreateCommand::Instancegroup(a)), _) => create_group(a, ctx).await,
        (None, Some(file)) => create_from_file(&file, top.ssh_public_key, ctx).await,
        (None, None) => anyhow::bail!(
            "create what? `keelson create cluster NAME --zones ...`, `keelson create ig GROUP --name CLUSTER --subnet ZONE`, or `keelson create -f FILE`"
        ),
    }
}

/// `create -f FILE`: the cluster and groups of one file, all checked first.
async fn create_from_file(
    file: &str,
    key: Option<std::path::PathBuf>,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let (text, origin) = if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        (s, "stdin".to_string())
    } else {
        (
            std::fs::read_to_string(file)
                .with_context(|| format!("-f: cannot read {file}; pass a readable YAML file"))?,
            file.to_string(),
        )
    };
    let objects = crate::spec::parse::parse_objects(&text, &origin)?;
    let key_path = key.clone().or_else(default_ssh_key);
    let ssh_public_key = match &key_path {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| {
                format!(
                    "--ssh-public-key: cannot read {}; pass a readable public key file",
                    p.display()
                )
            })?,
        )),
        None => None,
    };
    // The region is the Cluster's: the file names its zones.
    let region = objects.iter().find_map(|o| match o {
        crate::spec::parse::Object::Cluster(c) => c.region(),
        _ => None,
    });
    let aws = crate::aws::load(region.as_deref()).await;
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let p = crate::ops::create::from_objects(
        objects,
        ctx.cluster_name.as_deref(),
        ssh_public_key,
        &ec2,
    )
    .await?;
    let store = ctx
        .store(&aws, crate::state::s3::Versioning::Always)
        .await?;
    write(&store, &p).await?;
    if key_path.is_none() {
        ctx.printer.warn("no SSH public key (none given, none in ~/.ssh): instances will have no key pair; pass --ssh-public-key to add one");
    }
    let name = p.specs.cluster.name();
    print_created(ctx, &p);
    print_suggestions(ctx, &p);
    ctx.printer.note(format!(
        "Finally configure your cluster with: keelson update cluster {name} --yes"
    ));
    Ok(ExitCode::SUCCESS)
}

fn default_ssh_key() -> Option<std::path::PathBuf> {
    let home = std::path::PathBuf::from(std::env::var_os("HOME")?);
    ["id_ed25519.pub", "id_rsa.pub"]
        .iter()
        .map(|f| home.join(".ssh").join(f))
        .find(|p| p.is_file())
}

async fn create_cluster(a: CreateClusterArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let name = ctx.cluster(&a.cluster)?;
    let key_path = a.ssh_public_key.clone().or_else(default_ssh_key);
    let ssh_public_key = match &key_path {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| {
                format!(
                    "--ssh-public-key: cannot read {}; pass a readable public key file",
                    p.display()
                )
            })?,
        )),
        None => None,
    };
    let state_url = if a.dry_run {
        ctx.state_url().ok()
    } else {
        Some(ctx.state_url()?)
    };
    let req = CreateRequest {
        options: NewCluster {
            name: name.clone(),
            zones: a.zones,
            master_zones: a.master_zones,
            master_count: a.master_count,
            node_count: a.node_count,
            master_size: a.master_size,
            node_size: a.node_size,
            topology: a.topology,
            bastion: a.bastion,
            networking: Some(a.networking),
            image: a.image,
            kubernetes_version: a.kubernetes_version,
            api_load_balancer_type: a.api_loadbalancer_type,
            dns: a.dns,
            dns_zone: a.dns_zone,
            network_cidr: a.network_cidr,
            nat: a.nat,
            admin_access: a.admin_access,
            ssh_access: a.ssh_access,
            config_base: state_url
                .as_ref()
                .map(|u| format!("{}/{name}", u.trim_end_matches('/'))),
            cloud_labels: a.cloud_labels.into_iter().collect::<BTreeMap<_, _>>(),
            ..Default::default()
        },
        network_id: a.network_id,
        subnet_ids: a.subnets,
        utility_subnet_ids: a.utility_subnets,
        ssh_public_key,
    };
    let region = region_of(&req.options.zones)?;
    let aws = crate::aws::load(Some(&region)).await;
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let route53 = aws_sdk_route53::Client::new(&aws);
    if a.dry_run {
        let p = prepare(&req, &ec2, &route53).await?;
        ctx.printer.out(spec_output_all(&p, a.output));
        return Ok(ExitCode::SUCCESS);
    }
    let p = prepare(&req, &ec2, &route53).await?;
    let store = ctx
        .store(&aws, crate::state::s3::Versioning::Always)
        .await?;
    write(&store, &p).await?;
    if key_path.is_none() {
        ctx.printer.warn("no SSH public key (none given, none in ~/.ssh): instances will have no key pair; pass --ssh-public-key to add one");
    }
    print_created(ctx, &p);
    // Like kops: end with the preview of what `update` will do, or do it.
    let opts = super::update::UpdateOpts {
        yes: a.yes,
        node_binary: a.node_binary.clone(),
        target: a.target,
        out: a.out.clone(),
        ..Default::default()
    };
    let result = super::update::update(&store, &name, &opts, ctx).await;
    if a.target == super::update::Target::Terraform {
        return result;
    }
    match result {
        // The specs are written; a preview that cannot be made (an image not found,
        // say) is for the user to fix before `update cluster`, not a failed create.
        Err(e) if !a.yes => {
            print_suggestions(ctx, &p);
            ctx.printer.warn(format!("the specs are saved, but the preview failed: {e:#}\nFix that, then run: keelson update cluster {name}"));
            Ok(ExitCode::SUCCESS)
        }
        // As kops: the suggestions come after the preview, where they are read.
        // A rerun of create with --yes would find the cluster: the next step is update.
        Ok(code) if !a.yes => {
            print_suggestions(ctx, &p);
            ctx.printer.note(format!(
                "Finally configure your cluster with: keelson update cluster {name} --yes"
            ));
            Ok(code)
        }
        Ok(code) => {
            print_suggestions(ctx, &p);
            Ok(code)
        }
        other => other,
    }
}

fn spec_output_all(p: &Prepared, format: SpecFormat) -> String {
    let mut items: Vec<serde_json::Value> =
        vec![serde_json::to_value(&p.specs.cluster).expect("serializes")];
    items.extend(
        p.specs
            .groups
            .iter()
            .map(|g| serde_json::to_value(g).expect("serializes")),
    );
    spec_output(&items, format)
}

fn print_created(ctx: &Context, p: &Prepared) {
    let name = p.specs.cluster.name();
    ctx.printer.note(format!(
        "Cluster configuration for {name} has been created: {} instance groups{}.",
        p.specs.groups.len(),
        if p.ssh_key.is_some() {
            " and the admin SSH key"
        } else {
            ""
        },
    ));
}

fn print_suggestions(ctx: &Context, p: &Prepared) {
    let name = p.specs.cluster.name();
    let first = |role: Role| {
        p.specs
            .groups
            .iter()
            .find(|g| g.spec.role == role)
            .map(|g| g.name().to_string())
            .unwrap_or_default()
    };
    ctx.printer.note(format!(
        "\nSuggestions:\n * list clusters with: keelson get clusters\n * list instance groups with: keelson get ig --name {name}\n * edit this cluster with: keelson edit cluster {name}\n * edit your node instance group: keelson edit ig --name {name} {}\n * edit your control-plane instance group: keelson edit ig --name {name} {}\n",
        first(Role::Node),
        first(Role::Master),
    ));
}

async fn create_group(a: CreateGroupArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cluster = ctx.cluster_flag()?;
    let store = ctx.open_store(true).await?;
    let specs = ClusterSpecs::read(&store, &cluster).await?;
    let req = NewGroup {
        name: a.group.clone(),
        role: a.role,
        subnets: a.subnets,
        machine_type: a.machine_type,
        min_size: a.min_size,
        max_size: a.max_size,
        image: a.image,
    };
    let (mut group, with_group) = build(&specs, &req)?;
    if a.edit {
        let text = crate::spec::parse::to_yaml(&group);
        // A group's edit leaves the cluster's version as it is.
        let (edited, _) = edit_loop(
            &with_group,
            None,
            &Target::Group(a.group.clone()),
            &text,
            &mut run_editor,
        )?;
        group = edited.group(&a.group).expect("edited group exists").clone();
    }
    let aws = crate::aws::load(specs.cluster.region().as_deref()).await;
    crate::ops::create::check_machine_types(
        &aws_sdk_ec2::Client::new(&aws),
        &specs.cluster,
        std::slice::from_ref(&group),
        &Default::default(),
    )
    .await?;
    if a.dry_run {
        ctx.printer.out(spec_output(&[&group], a.output));
        return Ok(ExitCode::SUCCESS);
    }
    crate::ops::group::write(&store, &cluster, &group).await?;
    ctx.printer.note(format!(
        "Instance group {} of cluster {cluster} has been created.",
        group.name()
    ));
    Ok(ExitCode::SUCCESS)
}
