"""Certificates of the environment's CA: how long each is still valid, and what to do.

The registry's certificate (``registry.crt``, signed by the environment's CA in
lapinfra/secrets.py) is valid 825 days, the CA 3650. The verification suite reads the
certificate the registry serves over TLS and warns WARN_DAYS ahead of its end
(infra_tests/test_certificates.py); `invoke secrets.rotate --env=X registry.crt`
renews it, the next deploy hands it to the registry.
"""
from __future__ import annotations

import datetime as dt
import socket
import ssl

from cryptography import x509

WARN_DAYS = 30
OK, SOON, EXPIRED = "ok", "soon", "expired"


def not_after(pem: bytes) -> dt.datetime:
    """The end of a PEM certificate's validity (UTC)."""
    cert = x509.load_pem_x509_certificate(pem)
    end = getattr(cert, "not_valid_after_utc", None)
    return end if end is not None else cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def days_left(pem: bytes, now: dt.datetime | None = None) -> float:
    """Days until the certificate expires (negative: it has)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return (not_after(pem) - now).total_seconds() / 86400


def verdict(days: float, warn_days: int = WARN_DAYS) -> str:
    """OK, SOON (within ``warn_days``) or EXPIRED."""
    if days <= 0:
        return EXPIRED
    return SOON if days <= warn_days else OK


def rotate_hint(env: str, secret: str) -> str:
    return f"renew it: `invoke secrets.rotate --env={env} {secret}`, then `invoke deploy --env={env}`"


def expiry(pem: bytes, what: str, renew: str, now: dt.datetime | None = None,
           warn_days: int = WARN_DAYS) -> tuple[str, str]:
    """(verdict, the sentence for humans): how many days ``what`` has left, and ``renew`` (how to renew it)."""
    days = days_left(pem, now)
    state = verdict(days, warn_days)
    end = not_after(pem).strftime("%Y-%m-%d %H:%M UTC")
    if state == EXPIRED:
        return state, f"{what} expired {-days:.0f} days ago ({end}): {renew}"
    if state == SOON:
        return state, f"{what} expires in {int(days)} days ({end}; warned {warn_days} days ahead): {renew}"
    return state, f"{what} is valid {int(days)} more days (until {end})"


def same(a: bytes, b: bytes) -> bool:
    """Are two PEM certificates the same certificate?"""
    return x509.load_pem_x509_certificate(a) == x509.load_pem_x509_certificate(b)


def served_certificate(host: str, port: int, timeout: float = 5) -> bytes:
    """The PEM certificate a TLS server presents, whoever signed it (it is read, not trusted)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode()
