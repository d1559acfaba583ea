"""Where a webhook may be sent: https to a public address, unless development allows more.

Whoever holds the admin token chooses a subscription's URL, and the delivery log shows each
attempt's status code, error and latency: a URL inside the network (the cloud metadata service
at 169.254.169.254, a database port on loopback) would turn the sender into a port scanner.
So a URL is refused when its host is, or could stand for, anything but a public address; the
sender checks again, on every address the name resolves to, before each attempt (DNS changes).

With `allow_private` (STRATEGIES_WEBHOOK_ALLOW_PRIVATE, for development and tests) plain http
and private, loopback and single-label hosts are allowed. Credentials in the URL and numeric
host spellings are refused either way: neither has an honest use here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.errors import FieldError, WebhookUrlInvalidError

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: What a WHATWG URL parser (browsers, many HTTP clients) reads as an IPv4 number: a last
#: label of decimal digits or 0x-hex. `http://2130706433/`, `http://0x7f.1/` and
#: `http://0177.0.0.1/` are all 127.0.0.1 to such a parser and a hostname to others.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
#: Names that only ever mean something inside a network (RFC 6761, RFC 6762, RFC 8375, and
#: the usual private zones).
_PRIVATE_ZONES = frozenset(
    {"localhost", "local", "localdomain", "internal", "intranet", "lan", "home.arpa",
     "invalid", "test", "onion"}
)  # fmt: skip

_V4_RANGES = tuple(
    (ipaddress.IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved for protocol assignments"),
        ("192.0.2.0/24", "reserved for documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved for benchmarking"),
        ("198.51.100.0/24", "reserved for documentation"),
        ("203.0.113.0/24", "reserved for documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_RANGES = tuple(
    (ipaddress.IPv6Network(network), reason)
    for network, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("100::/64", "reserved (discard)"),
        ("2001:db8::/32", "reserved for documentation"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class WebhookTarget:
    """A URL that passed the rule: the host to resolve (or the address it names) and port."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress | None


def address_problem(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to `address` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        return _v6_problem(address)
    for network, reason in _V4_RANGES:
        if address in network:
            return reason
    return None if address.is_global else "not a public address"


def _v6_problem(address: ipaddress.IPv6Address) -> str | None:
    # An IPv6 spelling of an IPv4 address reaches that IPv4 address: judge that one.
    if address.ipv4_mapped is not None:
        embedded = address_problem(address.ipv4_mapped)
        return None if embedded is None else f"IPv4-mapped {embedded}"
    if address.teredo is not None:
        return "a Teredo tunnel"
    if address.sixtofour is not None:
        embedded = address_problem(address.sixtofour)
        return None if embedded is None else f"6to4 {embedded}"
    if address in _NAT64:
        embedded = address_problem(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return None if embedded is None else f"NAT64 {embedded}"
    for network, reason in _V6_RANGES:
        if address in network:
            return reason
    return None if address.is_global else "not a public address"


def webhook_target(url: object, *, allow_private: bool = False) -> WebhookTarget:
    """`url` as a webhook target, or `WebhookUrlInvalidError` naming the field `url`."""
    problem, target = _judge(url, allow_private)
    if target is None:
        raise WebhookUrlInvalidError(
            f"the webhook URL {problem}", errors=(FieldError("url", problem),)
        )
    return target


def _judge(url: object, allow_private: bool) -> tuple[str, WebhookTarget | None]:
    schemes = ("https", "http") if allow_private else ("https",)
    wanted = " or ".join(f"{s}://" for s in schemes)
    if not isinstance(url, str) or not url:
        return f"must be a {wanted} URL", None
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters", None
    if not (url.isascii() and url.isprintable()) or " " in url or "\\" in url:
        return (
            "must be printable ASCII without spaces or backslashes (an international "
            "name in its xn-- form)",
            None,
        )
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        hint = "" if allow_private else " (http only with STRATEGIES_WEBHOOK_ALLOW_PRIVATE)"
        return f"must start with {wanted}{hint}", None
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@)", None
    host = parts.hostname or ""
    try:
        given = parts.port
    except ValueError:
        given = 0
    if given == 0:
        return "must have a port between 1 and 65535", None
    port = given or (443 if parts.scheme.lower() == "https" else 80)
    if not host:
        return "must name a host", None
    if "%" in host:
        return "must not name a scoped (zone) address", None
    try:
        address: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        problem = _name_problem(host, allow_private)
    elif parts.netloc.startswith("[") != isinstance(address, ipaddress.IPv6Address):
        problem = "must write an IPv6 address in brackets"
    else:
        reason = None if allow_private else address_problem(address)
        problem = None if reason is None else f"host {host} is {reason}, not a public address"
    if problem is not None:
        return problem, None
    return "", WebhookTarget(url, parts.scheme.lower(), host, port, address)


def _name_problem(host: str, allow_private: bool) -> str | None:
    name = host.removesuffix(".")
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return (
            "host must be a name or a dotted-quad IPv4 address: decimal, octal or hex "
            "spellings of an address are refused"
        )
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "host must be a DNS name of letters, digits and hyphens"
    if allow_private:
        return None
    if len(labels) < 2:
        return f"host {host} is not a public name (a single label resolves inside the network)"
    for zone in _PRIVATE_ZONES:
        if name == zone or name.endswith(f".{zone}"):
            return f"host {host} is a name of a private zone (.{zone}), not a public one"
    return None
