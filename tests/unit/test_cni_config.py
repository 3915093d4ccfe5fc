"""CNI configurations, plugin stdin, results and errors (container/cni_config.py)."""

from __future__ import annotations

import json

import pytest

from juggler.common.resources import Resources
from juggler.container import cni_config as cc
from juggler.container.cni import load_dir
from juggler.container.spec import ContainerSpec
from juggler.v1 import common_pb2

MAPPINGS = [cc.port_mapping(31080, 80), cc.port_mapping(31053, 53, "udp")]


def test_builtin_bridge_is_a_gateway_with_masquerade_hairpin_and_host_local_leases() -> None:
    net = cc.builtin_bridge("10.88.3.7/24", "jbr9", "/run/x/10.88.3.0_24")
    bridge, portmap = net.plugins
    assert (net.name, net.cni_version) == ("bridge", "1.0.0")
    assert bridge["type"] == "bridge" and bridge["bridge"] == "jbr9"
    assert bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.88.3.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/x/10.88.3.0_24"}
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    assert all(p["type"] != "firewall" for p in net.plugins)


@pytest.mark.parametrize("subnet", ["10.88.0.0/31", "fd00::/64", "nonsense"])
def test_builtin_bridge_refuses_a_subnet_it_cannot_use(subnet: str) -> None:
    with pytest.raises(cc.NetworkError, match="--bridge-subnet"):
        cc.builtin_bridge(subnet)


def test_portmap_runs_only_with_port_mappings_and_del_is_the_reverse() -> None:
    net = cc.builtin_bridge()
    assert cc.add_order(net, []) == [0]
    assert cc.add_order(net, MAPPINGS) == [0, 1]
    assert cc.delete_order([0, 1]) == [1, 0]


def test_plugin_stdin_carries_name_version_prev_result_and_runtime_config() -> None:
    net = cc.builtin_bridge()
    first = json.loads(cc.plugin_config(net, 0, None, MAPPINGS))
    assert first["name"] == "bridge" and first["cniVersion"] == "1.0.0"
    assert "prevResult" not in first and "runtimeConfig" not in first  # no capability
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/24"}]}
    second = json.loads(cc.plugin_config(net, 1, prev, MAPPINGS))
    assert second["prevResult"] == prev
    assert second["runtimeConfig"] == {"portMappings": [
        {"hostPort": 31080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 31053, "containerPort": 53, "protocol": "udp"}]}


def test_environment_has_the_spec_parameters() -> None:
    env = cc.environment("DEL", "c1", "/w/networks/c1/ns", "eth0", ["/a", "/b"],
                         {"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1",
                   "CNI_NETNS": "/w/networks/c1/ns", "CNI_IFNAME": "eth0",
                   "CNI_PATH": "/a:/b", "CNI_ARGS": ""}


def test_a_single_plugin_conf_is_a_list_of_one_and_keeps_its_fields() -> None:
    net = cc.Network.parse(json.dumps({"cniVersion": "0.4.0", "name": "lan", "type": "macvlan",
                                       "master": "eth0"}), "lan.conf")
    assert net.name == "lan" and net.cni_version == "0.4.0"
    assert net.plugins == ({"type": "macvlan", "master": "eth0"},)
    assert json.loads(cc.plugin_config(net, 0, None, []))["master"] == "eth0"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ('{"plugins": [{"type": "bridge"}]}', 'no "name"'),
    ('{"name": "x", "plugins": []}', "no plugins"),
    ('{"name": "x", "plugins": [{"bridge": "b"}]}', 'no valid "type"'),
    ('{"name": "x", "plugins": [{"type": "../../bin/sh"}]}', 'no valid "type"'),
])
def test_bad_configs_say_what_is_wrong_and_where(text: str, message: str) -> None:
    with pytest.raises(cc.NetworkError, match=message) as e:
        cc.Network.parse(text, "/etc/cni/x.conflist")
    assert "/etc/cni/x.conflist" in str(e.value)


def test_resolve_builtin_operator_networks_and_unknown_names() -> None:
    builtin = cc.builtin_bridge()
    lan = cc.Network("lan", "1.0.0", ({"type": "macvlan"},), "lan.conflist")
    assert cc.resolve("", {"lan": lan}, builtin) is builtin
    assert cc.resolve("bridge", {"lan": lan}, builtin) is builtin
    assert cc.resolve("lan", {"lan": lan}, builtin) is lan
    with pytest.raises(cc.NetworkError, match=r"unknown network 'wan'.*knows bridge, lan"):
        cc.resolve("wan", {"lan": lan}, builtin)


def test_load_dir_reads_configs_by_name_and_reports_bad_ones(tmp_path) -> None:
    (tmp_path / "10-lan.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "lan", "plugins": [{"type": "bridge"}]}))
    (tmp_path / "20-lan.conf").write_text(json.dumps({"name": "lan", "type": "ptp"}))
    (tmp_path / "30-bad.json").write_text("{")
    (tmp_path / "README").write_text("not a config")
    networks, problems = load_dir(tmp_path)
    assert list(networks) == ["lan"] and networks["lan"].plugins[0]["type"] == "bridge"
    assert len(problems) == 2 and "already defined" in problems[0] and "not JSON" in problems[1]
    assert load_dir(tmp_path / "missing") == ({}, [])


RESULT = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "jbr0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
                         {"name": "eth0", "mac": "cc", "sandbox": "/w/ns"}],
          "ips": [{"address": "10.88.0.5/24", "gateway": "10.88.0.1", "interface": 2}],
          "routes": [{"dst": "0.0.0.0/0"}]}


def test_ip_addresses_are_the_containers_without_prefix() -> None:
    assert cc.ip_addresses(RESULT) == ["10.88.0.5"]
    assert cc.ip_addresses({"ips": [{"address": "10.1.0.9/16"}]}) == ["10.1.0.9"]
    assert cc.ip_addresses(cc.parse_result(json.dumps(RESULT).encode())) == ["10.88.0.5"]


def test_bad_results_and_errors_carry_the_spec_code_message_and_plugin() -> None:
    with pytest.raises(cc.CniError) as e:
        cc.parse_result(b"[1]", "bridge")
    assert e.value.code == 6
    err = cc.plugin_error("host-local", "ADD", 1, json.dumps(
        {"cniVersion": "1.0.0", "code": 11, "msg": "no IP addresses available",
         "details": "range 10.88.0.0/30"}).encode(), b"")
    assert (err.code, err.msg, err.details, err.plugin) == (
        11, "no IP addresses available", "range 10.88.0.0/30", "host-local")
    assert "host-local' ADD: no IP addresses available" in str(err)
    raw = cc.plugin_error("bridge", "DEL", 2, b"", b"panic: boom\n")
    assert raw.code == cc.ERR_PLUGIN_FAILED and "exited 2: panic: boom" in raw.msg


def test_container_spec_takes_the_network_and_port_mappings_of_a_bridge_task() -> None:
    task = common_pb2.TaskInfo(task_id="web", name="web",
                               command=common_pb2.CommandInfo(argv=["httpd"]),
                               resources=Resources.parse("cpus:0.1;mem:32;ports:[31080]")
                               .to_proto())
    task.container.network = common_pb2.NETWORK_BRIDGE
    spec = ContainerSpec.from_task(task)
    assert (spec.cni_network, spec.port_mappings, spec.network_host) == ("bridge", (), False)
    task.container.network_name = "lan"
    task.container.port_mappings.add(host_port=31080, container_port=80)
    spec = ContainerSpec.from_task(task)
    assert spec.cni_network == "lan"
    assert spec.port_mappings == ({"hostPort": 31080, "containerPort": 80, "protocol": "tcp"},)
    task.container.network = common_pb2.NETWORK_NONE
    task.container.ClearField("port_mappings")
    task.container.ClearField("network_name")
    assert ContainerSpec.from_task(task).cni_network is None


def test_the_containers_hosts_line_is_dockers() -> None:
    from juggler.container.etc_files import hosts_line

    assert hosts_line("10.88.0.5", "web") == "10.88.0.5\tweb\n"


def test_portmaps_ipv6_check_bug_is_recognised_only_for_ipv4_containers() -> None:
    bug = cc.CniError(999, "could not check ipv6 dnat: chain CNI-DN-1 not found in iptables "
                      "table nat", "", "portmap", "CHECK")
    assert "plugins#819" in cc.known_false_failure(bug, RESULT)
    assert cc.known_false_failure(bug, {"ips": [{"address": "fd00::5/64"}]}) == ""
    other = cc.CniError(999, "could not check ipv4 dnat", "", "portmap", "CHECK")
    assert cc.known_false_failure(other, RESULT) == ""
