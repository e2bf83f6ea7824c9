"""Certificates: the ones the registry and the proxy (port 443) serve, and the environment's CA,
are not about to expire.

Within lapinfra.certs.WARN_DAYS (30) of its end a certificate is a warning (the suite's
warnings summary, with the days left and the command that renews it); an expired one fails.
"""
import warnings

import pytest

from lapinfra import certs


def _judge(state: str, text: str) -> None:
    if state == certs.EXPIRED:
        pytest.fail(text)
    if state == certs.SOON:
        warnings.warn(text, UserWarning, stacklevel=2)


@pytest.mark.parametrize("who, secret", [("registry", "registry.crt"), ("proxy", "proxy.crt")])
def test_each_tls_port_serves_a_certificate_that_is_not_about_to_expire(project, master_ip, who, secret):
    port = project.env.registry.port if who == "registry" else 443
    served = certs.served_certificate(master_ip, port)
    _judge(*certs.expiry(served, f"the {who}'s certificate ({master_ip}:{port})", certs.rotate_hint(project.name, secret)))
    local = project.secrets.path(secret).read_bytes()
    if not certs.same(served, local):
        warnings.warn(f"the {who} serves another certificate than {project.secrets.path(secret)} "
                      f"(renewed, not deployed yet?): `invoke deploy --env={project.name}`", UserWarning)


def test_the_environments_ca_is_not_about_to_expire(project):
    _judge(*certs.expiry(project.secrets.path("ca.crt").read_bytes(), f"the CA of {project.name} (ca.crt)",
                         "a new CA is made by hand: every node's engine and every workstation that trusts it "
                         "needs the new one (docs/security.md)"))
