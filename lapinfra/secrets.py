"""Per-environment secrets: generated on first use, kept out of git and out of logs.

Everything lives in ``secrets/<env>/`` at the project root (git-ignored), every
file mode 0600 in a 0700 folder. Values read back are `Secret`s, which print as
``***``: a secret can only reach a log by calling ``reveal()`` on purpose.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import os
import re
import secrets as pysecrets
from pathlib import Path
from typing import TYPE_CHECKING

from . import services
from .config import DYNAMIC_ZONES, Environment
from .errors import LapinfraError

# bcrypt, cryptography and dnspython's tsig are imported where they are used: they cost a
# tenth of a second, and every Project imports this module (a build needs none of them).
if TYPE_CHECKING:
    import dns.tsig
    from cryptography import x509

# named.conf includes the TSIG key files as they are, so the key's name and algorithm
# in a file are what every message signed with it must use (lapinfra/ddns.py reads
# them back). tsig.key signs zone transfers only (`invoke dns.list`); each dynamic
# zone has a key of its own, tsig-<zone>.key, that may change A records in that zone
# and nothing else (update-policy in images/dns/templates/named.conf.j2): the nodes'
# key (node.), the hosts' key (host.), the workstations' key (pc.), the one to hand out.
TSIG_ALGORITHM = "hmac-sha256"
TRANSFER_KEY_FILE = "tsig.key"
# The CD server's (Buildbot) account allowed to force, stop and rebuild builds.
CD_ADMIN_USER = "admin"
# bcrypt's cost of the htpasswd lines. A cost slows the guessing of a weak password whose hash
# leaked; these passwords are 192 random bits (token_urlsafe(24)), which no guessing reaches at
# any cost. The cost is paid instead by the server on every request that carries the password:
# nginx and the registry check it anew each time (no cache), 57 ms of CPU at cost 10 and 0.8 ms
# at 4 on this project's machines, so a push of one image through the registry spent seconds on
# it. 4 is bcrypt's lowest.
HTPASSWD_COST = 4
# The passwords that have an htpasswd line beside them (``<service>.htpasswd``).
HTPASSWD_SERVICES = ("registry", "registry-pull", "maven", "artifact")


def zone_key_file(zone: str | None) -> str:
    """The key file of a dynamic zone (host, node, pc); None: the transfer key."""
    if zone is None:
        return TRANSFER_KEY_FILE
    if zone not in DYNAMIC_ZONES:
        raise LapinfraError(f"no TSIG key for zone {zone!r}: the dynamic zones are {', '.join(DYNAMIC_ZONES)}")
    return f"tsig-{zone}.key"


def dns_key_files() -> list[str]:
    """Every TSIG key file the DNS server includes (named.conf.j2 includes the same)."""
    return [TRANSFER_KEY_FILE, *(zone_key_file(zone) for zone in DYNAMIC_ZONES)]


# the backup node's keys for its sftp-only user (Vagrantfile.j2 mounts it next to authorized_keys.backup)
SFTP_AUTHORIZED_KEYS = "sftp_authorized_keys.backup"


class Secret:
    """A secret value that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    __format__ = lambda self, spec: "***"  # noqa: E731


@functools.cache
def _tsig_key_class() -> type:
    import dns.tsig

    class TsigKey(dns.tsig.Key):
        """dnspython's TSIG key, whose repr would show the secret: this one does not."""

        def __repr__(self) -> str:
            return f"TsigKey({self.name.to_text(omit_final_dot=True)!r}, {self.algorithm.to_text(omit_final_dot=True)}, ***)"

    return TsigKey


def __getattr__(name: str):
    if name == "TsigKey":   # made on first use (dnspython's tsig module)
        return _tsig_key_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SecretStore:
    """The secrets folder of one environment."""

    def __init__(self, root: Path, env: Environment):
        self.env = env
        self.dir = Path(root) / "secrets" / env.name

    # ---- paths ------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def tsig_key_name(self) -> str:
        """The transfer key's name; a dynamic zone's key is named ``<this>-<zone>``."""
        return f"lapinfra-{self.env.name}"

    def zone_key_name(self, zone: str | None) -> str:
        return self.tsig_key_name if zone is None else f"{self.tsig_key_name}-{zone}"

    def read(self, name: str) -> Secret:
        return Secret(self.path(name).read_text().strip())

    def tsig_key(self, zone: str | None = None) -> dns.tsig.Key:
        """The TSIG key (for dnspython) as named.conf knows it: the one allowed to update
        the dynamic zone ``zone`` (host, node, pc); without a zone, the transfer key."""
        path = self.path(zone_key_file(zone))
        if not path.is_file():
            raise LapinfraError(f"no TSIG key {path}: the environment's secrets folder is the one its deploy used "
                                f"(`invoke secrets.path --env={self.env.name}` generates missing keys; deploy then hands them to the DNS)")
        text = self.read(path.name).reveal()
        found = re.search(r'key\s+"([^"]+)"\s*\{[^}]*algorithm\s+([\w-]+);[^}]*secret\s+"([^"]+)";', text)
        if found is None:
            raise LapinfraError(f"{path} is not a BIND key file (key \"NAME\" {{ algorithm ...; secret \"...\"; }};)")
        name, algorithm, secret = found.groups()
        return _tsig_key_class()(name, secret, algorithm)

    @property
    def cd_admin_password(self) -> Secret:
        return self.read("cd.admin-password")

    @property
    def registry_password(self) -> Secret:
        """The push account's (env.registry.user): pushes, mounts, deletes, and pulls."""
        return self.read("registry.password")

    @property
    def registry_pull_user(self) -> str:
        return f"{self.env.registry.user}-pull"

    @property
    def registry_pull_password(self) -> Secret:
        """The pull account's: GET and HEAD only (the registry's nginx refuses the rest)."""
        return self.read("registry-pull.password")

    # ---- generation ---------------------------------------------------------
    def ensure(self) -> list[str]:
        """Generate every missing secret, and proxy.crt again when it lacks a name the proxy
        serves; return the names of those created."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        created, written = [], []
        try:
            for name, make in self._generators():
                if not self.path(name).exists() or self._outdated(name):
                    for file, content in make().items():
                        self._write(file, content)
                        written.append(file)
                    created.append(name)
        except BaseException:   # no half-generated set: what this call wrote goes again
            for file in written:
                self.path(file).unlink(missing_ok=True)
            raise
        self._rehash()
        return created

    def _rehash(self) -> None:
        """Hash again, with the same password, an htpasswd line of another cost than
        HTPASSWD_COST (one made before the cost changed): clients keep their password, the next
        deploy hands the servers the new line."""
        for service in HTPASSWD_SERVICES:
            line = self.path(f"{service}.htpasswd")
            if not line.exists():
                continue
            user, _, hashed = line.read_text().strip().partition(":")
            if htpasswd_cost(hashed) != HTPASSWD_COST:
                self._write(line.name, htpasswd_line(user, self.read(f"{service}.password").reveal()))

    def _generators(self):
        return [
            ("admin_ed25519", self._admin_key),
            ("tsig.key", self._tsig),
            *((zone_key_file(zone), lambda zone=zone: self._tsig(zone)) for zone in DYNAMIC_ZONES),
            ("registry.password", self._registry_password),
            ("registry-pull.password", lambda: self._password("registry-pull", self.registry_pull_user)),
            ("cd_ed25519", lambda: self._ssh_key("cd_ed25519", "cd")),
            ("backup_ed25519", lambda: self._ssh_key("backup_ed25519", "backup")),
            ("restic.password", lambda: {"restic.password": pysecrets.token_urlsafe(32) + "\n"}),
            ("cd.worker-password", lambda: {"cd.worker-password": pysecrets.token_urlsafe(24) + "\n"}),
            ("cd.admin-password", lambda: {"cd.admin-password": pysecrets.token_urlsafe(24) + "\n"}),
            ("cache.password", lambda: {"cache.password": pysecrets.token_urlsafe(24) + "\n"}),
            ("maven.password", lambda: self._password("maven", "deploy")),
            ("artifact.password", lambda: self._password("artifact", "deploy")),
            ("ca.crt", self._ca),
            ("registry.crt", self._registry_cert),
            ("proxy.crt", self._proxy_cert),
        ]

    def authorized_keys(self, role: str) -> Path:
        """The keys root accepts on a node of this role: the admin key alone. On the backup
        node the master's backup key is for the sftp-only user ``backup`` instead
        (``sftp_authorized_keys``, next to this file): a master's key is never root's."""
        path = self._write_if_changed(f"authorized_keys.{role}", self.path("admin_ed25519.pub").read_text().strip() + "\n")
        if role == "backup":
            self.sftp_authorized_keys()
        return path

    def sftp_authorized_keys(self) -> Path:
        """The backup node's keys for ``backup`` (chrooted, ForceCommand internal-sftp:
        nodes/image/sshd_config): the master's backup key, with no forwarding and no pty."""
        return self._write_if_changed(SFTP_AUTHORIZED_KEYS, "restrict " + self.path("backup_ed25519.pub").read_text().strip() + "\n")

    def _write_if_changed(self, name: str, content: str) -> Path:
        path = self.path(name)
        if not path.exists() or path.read_text() != content:
            self._write(name, content)
        return path

    def _write(self, name: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(self.path(name), 0o600)

    def _admin_key(self) -> dict[str, bytes]:
        return self._ssh_key("admin_ed25519", "admin")

    def _ssh_key(self, name: str, who: str) -> dict[str, bytes]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return {name: private, f"{name}.pub": public + f" lapinfra-{self.env.name}-{who}\n".encode()}

    def _password(self, service: str, user: str) -> dict[str, str]:
        """A password and its bcrypt htpasswd line (nginx and the registry accept $2b$)."""
        password = pysecrets.token_urlsafe(24)
        return {f"{service}.password": password + "\n", f"{service}.htpasswd": htpasswd_line(user, password)}

    def _tsig(self, zone: str | None = None) -> dict[str, str]:
        secret = base64.b64encode(pysecrets.token_bytes(32)).decode()
        body = f'key "{self.zone_key_name(zone)}" {{\n\talgorithm {TSIG_ALGORITHM};\n\tsecret "{secret}";\n}};\n'
        return {zone_key_file(zone): body}

    def _registry_password(self) -> dict[str, str]:
        return self._password("registry", self.env.registry.user)

    def _ca(self) -> dict[str, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lapinfra {self.env.name} CA")])
        cert = (
            _builder(name, name, key.public_key(), days=3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return {"ca.key": _pem_key(key), "ca.crt": cert.public_bytes(serialization.Encoding.PEM)}

    def _registry_cert(self) -> dict[str, bytes]:
        domain = self.env.domain
        return self._server_cert("registry", [f"docker.{domain}", f"registry.{domain}", "localhost"],
                                 ["127.0.0.1", str(self.env.master.ip)])

    def proxy_names(self) -> list[str]:
        """The names proxy.crt must carry: every name the proxy serves, and the master's address
        (workstations that do not resolve the names send the Host header to the address)."""
        return [*services.proxy_names(self.env), str(self.env.master.ip)]

    def _proxy_cert(self) -> dict[str, bytes]:
        return self._server_cert("proxy", services.proxy_names(self.env), [str(self.env.master.ip)])

    def _server_cert(self, prefix: str, names: list[str], ips: list[str]) -> dict[str, bytes]:
        """``<prefix>.key`` and ``<prefix>.crt``: a TLS server certificate for ``names`` (the first is
        its subject) and the addresses ``ips``, signed by the environment's CA, 825 days."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ca_key = serialization.load_pem_private_key(self.path("ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.path("ca.crt").read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cert = (
            _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), ca_cert.subject, key.public_key(), days=825)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return {f"{prefix}.key": _pem_key(key), f"{prefix}.crt": cert.public_bytes(serialization.Encoding.PEM)}

    def _outdated(self, name: str) -> bool:
        """A secret that exists but no longer fits the configuration: proxy.crt without a name the
        proxy now serves (a new application, another domain) is made again."""
        if name != "proxy.crt" or not self.path(name).exists():
            return False
        return not set(self.proxy_names()) <= set(certificate_names(self.path(name).read_bytes()))


def htpasswd_line(user: str, password: str) -> str:
    """``user:<bcrypt hash of password at HTPASSWD_COST>`` and a newline."""
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=HTPASSWD_COST)).decode()}\n"


def htpasswd_cost(hashed: str) -> int | None:
    """The cost of a bcrypt hash ``$2b$10$...`` (None if it is not one)."""
    found = re.match(r"\$2[aby]\$(\d\d)\$", hashed)
    return int(found.group(1)) if found else None


def _builder(subject, issuer, public_key, days: int) -> x509.CertificateBuilder:
    from cryptography import x509

    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def certificate_names(pem: bytes) -> list[str]:
    """The DNS names and addresses (as text) in a PEM certificate's subjectAltName."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*alt.get_values_for_type(x509.DNSName), *(str(a) for a in alt.get_values_for_type(x509.IPAddress))]
