"""moto_server with two fixes, both where moto 5.2.5 answers unlike AWS:

1. CreateLaunchTemplateVersion stores UserData unwrapped, so any ASG launch from
   such a version (a detach or a terminate that launches a replacement) fails
   with HTTP 500 (an AssertionError in LaunchTemplateVersion.user_data). AWS
   launches these fine; wrap the value as CreateLaunchTemplate does.
2. DescribeLaunchTemplates answers with the tags a template was created with,
   ignoring later CreateTags/DeleteTags (which DescribeTags does show). AWS shows
   the current tags; so does this (keelson records each new version's content
   digest in a template tag).

Nothing else of moto changes."""

import sys

from moto.core.types import Base64EncodedString
from moto.ec2.models import launch_templates
from moto.ec2.utils import parse_user_data
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

if __name__ == "__main__":
    main(sys.argv[1:])
