"""The client's address: one answer for the rate limiter, ingest's signature-failure limit and Sentry.

Behind a reverse proxy every TCP peer is the proxy, so the proxy's header (Fly's
``Fly-Client-IP``) names the client. That header is believed only when the peer is inside
``TRUSTED_PROXY_CIDRS`` (anyone can send it), and only when it holds a valid IP address;
otherwise the answer is the peer, ``request.remote_addr``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import sentry_sdk
from flask import Flask, current_app, request

from beacon.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EXTENSION = "beacon.client_address"


def _parse(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d is the IPv4 peer a.b.c.d
    return mapped or address


@dataclass(frozen=True)
class ProxyPolicy:
    """Which peers are trusted proxies and which header of theirs names the client."""

    networks: tuple[Network, ...] = ()
    header: str = "Fly-Client-IP"

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProxyPolicy":
        return cls(settings.trusted_proxy_cidrs, settings.trusted_proxy_header)

    def trusts(self, peer: str | None) -> bool:
        address = _parse(peer)
        return address is not None and any(address in network for network in self.networks)

    def resolve(self, peer: str | None, header_values: list[str]) -> str:
        """The client address for a request from ``peer`` carrying ``header_values`` in the proxy header.

        The right-most entry counts: a proxy appends (or sets) its own value last, so with a
        comma list (``X-Forwarded-For``) or a repeated header, what the client wrote itself
        sits further left.
        """
        peer = peer or "unknown"
        if not self.networks or not self.trusts(peer):
            return peer
        entries = [part for value in header_values for part in value.split(",")]
        client = _parse(entries[-1]) if entries else None
        return str(client) if client is not None else peer


def init_app(flask_app: Flask, settings: Settings) -> None:
    """Install the policy; with SENTRY_SEND_PII, Sentry's user IP is the resolved address too
    (the SDK would otherwise take any X-Forwarded-For a client sends)."""
    flask_app.extensions[EXTENSION] = ProxyPolicy.from_settings(settings)
    if settings.sentry_send_pii and settings.sentry_dsn:
        flask_app.before_request(_tag_sentry_user)


def _tag_sentry_user() -> None:
    sentry_sdk.set_user({"ip_address": client_address()})


def client_address() -> str:
    """The address of the client of the current request (see the module docstring)."""
    policy: ProxyPolicy = current_app.extensions.get(EXTENSION) or ProxyPolicy()
    return policy.resolve(request.remote_addr, request.headers.getlist(policy.header))
