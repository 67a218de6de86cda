"""Callback rules, as pure functions (signatures: test_webhook_signing.py)."""

from __future__ import annotations

import ipaddress

import pytest

from taskcore.webhooks.targets import (
    CallbackRefused,
    address_allowed,
    check_addresses,
    host_listed,
    normalize_hosts,
    parse_target,
)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "https://user:pw@hooks.example.com/",
        "http://hooks.example.com:99999/",
        "http:///no-host",
        "http://hooks example.com/",
        "https://hooks.example.com/" + "x" * 2100,
        "",
    ],
)
def test_callback_urls_of_the_wrong_form_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        parse_target(url)


def test_a_callback_url_is_taken_apart_for_a_pinned_request() -> None:
    target = parse_target("https://Hooks.Example.com/a?b=1")
    assert (target.host, target.port, target.https, target.netloc) == (
        "hooks.example.com",
        443,
        True,
        "Hooks.Example.com",
    )
    assert parse_target("http://[::1]:8080/").host == "::1"


def test_allow_list_entries_are_host_patterns_addresses_or_networks() -> None:
    hosts = normalize_hosts([" Hooks.Example.com", "*.corp.example", "127.0.0.1", "10.0.0.0/8"])
    assert hosts == ("hooks.example.com", "*.corp.example", "127.0.0.1", "10.0.0.0/8")
    assert host_listed("hooks.example.com", hosts) and host_listed("a.corp.example", hosts)
    assert host_listed("127.0.0.1", hosts) and host_listed("10.9.8.7", hosts)
    assert not host_listed("corp.example", hosts) and not host_listed("evil.com", hosts)
    with pytest.raises(ValueError):
        normalize_hosts(["hooks.example.com/path"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "0.0.0.0",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused_by_default(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not address_allowed(ip, (), allow_private=False)
    assert address_allowed(ip, (), allow_private=True)


def _embedding(form: str, v4: str) -> str:
    """``v4`` inside an IPv6 address of ``form`` (RFC 6052 NAT64, RFC 3056 6to4, RFC 4291)."""
    n = int(ipaddress.IPv4Address(v4))
    if form == "nat64":  # 64:ff9b::/96, the well-known prefix
        return str(ipaddress.IPv6Address((0x64FF9B << 96) | n))
    if form == "nat64-local-96":  # 64:ff9b:1::/48, a /96 inside it
        return str(ipaddress.IPv6Address((0x64FF9B0001 << 80) | n))
    if form == "nat64-local-48":  # 64:ff9b:1::/48 with the /48 layout (octets around bit 64)
        return str(
            ipaddress.IPv6Address((0x64FF9B0001 << 80) | (n >> 16) << 64 | (n & 0xFFFF) << 40)
        )
    if form == "6to4":  # 2002:AABB:CCDD::/48
        return str(ipaddress.IPv6Address((0x2002 << 112) | n << 80 | 1))
    assert form == "compatible"  # ::a.b.c.d
    return f"::{v4}"


@pytest.mark.parametrize(
    "form", ["nat64", "nat64-local-96", "nat64-local-48", "6to4", "compatible"]
)
@pytest.mark.parametrize("v4", ["127.0.0.1", "10.0.0.1", "169.254.169.254"])
def test_an_internal_ipv4_address_inside_an_ipv6_one_is_refused(form: str, v4: str) -> None:
    address = ipaddress.ip_address(_embedding(form, v4))
    assert not address_allowed(address, (), allow_private=False), address
    target = parse_target("https://hooks.example.com/")
    with pytest.raises(CallbackRefused, match="private or internal"):
        check_addresses(target, [address], ("hooks.example.com",), allow_private=False)


@pytest.mark.parametrize("form", ["nat64", "6to4"])
def test_a_public_ipv4_address_inside_an_ipv6_one_is_allowed(form: str) -> None:
    address = ipaddress.ip_address(_embedding(form, "93.184.215.14"))
    assert address_allowed(address, (), allow_private=False), address


def test_a_private_address_is_allowed_only_when_listed_as_an_address() -> None:
    target = parse_target("http://hooks.internal/x")
    loopback = [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(CallbackRefused, match="private or internal"):
        check_addresses(target, loopback, ("hooks.internal", "*"), allow_private=False)
    assert check_addresses(target, loopback, ("127.0.0.0/8",), allow_private=False) == loopback
    public = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(CallbackRefused):  # one private answer is enough to refuse
        check_addresses(target, public, (), allow_private=False)
