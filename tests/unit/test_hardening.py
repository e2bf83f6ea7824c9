"""Hardening: what the rendered configuration lets each credential do (no Docker).

- DNS: a TSIG key per dynamic zone, each allowed to change A records of its own zone
  only; the main zone takes no update; the transfer key updates nothing.
- CD server: every control action needs the environment's account; reads stay anonymous.
- Proxy: websocket upgrades pass (Buildbot's live updates on /ws); its HTTPS and the refusal
  of passwords over port 80: tests/unit/test_proxy_https.py.
"""
import ast
import re

import dns.message
import dns.name
import pytest

from lapinfra import ddns, render, services
from lapinfra.config import DYNAMIC_ZONES
from lapinfra.errors import LapinfraError
from lapinfra.secrets import CD_ADMIN_USER, dns_key_files, zone_key_file


def _rendered(project, service: str, name: str) -> str:
    return render.render_all(project).files[project.build_dir / "rendered" / service / name]


def _zone_blocks(conf: str) -> dict[str, str]:
    """zone name -> the text of its zone { ... }; statement (comments dropped)."""
    code = "\n".join(line.split("//")[0] for line in conf.splitlines())
    return {m.group(1): m.group(2) for m in re.finditer(r'zone "([^"]+)" \{(.*?)\n\};', code, re.S)}


# ---- DNS: a key per purpose ----------------------------------------------------------------------

def test_each_dynamic_zone_has_a_key_of_its_own_with_a_secret_of_its_own(project):
    keys = {zone: project.secrets.tsig_key(zone) for zone in DYNAMIC_ZONES}
    assert {z: k.name.to_text(omit_final_dot=True) for z, k in keys.items()} == {
        "host": "lapinfra-test-host", "node": "lapinfra-test-node", "pc": "lapinfra-test-pc"}
    transfer = project.secrets.tsig_key()
    assert transfer.name == dns.name.from_text("lapinfra-test")
    secrets = [k.secret for k in [*keys.values(), transfer]]
    assert len(set(secrets)) == 4 and all(len(s) == 32 for s in secrets)
    for zone in DYNAMIC_ZONES:
        assert oct(project.secrets.path(zone_key_file(zone)).stat().st_mode & 0o777) == "0o600"


def test_an_environment_made_before_the_zone_keys_gets_them_and_keeps_its_transfer_key(project):
    old = project.secrets.path("tsig.key").read_text()
    for zone in DYNAMIC_ZONES:
        project.secrets.path(zone_key_file(zone)).unlink()
    assert sorted(project.secrets.ensure()) == ["tsig-host.key", "tsig-node.key", "tsig-pc.key"]
    assert project.secrets.path("tsig.key").read_text() == old


def test_a_missing_zone_key_says_how_to_get_it(project):
    project.secrets.path("tsig-pc.key").unlink()
    with pytest.raises(LapinfraError, match=r"no TSIG key .*tsig-pc.key.*invoke secrets.path --env=test"):
        project.secrets.tsig_key("pc")
    with pytest.raises(LapinfraError, match="the dynamic zones are host, node, pc"):
        project.secrets.tsig_key("internal")


def test_named_conf_grants_each_zone_key_a_records_in_its_zone_and_nothing_else(project):
    conf = _rendered(project, "dns", "named.conf")
    blocks = _zone_blocks(conf)
    assert set(blocks) == {"internal", "host.internal", "node.internal", "pc.internal"}
    for zone in DYNAMIC_ZONES:
        block = blocks[f"{zone}.internal"]
        grants = re.findall(r"grant ([^;]+);", block)
        assert grants == [f'"lapinfra-test-{zone}" zonesub A'], zone     # its own key, its own names, A only
        assert "allow-update" not in block
    # the main zone is not dynamic: no key may change it
    assert "update-policy" not in blocks["internal"] and "allow-update { none; }" in blocks["internal"]
    # and no key has a grant anywhere else (the workstations' key not in host./node./the main zone)
    code = "\n".join(line.split("//")[0] for line in conf.splitlines())
    assert code.count("lapinfra-test-pc") == 1          # its one grant (the include names the file)
    assert "allow-update { key" not in code
    assert 'allow-transfer { key "lapinfra-test"; }' in code


def test_named_conf_includes_every_key_file_the_dns_container_gets(project):
    conf = _rendered(project, "dns", "named.conf")
    code = "\n".join(line.split("//")[0] for line in conf.splitlines())
    included = re.findall(r'include "/run/named/([^"]+)";', code)
    assert sorted(included) == sorted(dns_key_files()) == sorted(services.DNS_KEYS)
    assert services.by_name(project.env, "dns").secrets == {k: k for k in dns_key_files()}
    for name in included:
        assert project.secrets.path(name).is_file(), name


@pytest.fixture
def sent(project, monkeypatch):
    """The messages ddns would send, instead of sending them."""
    out = []
    monkeypatch.setattr(ddns, "send", lambda message, server, **kw: out.append(message) or 0)
    return out


@pytest.mark.parametrize("name, zone", [("office.host", "host"), ("master.node", "node"), ("alice-smith-notebook.pc", "pc")])
def test_register_and_unregister_sign_with_the_key_of_the_names_zone(project, sent, name, zone):
    ddns.register(project, name, "172.28.10.77")
    ddns.unregister(project, name)
    key = project.secrets.tsig_key(zone)
    for message in sent:
        parsed = dns.message.from_wire(message.to_wire(), keyring={key.name: key})    # signed with that key
        assert parsed.keyname == dns.name.from_text(f"lapinfra-test-{zone}")
        assert parsed.sections[0][0].name == dns.name.from_text(f"{zone}.internal")


def test_nodes_register_with_the_nodes_key(project, sent, monkeypatch):
    from lapinfra.nodes import Nodes

    monkeypatch.setattr(Nodes, "dynamic_records", lambda self: {})
    monkeypatch.setattr(ddns, "transfer", lambda p, zone, timeout: {})    # none registered yet
    assert ddns.register_nodes(project)
    (message,) = sent
    assert message.keyname == dns.name.from_text("lapinfra-test-node")


# ---- CD server: a login for every control action ---------------------------------------------------

def _master_cfg(project) -> str:
    return _rendered(project, "cd", "master.cfg")


def test_master_cfg_is_python_and_reads_the_account_from_the_secrets(project):
    cfg = _master_cfg(project)
    ast.parse(cfg)
    assert f'ADMIN_USER = "{CD_ADMIN_USER}"' in cfg
    assert 'open("/run/cd/admin.password")' in cfg
    assert project.secrets.cd_admin_password.reveal() not in cfg        # the password is read at start, never rendered
    assert services.by_name(project.env, "cd").secrets["admin.password"] == "cd.admin-password"


def test_every_control_endpoint_needs_the_admins_role_and_only_the_account_has_it(project):
    cfg = _master_cfg(project)
    www = cfg[cfg.index('c["www"] = {'):]
    assert '"auth": util.UserPasswordAuth({ADMIN_USER: ADMIN_PASSWORD})' in www
    assert 'allowRules=[util.AnyControlEndpointMatcher(role="admins")]' in www
    assert 'roleMatchers=[util.RolesFromUsername(roles=["admins"], usernames=[ADMIN_USER])]' in www
    # reads stay anonymous: no rule matches GETs (the verification suite reads the REST API so)
    assert "AnyEndpointMatcher" not in www.replace("AnyControlEndpointMatcher", "")


def test_the_cd_entrypoint_refuses_to_start_without_the_account(project):
    from tests.conftest import ROOT

    entrypoint = (ROOT / "images/cd/entrypoint.sh").read_text()
    assert '"$SECRETS/admin.password" "$PRIVATE/admin.password"' in entrypoint
    assert re.search(r'\[ -s "\$PRIVATE/admin.password" \] \|\| die', entrypoint)


# ---- proxy: websockets pass ---------------------------------------------------------------------------

def test_the_proxy_passes_a_websocket_upgrade_and_keeps_keepalive_otherwise(project):
    conf = _rendered(project, "proxy", "nginx.conf")
    code = "\n".join(line.split("#")[0] for line in conf.splitlines())
    assert "proxy_set_header Upgrade $http_upgrade;" in code
    assert "proxy_set_header Connection $proxy_connection;" in code
    assert 'proxy_set_header Connection "";' not in code
    mapping = re.search(r"map \$http_upgrade \$proxy_connection \{(.*?)\}", code, re.S).group(1).split()
    assert mapping == ["default", "upgrade;", '""', '"";']
    # set once at the http level: no location overrides (an override would drop the inherited headers)
    assert code.count("proxy_set_header Connection") == 1
    cd_server = code[code.index("server_name cd.internal;"):].split("\n    }")[0]   # the server block, its locations too
    assert "proxy_pass" in cd_server


# ---- registry: accounts by purpose ----------------------------------------------------------------

def test_the_pull_account_is_a_second_account_of_its_own(project):
    secrets = project.secrets
    assert secrets.registry_pull_user == "infra-pull" != project.env.registry.user
    assert secrets.registry_pull_password.reveal() != secrets.registry_password.reveal()
    line = secrets.path("registry-pull.htpasswd").read_text()
    assert line.startswith("infra-pull:$2b$")
    assert isinstance(secrets.registry_pull_password, type(secrets.registry_password)) and str(secrets.registry_pull_password) == "***"
    assert services.by_name(project.env, "registry").secrets["pull.htpasswd"] == "registry-pull.htpasswd"


def test_the_workers_get_the_pull_account_not_the_push_account(project):
    from lapinfra import apps

    class Engine:
        def __init__(self):
            self.logins = []

        def login(self, **kw):
            self.logins.append(kw)

    class Session:
        p, docker, registry_host = project, Engine(), "docker.internal:5000"

    s = Session()
    apps._login(s)
    (login,) = s.docker.logins
    assert login == {"username": "infra-pull", "password": project.secrets.registry_pull_password.reveal(),
                     "registry": "docker.internal:5000"}


def test_the_registry_is_published_on_the_masters_address_only(project):
    env = project.env
    registry = services.by_name(env, "registry")
    assert registry.ports == {"5000/tcp": (str(env.master.ip), env.registry.port)}
    kwargs = services.run_kwargs(registry, "infra/registry", env, "", "sha256:r")
    assert kwargs["ports"] == {"5000/tcp": ("172.28.10.10", env.registry.port)}
    # like every published port: none binds all of the master's addresses
    assert all(isinstance(binding, tuple) for s in services.services(env) for binding in s.ports.values())


def test_only_the_push_account_may_write_to_the_registry(project):
    conf = _rendered(project, "registry", "nginx.conf")
    code = "\n".join(line.split("#")[0] for line in conf.splitlines())
    location = code[code.index("location /v2/ {"):]
    assert "auth_basic_user_file /run/registry/readers.htpasswd;" in location
    inner = location[location.index("limit_except GET HEAD {"):].split("}")[0]
    assert "auth_basic_user_file /run/registry/writers.htpasswd;" in inner
    registry = _rendered(project, "registry", "config.yml")
    assert "addr: 127.0.0.1:5001" in registry and "htpasswd" not in registry   # reached through nginx only


def test_the_registry_entrypoint_gives_writers_the_push_account_only():
    from tests.conftest import ROOT

    entrypoint = (ROOT / "images/registry/entrypoint.sh").read_text()
    assert re.search(r'cat "\$SECRETS/htpasswd" "\$SECRETS/pull.htpasswd" \| install .* "\$ACCOUNTS/readers.htpasswd"', entrypoint)
    assert re.search(r'install .* "\$SECRETS/htpasswd" "\$ACCOUNTS/writers.htpasswd"', entrypoint)
