"""Per-client limits behind a proxy: whom a call is counted against (``--trusted-proxy``).

The rules on their own, then a real hub process, and a real nginx (``grpc_set_header
X-Forwarded-For``) in front of it. The probe is the smallest per-peer share, the "other"
group's 4 streams: health ``Watch`` calls, which stay open until the client ends them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from moma_server.client_address import client_address, parse_trusted, transport_address
from tests.server.cluster import Nginx
from tests.server.hubtest import HubProcess

LOCAL = parse_trusted(["127.0.0.1"])
PROXIES = parse_trusted(["10.0.0.0/24", "fd00::/64"])
SHARE = 4  # admission.Limits().other.per_peer


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("ipv4:127.0.0.1:5000", ["198.51.100.7"], (), "127.0.0.1"),  # nothing trusted: ignored
    ("ipv4:192.0.2.9:5000", ["198.51.100.7"], PROXIES, "192.0.2.9"),  # untrusted sender
    ("ipv4:10.0.0.5:5000", ["198.51.100.7"], PROXIES, "198.51.100.7"),
    ("ipv4:10.0.0.5:5000", [], PROXIES, "10.0.0.5"),  # a proxy calling for itself
    # a client's own claim to the left of what its proxy appended changes nothing
    ("ipv4:10.0.0.5:5000", ["203.0.113.1, 198.51.100.7"], PROXIES, "198.51.100.7"),
    # a chain of trusted proxies is walked to the first address that is not one
    ("ipv4:10.0.0.5:5000", ["198.51.100.7, 10.0.0.8"], PROXIES, "198.51.100.7"),
    ("ipv4:10.0.0.5:5000", ["198.51.100.7", "10.0.0.8"], PROXIES, "198.51.100.7"),
    ("ipv4:10.0.0.5:5000", ["10.0.0.9, 10.0.0.8"], PROXIES, "10.0.0.9"),  # all proxies
    # garbage counts against the hop that sent it
    ("ipv4:10.0.0.5:5000", ["198.51.100.7, not-an-ip"], PROXIES, "10.0.0.5"),
    ("ipv4:10.0.0.5:5000", ["garbage, 10.0.0.8"], PROXIES, "10.0.0.8"),
    ("ipv6:%5Bfd00::1%5D:5000", ["2001:db8::7"], PROXIES, "2001:db8::7"),
    ("ipv6:[fd00::1]:5000", ["[2001:db8::7]"], PROXIES, "2001:db8::7"),
    ("ipv6:[::ffff:10.0.0.5]:5000", ["198.51.100.7"], PROXIES, "198.51.100.7"),
    ("unix:/run/hub.sock", ["198.51.100.7"], PROXIES, "unix:/run/hub.sock"),
])
def test_client_address_rules(peer: str, forwarded: list[str], trusted: tuple,
                              expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_trusted_proxy_values() -> None:
    assert transport_address("ipv4:127.0.0.1:50051") == "127.0.0.1"
    assert [str(n) for n in parse_trusted(["10.0.0.5", "10.0.0.7/24", "::1"])] == [
        "10.0.0.5/32", "10.0.0.0/24", "::1/128"]
    with pytest.raises(ValueError, match="--trusted-proxy 'nginx' is not an IP address"):
        parse_trusted(["nginx"])


class _Watches:
    """Health ``Watch`` streams held open, each with its own ``x-forwarded-for``."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = health_pb2_grpc.HealthStub(self.channel)
        self.calls: list[grpc.Future] = []

    def open(self, forwarded: str) -> grpc.StatusCode:
        """OK once the hub answered SERVING on the open stream; else the refusal's code."""
        call = self.stub.Watch(health_pb2.HealthCheckRequest(), timeout=120,
                               metadata=(("x-forwarded-for", forwarded),))
        self.calls.append(call)
        got: list[object] = []
        reader = threading.Thread(target=lambda: got.append(_first(call)), daemon=True)
        reader.start()
        reader.join(60)
        assert got, "the hub neither answered nor refused within 60 s"
        if isinstance(got[0], grpc.RpcError):
            self.refusal = str(got[0].details())
            return got[0].code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        for call in self.calls:
            call.cancel()
        self.channel.close()


def _first(call: Iterator[health_pb2.HealthCheckResponse]) -> object:
    try:
        return next(call)
    except grpc.RpcError as exc:
        return exc


def _share_of(address: str, client: str, other: str) -> tuple[list[grpc.StatusCode], str]:
    """Fill ``client``'s share, then one more for ``client`` and one for ``other``."""
    watches = _Watches(address)
    try:
        codes = [watches.open(client) for _ in range(SHARE)]
        codes.append(watches.open(client))
        refusal = getattr(watches, "refusal", "")
        codes.append(watches.open(other))
        return codes, refusal
    finally:
        watches.close()


OK, FULL = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_trusted_proxy_names_the_client_and_nothing_else_does(tmp_path: Path) -> None:
    with HubProcess(tmp_path / "plain") as hub:  # default: no proxy is trusted
        codes, refusal = _share_of(hub.address, "198.51.100.1", "198.51.100.2")
        assert codes == [OK] * SHARE + [FULL, FULL]  # every call counts as 127.0.0.1
        assert refusal.startswith(f"127.0.0.1 already has {SHARE} concurrent other calls")
    with HubProcess(tmp_path / "proxied", extra=["--trusted-proxy", "127.0.0.1"]) as hub:
        codes, refusal = _share_of(hub.address, "198.51.100.1", "198.51.100.2")
        assert codes == [OK] * SHARE + [FULL, OK]  # per client, not per proxy
        assert refusal.startswith(f"198.51.100.1 already has {SHARE} concurrent other calls")
        # behind real nginx, which appends the address it sees (127.0.0.1, trusted here)
        nginx = Nginx(tmp_path / "nginx", [hub.address]).start()
        try:
            codes, refusal = _share_of(nginx.address, "198.51.100.3", "198.51.100.4")
        finally:
            nginx.stop()
        assert codes == [OK] * SHARE + [FULL, OK]
        assert refusal.startswith(f"198.51.100.3 already has {SHARE} concurrent other calls")


def test_a_bad_trusted_proxy_is_refused_at_start(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "bad", extra=["--trusted-proxy", "nginx.internal"])
    with pytest.raises(RuntimeError) as err:
        hub.start(timeout=120)
    assert "--trusted-proxy 'nginx.internal' is not an IP address or network" in str(err.value)
