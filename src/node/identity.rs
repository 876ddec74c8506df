//! Who this instance is, from the instance metadata service (IMDSv2, through the
//! SDK's client, so `AWS_EC2_METADATA_SERVICE_ENDPOINT` points it at a test server).

use super::NodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub private_ip: String,
    /// The node's name: the AWS cloud provider names nodes by private DNS name.
    pub private_dns: String,
    pub region: String,
}

impl Identity {
    pub async fn from_imds(aws: &aws_config::SdkConfig) -> Result<Identity, NodeError> {
        use aws_config::provider_config::ProviderConfig;
        let mut pc = ProviderConfig::without_region();
        if let Some(http) = aws.http_client() {
            pc = pc.with_http_client(http);
        }
        if let Some(sleep) = aws.sleep_impl() {
            pc = pc.with_sleep_impl(sleep);
        }
        let imds = aws_config::imds::Client::builder().configure(&pc).build();
        let get = |path: &'static str| {
            let imds = imds.clone();
            async move {
                imds.get(format!("/latest/meta-data/{path}"))
                    .await
                    .map(|v| v.as_ref().trim().to_string())
                    .map_err(|e| NodeError::Imds {
                        path,
                        message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                    })
            }
        };
        Ok(Identity {
            instance_id: get("instance-id").await?,
            private_ip: get("local-ipv4").await?,
            private_dns: get("local-hostname").await?,
            region: get("placement/region").await?,
        })
    }
}
