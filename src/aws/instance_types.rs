//! Instance types: which the region offers per zone (DescribeInstanceTypeOfferings
//! by availability zone), the architectures they run (DescribeInstanceTypes),
//! and the images' architectures and states (DescribeImages: one call for both
//! checks), for `spec::machine_type`.
//! Read at `create` and when an update makes launch templates, never by a
//! no-op plan.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, LocationType};

use super::{AwsError, call_error};
use crate::spec::machine_type::Offerings;

async fn offered(
    ec2: &aws_sdk_ec2::Client,
    zones: &BTreeSet<String>,
    types: Option<&BTreeSet<String>>,
    out: &mut Offerings,
) -> Result<(), AwsError> {
    let mut req = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .filters(
            Filter::builder()
                .name("location")
                .set_values(Some(zones.iter().cloned().collect()))
                .build(),
        );
    if let Some(types) = types {
        req = req.filters(
            Filter::builder()
                .name("instance-type")
                .set_values(Some(types.iter().cloned().collect()))
                .build(),
        );
    }
    let mut pages = req.into_paginator().send();
    while let Some(p) = pages.next().await {
        for o in p
            .map_err(|e| call_error("DescribeInstanceTypeOfferings", &e))?
            .instance_type_offerings()
        {
            let (Some(t), Some(z)) = (o.instance_type(), o.location()) else {
                continue;
            };
            if types.is_some() {
                out.offered
                    .entry(z.to_string())
                    .or_default()
                    .insert(t.as_str().to_string());
            } else {
                out.all.insert(t.as_str().to_string());
            }
        }
    }
    Ok(())
}

/// What AWS says of these types in these zones, and of these images.
pub async fn offerings(
    ec2: &aws_sdk_ec2::Client,
    zones: &BTreeSet<String>,
    types: &BTreeSet<String>,
    images: &BTreeSet<String>,
) -> Result<Offerings, AwsError> {
    let mut out = Offerings::default();
    if zones.is_empty() || types.is_empty() {
        return Ok(out);
    }
    offered(ec2, zones, Some(types), &mut out).await?;
    let known: BTreeSet<String> = out.offered.values().flatten().cloned().collect();
    let everywhere = zones
        .iter()
        .all(|z| out.offered.get(z).is_some_and(|s| s.is_superset(types)));
    if !everywhere {
        // Only to suggest names close to a misspelled one.
        offered(ec2, zones, None, &mut out).await?;
    }
    if !known.is_empty() {
        let described = ec2
            .describe_instance_types()
            .set_instance_types(Some(known.iter().map(|t| t.as_str().into()).collect()))
            .send()
            .await
            .map_err(|e| call_error("DescribeInstanceTypes", &e))?;
        for t in described.instance_types() {
            if let (Some(name), Some(v)) = (
                t.instance_type(),
                t.v_cpu_info().and_then(|v| v.default_v_cpus()),
            ) {
                out.vcpus.insert(name.as_str().to_string(), v as u64);
            }
            let (Some(name), Some(p)) = (t.instance_type(), t.processor_info()) else {
                continue;
            };
            out.architectures.insert(
                name.as_str().to_string(),
                p.supported_architectures()
                    .iter()
                    .map(|a| a.as_str().to_string())
                    .collect(),
            );
        }
    }
    let amis: Vec<String> = images
        .iter()
        .filter(|i| i.starts_with("ami-"))
        .cloned()
        .collect();
    if !amis.is_empty() {
        // A filter, not ImageIds: an image AWS does not know is left out, not an error.
        let found = ec2
            .describe_images()
            .filters(
                Filter::builder()
                    .name("image-id")
                    .set_values(Some(amis))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| call_error("DescribeImages", &e))?;
        for i in found.images() {
            if let (Some(id), Some(a)) = (i.image_id(), i.architecture()) {
                out.images.insert(id.to_string(), a.as_str().to_string());
            }
            if let (Some(id), Some(state)) = (i.image_id(), i.state()) {
                out.image_states
                    .insert(id.to_string(), state.as_str().to_string());
            }
        }
        out.images_described = true;
    }
    Ok(out)
}
