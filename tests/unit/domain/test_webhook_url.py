"""Where a webhook may be sent (domain.webhook_url): https to public hosts only, unless
development allows private targets; credentials and numeric host spellings never."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import WebhookUrlInvalidError
from domain.webhook_url import address_problem, webhook_target

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
INSIDE = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/h", "must start with https://"),
        ("https://127.0.0.1/h", "loopback"),
        ("https://[::1]/h", "loopback"),
        ("https://[::ffff:127.0.0.1]/h", "IPv4-mapped loopback"),
        ("https://[::ffff:a9fe:a9fe]/h", "IPv4-mapped link-local"),
        ("https://[::7f00:1]/h", "IPv4-compatible"),
        ("https://[64:ff9b::a00:1]/h", "NAT64 private"),
        ("https://[2002:a9fe:a9fe::1]/h", "6to4 link-local"),
        ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/h", "Teredo"),
        ("https://[fd00::1]/h", "unique local"),
        ("https://[fe80::1]/h", "link-local"),
        ("https://[ff02::1]/h", "multicast"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://100.100.100.200/h", "CGNAT"),
        ("https://192.0.2.1/h", "documentation"),
        ("https://255.255.255.255/h", "reserved"),
        ("https://localhost/h", "single label"),
        ("https://metadata/h", "single label"),
        ("https://printer.local/h", "private zone"),
        ("https://db.internal./h", "private zone"),
    ],
)
def test_private_and_plain_targets_are_refused_by_default(url: str, why: str) -> None:
    with pytest.raises(WebhookUrlInvalidError) as refused:
        webhook_target(url)
    assert why in refused.value.message
    assert [e.field for e in refused.value.errors] == ["url"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:pass@hooks.example.com/h", "credentials"),
        ("https://hooks.example.com@127.0.0.1/h", "credentials"),
        ("https://:@hooks.example.com/h", "credentials"),
        ("https://2130706433/h", "decimal, octal or hex"),
        ("https://0x7f000001/h", "decimal, octal or hex"),
        ("https://0x7f.0.0.1/h", "decimal, octal or hex"),
        ("https://0177.0.0.1/h", "decimal, octal or hex"),
        ("https://127.1/h", "decimal, octal or hex"),
        ("https://127.0.0.1./h", "decimal, octal or hex"),
        ("https://1.2.3.4.5/h", "decimal, octal or hex"),
        ("https://[fe80::1%25eth0]/h", "scoped"),
        ("https://hooks.example.com\\@10.0.0.1/h", "backslashes"),
        ("https://bücher.example/h", "xn--"),
        ("https://hooks.example.com\x00/h", "printable ASCII"),
        ("https://hooks.example.com:0/h", "port"),
        ("https://hooks.example.com:65536/h", "port"),
        ("https://under_score.example.com/h", "letters, digits and hyphens"),
        ("https:///h", "must name a host"),
        ("ftp://hooks.example.com/h", "must start with"),
        ("https://hooks.example.com/" + "x" * 2048, "at most 2048"),
    ],
)
def test_credentials_and_numeric_hosts_are_refused_even_for_development(url: str, why: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(WebhookUrlInvalidError) as refused:
            webhook_target(url, allow_private=allow_private)
        assert why in refused.value.message, (allow_private, refused.value.message)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/h",
        "https://HOOKS.Example.com:8443/strategies?x=1",
        "https://xn--bcher-kva.example/h",
        "https://8.8.8.8/h",
        "https://[2606:4700:4700::1111]/h",
        "https://[64:ff9b::808:808]/h",
    ],
)
def test_https_to_public_hosts_is_accepted(url: str) -> None:
    target = webhook_target(url)
    assert target.url == url and target.scheme == "https"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hooks", "http://localhost:8080/h", "http://receiver/h",
            "https://10.0.0.1/h", "http://[::1]:8000/h"]
)  # fmt: skip
def test_development_allows_http_and_private_targets(url: str) -> None:
    assert webhook_target(url, allow_private=True).url == url


def test_a_target_names_its_host_and_port() -> None:
    target = webhook_target("https://Hooks.Example.com/h")
    assert (target.host, target.port, target.address) == ("hooks.example.com", 443, None)
    literal = webhook_target("http://127.0.0.1:9/h", allow_private=True)
    assert (literal.port, literal.address) == (9, ipaddress.IPv4Address("127.0.0.1"))


def _inside(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.IPv4Network(network)
    return st.integers(0, net.num_addresses - 1).map(lambda offset: net[offset])


@given(st.sampled_from(INSIDE).flatmap(_inside))
def test_every_inside_range_is_refused_from_end_to_end(address: ipaddress.IPv4Address) -> None:
    assert address_problem(address) is not None


@given(ipv4)
def test_an_ipv4_address_and_its_ipv6_spellings_get_the_same_verdict(
    address: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    verdict = address_problem(address) is None
    assert (address_problem(mapped) is None) is verdict
    assert (address_problem(nat64) is None) is verdict
    if not verdict:
        assert not address.is_global or any(
            address in ipaddress.IPv4Network(net) for net in [*INSIDE, "192.0.0.0/24"]
        )


@given(ipv4)
def test_numeric_spellings_of_any_address_are_refused(address: ipaddress.IPv4Address) -> None:
    number = int(address)
    octets = str(address).split(".")
    for host in (
        str(number),
        hex(number),
        ".".join(f"0{int(o):o}" for o in octets),
        ".".join(hex(int(o)) for o in octets),
        f"{octets[0]}.{number & 0xFFFFFF}",
    ):
        with pytest.raises(WebhookUrlInvalidError):
            webhook_target(f"https://{host}/h", allow_private=True)
