"""Certificate expiry (lapinfra/certs.py, read by infra_tests/test_certificates.py) and
`invoke secrets.rotate` (lapinfra/rotate.py), on real generated secrets in a tmp folder."""
import datetime as dt
import socket
import ssl
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from invoke import Exit

from lapinfra import certs, rotate
from lapinfra.errors import LapinfraError
from tests.conftest import test_project
from tests.unit.test_guarded_tasks import load_tasks


def _end(pem: bytes) -> dt.datetime:
    return certs.not_after(pem)


def test_a_new_registry_certificate_is_valid_825_days(project):
    pem = project.secrets.path("registry.crt").read_bytes()
    assert 824.9 < certs.days_left(pem) <= 825
    state, text = certs.expiry(pem, "the registry's certificate", certs.rotate_hint("test", "registry.crt"))
    assert state == certs.OK and "valid 824 more days" in text


@pytest.mark.parametrize("before_end, state, words", [
    (dt.timedelta(days=31), certs.OK, "valid 31 more days"),
    (dt.timedelta(days=30), certs.SOON, "expires in 30 days"),
    (dt.timedelta(days=29, hours=12), certs.SOON, "expires in 29 days"),
    (dt.timedelta(hours=3), certs.SOON, "expires in 0 days"),
    (-dt.timedelta(days=2), certs.EXPIRED, "expired 2 days ago"),
])
def test_the_registry_certificate_warns_30_days_ahead_with_the_days_left_and_the_renewal(project, before_end, state, words):
    pem = project.secrets.path("registry.crt").read_bytes()
    got, text = certs.expiry(pem, "the registry's certificate", certs.rotate_hint("test", "registry.crt"),
                             now=_end(pem) - before_end)
    assert got == state and words in text
    if state != certs.OK:
        assert "`invoke secrets.rotate --env=test registry.crt`, then `invoke deploy --env=test`" in text
        assert _end(pem).strftime("%Y-%m-%d") in text


def _serve(cert, key):
    """A TLS server on a local port that presents ``cert``; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    server.settimeout(5)

    def serve():
        try:
            raw, _ = server.accept()
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass
        finally:
            server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1]


@pytest.fixture
def tls_server(project):
    """A TLS server on a local port that presents the environment's registry certificate."""
    return _serve(project.secrets.path("registry.crt"), project.secrets.path("registry.key"))


def test_the_suite_reads_the_certificate_the_server_presents(project, tls_server):
    served = certs.served_certificate("127.0.0.1", tls_server)
    assert certs.same(served, project.secrets.path("registry.crt").read_bytes())
    state, text = certs.expiry(served, "the registry's certificate", "", now=_end(served) - dt.timedelta(days=10))
    assert (state, "expires in 10 days" in text) == (certs.SOON, True)


def _infra_check():
    """infra_tests/test_certificates.py, the suite's check of the registry's port."""
    import functools
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("suite_certificates", ROOT / "infra_tests" / "test_certificates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return functools.partial(module.test_each_tls_port_serves_a_certificate_that_is_not_about_to_expire,
                             who="registry", secret="registry.crt")


def _registry_cert(project, tmp_path, days: float):
    """A registry certificate from the environment's CA that ends in ``days`` (negative: ended)."""
    from cryptography.hazmat.primitives import hashes

    from lapinfra.secrets import _pem_key

    store = project.secrets
    ca_key = serialization.load_pem_private_key(store.path("ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(store.path("ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=900))
            .not_valid_after(now + dt.timedelta(days=days)).sign(ca_key, hashes.SHA256()))
    (tmp_path / "soon.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "soon.key").write_bytes(_pem_key(key))
    return tmp_path / "soon.crt", tmp_path / "soon.key"


def _suite_project(project, port):
    from types import SimpleNamespace

    return SimpleNamespace(name=project.name, secrets=project.secrets, env=SimpleNamespace(registry=SimpleNamespace(port=port)))


def test_the_suites_check_passes_quietly_on_the_certificate_just_deployed(project, tls_server):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _infra_check()(_suite_project(project, tls_server), "127.0.0.1")


def test_the_suites_check_warns_with_the_days_left_30_days_ahead(project, tmp_path):
    port = _serve(*_registry_cert(project, tmp_path, days=12.5))
    with pytest.warns(UserWarning) as warned:
        _infra_check()(_suite_project(project, port), "127.0.0.1")
    texts = [str(w.message) for w in warned]
    assert any("expires in 12 days" in t and "invoke secrets.rotate --env=test registry.crt" in t for t in texts)
    assert any("serves another certificate than" in t for t in texts)     # not the one in secrets/test/


def test_the_suites_check_fails_on_an_expired_certificate(project, tmp_path):
    port = _serve(*_registry_cert(project, tmp_path, days=-3))
    with pytest.raises(pytest.fail.Exception, match="expired 3 days ago"):
        _infra_check()(_suite_project(project, port), "127.0.0.1")


# ---- secrets.rotate -------------------------------------------------------------------

def _folder(project) -> dict:
    return {p.name: p.read_bytes() for p in sorted(project.secrets.dir.iterdir())}


def test_an_unknown_name_is_refused_listing_the_known_ones_and_nothing_changes(project):
    before = _folder(project)
    with pytest.raises(LapinfraError) as refused:
        rotate.rotate(project, "registry.pem")
    text = str(refused.value)
    assert "no secret 'registry.pem'" in text
    for name in ("registry.crt", "registry.password", "tsig-pc.key", "cd.admin-password"):
        assert name in text
    assert _folder(project) == before


@pytest.mark.parametrize("name", sorted(rotate.NOT_ROTATED))
def test_a_secret_a_new_file_would_break_is_refused_saying_why(project, name):
    before = _folder(project)
    with pytest.raises(LapinfraError, match=f"{name} is not renewed by secrets.rotate: .*Nothing was changed"):
        rotate.rotate(project, name)
    assert _folder(project) == before


def test_rotating_the_registry_certificate_renews_key_and_certificate_signed_by_the_ca(project):
    store = project.secrets
    old_crt, old_key = store.path("registry.crt").read_bytes(), store.path("registry.key").read_bytes()
    others = {k: v for k, v in _folder(project).items() if k not in ("registry.crt", "registry.key")}
    result = rotate.rotate(project, "registry.crt", stamp="20261204T200000Z")
    new_crt = store.path("registry.crt").read_bytes()
    assert new_crt != old_crt and store.path("registry.key").read_bytes() != old_key
    assert store.path("registry.crt.rotated-20261204T200000Z").read_bytes() == old_crt
    assert store.path("registry.key.rotated-20261204T200000Z").read_bytes() == old_key
    assert {k: v for k, v in _folder(project).items() if k in others} == others      # nothing else renewed
    cert = x509.load_pem_x509_certificate(new_crt)
    ca = x509.load_pem_x509_certificate(store.path("ca.crt").read_bytes())
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    key = serialization.load_pem_private_key(store.path("registry.key").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert 824.9 < certs.days_left(new_crt) <= 825
    for path in store.dir.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
    assert result.containers == ["infra_registry"]
    lines = rotate.summary(project, result)
    assert "`invoke deploy --env=test` recreates infra_registry" in lines[1]
    assert "registry.crt.rotated-20261204T200000Z" in lines[0]


def test_rotating_a_password_names_every_container_and_holder_that_uses_it(project):
    old = project.secrets.path("cd.admin-password").read_text()
    result = rotate.rotate(project, "cd.admin-password")
    assert project.secrets.path("cd.admin-password").read_text() != old
    assert result.containers == ["infra_cd"] and "administrators" in result.also
    pull = rotate.rotate(project, "registry-pull.password")
    assert pull.files == ["registry-pull.htpasswd", "registry-pull.password"]
    assert pull.containers == ["infra_registry"] and "app.deploy" in pull.also


def test_every_secret_is_either_rotatable_or_refused_with_a_reason(project):
    names = rotate.known(project.secrets)
    assert set(rotate.NOT_ROTATED) <= set(names)
    assert sorted(rotate.rotatable(project.secrets) + list(rotate.NOT_ROTATED)) == sorted(names)


# ---- the task ----------------------------------------------------------------------

@pytest.fixture
def prod(tree, monkeypatch):
    p = test_project(tree)
    p = type(p)("prod", root=tree, reporter=p.reporter)
    p.secrets.ensure()
    assert p.env.protected
    secrets_tasks = load_tasks("secrets")
    monkeypatch.setattr(secrets_tasks, "project", lambda c, env: p)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    return p, secrets_tasks.rotate


def test_the_task_on_a_protected_environment_asks_first_and_refuses_without_a_terminal(prod):
    p, task = prod
    before = _folder(p)
    with pytest.raises(Exit, match=r"prod is protected: renew registry.crt of prod.*--yes"):
        task.body(None, "registry.crt", env="prod")
    assert _folder(p) == before
    with pytest.raises(Exit, match="no secret 'nope'"):
        task.body(None, "nope", env="prod", yes=True)
    assert _folder(p) == before


def test_the_task_with_yes_renews_and_says_what_to_redeploy(prod):
    p, task = prod
    old = p.secrets.path("registry.crt").read_bytes()
    task.body(None, "registry.crt", env="prod", yes=True)
    assert p.secrets.path("registry.crt").read_bytes() != old
    assert any("invoke deploy --env=prod` recreates infra_registry" in line for line in p.reporter.lines)
