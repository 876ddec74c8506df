//! Network load balancers, their target groups and listeners (one file each
//! would triple the same look-ups: they are found together, by their names,
//! which the model derives from the cluster's; the ownership tag is then
//! checked, so a same-named balancer of someone else is never touched).

use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetGroupAttribute, TargetTypeEnum,
};

use super::kind::*;
use super::{AwsError, call_error};
use crate::model::load_balancers::{api_name, bastion_name, elb_name};
use crate::model::{Address, Kind, Listener, LoadBalancer, Resource, Tags, TargetGroup};
use crate::state::BoxFuture;

pub struct LoadBalancerKind;
pub struct TargetGroupKind;
pub struct ListenerKind;

fn elb_tags(t: &Tags) -> Vec<Tag> {
    t.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

const PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// Whether a target group preserves client IPs, from its attributes. AWS
/// always lists the attribute for TCP groups; absent (the emulator omits it
/// until it is set), it is AWS's default for instance targets: on.
fn preserves_client_ip(attributes: &[TargetGroupAttribute]) -> bool {
    attributes
        .iter()
        .find(|a| a.key() == Some(PRESERVE_CLIENT_IP))
        .and_then(|a| a.value())
        .is_none_or(|v| v != "false")
}

async fn set_preserve_client_ip(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &str,
    on: bool,
) -> Result<(), AwsError> {
    elb.modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(PRESERVE_CLIENT_IP)
                .value(on.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| call_error("ModifyTargetGroupAttributes", &e))?;
    Ok(())
}

fn not_found(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("LoadBalancerNotFound" | "TargetGroupNotFound" | "ListenerNotFound")
    )
}

/// Everything of the cluster's two balancers: the balancers, their target
/// groups, listeners and (to check ownership) tags.
/// Looks resources up by name in as few calls as the API allows. One call with
/// all the names answers for all of them, but fails as a whole ("not found")
/// when any is missing, without saying which; then they are asked for one at
/// a time, and once all but the last were found, the last is the missing one.
/// `call` answers `None` for "not found".
async fn by_names<T, F, Fut>(names: &[String], call: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Vec<T>>, AwsError>>,
{
    if let Some(all) = call(names.to_vec()).await? {
        return Ok(all);
    }
    let mut found = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i + 1 == names.len() && found.len() == i {
            break;
        }
        found.extend(call(vec![name.clone()]).await?.unwrap_or_default());
    }
    Ok(found)
}

async fn discover_all(aws: &Clients, scope: &Scope) -> Result<Vec<Found>, AwsError> {
    let elb = &aws.elbv2;
    let cluster = &scope.cluster;
    let lb_names = [api_name(cluster), bastion_name(cluster)];
    let tg_names = [
        elb_name("tcp-api", cluster),
        elb_name("tcp-bastion", cluster),
    ];
    let balancers = by_names(&lb_names, |names| async move {
        match elb
            .describe_load_balancers()
            .set_names(Some(names))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.load_balancers.unwrap_or_default())),
            Err(e)
                if not_found(
                    aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata::code(&e),
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(call_error("DescribeLoadBalancers", &e)),
        }
    });
    let groups = by_names(&tg_names, |names| async move {
        match elb
            .describe_target_groups()
            .set_names(Some(names))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.target_groups.unwrap_or_default())),
            Err(e)
                if not_found(
                    aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata::code(&e),
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(call_error("DescribeTargetGroups", &e)),
        }
    });
    let (lbs, tgs) = tokio::join!(balancers, groups);
    let (lbs, tgs) = (lbs?, tgs?);
    // Each balancer's listeners (one call per balancer), meanwhile the tags.
    let mut listener_calls = tokio::task::JoinSet::new();
    for arn in lbs.iter().filter_map(|l| l.load_balancer_arn()) {
        let (elb, arn) = (elb.clone(), arn.to_string());
        listener_calls.spawn(async move {
            let out = elb
                .describe_listeners()
                .load_balancer_arn(&arn)
                .send()
                .await
                .map_err(|e| call_error("DescribeListeners", &e))?;
            Ok::<_, AwsError>((arn, out.listeners.unwrap_or_default()))
        });
    }
    let arns: Vec<String> = lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .chain(tgs.iter().filter_map(|t| t.target_group_arn()))
        .map(str::to_string)
        .collect();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let tag_out = elb
        .describe_tags()
        .set_resource_arns(Some(arns))
        .send()
        .await
        .map_err(|e| call_error("DescribeTags", &e))?;
    let tags_of = |arn: &str| -> Tags {
        tag_out
            .tag_descriptions()
            .iter()
            .find(|d| d.resource_arn() == Some(arn))
            .map(|d| {
                d.tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The attributes of our target groups whose model turns client-IP
    // preservation off (one call each); the others are taken to keep AWS's
    // default, so a hand change to one of those goes unseen (docs/performance.md).
    let mut attribute_calls = tokio::task::JoinSet::new();
    for t in &tgs {
        let (Some(arn), Some(name)) = (t.target_group_arn(), t.target_group_name()) else {
            continue;
        };
        if !scope.client_ip_off.contains(name) || identify(arn, &tags_of(arn), scope).is_none() {
            continue;
        }
        let (elb, arn) = (elb.clone(), arn.to_string());
        attribute_calls.spawn(async move {
            let out = elb
                .describe_target_group_attributes()
                .target_group_arn(&arn)
                .send()
                .await
                .map_err(|e| call_error("DescribeTargetGroupAttributes", &e))?;
            Ok::<_, AwsError>((arn, preserves_client_ip(out.attributes())))
        });
    }
    let mut preserve = std::collections::BTreeMap::new();
    while let Some(joined) = attribute_calls.join_next().await {
        let (arn, on) = joined.expect("attribute look-up panicked")?;
        preserve.insert(arn, on);
    }
    let mut listeners = std::collections::BTreeMap::new();
    while let Some(joined) = listener_calls.join_next().await {
        let (arn, l) = joined.expect("listener look-up panicked")?;
        listeners.insert(arn, l);
    }
    let mut found = Vec::new();
    for t in &tgs {
        let (Some(arn), Some(name)) = (t.target_group_arn(), t.target_group_name()) else {
            continue;
        };
        let tags = tags_of(arn);
        let Some((_, owned)) = identify(arn, &tags, scope) else {
            continue;
        };
        found.push(Found {
            id: arn.to_string(),
            resource: Resource::TargetGroup(TargetGroup {
                name: name.to_string(),
                vpc: Address::foreign(Kind::Vpc, t.vpc_id().unwrap_or("none")),
                port: t.port().unwrap_or(0),
                preserve_client_ip: preserve.get(arn).copied().unwrap_or(true),
                tags,
            }),
            owned,
            state: None,
            links: Vec::new(),
        });
    }
    for l in &lbs {
        let (Some(arn), Some(name)) = (l.load_balancer_arn(), l.load_balancer_name()) else {
            continue;
        };
        let tags = tags_of(arn);
        let Some((_, owned)) = identify(arn, &tags, scope) else {
            continue;
        };
        let me = Address::foreign(Kind::LoadBalancer, arn);
        for li in listeners.get(arn).map(Vec::as_slice).unwrap_or_default() {
            let target = li
                .default_actions()
                .first()
                .and_then(|a| a.target_group_arn())
                .unwrap_or("none");
            found.push(Found {
                id: li.listener_arn().unwrap_or_default().to_string(),
                resource: Resource::Listener(Listener {
                    load_balancer: me.clone(),
                    port: li.port().unwrap_or(0),
                    target_group: Address::foreign(Kind::TargetGroup, target),
                }),
                owned,
                state: None,
                links: Vec::new(),
            });
        }
        found.push(Found {
            id: arn.to_string(),
            resource: Resource::LoadBalancer(LoadBalancer {
                name: name.to_string(),
                internal: l.scheme() == Some(&LoadBalancerSchemeEnum::Internal),
                subnets: l
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.subnet_id())
                    .map(|s| Address::foreign(Kind::Subnet, s))
                    .collect(),
                security_groups: l
                    .security_groups()
                    .iter()
                    .map(|g| Address::foreign(Kind::SecurityGroup, g))
                    .collect(),
                tags,
            }),
            owned,
            state: l
                .state()
                .and_then(|s| s.code())
                .map(|c| c.as_str().to_string())
                .filter(|c| c != "active" && c != "provisioning"),
            links: l
                .dns_name()
                .map(|d| format!("dns:{}", d.trim_end_matches('.').to_lowercase()))
                .into_iter()
                .collect(),
        });
    }
    Ok(found)
}

fn lb(r: &Resource) -> Option<&LoadBalancer> {
    match r {
        Resource::LoadBalancer(v) => Some(v),
        _ => None,
    }
}

fn tg(r: &Resource) -> Option<&TargetGroup> {
    match r {
        Resource::TargetGroup(v) => Some(v),
        _ => None,
    }
}

fn listener(r: &Resource) -> Option<&Listener> {
    match r {
        Resource::Listener(v) => Some(v),
        _ => None,
    }
}

impl ResourceKind for LoadBalancerKind {
    fn kind(&self) -> Kind {
        Kind::LoadBalancer
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(discover_all(aws, scope))
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let l = expect(r, lb);
            let subnets = l
                .subnets
                .iter()
                .map(|s| ids.id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let groups = l
                .security_groups
                .iter()
                .map(|s| ids.id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let out = aws
                .elbv2
                .create_load_balancer()
                .name(&l.name)
                .r#type(LoadBalancerTypeEnum::Network)
                .scheme(if l.internal {
                    LoadBalancerSchemeEnum::Internal
                } else {
                    LoadBalancerSchemeEnum::InternetFacing
                })
                .set_subnets(Some(subnets))
                .set_security_groups(Some(groups))
                .set_tags(Some(elb_tags(&l.tags)))
                .send()
                .await
                .map_err(|e| call_error("CreateLoadBalancer", &e))?;
            Ok(out
                .load_balancers()
                .first()
                .and_then(|l| l.load_balancer_arn())
                .ok_or_else(|| AwsError::Other("CreateLoadBalancer returned no ARN".into()))?
                .to_string())
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let l = expect(r, lb);
            let subnets = l
                .subnets
                .iter()
                .map(|s| ids.id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let groups = l
                .security_groups
                .iter()
                .map(|s| ids.id(s))
                .collect::<Result<Vec<_>, _>>()?;
            aws.elbv2
                .set_subnets()
                .load_balancer_arn(id)
                .set_subnets(Some(subnets))
                .send()
                .await
                .map_err(|e| call_error("SetSubnets", &e))?;
            aws.elbv2
                .set_security_groups()
                .load_balancer_arn(id)
                .set_security_groups(Some(groups))
                .send()
                .await
                .map_err(|e| call_error("SetSecurityGroups", &e))?;
            aws.elbv2
                .add_tags()
                .resource_arns(id)
                .set_tags(Some(elb_tags(&l.tags)))
                .send()
                .await
                .map_err(|e| call_error("AddTags", &e))?;
            Ok(None)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.elbv2
                .delete_load_balancer()
                .load_balancer_arn(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteLoadBalancer", &e))?;
            // Its network interfaces hold the subnets and security groups a while.
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                match aws
                    .elbv2
                    .describe_load_balancers()
                    .load_balancer_arns(id)
                    .send()
                    .await
                {
                    Ok(out) if !out.load_balancers().is_empty() => {
                        tokio::time::sleep(Duration::from_secs(2)).await
                    }
                    _ => return Ok(()),
                }
            }
            Ok(())
        })
    }
}

impl ResourceKind for TargetGroupKind {
    fn kind(&self) -> Kind {
        Kind::TargetGroup
    }

    fn discover<'a>(
        &'a self,
        _aws: &'a Clients,
        _scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        // Found with the load balancers, in the same calls.
        super::route_table::through_parent()
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let t = expect(r, tg);
            let out = aws
                .elbv2
                .create_target_group()
                .name(&t.name)
                .protocol(ProtocolEnum::Tcp)
                .port(t.port)
                .vpc_id(ids.id(&t.vpc)?)
                .target_type(TargetTypeEnum::Instance)
                .health_check_protocol(ProtocolEnum::Tcp)
                .set_tags(Some(elb_tags(&t.tags)))
                .send()
                .await
                .map_err(|e| call_error("CreateTargetGroup", &e))?;
            let arn = out
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .ok_or_else(|| AwsError::Other("CreateTargetGroup returned no ARN".into()))?
                .to_string();
            // Attributes cannot be given at creation. A run stopped between the
            // two calls leaves AWS's default, which the next plan sees and sets.
            if !t.preserve_client_ip {
                set_preserve_client_ip(&aws.elbv2, &arn, false).await?;
            }
            Ok(arn)
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let t = expect(r, tg);
            if expect(existing, tg).preserve_client_ip != t.preserve_client_ip {
                set_preserve_client_ip(&aws.elbv2, id, t.preserve_client_ip).await?;
            }
            aws.elbv2
                .add_tags()
                .resource_arns(id)
                .set_tags(Some(elb_tags(&t.tags)))
                .send()
                .await
                .map_err(|e| call_error("AddTags", &e))?;
            Ok(None)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.elbv2
                .delete_target_group()
                .target_group_arn(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteTargetGroup", &e))?;
            Ok(())
        })
    }
}

fn forward(target: String) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target)
        .build()
}

impl ResourceKind for ListenerKind {
    fn kind(&self) -> Kind {
        Kind::Listener
    }

    fn discover<'a>(
        &'a self,
        _aws: &'a Clients,
        _scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        super::route_table::through_parent()
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let l = expect(r, listener);
            let out = aws
                .elbv2
                .create_listener()
                .load_balancer_arn(ids.id(&l.load_balancer)?)
                .protocol(ProtocolEnum::Tcp)
                .port(l.port)
                .default_actions(forward(ids.id(&l.target_group)?))
                .send()
                .await
                .map_err(|e| call_error("CreateListener", &e))?;
            Ok(out
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .ok_or_else(|| AwsError::Other("CreateListener returned no ARN".into()))?
                .to_string())
        })
    }

    fn update<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        r: &'a Resource,
        _existing: &'a Resource,
        ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let l = expect(r, listener);
            aws.elbv2
                .modify_listener()
                .listener_arn(id)
                .default_actions(forward(ids.id(&l.target_group)?))
                .send()
                .await
                .map_err(|e| call_error("ModifyListener", &e))?;
            Ok(None)
        })
    }

    fn delete<'a>(
        &'a self,
        aws: &'a Clients,
        id: &'a str,
        _existing: &'a Resource,
        _ids: &'a dyn Ids,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            aws.elbv2
                .delete_listener()
                .listener_arn(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteListener", &e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::by_names;
    use std::sync::Mutex;

    /// Which calls a look-up makes when only `existing` exist.
    async fn calls(existing: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
        let log = Mutex::new(Vec::new());
        let names = ["api".to_string(), "bastion".to_string()];
        let found = by_names(&names, |asked: Vec<String>| {
            log.lock().unwrap().push(asked.clone());
            let all = asked.iter().all(|n| existing.contains(&n.as_str()));
            async move { Ok(all.then_some(asked)) }
        })
        .await
        .unwrap();
        (found, log.into_inner().unwrap())
    }

    #[tokio::test]
    async fn names_are_looked_up_together_and_apart_only_when_one_is_missing() {
        let (found, log) = calls(&["api", "bastion"]).await;
        assert_eq!((found.len(), log.len()), (2, 1));
        // The first found alone: the second is the missing one, without asking.
        let (found, log) = calls(&["api"]).await;
        assert_eq!(found, ["api"]);
        assert_eq!(log, [vec!["api", "bastion"], vec!["api"]]);
        let (found, log) = calls(&["bastion"]).await;
        assert_eq!(found, ["bastion"]);
        assert_eq!(log.len(), 3);
        let (found, log) = calls(&[]).await;
        assert!(found.is_empty());
        assert_eq!(log.len(), 3);
    }
}
