"""A task's /etc/hosts and /etc/resolv.conf as Docker writes them
(container/etc_files.py; moby libnetwork etchosts and resolvconf)."""

from __future__ import annotations

from pathlib import Path

from juggler.container.etc_files import hosts, resolv_conf, write


def test_hosts_is_mobys_default_content_with_no_address():
    assert hosts() == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                       "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                       "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def test_resolv_conf_drops_loopback_and_ipv6_nameservers_and_keeps_the_rest():
    host = ("# from dhcp\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::1\n"
            "search corp.example\noptions ndots:2 edns0\nsortlist 10.0.0.0\n")
    assert resolv_conf(host) == (
        "nameserver 10.0.0.2\nsearch corp.example\noptions ndots:2 edns0\nsortlist 10.0.0.0\n"
        "\n# Based on host file: '/etc/resolv.conf' (legacy)\n# Overrides: []\n"
        "# Option ndots from: host\n")


def test_resolv_conf_falls_back_to_googles_when_no_nameserver_is_left():
    assert resolv_conf("nameserver 127.0.0.1\nnameserver ::1\n") == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        "\n# Based on host file: '/etc/resolv.conf' (legacy)\n"
        "# Used default nameservers.\n# Overrides: []\n")


def test_written_in_the_sandbox_and_hostname_ends_with_a_newline(tmp_path):
    files = write(tmp_path / "etc", "web-1", network_host=False)
    assert sorted(files) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    assert Path(files["/etc/hostname"]).read_text() == "web-1\n"
    assert Path(files["/etc/hosts"]).read_text() == hosts()


def test_host_network_copies_the_hosts_files(tmp_path):
    files = write(tmp_path / "etc", "web-1", network_host=True)
    assert Path(files["/etc/hosts"]).read_text() == Path("/etc/hosts").read_text()
    assert Path(files["/etc/resolv.conf"]).read_text() == Path("/etc/resolv.conf").read_text()

