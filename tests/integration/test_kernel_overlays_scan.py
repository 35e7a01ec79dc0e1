"""The agent's scan of the kernel VXLAN devices a host runs, against the real kernel: in its
own namespace and in a Docker-style directory of overlay namespaces."""

from __future__ import annotations

from pathlib import Path

from overlay_agent.io import netns
from overlay_agent.io.kernelvxlan import scan
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root

pytestmark = [needs_root]


def test_it_finds_the_host_s_and_docker_s_devices_with_their_mtus(tmp_path: Path) -> None:
    prefix = new_prefix()
    host, overlay = f"{prefix}-h1", f"{prefix}-1-abcdef"
    for ns in (host, overlay):
        netns.add(ns)
    try:
        netns.ip("link", "add", "flannel.1", "mtu", "1450", "type", "vxlan", "id", "1",
                 "dstport", "8472", "local", "198.18.0.1", netns=host)
        netns.ip("link", "add", "cilium_vxlan", "type", "vxlan", "external", "dstport", "8473",
                 netns=host)
        netns.ip("link", "add", "vx-abc", "mtu", "1400", "type", "vxlan", "id", "4097",
                 "dstport", "4789", netns=overlay)
        docker = tmp_path / "docker-netns"
        docker.mkdir()
        (docker / "1-abcdef").symlink_to(netns.netns_path(overlay))
        (docker / "gone").symlink_to(tmp_path / "nothing-here")
        with netns.inside(host):
            got = scan(docker_dirs=[str(docker)])
        devs = {(d["where"], d["name"]): d for d in got["devices"]}
        assert set(devs) == {("host", "flannel.1"), ("host", "cilium_vxlan"),
                             ("docker:1-abcdef", "vx-abc")}
        f = devs[("host", "flannel.1")]
        assert (f["vni"], f["port"], f["mtu"], f["local"], f["external"]) == (
            1, 8472, 1450, "198.18.0.1", False)
        assert devs[("host", "cilium_vxlan")]["external"] is True
        d = devs[("docker:1-abcdef", "vx-abc")]
        assert (d["vni"], d["port"], d["mtu"]) == (4097, 4789, 1400)
        assert len(got["errors"]) == 1 and got["errors"][0].startswith("docker:gone")
        with netns.inside(overlay):  # and nothing there: the scan only reads
            assert scan(docker_dirs=[])["devices"][0]["name"] == "vx-abc"
    finally:
        for ns in (host, overlay):
            netns.delete(ns)
