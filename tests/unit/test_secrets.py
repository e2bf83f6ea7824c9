"""Secrets: generated once per environment, 0600, usable by the real tools, never printed."""
import stat
import subprocess

import dns.tsigkeyring
from cryptography import x509

from lapinfra import config
from lapinfra.secrets import Secret, SecretStore


def test_generated_once_with_private_modes(tree):
    store = SecretStore(tree, config.load(tree, "test"))
    created = store.ensure()
    assert {"admin_ed25519", "tsig.key", "registry.password", "ca.crt", "registry.crt"} <= set(created)
    assert store.ensure() == []
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    for path in store.dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_environments_get_different_secrets(tree):
    a, b = SecretStore(tree, config.load(tree, "test")), SecretStore(tree, config.load(tree, "staging"))
    a.ensure(), b.ensure()
    assert a.registry_password.reveal() != b.registry_password.reveal()
    assert a.path("tsig.key").read_text() != b.path("tsig.key").read_text()


def test_admin_key_is_an_openssh_key(tree):
    store = SecretStore(tree, config.load(tree, "test"))
    store.ensure()
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(store.path("admin_ed25519"))], capture_output=True, text=True, check=True)
    assert public.stdout.split()[:2] == store.path("admin_ed25519.pub").read_text().split()[:2]


def test_tsig_key_is_bind_format_hmac_sha256(tree):
    store = SecretStore(tree, config.load(tree, "test"))
    store.ensure()
    text = store.path("tsig.key").read_text()
    assert text.startswith('key "lapinfra-test" {') and "algorithm hmac-sha256;" in text
    secret = text.split('secret "')[1].split('"')[0]
    keyring = dns.tsigkeyring.from_text({"lapinfra-test": ("hmac-sha256", secret)})
    assert len(next(iter(keyring.values())).secret) == 32


def test_registry_certificate_is_signed_by_the_environment_ca(tree):
    env = config.load(tree, "test")
    store = SecretStore(tree, env)
    store.ensure()
    ca = x509.load_pem_x509_certificate(store.path("ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate(store.path("registry.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "docker.internal" in sans.get_values_for_type(x509.DNSName)
    assert env.master.ip in sans.get_values_for_type(x509.IPAddress)


def test_secret_never_prints_itself():
    s = Secret("hunter2")
    assert "hunter2" not in f"{s} {s!r} {str(s)} {[s]}"
    assert s.reveal() == "hunter2"


def test_htpasswd_lines_check_their_password_at_the_cheap_cost(tree):
    import bcrypt

    store = SecretStore(tree, config.load(tree, "test"))
    store.ensure()
    for service in ("registry", "registry-pull", "maven", "artifact"):
        user, _, hashed = store.path(f"{service}.htpasswd").read_text().strip().partition(":")
        assert hashed.startswith("$2b$04$"), service
        assert bcrypt.checkpw(store.read(f"{service}.password").reveal().encode(), hashed.encode()), service


def test_an_htpasswd_line_of_another_cost_is_hashed_again_with_the_same_password(tree):
    import bcrypt

    store = SecretStore(tree, config.load(tree, "test"))
    store.ensure()
    password = store.read("maven.password").reveal()
    old = "deploy:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode() + "\n"
    store.path("maven.htpasswd").write_text(old)
    untouched = store.path("artifact.htpasswd").read_text()

    assert store.ensure() == []                      # nothing new: the same password
    user, _, hashed = store.path("maven.htpasswd").read_text().strip().partition(":")
    assert user == "deploy" and hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert store.read("maven.password").reveal() == password
    assert store.path("artifact.htpasswd").read_text() == untouched   # already at the cost: left as it is
    assert stat.S_IMODE(store.path("maven.htpasswd").stat().st_mode) == 0o600
