//! Availability zones: `create cluster` checks `--zones` against the region's real
//! zones, so that a typo fails before anything is written.

use aws_sdk_ec2::types::{AvailabilityZoneState, Filter};

use super::{AwsError, call_error};

/// The region's zones that are available, sorted.
pub async fn available(ec2: &aws_sdk_ec2::Client) -> Result<Vec<String>, AwsError> {
    let out = ec2
        .describe_availability_zones()
        .filters(
            Filter::builder()
                .name("zone-type")
                .values("availability-zone")
                .build(),
        )
        .send()
        .await
        .map_err(|e| call_error("DescribeAvailabilityZones", &e))?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.state() == Some(&AvailabilityZoneState::Available))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    Ok(zones)
}
