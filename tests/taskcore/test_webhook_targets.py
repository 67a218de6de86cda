"""Callback rules and webhook signatures, as pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from taskcore.webhooks.payload import signature, verify
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


def test_a_private_address_is_allowed_only_when_listed_as_an_address() -> None:
    target = parse_target("http://hooks.internal/x")
    loopback = [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(CallbackRefused, match="private or internal"):
        check_addresses(target, loopback, ("hooks.internal", "*"), allow_private=False)
    assert check_addresses(target, loopback, ("127.0.0.0/8",), allow_private=False) == loopback
    public = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(CallbackRefused):  # one private answer is enough to refuse
        check_addresses(target, public, (), allow_private=False)


def test_signatures_cover_the_timestamp_and_the_exact_body() -> None:
    body = b'{"output":{"task_status":"SUCCEEDED"}}'
    sent = signature("whsec_test", 1_700_000_000, body)
    assert sent.startswith("v1=") and len(sent) == 3 + 64
    assert verify("whsec_test", "1700000000", sent, body, now=1_700_000_010)
    assert not verify("whsec_test", "1700000000", sent, body + b" ", now=1_700_000_010)
    assert not verify("whsec_other", "1700000000", sent, body, now=1_700_000_010)
    assert not verify("whsec_test", "1700000001", sent, body, now=1_700_000_010)
    assert not verify("whsec_test", "1700000000", sent, body, now=1_700_001_000)  # too old
