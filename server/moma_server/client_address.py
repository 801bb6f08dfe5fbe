"""Whose call is this: the address per-peer limits count, behind a proxy too.

Why this exists: behind a gRPC proxy (nginx ``grpc_pass``) every call reaches the hub from the
proxy's address, so per-peer limits would count every client of the proxy as one peer and
refuse the many for what a few did. A proxy the operator names (``--trusted-proxy``, IP or
CIDR; none by default) is believed when it says, in ``x-forwarded-for``, whom it forwards for.
The header is read right to left, as nginx's realip module does with ``real_ip_recursive on``:
each hop that is itself a trusted proxy is skipped, and the first address that is not is the
client. A client can prepend anything it likes to the header, but it cannot change the
address its own trusted proxy appends, which is the one found first. An entry that is not an
IP address ends the walk at the hop that sent it, so garbage counts against that hop.
A call from an address that is not trusted is counted by its connection address, whatever
headers it sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

import grpc

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_HEADER = "x-forwarded-for"
MAX_HOPS = 16
"""Entries of ``x-forwarded-for`` looked at, from the right (gRPC bounds the header's bytes)."""


def parse_trusted(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--trusted-proxy`` values (``10.0.0.5``, ``10.0.0.0/24``, ``::1``) as networks.

    Raises ValueError naming the bad value and the expected form."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {value!r} is not an IP address or network: give "
                             "the proxy's address, e.g. 10.0.0.5 or 10.0.0.0/24") from None
    return tuple(networks)


def transport_address(peer: str | None) -> str:
    """The address part of gRPC's peer string (``ipv4:1.2.3.4:5678``, ``ipv6:%5B::1%5D:5678``)."""
    peer = unquote(peer or "unknown")
    for scheme in ("ipv4:", "ipv6:"):
        if peer.startswith(scheme):
            host = peer[len(scheme):].rsplit(":", 1)[0]
            return host.strip("[]")
    return peer


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str, forwarded: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The address to count a call against (see the module docstring)."""
    host = transport_address(peer)
    current = _ip(host)
    if current is None or not trusted or not _trusted(current, trusted):
        return host
    hops = [hop for value in forwarded for hop in value.split(",")][-MAX_HOPS:]
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:  # garbage from the hop we reached: count it against that hop
            break
        current = address
        if not _trusted(current, trusted):
            break
    return str(current)


def call_client_address(context: grpc.ServicerContext,
                        trusted: Sequence[IPNetwork]) -> str:
    """:func:`client_address` of a call in progress."""
    forwarded: tuple[str, ...] = ()
    if trusted:
        forwarded = tuple(str(value) for key, value in (context.invocation_metadata() or ())
                          if key == FORWARDED_HEADER)
    return client_address(context.peer(), forwarded, trusted)
