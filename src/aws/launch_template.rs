//! Launch templates. A change is a new version, made the default; old versions
//! are pruned. The revision lives in the versions' instance tags.
//!
//! Discovery costs one call on a no-op: the cluster's templates (by tag), each
//! carrying [`CONTENT_TAG`] = `<version>:<digest>`, written after keelson made
//! that version, the digest of its content as discovery would read it. Versions
//! are immutable, so when the template's latest version is the recorded one and
//! the model's template has that digest, the version holds exactly the model's
//! content and is not read. Any other template (changed in the model, a version
//! made by hand, a tag edited or missing) has its latest version read and
//! compared field by field, as before.

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, VolumeType,
};
use base64::Engine;

use super::AwsError;
use super::call_error;
use super::kind::*;
use crate::model::{Address, Kind, LaunchTemplate, Resource, Tags};
use crate::state::BoxFuture;
use sha2::Digest;

pub struct LaunchTemplateKind;

/// How many versions a template keeps: enough to roll back by hand.
pub const KEEP_VERSIONS: i64 = 3;
/// Ubuntu's root device.
pub const ROOT_DEVICE: &str = "/dev/sda1";
/// On the template itself: `<version>:<digest>` of the version keelson made last.
pub const CONTENT_TAG: &str = "keelson.dev/content";

/// What identifies a version's content: everything discovery reads from it (the
/// template's own tags are not version content).
pub fn digest(t: &LaunchTemplate) -> String {
    let mut t = t.clone();
    t.tags = Tags::new();
    let json = serde_json::to_vec(&t).expect("templates serialize");
    crate::plan::hex(&sha2::Sha256::digest(json))[..32].to_string()
}

/// The model's template as discovery reads it back from a version: security
/// groups by id. `None` if a group has no id (yet).
pub fn as_read(
    t: &LaunchTemplate,
    sg_id: impl Fn(&Address) -> Option<String>,
) -> Option<LaunchTemplate> {
    let mut read = t.clone();
    read.security_groups = t
        .security_groups
        .iter()
        .map(|a| {
            // A group of the user's (`spec.additionalSecurityGroups`) is its id.
            let own = a.name.strip_prefix('<').and_then(|n| n.strip_suffix('>'));
            own.map(str::to_string)
                .or_else(|| sg_id(a))
                .map(|id| Address::foreign(Kind::SecurityGroup, &id))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(read)
}

/// The template's tags with the content record of `version`.
fn tags_with_content(t: &LaunchTemplate, ids: &dyn Ids, version: i64) -> Result<Tags, AwsError> {
    let read = as_read(t, |a| ids.id(a).ok())
        .ok_or_else(|| AwsError::Other(format!("{}: a security group has no id yet", t.name)))?;
    let mut tags = t.tags.clone();
    tags.insert(CONTENT_TAG.into(), format!("{version}:{}", digest(&read)));
    Ok(tags)
}

fn lt(r: &Resource) -> Option<&LaunchTemplate> {
    match r {
        Resource::LaunchTemplate(v) => Some(v),
        _ => None,
    }
}

fn data(t: &LaunchTemplate, ids: &dyn Ids) -> Result<RequestLaunchTemplateData, AwsError> {
    let groups = t
        .security_groups
        .iter()
        .map(|g| ids.id(g))
        .collect::<Result<Vec<_>, _>>()?;
    let tag_spec = |kind: ResourceType| {
        LaunchTemplateTagSpecificationRequest::builder()
            .resource_type(kind)
            .set_tags(Some(to_tags(&t.instance_tags)))
            .build()
    };
    let mut d = RequestLaunchTemplateData::builder()
        .image_id(&t.image)
        .instance_type(t.machine_type.as_str().into())
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(ids.id(&t.instance_profile)?)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(ROOT_DEVICE)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(t.root_volume_size as i32)
                        .volume_type(VolumeType::from(t.root_volume_type.as_str()))
                        .encrypted(t.root_volume_encrypted)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .network_interfaces(
            LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .associate_public_ip_address(t.associate_public_ip)
                .delete_on_termination(true)
                .set_groups(Some(groups))
                .build(),
        )
        // IMDSv2 only, with the model's hop limit.
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(t.metadata_hop_limit as i32)
                .build(),
        )
        .user_data(base64::engine::general_purpose::STANDARD.encode(encode_user_data(&t.user_data)))
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume));
    if let Some(k) = &t.key_pair {
        d = d.key_name(ids.id(k)?);
    }
    Ok(d.build())
}

/// The template as its latest version says, references as foreign ids.
fn from_version(
    v: &aws_sdk_ec2::types::LaunchTemplateVersion,
    name: &str,
    tags: Tags,
) -> Option<LaunchTemplate> {
    let v = v.launch_template_data()?;
    let ni = v.network_interfaces().first();
    let ebs = v.block_device_mappings().first().and_then(|b| b.ebs());
    let profile = v.iam_instance_profile().and_then(|p| {
        p.name().map(str::to_string).or_else(|| {
            p.arn()
                .and_then(|a| a.rsplit('/').next())
                .map(str::to_string)
        })
    });
    let user_data = v
        .user_data()
        .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
        .map(|b| decode_user_data(&b))
        .unwrap_or_default();
    Some(LaunchTemplate {
        name: name.to_string(),
        image: v.image_id().unwrap_or_default().to_string(),
        machine_type: v
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        key_pair: v.key_name().map(|k| Address::new(Kind::KeyPair, k)),
        security_groups: ni
            .map(|n| {
                n.groups()
                    .iter()
                    .map(|g| Address::foreign(Kind::SecurityGroup, g))
                    .collect()
            })
            .unwrap_or_default(),
        instance_profile: Address::new(Kind::InstanceProfile, profile.unwrap_or_default()),
        root_volume_size: ebs.and_then(|e| e.volume_size()).unwrap_or(0) as u32,
        root_volume_type: ebs
            .and_then(|e| e.volume_type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        root_volume_encrypted: ebs.and_then(|e| e.encrypted()).unwrap_or(false),
        associate_public_ip: ni
            .and_then(|n| n.associate_public_ip_address())
            .unwrap_or(false),
        metadata_hop_limit: v
            .metadata_options()
            .and_then(|m| m.http_put_response_hop_limit())
            .unwrap_or(0) as u32,
        user_data,
        instance_tags: v
            .tag_specifications()
            .iter()
            .find(|s| s.resource_type() == Some(&ResourceType::Instance))
            .map(|s| from_tags(s.tags()))
            .unwrap_or_default(),
        tags,
    })
}

/// A discovered template's link while its content is only known by digest.
const PENDING: &str = "content:";

/// Fills in the templates discovery left pending, once every kind is found:
/// those whose model template (security groups by their discovered ids) has the
/// recorded digest take that content; the rest have their latest version read.
pub async fn complete(
    aws: &Clients,
    scope: &Scope,
    found: &mut Vec<Found>,
) -> Result<(), AwsError> {
    let sg_ids: std::collections::BTreeMap<Address, String> = found
        .iter()
        .filter(|f| f.resource.kind() == Kind::SecurityGroup)
        .map(|f| (f.resource.address(), f.id.clone()))
        .collect();
    let mut unread = Vec::new();
    for (i, f) in found.iter_mut().enumerate() {
        let Resource::LaunchTemplate(t) = &mut f.resource else {
            continue;
        };
        let Some(recorded) = f.links.iter().find_map(|l| l.strip_prefix(PENDING)) else {
            continue;
        };
        let model = scope
            .templates
            .get(&t.name)
            .and_then(|m| as_read(m, |a| sg_ids.get(a).cloned()));
        match model {
            Some(m) if digest(&m) == recorded => {
                *t = LaunchTemplate {
                    tags: std::mem::take(&mut t.tags),
                    ..m
                };
            }
            _ => unread.push(i),
        }
        f.links.clear();
    }
    read_latest(&aws.ec2, found, &unread).await
}

/// Reads the latest version of the templates at `which` and takes its content.
/// Several at once in one call for the whole account's latest versions (what a
/// cluster made by an older keelson, without content tags, needs), one alone by id.
async fn read_latest(
    ec2: &aws_sdk_ec2::Client,
    found: &mut Vec<Found>,
    which: &[usize],
) -> Result<(), AwsError> {
    let mut latest = std::collections::BTreeMap::new();
    if which.len() > 1 {
        let mut pages = ec2
            .describe_launch_template_versions()
            .versions("$Latest")
            .max_results(200)
            .into_paginator()
            .send();
        while let Some(p) = pages.next().await {
            for v in p
                .map_err(|e| call_error("DescribeLaunchTemplateVersions", &e))?
                .launch_template_versions
                .unwrap_or_default()
            {
                if let Some(id) = v.launch_template_id() {
                    latest.insert(id.to_string(), v);
                }
            }
        }
    }
    // A template the bulk answer left out (the emulator truncates it) is read on
    // its own: correctness never rests on the bulk call.
    for &i in which {
        if let std::collections::btree_map::Entry::Vacant(slot) = latest.entry(found[i].id.clone())
        {
            let out = ec2
                .describe_launch_template_versions()
                .launch_template_id(slot.key())
                .versions("$Latest")
                .send()
                .await
                .map_err(|e| call_error("DescribeLaunchTemplateVersions", &e))?;
            if let Some(v) = out
                .launch_template_versions
                .unwrap_or_default()
                .into_iter()
                .next()
            {
                slot.insert(v);
            }
        }
    }
    let mut versionless = std::collections::BTreeSet::new();
    for &i in which {
        let f = &mut found[i];
        let Resource::LaunchTemplate(t) = &f.resource else {
            continue;
        };
        match latest
            .get(&f.id)
            .and_then(|v| from_version(v, &t.name, t.tags.clone()))
        {
            Some(read) => f.resource = Resource::LaunchTemplate(read),
            None => {
                versionless.insert(f.id.clone());
            }
        }
    }
    // No version to read (deleted meanwhile): as if the template were not there.
    found.retain(|f| !(f.resource.kind() == Kind::LaunchTemplate && versionless.contains(&f.id)));
    Ok(())
}

impl ResourceKind for LaunchTemplateKind {
    fn kind(&self) -> Kind {
        Kind::LaunchTemplate
    }

    fn discover<'a>(
        &'a self,
        aws: &'a Clients,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Vec<Found>, AwsError>> {
        Box::pin(async move {
            let ec2 = &aws.ec2;
            let mut templates = Vec::new();
            let mut pages = ec2
                .describe_launch_templates()
                .filters(cluster_filter(&scope.cluster))
                // AWS's largest page (1-200, the EC2 API reference). moto
                // cuts an unsized answer at 15 with no NextToken, which left a
                // 50-group cluster's 16th template undiscovered and made again.
                .max_results(200)
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                templates.extend(
                    p.map_err(|e| call_error("DescribeLaunchTemplates", &e))?
                        .launch_templates
                        .unwrap_or_default(),
                );
            }
            let mut found = Vec::new();
            let mut unread = Vec::new();
            for t in templates {
                let Some(id) = t.launch_template_id() else {
                    continue;
                };
                let mut tags = from_tags(t.tags());
                let Some((name, owned)) = identify(id, &tags, scope) else {
                    continue;
                };
                let content = tags.remove(CONTENT_TAG);
                // The latest version is the one keelson recorded: `complete` decides
                // whether the model's template is its content.
                let recorded = content.as_deref().and_then(|c| {
                    let (version, digest) = c.split_once(':')?;
                    (version.parse::<i64>().ok()? == t.latest_version_number()?)
                        .then(|| format!("{PENDING}{digest}"))
                });
                let pending = LaunchTemplate {
                    name,
                    image: String::new(),
                    machine_type: String::new(),
                    key_pair: None,
                    security_groups: Vec::new(),
                    instance_profile: Address::new(Kind::InstanceProfile, ""),
                    root_volume_size: 0,
                    root_volume_type: String::new(),
                    root_volume_encrypted: false,
                    associate_public_ip: false,
                    metadata_hop_limit: 0,
                    user_data: String::new(),
                    instance_tags: Tags::new(),
                    tags,
                };
                if recorded.is_none() {
                    unread.push(found.len());
                }
                found.push(Found {
                    id: id.to_string(),
                    resource: Resource::LaunchTemplate(pending),
                    owned,
                    state: None,
                    links: recorded.into_iter().collect(),
                });
            }
            read_latest(ec2, &mut found, &unread).await?;
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        aws: &'a Clients,
        r: &'a Resource,
        ids: &'a dyn Ids,
        token: &'a str,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let t = expect(r, lt);
            let out = aws
                .ec2
                .create_launch_template()
                .launch_template_name(&t.name)
                .client_token(token)
                .launch_template_data(data(t, ids)?)
                // A new template's first version is 1.
                .tag_specifications(tag_spec(
                    ResourceType::LaunchTemplate,
                    &tags_with_content(t, ids, 1)?,
                ))
                .send()
                .await
                .map_err(|e| call_error("CreateLaunchTemplate", &e))?;
            Ok(out
                .launch_template()
                .and_then(|l| l.launch_template_id())
                .ok_or_else(|| AwsError::Other("CreateLaunchTemplate returned no id".into()))?
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
            let ec2 = &aws.ec2;
            let t = expect(r, lt);
            // Every version carries the full data: a version made from a source
            // version does not inherit it everywhere.
            let out = ec2
                .create_launch_template_version()
                .launch_template_id(id)
                .launch_template_data(data(t, ids)?)
                .send()
                .await
                .map_err(|e| call_error("CreateLaunchTemplateVersion", &e))?;
            let version = out
                .launch_template_version()
                .and_then(|v| v.version_number())
                .ok_or_else(|| {
                    AwsError::Other("CreateLaunchTemplateVersion returned no version".into())
                })?;
            // Only now that version exists with this content may the tag say so;
            // the template's other tags are brought up to date with it.
            retag(ec2, id, &tags_with_content(t, ids, version)?).await?;
            ec2.modify_launch_template()
                .launch_template_id(id)
                .default_version(version.to_string())
                .send()
                .await
                .map_err(|e| call_error("ModifyLaunchTemplate", &e))?;
            let old: Vec<String> = (1..=version - KEEP_VERSIONS)
                .map(|v| v.to_string())
                .collect();
            if !old.is_empty() {
                // Pruning is housekeeping: versions already gone are fine.
                let _ = ec2
                    .delete_launch_template_versions()
                    .launch_template_id(id)
                    .set_versions(Some(old))
                    .send()
                    .await;
            }
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
            aws.ec2
                .delete_launch_template()
                .launch_template_id(id)
                .send()
                .await
                .map_err(|e| call_error("DeleteLaunchTemplate", &e))?;
            Ok(())
        })
    }
}

/// AWS takes at most 16 KB of user-data. Larger scripts go gzipped, which
/// cloud-init recognises by the magic bytes; smaller ones stay readable in the console.
const USER_DATA_LIMIT: usize = 16 * 1024;

pub fn encode_user_data(text: &str) -> Vec<u8> {
    if text.len() <= USER_DATA_LIMIT {
        return text.as_bytes().to_vec();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, text.as_bytes()).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// The text the model compares with, whether stored plain or gzipped.
fn decode_user_data(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        if std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text)
            .is_ok()
        {
            return text;
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod user_data_tests {
    use super::*;

    #[test]
    fn large_user_data_round_trips_through_gzip() {
        let small = "#cloud-config\n";
        assert_eq!(encode_user_data(small), small.as_bytes());
        let large = format!("#cloud-config\n{}", "# padding line\n".repeat(2000));
        let encoded = encode_user_data(&large);
        assert!(encoded.len() <= USER_DATA_LIMIT, "{}", encoded.len());
        assert_eq!(&encoded[..2], &[0x1f, 0x8b]);
        assert_eq!(decode_user_data(&encoded), large);
        assert_eq!(decode_user_data(small.as_bytes()), small);
    }
}
