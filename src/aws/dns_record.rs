//! Route53 alias records (`api.NAME`, `bastion.NAME`) with a TXT record beside each
//! saying which cluster owns it. Records without this cluster's TXT are not
//! discovered, so they are never changed: creating over one fails (CREATE, not
//! UPSERT) and names it.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::{Address, DnsRecord, Kind, Resource};
use crate::state::BoxFuture;

pub struct DnsRecordKind;

fn record(r: &Resource) -> Option<&DnsRecord> {
    match r {
        Resource::DnsRecord(v) => Some(v),
        _ => None,
    }
}

fn owner_value(cluster: &str) -> String {
    format!("\"keelson-owner={cluster}\"")
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The id of the Route53 zone `zone` of that visibility, if it exists.
/// `create cluster` refuses a zone that does not exist, before anything is
/// written; `delete cluster` takes a missing zone as nothing to delete.
pub async fn find_zone(
    route53: &aws_sdk_route53::Client,
    zone: &str,
    private: bool,
) -> Result<Option<String>, AwsError> {
    let out = route53
        .list_hosted_zones_by_name()
        .dns_name(fqdn(zone))
        .send()
        .await
        .map_err(|e| call_error("ListHostedZonesByName", &e))?;
    Ok(out
        .hosted_zones()
        .iter()
        .find(|z| {
            z.name() == fqdn(zone)
                && z.config().map(|c| c.private_zone()).unwrap_or(false) == private
        })
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string()))
}

/// The zone's id; the zone must exist (keelson does not create zones).
async fn zone_id(aws: &Clients, zone: &str, private: bool) -> Result<String, AwsError> {
    find_zone(&aws.route53, zone, private).await?.ok_or_else(|| {
        let kind = if private { "private" } else { "public" };
        AwsError::Other(format!("the {kind} Route53 zone {zone} does not exist; create it, or use a gossip name ending in .k8s.local"))
    })
}

async fn records_named(
    aws: &Clients,
    zone: &str,
    name: &str,
) -> Result<Vec<ResourceRecordSet>, AwsError> {
    let out = aws
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(fqdn(name))
        .max_items(10)
        .send()
        .await
        .map_err(|e| call_error("ListResourceRecordSets", &e))?;
    Ok(out
        .resource_record_sets()
        .iter()
        .filter(|r| r.name() == fqdn(name))
        .cloned()
        .collect())
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Change {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .expect("action and set given")
}

impl ResourceKind for DnsRecordKind {
    fn kind(&self) -> Kind {
        Kind::DnsRecord
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let Some((zone, private, names)) = &scope.dns else {
                return Ok(Vec::new());
            };
            // A delete must work whatever DNS it finds: with the zone gone
            // there is no record of the cluster left to delete.
            let id = if scope.deleting {
                match find_zone(&aws.route53, zone, *private).await? {
                    Some(id) => id,
                    None => return Ok(Vec::new()),
                }
            } else {
                zone_id(aws, zone, *private).await?
            };
            let mut found = Vec::new();
            for name in names {
                let sets = records_named(aws, &id, name).await?;
                let owned = sets.iter().any(|s| {
                    s.r#type() == &RrType::Txt
                        && s.resource_records()
                            .iter()
                            .any(|r| r.value() == owner_value(&scope.cluster))
                });
                let alias = sets
                    .iter()
                    .find(|s| s.r#type() == &RrType::A)
                    .and_then(|s| s.alias_target());
                // A delete also takes our TXT record whose alias is gone.
                let target = match alias {
                    Some(a) => Some(a.dns_name().trim_end_matches('.').to_lowercase()),
                    None if scope.deleting => Some(String::new()),
                    None => None,
                };
                if let (true, Some(dns)) = (owned, target) {
                    found.push(Found {
                        id: name.clone(),
                        resource: Resource::DnsRecord(DnsRecord {
                            name: name.clone(),
                            zone: zone.clone(),
                            private_zone: *private,
                            target: Address::foreign(Kind::LoadBalancer, &format!("dns:{dns}")),
                        }),
                        owned: true,
                        state: None,
                        links: Vec::new(),
                    });
                }
            }
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move { upsert(aws, expect(r, record), ids, ChangeAction::Create).await })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        _id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            upsert(aws, expect(r, record), ids, ChangeAction::Upsert)
                .await
                .map(|_| None)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let rec = expect(existing, record);
            // Gone with its zone: nothing left to delete.
            let Some(zone) = find_zone(&aws.route53, &rec.zone, rec.private_zone).await? else {
                return Ok(());
            };
            // Deletion names the exact current records: the A alias and our TXT.
            let changes: Vec<Change> = records_named(aws, &zone, id)
                .await?
                .into_iter()
                .filter(|s| s.r#type() == &RrType::A || s.r#type() == &RrType::Txt)
                .map(|s| change(ChangeAction::Delete, s))
                .collect();
            if changes.is_empty() {
                return Ok(());
            }
            aws.route53
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(
                    ChangeBatch::builder()
                        .set_changes(Some(changes))
                        .build()
                        .expect("changes given"),
                )
                .send()
                .await
                .map_err(|e| call_error("ChangeResourceRecordSets", &e))?;
            Ok(())
        })
    }
}

async fn upsert(
    aws: &Clients,
    rec: &DnsRecord,
    ids: &dyn Ids,
    action: ChangeAction,
) -> Result<String, AwsError> {
    let zone = zone_id(aws, &rec.zone, rec.private_zone).await?;
    let arn = ids.id(&rec.target)?;
    let out = aws
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(&arn)
        .send()
        .await
        .map_err(|e| call_error("DescribeLoadBalancers", &e))?;
    let lb = out.load_balancers().first().ok_or_else(|| {
        AwsError::Other(format!("load balancer {arn} not found for {}", rec.name))
    })?;
    let (Some(dns), Some(lb_zone)) = (lb.dns_name(), lb.canonical_hosted_zone_id()) else {
        return Err(AwsError::Other(format!(
            "load balancer {arn} has no DNS name yet"
        )));
    };
    let alias = ResourceRecordSet::builder()
        .name(fqdn(&rec.name))
        .r#type(RrType::A)
        .alias_target(
            AliasTarget::builder()
                .dns_name(dns)
                .hosted_zone_id(lb_zone)
                .evaluate_target_health(false)
                .build()
                .expect("alias fields given"),
        )
        .build()
        .expect("name and type given");
    let owner = ResourceRecordSet::builder()
        .name(fqdn(&rec.name))
        .r#type(RrType::Txt)
        .ttl(300)
        .resource_records(
            ResourceRecord::builder()
                .value(owner_value(
                    rec.name
                        .split_once('.')
                        .map_or(rec.name.as_str(), |(_, cluster)| cluster),
                ))
                .build()
                .expect("value given"),
        )
        .build()
        .expect("name and type given");
    aws.route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(change(ChangeAction::Upsert, owner))
                .changes(change(action, alias))
                .build()
                .expect("changes given"),
        )
        .send()
        .await
        .map_err(|e| call_error("ChangeResourceRecordSets", &e))?;
    Ok(rec.name.clone())
}
