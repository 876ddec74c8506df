"""moto_server with one fix: moto 5.2.5's CreateLaunchTemplateVersion stores
UserData unwrapped, so any ASG launch from such a version (a detach or a
terminate that launches a replacement) fails with HTTP 500 (an AssertionError in
LaunchTemplateVersion.user_data). AWS launches these fine; wrap the value as
CreateLaunchTemplate does. Nothing else of moto changes."""

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

if __name__ == "__main__":
    main(sys.argv[1:])
