"""Where one webhook attempt goes: its URL checked again, its host resolved, every address
checked (`domain.webhook_url`), and the request pinned to a checked address.

A subscription's URL was checked when it was registered, but its name may resolve elsewhere
since (DNS rebinding, or just a changed record), and the setting may have changed. So each
attempt resolves the name itself, refuses it if any address is not public, and sends to one
of those addresses: the request's URL carries the address, `Host` and the TLS server name
(SNI, which the certificate is verified against) carry the name. The HTTP client never
resolves the name a second time, so the address connected to is the address checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.errors import WebhookUrlInvalidError
from domain.webhook_url import IPAddress, address_problem, webhook_target

#: `(host, port)` -> the addresses it resolves to.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class TargetRefusedError(Exception):
    """Raised when an attempt may not be sent: the URL or an address of its host is refused."""


@dataclass(frozen=True)
class Destination:
    """An attempt's request, pinned: post to `url` with these headers and extensions."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host` as this machine resolves them (asyncio's getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


async def destination(url: str, *, allow_private: bool, resolve: Resolver) -> Destination:
    """Where to send an attempt for `url`, or `TargetRefusedError` saying why not."""
    try:
        target = webhook_target(url, allow_private=allow_private)
    except WebhookUrlInvalidError as refused:
        raise TargetRefusedError(refused.message) from None
    if target.address is not None:
        return Destination(httpx.URL(url))  # an address already: nothing to resolve
    try:
        addresses = await resolve(target.host, target.port)
    except OSError as failure:
        raise TargetRefusedError(f"{target.host} does not resolve: {failure}") from None
    if not addresses:
        raise TargetRefusedError(f"{target.host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if (reason := address_problem(address)) is not None:
                raise TargetRefusedError(
                    f"{target.host} resolves to {address} ({reason}), not a public address"
                )
    original = httpx.URL(url)
    pinned = original.copy_with(host=str(addresses[0]))
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return Destination(pinned, {"host": original.netloc.decode("ascii")}, extensions)
