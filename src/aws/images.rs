//! Machine images: `ami-...` ids are used as they are; `OWNER/NAME` is looked up
//! (one DescribeImages per distinct image), newest first, before the model is built.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::{AwsError, call_error};

pub async fn resolve(
    ec2: &aws_sdk_ec2::Client,
    images: &[(String, String)],
    region: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    for (image, group) in images {
        if out.contains_key(image) {
            continue;
        }
        if image.starts_with("ami-") {
            out.insert(image.clone(), image.clone());
            continue;
        }
        let (owner, name) = image.split_once('/').ok_or_else(|| {
            AwsError::Other(format!("InstanceGroup {group}: image {image:?} is neither an AMI id (ami-...) nor OWNER/NAME; fix spec.image with keelson edit ig {group}"))
        })?;
        let found = ec2
            .describe_images()
            .owners(owner)
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(|e| call_error("DescribeImages", &e))?;
        let mut images: Vec<_> = found
            .images()
            .iter()
            .filter(|i| i.image_id().is_some())
            .collect();
        images.sort_by(|a, b| b.creation_date().cmp(&a.creation_date()));
        let id = images.first().and_then(|i| i.image_id()).ok_or_else(|| {
            AwsError::Other(format!(
                "InstanceGroup {group}: image {image:?} was not found in {region}; set spec.image to an AMI id (ami-...) or an OWNER/NAME that exists there (keelson edit ig {group})"
            ))
        })?;
        out.insert(image.clone(), id.to_string());
    }
    Ok(out)
}
