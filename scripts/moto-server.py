"""moto_server with four fixes, each where moto 5.2.5 answers unlike AWS:

1. CreateLaunchTemplateVersion stores UserData unwrapped, so any ASG launch from
   such a version (a detach or a terminate that launches a replacement) fails
   with HTTP 500 (an AssertionError in LaunchTemplateVersion.user_data). AWS
   launches these fine; wrap the value as CreateLaunchTemplate does.
2. DescribeLaunchTemplates answers with the tags a template was created with,
   ignoring later CreateTags/DeleteTags (which DescribeTags does show). AWS shows
   the current tags; so does this (keelson records each new version's content
   digest in a template tag).
3. GetBucketVersioning answers with the root element GetBucketVersioningResponse.
   The S3 API reference (Amazon S3 API Reference, GetBucketVersioning, "Response
   Syntax") gives the body as
       <VersioningConfiguration><Status>string</Status><MfaDelete>string</MfaDelete></VersioningConfiguration>
   with neither child for a bucket whose versioning was never set ("a
   GetBucketVersioning request does not return a versioning state value"). The
   Rust SDK reads the root element and cannot parse moto's; boto3 does not check
   it. Answer AWS's body (moto keeps no MFA Delete state, so no MfaDelete).

4. DescribeLaunchTemplates answers at most MaxResults templates (15 when it is
   not given) and never a NextToken, so the rest cannot be read at all. The EC2
   API Reference (DescribeLaunchTemplates): MaxResults is "the maximum number
   of results to return in a single call. To retrieve the remaining results,
   make another call with the returned NextToken value. This value can be
   between 1 and 200"; the answer's NextToken is "null when there are no more
   results to return". Without MaxResults the call is unpaginated and returns
   every result (the EC2 developer guide, "Pagination in the Amazon EC2 API",
   recommends paging because such calls "might be throttled and could time
   out"). This pages as AWS does: MaxResults per page, an opaque NextToken while
   more remain, everything when MaxResults is absent.

And one fixture, not a fix: the image the tests and the demo name,
ami-0123456789abcdef0 (an x86_64 HVM image, available), since moto knows no
Ubuntu image and keelson checks at create that a group's image exists and is
available (DescribeImages), as AWS would refuse it only at instance launch.

Nothing else of moto changes."""

import sys

from moto.core.types import Base64EncodedString
from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidParameterValue
from moto.ec2.models import amis, launch_templates
from moto.ec2.responses import launch_templates as launch_template_responses
from moto.ec2.utils import parse_user_data
from moto.s3 import responses as s3_responses
from moto.server import main


def _user_data(self):
    value = self.data.get("UserData")
    if value is not None and not isinstance(value, Base64EncodedString):
        value = parse_user_data(value)
        self.data["UserData"] = value
    return value


launch_templates.LaunchTemplateVersion.user_data = property(_user_data)


def _template_tags(self):
    current = self.ec2_backend.tags.get(self.id, {})
    return [{"Key": k, "Value": v} for k, v in current.items()]


# The constructor assigns a snapshot; ignore it, always answer the current tags.
launch_templates.LaunchTemplate.tags = property(_template_tags, lambda self, value: None)

# Loaded into every region's backend when it is first used.
amis.AMIS.append(
    {
        "ami_id": "ami-0123456789abcdef0",
        "name": "keelson-stand-in/ubuntu-noble-24.04-amd64-server",
        "description": "keelson's test image (scripts/moto-server.py)",
        "owner_id": "099720109477",
        "public": True,
        "virtualization_type": "hvm",
        "architecture": "x86_64",
        "state": "available",
        "hypervisor": "xen",
        "root_device_type": "ebs",
        "root_device_name": "/dev/sda1",
        "creation_date": "2025-06-10T00:00:00.000Z",
    }
)


def _describe_launch_templates(self):
    max_results = self._get_int_param("MaxResults")
    token = self._get_param("NextToken")
    self.error_on_dryrun()
    if max_results is not None and not 1 <= max_results <= 200:
        raise InvalidParameterValue("MaxResults must be between 1 and 200")
    templates = self.ec2_backend.describe_launch_templates(
        template_names=self._get_param("LaunchTemplateNames", []),
        template_ids=self._get_param("LaunchTemplateIds", []),
        filters=self._filters_from_querystring(),
    )
    start = int(token) if token and token.isdigit() else 0
    end = len(templates) if max_results is None else start + max_results
    result = {
        "LaunchTemplates": [
            {
                "CreateTime": t.create_time,
                "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                "DefaultVersionNumber": t.default_version_number,
                "LatestVersionNumber": t.latest_version_number,
                "LaunchTemplateId": t.id,
                "LaunchTemplateName": t.name,
                "Tags": t.tags,
            }
            for t in templates[start:end]
        ]
    }
    if end < len(templates):
        result["NextToken"] = str(end)
    return ActionResult(result)


launch_template_responses.LaunchTemplates.describe_launch_templates = _describe_launch_templates


def _get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    ns = "http://s3.amazonaws.com/doc/2006-03-01/"
    if status:
        body = f'<VersioningConfiguration xmlns="{ns}"><Status>{status}</Status></VersioningConfiguration>'
    else:
        body = f'<VersioningConfiguration xmlns="{ns}"/>'
    return 200, {"Content-Type": "application/xml"}, '<?xml version="1.0" encoding="UTF-8"?>\n' + body


s3_responses.S3Response.get_bucket_versioning = _get_bucket_versioning

if __name__ == "__main__":
    main(sys.argv[1:])
