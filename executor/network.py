"""The executor's side of a task's CNI network (container/network.py).

    up(spec)          adopt the attachment the agent began at launch (its ADD
                      runs), or begin one here when the plan has none
    open_namespace()  an fd of the pinned namespace for the container to join
    ready(spec)       before the container may exec: ADD done, the IPs known
                      and the first one in its /etc/hosts (Docker's line)
    down()            DEL and unpin, on every way the task ends; an adopted
                      ADD still running is waited for first. Errors are logged:
                      what DEL could not undo stays pinned for the agent to retry.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from juggler.container import etc_files
from juggler.container.cni_config import CniError
from juggler.container.network import Attachment, Plan
from juggler.container.spec import ContainerSpec

ADD_WAIT = 120.0  # seconds for the agent's CNI ADD of an adopted attachment


class ContainerNetwork:
    def __init__(self, sandbox: Path, task_id: str, log: Any) -> None:
        self.sandbox = sandbox
        self.task_id = task_id
        self.log = log
        self.attachment: Attachment | None = None
        self.ip_addresses: list[str] = []

    def up(self, cspec: ContainerSpec) -> None:
        """Nothing without a CNI network. Raises OSError, ValueError (no or a
        bad plan from the agent), CniError."""
        if cspec.cni_network is None:
            return
        plan = Plan.read(self.sandbox)
        if plan is None:
            raise ValueError(f"network {cspec.cni_network!r}: the agent gave no network "
                             "plan (sandbox/network.json)")
        if plan.container_id:
            self.attachment = Attachment.adopt(plan)
        else:
            self.attachment = Attachment.begin(plan, uuid.uuid4().hex, cspec.port_mappings,
                                               task_id=self.task_id, sandbox=str(self.sandbox))
        self.log.info("joining a CNI network", network=plan.network.name,
                      container_id=self.attachment.container_id)

    def open_namespace(self) -> int:
        """An fd (CLOEXEC) of the pinned namespace, or -1 without one. Raises OSError."""
        if self.attachment is None:
            return -1
        return os.open(self.attachment.netns_path, os.O_RDONLY | os.O_CLOEXEC)

    def ready(self, cspec: ContainerSpec) -> None:
        """Raises CniError (the ADD's), OSError."""
        att = self.attachment
        assert att is not None
        self.ip_addresses = att.finish() if att.adding else att.wait(ADD_WAIT)
        hosts = self.sandbox / "etc" / "hosts"
        if self.ip_addresses and (cspec.rootfs or cspec.layers) and hosts.exists():
            etc_files.add_address(hosts, self.ip_addresses[0], cspec.hostname)
        self.log.info("joined the CNI network", ip_addresses=self.ip_addresses)

    def down(self) -> None:
        if self.attachment is None:
            return
        att, self.attachment = self.attachment, None
        if not att.adding and att.result is None:
            with contextlib.suppress(CniError):  # an adopted ADD ends before its DEL
                att.wait(ADD_WAIT)
        try:
            att.detach()
        except (OSError, CniError) as e:
            self.log.error("could not tear the container's network down", error=str(e),
                           container_id=att.container_id)
