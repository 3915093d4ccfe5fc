"""What launching an app's instances or a container needs of the access
rules, checked by the apps service against its caller (apps/rest_access.py).
Pure.

The apps service launches every task as its own principal (`apps`), so the
master's Accept checks (master/access.py accept) see only `apps`; without
these checks a caller allowed to write an app could run it as any user, on
the host's network or filesystem. So the apps service checks its caller
with the same rules before anything is created or changed, as the master
checks a scheduler (the contract of issue 18):

    run_tasks              users  the task's user: the app's `user` /
                                  Docker's Config.User, else the apps
                                  framework's user (none: "root", as the
                                  master's task_user)
    run_host_network       roles  host networking (Marathon's default
                                  network mode "host"; Docker's NetworkMode
                                  "host")
    run_host_filesystem    roles  no image and no rootfs (a Marathon app
                                  without container.docker.image; Docker's
                                  Image "")

The role is the app's `role` (Marathon), else the apps service's --role.
write_host_filesystem is not asked: neither API can set
ContainerInfo.writable_host_filesystem.
"""

from __future__ import annotations

from juggler.apps.access_targets import Check
from juggler.apps.containers import ContainerConfig
from juggler.apps.definition import AppDefinition
from juggler.apps.ports import network_of
from juggler.v1 import common_pb2

__all__ = ["FRAMEWORK_USER", "app_checks", "container_checks"]

# The apps framework subscribes without FrameworkInfo.user (apps/service.py):
# a task without a user of its own runs as the master's default.
FRAMEWORK_USER = "root"


def _checks(user: str, host_network: bool, host_filesystem: bool, role: str) -> list[Check]:
    out = [Check("run_tasks", user or FRAMEWORK_USER)]
    if host_network:
        out.append(Check("run_host_network", role))
    if host_filesystem:
        out.append(Check("run_host_filesystem", role))
    return out


def app_checks(app: AppDefinition, service_role: str) -> list[Check]:
    """The checks one app definition's instances need (the module's table);
    `service_role`: the apps service's --role."""
    network, _ = network_of(app)
    container = app.container
    return _checks(app.user or "", network == common_pb2.NETWORK_HOST,
                   container is None or not (container.image or container.rootfs),
                   app.role or service_role)


def container_checks(config: ContainerConfig, service_role: str) -> list[Check]:
    """The checks a Docker container of `config` needs (the module's table)."""
    return _checks(config.user, config.network == "host",
                   not (config.image or config.rootfs), service_role)
