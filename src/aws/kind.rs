//! The one trait every resource kind implements, and what the kinds share.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::AwsError;
use crate::model::{Address, Kind, Resource, Tags};
use crate::state::BoxFuture;

/// The AWS clients the kinds use, configured once for the cluster's region.
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// Classic ELB: only for the balancers Kubernetes makes (see `service_load_balancer`).
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub route53: aws_sdk_route53::Client,
    /// How many Elastic IPs the region holds, when discovery listed them all
    /// ([`Scope::region_addresses`]): the preflight's Elastic IP usage, read
    /// once instead of twice.
    pub region_addresses: Arc<OnceLock<u64>>,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Clients {
        Clients {
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            elb: aws_sdk_elasticloadbalancing::Client::new(config),
            route53: aws_sdk_route53::Client::new(config),
            region_addresses: Arc::default(),
        }
    }
}

/// A resource as found in AWS. References are [`Address::foreign`] ids until
/// discovery maps them to addresses.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub resource: Resource,
    pub owned: bool,
    pub state: Option<String>,
    /// Ids this resource points at that its own fields do not hold (a VPC's DHCP
    /// options), so that discovery can fill the other side.
    pub links: Vec<String>,
}

/// What discovery needs to know of the model: the cluster, and the shared
/// resources' ids, which carry the user's names rather than ours.
pub struct Scope {
    pub cluster: String,
    pub shared: BTreeMap<String, Address>,
    /// The shared VPC's id, whose attached gateway keelson uses.
    pub shared_vpc: Option<String>,
    /// The Route53 zone (name, private) and the record names keelson may own there.
    pub dns: Option<(String, bool, Vec<String>)>,
    /// The model's launch templates by name: a template whose recorded content
    /// digest matches its model is not read again (see `launch_template`).
    pub templates: BTreeMap<String, crate::model::LaunchTemplate>,
    /// The target groups whose model turns client-IP preservation off (AWS's
    /// default is on): only their attributes are read, one call each, so that
    /// a no-op plan does not pay for groups that keep AWS's default.
    pub client_ip_off: std::collections::BTreeSet<String>,
    /// Discovery for `delete cluster`: DNS is taken as it is found (a missing
    /// zone holds no records), and the kinds that only Kubernetes makes for the
    /// cluster (load balancers of Services, their security groups, volumes) are
    /// looked for too. Never for `update`, which must not plan their deletion
    /// (and must not spend requests on them).
    pub deleting: bool,
    /// List the region's Elastic IPs without the tag filter (ours are still
    /// told apart by their tags, as [`identify`] does anyway), and keep their
    /// count in [`Clients::region_addresses`]. Only on a cluster's first apply,
    /// whose preflight needs that count for the Elastic IP quota (issue 20):
    /// DescribeAddresses is not paginated (EC2 API reference), so the listing
    /// is one request either way, and the quota check costs one request less.
    /// A no-op plan keeps the filter.
    pub region_addresses: bool,
}

/// Resolves a reference to an AWS id: a known address, or a foreign `<id>`.
pub trait Ids: Send + Sync {
    fn id(&self, a: &Address) -> Result<String, AwsError>;
}

impl Ids for BTreeMap<Address, String> {
    fn id(&self, a: &Address) -> Result<String, AwsError> {
        if let Some(id) = a.name.strip_prefix('<').and_then(|n| n.strip_suffix('>')) {
            return Ok(id.to_string());
        }
        self.get(a)
            .cloned()
            .ok_or_else(|| AwsError::Other(format!("{a} has no id yet; it must be created first")))
    }
}

/// One kind of AWS resource: discover (one bulk call), create, update, delete.
pub trait ResourceKind: Send + Sync {
    fn kind(&self) -> Kind;
    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>>;
    /// Creates the resource and returns its id. `token` is deterministic per
    /// resource, for the APIs that take a client token.
    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    /// For a kind AWS makes asynchronously (a NAT gateway is `pending` for a
    /// minute or more), the wait until what `create` returned is usable. The
    /// executor records the id and lets what may refer to the resource while it
    /// is still pending start first (`apply::usable_pending`: a route to a NAT
    /// gateway); the step is done when the wait is. `None` (the default): usable
    /// once created.
    fn settle<'a>(
        &'a self,
        _aws: &'a Clients,
        _id: &'a str,
    ) -> Option<BoxFuture<'a, Result<(), AwsError>>> {
        None
    }
    /// Brings an existing resource to `r`; returns a new id if the update made one.
    /// `existing` is the resource as discovered, which the plan was made from (a
    /// saved plan applies only while the cloud is unchanged), so an update need
    /// not read it again. For most kinds only the tags can change in place, which
    /// this default does.
    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            if let Some(tags) = r.tags() {
                retag(ec2, id, tags).await?;
            }
            Ok(None)
        })
    }
    /// Deletes it; `existing` is the resource as discovered.
    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
}

pub fn kinds() -> Vec<Box<dyn ResourceKind>> {
    vec![
        Box::new(super::vpc::VpcKind),
        Box::new(super::dhcp_options::DhcpOptionsKind),
        Box::new(super::internet_gateway::InternetGatewayKind),
        Box::new(super::subnet::SubnetKind),
        Box::new(super::route_table::RouteTableKind),
        Box::new(super::elastic_ip::ElasticIpKind),
        Box::new(super::nat_gateway::NatGatewayKind),
        Box::new(super::route::RouteKind),
        Box::new(super::route_table_association::RouteTableAssociationKind),
        Box::new(super::security_group::SecurityGroupKind),
        Box::new(super::security_group_rule::SecurityGroupRuleKind),
        Box::new(super::key_pair::KeyPairKind),
        Box::new(super::iam_role::IamRoleKind),
        Box::new(super::iam_role_policy::IamRolePolicyKind),
        Box::new(super::instance_profile::InstanceProfileKind),
        Box::new(super::launch_template::LaunchTemplateKind),
        Box::new(super::load_balancer::LoadBalancerKind),
        Box::new(super::load_balancer::TargetGroupKind),
        Box::new(super::load_balancer::ListenerKind),
        Box::new(super::autoscaling_group::AutoScalingGroupKind),
        Box::new(super::dns_record::DnsRecordKind),
        Box::new(super::service_load_balancer::ServiceLoadBalancerKind),
        Box::new(super::volume::VolumeKind),
    ]
}

pub fn kind_of(kind: Kind) -> Box<dyn ResourceKind> {
    kinds()
        .into_iter()
        .find(|k| k.kind() == kind)
        .expect("every kind is implemented")
}

/// The filter that finds everything of this cluster, owned or shared.
pub fn cluster_filter(cluster: &str) -> Filter {
    Filter::builder()
        .name("tag-key")
        .values(crate::model::cluster_tag(cluster))
        .build()
}

pub fn tag_spec(kind: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(to_tags(tags)))
        .build()
}

pub fn to_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn from_tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The name and ownership of a tagged resource: shared ones take their address
/// from the model (their Name tag is the user's).
pub fn identify(id: &str, tags: &Tags, scope: &Scope) -> Option<(String, bool)> {
    if let Some(a) = scope.shared.get(id) {
        return Some((a.name.clone(), false));
    }
    // Checked here too, not only in the request's filter: some endpoints ignore
    // tag filters on some calls (the emulator on DescribeNatGateways), and then
    // another cluster's resources must not look like ours.
    let owned = match tags
        .get(&crate::model::cluster_tag(&scope.cluster))
        .map(String::as_str)
    {
        Some("owned") => true,
        Some(_) => false,
        None => return None,
    };
    Some((tags.get("Name")?.clone(), owned))
}

/// Tags the resource with exactly the desired keys (others are left alone).
pub async fn retag(ec2: &aws_sdk_ec2::Client, id: &str, tags: &Tags) -> Result<(), AwsError> {
    ec2.create_tags()
        .resources(id)
        .set_tags(Some(to_tags(tags)))
        .send()
        .await
        .map_err(|e| super::call_error("CreateTags", &e))?;
    Ok(())
}

pub fn expect<'a, T>(r: &'a Resource, f: impl Fn(&'a Resource) -> Option<&'a T>) -> &'a T {
    f(r).expect("the executor hands each kind its own resources")
}

/// How long a call that names an id AWS has just returned keeps being retried
/// while AWS answers that the id does not exist: the propagation timeout of
/// terraform's AWS provider for EC2 (`propagationTimeout = 2 * time.Minute`,
/// internal/service/ec2/wait.go).
pub const VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs a create's follow-up call (an attribute, an attachment, tags) on the id
/// the create just returned, retrying while AWS answers `Invalid*.NotFound`.
/// AWS's EC2 API is eventually consistent ("Eventual consistency in the Amazon
/// EC2 API": a new id "might not have propagated throughout the system"; back
/// off from a couple of seconds). Here, not in the executor: a failed follow-up
/// fails the whole create step, whose retry would make the resource a second
/// time and leave the first behind.
pub async fn once_visible<T, F, Fut>(mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let deadline = std::time::Instant::now() + VISIBLE_WAIT;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match call().await {
            Err(e)
                if e.code()
                    .is_some_and(|c| c.starts_with("Invalid") && c.ends_with(".NotFound"))
                    && std::time::Instant::now() + delay < deadline =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            r => return r,
        }
    }
}
