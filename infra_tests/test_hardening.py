"""Hardening: each credential does what it is for and no more, tried with real clients.

- CD server (Buildbot behind the proxy, as cd.<domain>, over HTTPS with the
  environment's CA): a control action without the environment's account is refused,
  with it accepted; the account's password over plain HTTP is refused; reads stay
  anonymous; the live updates (/ws) connect through the proxy on both ports.
- Registry: the pull account (what the workers get) reads; its push is refused.
- DNS: the workstations' TSIG key (tsig-pc.key) changes names in pc.<domain> only;
  no key changes the main zone.

The workstation does not resolve *.internal names: requests go to the master's
address with the Host header the proxy routes on.
"""
import base64
import hashlib
import json
import os
import socket
import ssl

import dns.message
import dns.query
import dns.rcode
import dns.update
import pytest
import requests

from lapinfra.secrets import CD_ADMIN_USER

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"    # RFC 6455


# ---- CD server --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cd_base(master_ip):
    return f"https://{master_ip}:443"


@pytest.fixture(scope="module")
def cd_session(env, project):
    """New sessions with the CD server's Host header that check the proxy's certificate with the
    environment's CA."""
    def make() -> requests.Session:
        session = requests.Session()
        session.headers["Host"] = f"cd.{env.domain}"
        session.verify = str(project.secrets.path("ca.crt"))
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE of the workstation override a session's
        # verify (and would route through its proxies): this session trusts the CA above only
        session.trust_env = False
        return session
    return make


@pytest.fixture(scope="module")
def builder_id(cd_base, env, cd_session):
    builders = cd_session().get(f"{cd_base}/api/v2/builders", timeout=10).json()["builders"]
    return next(b["builderid"] for b in builders if b["name"] == "infra")


def _rpc(session, url, method, **params):
    return session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10)


def _force(session, cd_base, builder_id):
    return _rpc(session, f"{cd_base}/api/v2/forceschedulers/force", "force",
                builderid=str(builder_id), reason="verification suite: is a login required?")


def test_forcing_a_build_without_a_login_is_refused(cd_base, env, builder_id, cd_session):
    r = _force(cd_session(), cd_base, builder_id)
    assert r.status_code in (401, 403), f"anonymous force: HTTP {r.status_code} {r.text[:200]}"


def test_pausing_the_worker_without_a_login_is_refused(cd_base, env, cd_session):
    session = cd_session()
    worker = session.get(f"{cd_base}/api/v2/workers", timeout=10).json()["workers"][0]
    r = _rpc(session, f"{cd_base}/api/v2/workers/{worker['workerid']}", "pause", reason="verification suite")
    assert r.status_code in (401, 403), f"anonymous pause: HTTP {r.status_code} {r.text[:200]}"
    again = session.get(f"{cd_base}/api/v2/workers/{worker['workerid']}", timeout=10).json()["workers"][0]
    assert not again["paused"]


def test_a_wrong_password_does_not_log_in(cd_base, env, cd_session):
    r = cd_session().get(f"{cd_base}/auth/login", auth=(CD_ADMIN_USER, "wrong"), allow_redirects=False, timeout=10)
    assert r.status_code == 401


def test_the_right_password_over_plain_http_does_not_log_in(master_ip, env, project, cd_session):
    session = cd_session()
    r = session.get(f"http://{master_ip}:80/auth/login", auth=(CD_ADMIN_USER, project.secrets.cd_admin_password.reveal()),
                    allow_redirects=False, timeout=10)
    assert r.status_code == 403, f"login over http: HTTP {r.status_code}"
    assert not session.cookies, "a session cookie came back over plain HTTP"


@pytest.mark.disruptive   # it starts a build (cancelled at once): not on a protected environment
def test_forcing_a_build_with_the_account_is_accepted(cd_base, env, project, builder_id, cd_session):
    session = cd_session()
    # /auth/login answers with a redirect to the UI (https://cd.<domain>/, not resolved here): not followed
    login = session.get(f"{cd_base}/auth/login", auth=(CD_ADMIN_USER, project.secrets.cd_admin_password.reveal()),
                        allow_redirects=False, timeout=10)
    assert login.status_code in (200, 302), f"login: HTTP {login.status_code}"
    r = _force(session, cd_base, builder_id)
    assert r.status_code == 200, f"force with the account: HTTP {r.status_code} {r.text[:200]}"
    _bsid, requests_by_builder = r.json()["result"]
    for brid in requests_by_builder.values():      # the build is not wanted: cancel it, stop it if it started
        _rpc(session, f"{cd_base}/api/v2/buildrequests/{brid}", "cancel", reason="verification suite")
        for build in session.get(f"{cd_base}/api/v2/buildrequests/{brid}/builds", timeout=10).json().get("builds", []):
            if not build["complete"]:
                _rpc(session, f"{cd_base}/api/v2/builds/{build['buildid']}", "stop", reason="verification suite")


def _ws_frame(text: str) -> bytes:
    """One masked text frame (a client must mask), payload under 126 bytes."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the websocket closed"
        data += chunk
    return data


def _ws_read_text(sock) -> str:
    head = _read_exact(sock, 2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(_read_exact(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(_read_exact(sock, 8), "big")
    assert head[0] & 0x0F == 0x1, f"not a text frame: opcode {head[0] & 0x0F}"
    return _read_exact(sock, length).decode()


@pytest.mark.parametrize("port", [80, 443])
def test_live_updates_connect_through_the_proxy(master_ip, env, project, port):
    """The UI's websocket: the upgrade passes the proxy on both ports, and a ping gets Buildbot's answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\r\nHost: cd.{env.domain}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection((master_ip, port), timeout=10) as raw:
        sock = raw
        if port == 443:
            sock = ssl.create_default_context(cafile=str(project.secrets.path("ca.crt"))).wrap_socket(raw, server_hostname=f"cd.{env.domain}")
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            assert chunk, f"the proxy closed the connection: {response!r}"
            response += chunk
        status, *lines = response.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
        assert status.startswith("HTTP/1.1 101"), f"no upgrade through the proxy: {status}"
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
        sock.sendall(_ws_frame(json.dumps({"cmd": "ping", "_id": 1})))
        answer = json.loads(_ws_read_text(sock))        # Buildbot: {"msg": "pong", "code": 200, "_id": 1}
        assert (answer.get("_id"), answer.get("code")) == (1, 200), answer


# ---- DNS: the workstations' key ---------------------------------------------------------------------

def _update(master_ip, zone, key, owner, address="127.0.0.9"):
    message = dns.update.UpdateMessage(zone, keyring=key)
    message.replace(owner, 60, "A", address)
    return dns.query.tcp(message, master_ip, timeout=5).rcode()


def _answers(master_ip, fqdn):
    return dns.query.udp(dns.message.make_query(fqdn, "A"), master_ip, timeout=3).answer


@pytest.mark.parametrize("where", ["evil.{domain}", "evil.node.{domain}", "evil.host.{domain}"])
def test_the_workstations_key_cannot_add_a_name_outside_pc(master_ip, env, project, where):
    fqdn = where.format(domain=env.domain)
    zone = fqdn.split(".", 1)[1]
    assert _update(master_ip, zone, project.secrets.tsig_key("pc"), f"{fqdn}.") == dns.rcode.REFUSED
    assert not _answers(master_ip, fqdn)


def test_no_key_changes_the_main_zone(master_ip, env, project):
    for zone in (None, "host", "node", "pc"):
        rcode = _update(master_ip, env.domain, project.secrets.tsig_key(zone), f"verify-suite-probe.{env.domain}.")
        assert rcode == dns.rcode.REFUSED, f"{project.secrets.zone_key_name(zone)}: {dns.rcode.to_text(rcode)}"
    assert not _answers(master_ip, f"verify-suite-probe.{env.domain}")


# ---- registry: the pull account -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pull_auth(project):
    return project.secrets.registry_pull_user, project.secrets.registry_pull_password.reveal()


def test_the_pull_account_reads_the_registry(registry, release, pull_auth):
    image = next(iter(release["images"].values()))
    r = requests.get(f"{registry['url']}/v2/{image['repository']}/manifests/latest", auth=pull_auth, verify=registry["ca"],
                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, timeout=10)
    assert r.status_code == 200


def test_the_pull_accounts_push_is_refused(registry, pull_auth):
    r = requests.post(f"{registry['url']}/v2/verify-suite/evil/blobs/uploads/", auth=pull_auth, verify=registry["ca"], timeout=10)
    assert r.status_code == 401, f"a push with the pull account: HTTP {r.status_code}"
    tags = requests.get(f"{registry['url']}/v2/verify-suite/evil/tags/list", auth=registry["auth"], verify=registry["ca"], timeout=10)
    assert tags.status_code == 404


def test_the_pull_account_cannot_delete(registry, release, pull_auth):
    image = next(iter(release["images"].values()))
    r = requests.delete(f"{registry['url']}/v2/{image['repository']}/manifests/{image['id']}", auth=pull_auth,
                        verify=registry["ca"], timeout=10)
    assert r.status_code == 401
