"""Certificates: the one the registry serves, and the environment's CA, are not about to expire.

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


def test_the_registry_serves_a_certificate_that_is_not_about_to_expire(project, master_ip):
    served = certs.served_certificate(master_ip, project.env.registry.port)
    _judge(*certs.expiry(served, f"the registry's certificate ({master_ip}:{project.env.registry.port})",
                         certs.rotate_hint(project.name, "registry.crt")))
    local = project.secrets.path("registry.crt").read_bytes()
    if not certs.same(served, local):
        warnings.warn(f"the registry serves another certificate than {project.secrets.path('registry.crt')} "
                      f"(renewed, not deployed yet?): `invoke deploy --env={project.name}`", UserWarning)


def test_the_environments_ca_is_not_about_to_expire(project):
    _judge(*certs.expiry(project.secrets.path("ca.crt").read_bytes(), f"the CA of {project.name} (ca.crt)",
                         "a new CA is made by hand: every node's engine and every workstation that trusts it "
                         "needs the new one (docs/security.md)"))
