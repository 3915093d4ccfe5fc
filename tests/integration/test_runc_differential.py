"""juggler's runtime against runc, field by field (issue 15, "What to build" 1).

Hypothesis generates task configurations: every form a user can take (name,
uid, name:group, uid:gid, name:gid, uid:group, a uid with no passwd entry,
users with supplementary groups, unknown names and groups), from `-u`, from an
image's `User` or both; working directories that exist, are missing (nested),
or are in the way; environments that set PATH, HOME, HOSTNAME; hostnames;
cpus, memory, swap and pids limits; capabilities added and dropped, ulimits,
no-new-privileges, --init. Each case runs the probe (juggler/testing/probe.py)

- under `runc run` (Debian's runc 1.1.5), with the config.json `docker run`
  would give it (juggler/testing/oci_runtime.py: moby's defaults and rules,
  users resolved by umoci), on an overlay of the same busybox tree;
- under juggler's runtime, in a launch server process of its own (see
  testing/launch_probe.py for why not this one): ContainerSpec.from_task on the task,
  then container/launch.py `start` (juggler/testing/launch_probe.py), an
  image task going through images/config.apply as the agent does;

and every field the probe prints must be equal, or be one of the differences
listed in DIFFERENCES or normalised where a comment names its row: the rows of
the table of differences from Docker in README.md ("What a task gets"). A new
difference fails the test.
`test_end_to_end_through_juggler_run` runs a few cases through `juggler run`
on a real cluster, to prove the plumbing from the CLI to the container.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from juggler.common.task_defaults import (
    CAP_ADD_LABEL,
    CAP_DROP_LABEL,
    CPU_QUOTA_LABEL,
    INIT_LABEL,
    MEMORY_SWAP_LABEL,
    NO_NEW_PRIVILEGES_LABEL,
    PIDS_MAX_LABEL,
    ULIMITS_LABEL,
)
from juggler.container.cgroups import detect as cgroup_version
from juggler.container.cgroups_v1 import CONTROLLERS
from juggler.container.spec import ContainerSpec, SpecError
from juggler.images import config as image_config
from juggler.testing import oci_runtime as oci
from juggler.testing import probe
from juggler.testing.accounts import GROUP, PASSWD
from juggler.testing.launch_probe import LaunchServer
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import common_pb2 as pb

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
    pytest.mark.skipif(not os.access(oci.RUNC, os.X_OK) or shutil.which(oci.UMOCI) is None,
                       reason="needs runc and umoci (scripts/setup installs them)"),
]

USERS = ("", "root", "0", "alice", "1000", "bob", "alias", "1002", "4321", "nohome", "nobody",
         "daemon", "65534:65534", "alice:staff", "alice:50", "1000:1001", "1000:4000",
         "4321:staff", "alice:2000", "bob:wheel", "alice:", ":staff", "ghost", "alice:ghosts")
WORKDIRS = ("", "/", "/tmp", "/root", "/home/alice", "/srv/new", "/srv/new/deeper/nested",
            "/srv/../opt/app/", "/etc/passwd", "/etc/passwd/x", "/bin/../var/lib/x")
ENV_NAMES = ("PATH", "HOME", "HOSTNAME", "FOO", "LANG")
ENV_VALUES = ("", "/bin", "/usr/local/bin:/bin:/custom", "/data", "x y", "a=b", "C.UTF-8")
IMAGE_REF = "probe.invalid/busybox:1"


@dataclass(frozen=True)
class Case:
    """One task configuration, as juggler and Docker both take it."""

    user: str = ""
    workdir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    hostname: str = ""
    image: bool = False
    image_user: str = ""
    image_workdir: str = ""
    image_env: tuple[tuple[str, str], ...] = ()
    cpus: float = 0.5
    mem: int = 64                    # MiB; 0: no memory limit
    memory_swap: str = ""            # juggler.memory_swap, "" unset
    cpu_quota: bool = True
    pids: int = 0                    # juggler.pids_max, 0 unset
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()
    no_new_privileges: bool = False
    init: bool = False

    def task(self, rootfs: Path) -> tuple[pb.TaskInfo, tuple[str, ...]]:
        """The TaskInfo (as the agent hands it to the executor) and its layers."""
        task = pb.TaskInfo(
            name="probe", task_id=f"diff-{uuid.uuid4().hex[:10]}",
            command=pb.CommandInfo(argv=["/bin/sh", "-c", probe.SCRIPT], user=self.user,
                                   working_directory=self.workdir,
                                   environment=dict(self.env)),
            resources=[pb.Resource(name="cpus", scalar=self.cpus)]
            + ([pb.Resource(name="mem", scalar=self.mem)] if self.mem else []),
            container=pb.ContainerInfo(hostname=self.hostname))
        labels = {PIDS_MAX_LABEL: str(self.pids) if self.pids else "",
                  MEMORY_SWAP_LABEL: self.memory_swap,
                  CPU_QUOTA_LABEL: "" if self.cpu_quota else "false",
                  CAP_ADD_LABEL: ",".join(self.cap_add), CAP_DROP_LABEL: ",".join(self.cap_drop),
                  ULIMITS_LABEL: ",".join(f"{n}={s}:{h}" for n, s, h in self.ulimits),
                  NO_NEW_PRIVILEGES_LABEL: "true" if self.no_new_privileges else "",
                  INIT_LABEL: "true" if self.init else ""}
        task.labels.update({k: v for k, v in labels.items() if v})
        if not self.image:
            task.container.rootfs = str(rootfs)
            return task, ()
        task.container.image = IMAGE_REF
        image = image_config.ImageConfig(user=self.image_user, working_dir=self.image_workdir,
                                         env=[f"{k}={v}" for k, v in self.image_env])
        return image_config.apply(task, image), (str(rootfs),)

    def docker(self, spec: ContainerSpec, etc: Path) -> oci.DockerRun:
        """The `docker run` that juggler says this task is. juggler's resource
        defaults differ from Docker's on purpose (rows "cpu shares", "swap",
        "pids limit" of the table): they are spelled out as Docker's flags; so
        is its hostname (row "default hostname"). Docker's /etc files are
        written into `etc`."""
        limits = spec.limits
        return oci.DockerRun(
            args=("/bin/sh", "-c", probe.SCRIPT), user=self.user, workdir=self.workdir,
            env=self.env, hostname=spec.hostname, image_user=self.image_user,
            image_workdir=self.image_workdir, image_env=self.image_env,
            cpus=self.cpus if self.cpu_quota else None, cpu_shares=limits.cpu_shares,
            memory=limits.memory_bytes,
            memory_swap=(limits.memory_bytes if limits.memory_swap_bytes is None
                         else limits.memory_swap_bytes),
            pids_limit=limits.pids_max, cap_add=self.cap_add, cap_drop=self.cap_drop,
            ulimits=self.ulimits, no_new_privileges=self.no_new_privileges, init=self.init,
            files=oci.docker_etc_files(etc, spec.hostname))


# Fields juggler shows differently: field name (or prefix ending in ".") → the
# row of the README's table that says why. Nothing else may differ.
DIFFERENCES = {
    "cgroup.paths": "cgroup path",
    "env.JUGGLER_TASK_ID": "JUGGLER_TASK_ID",
}
if cgroup_version() == 2:
    DIFFERENCES["devaccess."] = "device filter on cgroup v2"


def _hierarchies_a_task_is_not_in() -> list[str]:
    """The v1 hierarchies this host mounts that juggler does not put a task
    in (cpuset, blkio, freezer, name=systemd, ...): /sys/fs/cgroup/<name>."""
    names = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            tail = right.split()
            if len(tail) >= 3 and tail[0] == "cgroup" and not set(
                    tail[2].split(",")) & set(CONTROLLERS):
                names.append(os.path.basename(left.split()[4]))
    return names


for _name in _hierarchies_a_task_is_not_in():
    DIFFERENCES[f"mount./sys/fs/cgroup/{_name}"] = "cgroups a task is not put in"


def test_every_difference_is_a_row_of_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Where a task differs from `docker run`", 1)[1]
    rows = {line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| ")}
    named = {*DIFFERENCES.values(), "cpu shares", "swap", "pids limit", "default hostname",
             "numeric group names", "device filter on cgroup v2"}
    assert named <= rows, named - rows


def listed(name: str) -> str | None:
    for key, row in DIFFERENCES.items():
        if name == key or (key.endswith((".", "/")) and name.startswith(key)) or (
                name.startswith(key + "/")):
            return row
    return None


def as_runc_1_1(fields: dict[str, str], group: str = GROUP) -> dict[str, str]:
    """juggler's groups as runc before 1.3 turns Docker's additional gids
    into groups: each looked up in /etc/group by name first, then by gid, so
    gid 2000 becomes the group *named* "2000" (row "numeric group names")."""
    lines = [(f[0], int(f[2])) for f in (line.split(":") for line in group.splitlines())]
    mapped = set()
    for text in fields.get("status.Groups", "").split():
        gid = int(text)
        mapped.add(next((g for name, g in lines if name == text or g == gid), gid))
    return {**fields, "status.Groups": " ".join(str(g) for g in sorted(mapped))}


def differences(juggler: probe.Outcome, runc: probe.Outcome) -> list[str]:
    """Every field that differs and is not listed; whether each ran; for a
    case both refused, nothing more (the messages are each runtime's own)."""
    if juggler.ran:
        juggler = replace(juggler, fields=as_runc_1_1(juggler.fields))
    if juggler.ran != runc.ran:
        return [f"juggler ran={juggler.ran} (exit {juggler.exit_code}: {juggler.error!r}), "
                f"runc ran={runc.ran} (exit {runc.exit_code}: {runc.error!r})"]
    out = []
    if juggler.ran and juggler.exit_code != runc.exit_code:
        out.append(f"exit code: juggler {juggler.exit_code}, runc {runc.exit_code}")
    for name in sorted(set(juggler.fields) | set(runc.fields)):
        mine, theirs = juggler.fields.get(name), runc.fields.get(name)
        if mine != theirs and listed(name) is None:
            out.append(f"{name}: juggler {mine!r}, runc {theirs!r}")
    return out


@dataclass
class Bench:
    """Where cases run: the busybox tree (the rootfs, or the image's one
    layer), the umoci oracle, runc's state."""

    work: Path
    rootfs: Path
    oracle: oci.UserOracle
    runs: int = 0

    def run(self, case: Case) -> tuple[probe.Outcome, probe.Outcome]:
        self.runs += 1
        scratch = self.work / f"case-{self.runs}"
        scratch.mkdir()
        try:
            task, layers = case.task(self.rootfs)
            try:
                spec = ContainerSpec.from_task(task, layers)
            except SpecError as e:
                mine = probe.Outcome(ran=False, exit_code=125, error=str(e))
                plain = replace(case, user="", image_user="")  # for the hostname, limits
                spec = ContainerSpec.from_task(plain.task(self.rootfs)[0], layers)
            else:
                (scratch / "sandbox").mkdir()
                mine = run_juggler(spec, scratch / "sandbox", f"juggler-diff/{task.task_id}")
            docker = case.docker(spec, scratch / "docker-etc")
            theirs = self.run_runc(docker, scratch, task.task_id)
            return mine, theirs
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def run_runc(self, docker: oci.DockerRun, scratch: Path, cid: str) -> probe.Outcome:
        try:
            user = self.oracle.resolve(docker.user or docker.image_user, self.rootfs)
        except oci.Refused as e:
            return probe.Outcome(ran=False, exit_code=125, error=str(e))
        bundle = scratch / "bundle"
        bundle.mkdir()
        with oci.overlay([str(self.rootfs)], scratch / "layers") as merged:
            config = oci.docker_config(docker, str(merged), f"/juggler-diff-runc/{cid}", user)
            return oci.run_runc(config, bundle, self.work / "runc-state", cid)


_launcher: LaunchServer | None = None


def run_juggler(spec: ContainerSpec, sandbox: Path, cgroup: str) -> probe.Outcome:
    """juggler's runtime on `spec`, in a launch server started once for this
    module (testing/launch_probe.py says why not in this process)."""
    global _launcher
    if _launcher is None:
        _launcher = LaunchServer()
    return _launcher.run(spec, sandbox, cgroup)


@pytest.fixture(scope="module", autouse=True)
def _close_launcher() -> Iterator[None]:
    global _launcher
    yield
    if _launcher is not None:
        _launcher.close()
        _launcher = None


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("runc-diff")
    rootfs = make_busybox_rootfs(work / "busybox")
    for applet in probe.APPLETS:
        if not (rootfs / "bin" / applet).exists():
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (rootfs / "root").chmod(0o700)
    (rootfs / "home" / "alice").mkdir(parents=True)
    os.chown(rootfs / "home" / "alice", 1000, 1000)
    (rootfs / "etc" / "hostname").unlink()  # an image without the /etc files Docker binds
    yield Bench(work, rootfs, oci.UserOracle(work))
    oci.remove_cgroup_parent("juggler-diff-runc")
    oci.remove_cgroup_parent("juggler-diff")


def env_pairs() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    return st.dictionaries(st.sampled_from(ENV_NAMES), st.sampled_from(ENV_VALUES),
                           max_size=3).map(lambda d: tuple(
                               (k, v if k != "PATH" or (v.startswith("/") and "/bin" in v)
                                else "/bin") for k, v in d.items()))


# SYS_RESOURCE: this CI's root lacks it; both refuse a task that asks for it.
CAPS = ("NET_ADMIN", "SYS_PTRACE", "CHOWN", "NET_RAW", "SETUID", "SYS_ADMIN", "SYS_RESOURCE")
ULIMITS = (("nofile", 1024, 2048), ("core", 0, 0), ("nproc", 512, 1024), ("stack", 8388608, -1))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    image = draw(st.booleans())
    mem = draw(st.sampled_from((0, 32, 100)))
    return Case(
        user=draw(st.sampled_from(USERS)),
        workdir=draw(st.sampled_from(WORKDIRS)),
        env=draw(env_pairs()),
        hostname=draw(st.sampled_from(("", "probe-host"))),
        image=image,
        image_user=draw(st.sampled_from(USERS)) if image else "",
        image_workdir=draw(st.sampled_from(WORKDIRS)) if image else "",
        image_env=draw(env_pairs()) if image else (),
        cpus=draw(st.sampled_from((0.25, 1.0, 2.0))),
        mem=mem,
        memory_swap=draw(st.sampled_from(("", "", "-1"))) if mem else "",
        cpu_quota=draw(st.sampled_from((True, True, False))),
        pids=draw(st.sampled_from((0, 0, 64))),
        cap_add=tuple(draw(st.lists(st.sampled_from((*CAPS, "ALL")), max_size=2, unique=True))),
        cap_drop=tuple(draw(st.lists(st.sampled_from((*CAPS, "ALL")), max_size=2,
                                     unique=True))),
        ulimits=tuple(draw(st.lists(st.sampled_from(ULIMITS), max_size=2, unique=True))),
        no_new_privileges=draw(st.booleans()),
        init=draw(st.sampled_from((False, False, True))),
    )


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
@example(case=Case(user="4321"))                        # no passwd entry: gid 0, HOME /
@example(case=Case(user="alice"))                       # supplementary groups
@example(case=Case(user="alice:staff", workdir="/srv/new/deeper/nested"))
@example(case=Case(user="1000:4000", workdir="/srv/../opt/app/"))
@example(case=Case(user="ghost"))                       # refused by both
@example(case=Case(workdir="/etc/passwd/x"))            # refused by both
@example(case=Case(image=True, image_user="bob", image_workdir="/srv/app"))
@example(case=Case(image=True, image_user="bob", user="nobody", env=(("HOME", ""),)))
@example(case=Case(cap_add=("ALL",), cap_drop=("SYS_RESOURCE",)))
@example(case=Case(cap_add=("SYS_RESOURCE",)))         # refused by both where root lacks it
def test_juggler_sees_what_runc_sees(bench: Bench, case: Case) -> None:
    juggler, runc = bench.run(case)
    found = differences(juggler, runc)
    assert not found, f"{case}\n" + "\n".join(found)


def test_a_missing_working_dir_is_made_in_the_writable_layer(bench: Bench, tmp_path: Path) -> None:
    """As runc and Docker: each missing directory 0755 and root's (whatever
    the user), in the container's writable layer; the rootfs is untouched."""
    task, layers = Case(user="bob", workdir="/srv/new/deeper").task(bench.rootfs)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    seen = run_juggler(ContainerSpec.from_task(task, layers), sandbox,
                       f"juggler-diff/{task.task_id}")
    assert seen.ran and seen.exit_code == 0, seen.error
    assert (seen.fields["cwd"], seen.fields["cwd.stat"]) == ("/srv/new/deeper", "0 0 755 directory")
    assert seen.fields["status.Uid"].split()[0] == "1001"
    made = sandbox / "rootfs" / "upper" / "srv" / "new" / "deeper"
    assert made.is_dir() and (made.stat().st_mode & 0o7777, made.stat().st_uid) == (0o755, 0)
    assert not (bench.rootfs / "srv").exists()


def test_an_image_without_etc_files_gets_dockers(bench: Bench, tmp_path: Path) -> None:
    """The busybox tree has no /etc/hosts, /etc/hostname, /etc/resolv.conf:
    the task sees Docker's (localhost resolves; /etc/hostname is `hostname`),
    bound from its sandbox over empty files made in the writable layer; the
    image's tree is not written."""
    task, layers = Case(hostname="probe-host", image=True).task(bench.rootfs)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    seen = run_juggler(ContainerSpec.from_task(task, layers), sandbox,
                       f"juggler-diff/{task.task_id}")
    assert seen.ran and seen.exit_code == 0, seen.error
    hosts = seen.fields["file./etc/hosts"].splitlines()
    assert "127.0.0.1\tlocalhost" in hosts and "::1\tlocalhost ip6-localhost ip6-loopback" in hosts
    assert seen.fields["file./etc/hostname"] == seen.fields["hostname"] == "probe-host"
    assert seen.fields["file./etc/resolv.conf"].startswith("nameserver ")
    assert all(f"mount./etc/{n}" in seen.fields for n in ("hosts", "hostname", "resolv.conf"))
    upper = sandbox / "rootfs" / "upper" / "etc"
    assert all((upper / n).stat().st_size == 0 for n in ("hosts", "hostname", "resolv.conf"))
    assert not any((bench.rootfs / "etc" / n).exists() for n in ("hosts", "hostname",
                                                                 "resolv.conf"))


@pytest.mark.parametrize("cap_add", [("SYS_RESOURCE",), ("ALL",)], ids=lambda c: c[0])
def test_a_capability_the_agent_lacks_is_refused(bench: Bench, tmp_path: Path,
                                                 cap_add: tuple[str, ...]) -> None:
    """As runc refuses it (the harness's cases compare that both refuse):
    125, naming the capability. ALL is every capability the kernel knows, as
    moby expands it, so it is refused too where the agent lacks one."""
    status = Path("/proc/self/status").read_text().splitlines()
    permitted = int(next(ln for ln in status if ln.startswith("CapPrm:")).split()[1], 16)
    if permitted >> oci.ALL_CAPS.index("SYS_RESOURCE") & 1:
        pytest.skip("the agent has CAP_SYS_RESOURCE here")
    task, layers = Case(cap_add=cap_add).task(bench.rootfs)
    seen = run_juggler(ContainerSpec.from_task(task, layers), tmp_path,
                       f"juggler-diff/{task.task_id}")
    assert (seen.ran, seen.exit_code) == (False, 125)
    assert "the agent lacks CAP_SYS_RESOURCE" in seen.error, seen.error


def test_on_the_hosts_filesystem_a_missing_working_dir_is_refused(tmp_path: Path) -> None:
    """No image, no rootfs: the task runs in the agent's own filesystem, where
    juggler creates nothing; the launch fails (125) and says why."""
    missing = f"/juggler-test-missing-{uuid.uuid4().hex[:8]}/app"
    task = pb.TaskInfo(name="probe", task_id=f"diff-{uuid.uuid4().hex[:10]}",
                       command=pb.CommandInfo(argv=["true"], working_directory=missing),
                       resources=[pb.Resource(name="cpus", scalar=0.1)])
    seen = run_juggler(ContainerSpec.from_task(task), tmp_path, f"juggler-diff/{task.task_id}")
    assert (seen.ran, seen.exit_code) == (False, 125)
    assert f"working directory {missing!r}: no such directory on the agent's host" in seen.error
    assert not os.path.exists(os.path.dirname(missing))


# A few cases through the whole way, `juggler run` on a cluster: the CLI's
# flags, the containers service or the master, the agent, the executor.
END_TO_END = (
    Case(user="alice:staff", workdir="/srv/new/nested", hostname="e2e-a",
         env=(("HOME", ""), ("FOO", "x y"))),
    Case(user="4321", workdir="/root", hostname="e2e-b", env=(("PATH", "/bin"),)),
    Case(user="bob", hostname="e2e-c"),
    Case(user="ghost", hostname="e2e-d"),
)


@pytest.mark.parametrize("case", END_TO_END, ids=lambda c: c.user)
def test_end_to_end_through_juggler_run(bench: Bench, cluster, case: Case) -> None:
    args = ["run", "-q", "--rootfs", str(bench.rootfs), "--hostname", case.hostname,
            "--cpus", str(case.cpus), "-m", f"{case.mem}m"]
    args += ["-u", case.user] if case.user else []
    args += ["-w", case.workdir] if case.workdir else []
    for name, value in case.env:
        args += ["-e", f"{name}={value}"]
    done = cluster.juggler(*args, "--", "/bin/sh", "-c", probe.SCRIPT, timeout=120)
    if probe.END in done.stdout:
        seen = probe.Outcome(ran=True, exit_code=done.returncode, fields=probe.parse(done.stdout))
    else:
        seen = probe.Outcome(ran=False, exit_code=done.returncode, error=done.stderr)
    task, layers = case.task(bench.rootfs)
    spec = ContainerSpec.from_task(task, layers) if seen.ran else ContainerSpec.from_task(
        replace(case, user="").task(bench.rootfs)[0], layers)
    scratch = bench.work / f"e2e-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        runc = bench.run_runc(case.docker(spec, scratch / "docker-etc"), scratch, task.task_id)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The cgroup's limits are read on the host while the probe waits on its
    # stdin, which `juggler run` without -i closes: the in-process cases
    # compare them; here they are not seen, not different.
    runc.fields = {k: v for k, v in runc.fields.items() if not k.startswith("cgroup.host.")}
    found = differences(seen, runc)
    assert not found, f"{case}\n{done.stderr}\n" + "\n".join(found)
    if not seen.ran:
        assert seen.exit_code == 125, (done.returncode, done.stderr)
