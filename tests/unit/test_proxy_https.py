"""The proxy's HTTPS: no password crosses port 80, port 443 serves every name with the
environment's CA (docs/security.md, "Passwords only over HTTPS").

The rendered nginx.conf is read as text, and then run by a real nginx on the loopback
in front of a stand-in backend that records what reaches it (skipped where nginx is not
installed: `apt-get install nginx`; it is never started as a service).
"""
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import urllib3
from cryptography import x509

from lapinfra import render, rotate, services
from lapinfra.secrets import certificate_names

PASSWORD_VHOSTS = {"cd.internal", "maven.internal", "artifact.internal", "ubuntu.cache.internal"}


def _conf(project) -> str:
    text = render.render_all(project).files[project.build_dir / "rendered/proxy/nginx.conf"]
    return "\n".join(line.split("#")[0] for line in text.splitlines())


APT = f":{services.APT_PORT}"      # the apt port's server, which has no name


def _servers(code: str) -> dict[str, str]:
    """server_name (":<port>" for a server without one) -> the text of its server { } block
    (its locations included)."""
    out = {}
    for start in [m.start() for m in re.finditer(r"\n    server \{", code)]:
        end = code.index("\n    }", start)
        block = code[start:end]
        named = re.search(r"server_name ([^;]+);", block)
        out[named.group(1) if named else ":" + re.search(r"listen (\d+);", block).group(1)] = block
    return out


# ---- the rendered configuration ----------------------------------------------------------------------

def test_every_server_listens_on_80_and_on_443_with_the_certificate(project):
    code = _conf(project)
    servers = _servers(code)
    names = set(services.proxy_names(project.env)) | {"_"}
    assert set(servers) == names | {APT}
    assert "listen 443" not in servers.pop(APT)          # apt speaks plain HTTP to its proxy
    for name, block in servers.items():
        assert re.search(r"listen 80( default_server)?;", block), name
        assert re.search(r"listen 443 ssl( default_server)?;", block), name
    http = code[:code.index("\n    server {")]
    assert "ssl_certificate /run/secrets/tls.crt;" in http and "ssl_certificate_key /run/secrets/tls.key;" in http
    assert services.by_name(project.env, "proxy").secrets == {"tls.crt": "proxy.crt", "tls.key": "proxy.key"}


def test_no_server_forwards_a_password_that_came_over_port_80(project):
    code = _conf(project)
    mapping = re.search(r'map "\$scheme:\$http_authorization" \$password_over_http \{(.*?)\}', code, re.S).group(1).split()
    assert mapping == ['"~^http:."', "1;", "default", "0;"]
    for name, block in _servers(code).items():
        if name == "_":
            assert "proxy_pass" not in block        # the default server forwards nothing at all
            continue
        guard = block.index("if ($http_authorization) {" if name == APT else "if ($password_over_http) {")
        assert "return 403" in block[guard:guard + 120], name
        assert guard < block.index("location"), name     # server level: before any location is chosen


def test_services_that_take_a_password_get_only_anonymous_reads_over_port_80(project):
    code = _conf(project)
    mapping = re.search(r'map "\$scheme:\$request_method" \$write_over_http \{(.*?)\}', code, re.S).group(1).split()
    assert mapping == ['"http:GET"', "0;", '"http:HEAD"', "0;", '"~^http:"', "1;", "default", "0;"]
    servers = _servers(code)
    for name, block in servers.items():
        writes = "if ($write_over_http) {\n            return 308 https://$host$request_uri;" in block
        assert writes == (name in PASSWORD_VHOSTS), name
    login = servers["cd.internal"][servers["cd.internal"].index("location /auth/ {"):]
    assert "if ($scheme = http) {\n                return 308 https://$host$request_uri;" in login
    assert "proxy_pass http://vhost_2;" in login and "proxy_pass http://vhost_2;" in servers["cd.internal"].split("location /auth/")[0] + login


def test_the_cd_servers_public_url_is_https(project):
    cfg = render.render_all(project).files[project.build_dir / "rendered/cd/master.cfg"]
    assert 'c["buildbotURL"] = "https://cd.internal/"' in cfg


# ---- the certificate ---------------------------------------------------------------------------------

def test_the_proxy_certificate_names_everything_the_proxy_serves_and_is_signed_by_the_ca(project):
    pem = project.secrets.path("proxy.crt").read_bytes()
    names = certificate_names(pem)
    assert set(names) == set(services.proxy_names(project.env)) | {"172.28.10.10"}
    assert "hello.internal" in names and "app.internal" in names      # the load balancer, the applications
    cert = x509.load_pem_x509_certificate(pem)
    ca = x509.load_pem_x509_certificate(project.secrets.path("ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    for name in ("proxy.crt", "proxy.key"):
        assert oct(project.secrets.path(name).stat().st_mode & 0o777) == "0o600"


def test_a_proxy_certificate_without_a_name_the_proxy_now_serves_is_made_again(project, tree):
    old = project.secrets.path("proxy.crt").read_bytes()
    assert project.secrets.ensure() == []                    # it fits: kept
    shutil.copytree(tree / "apps/hello", tree / "apps/later")  # a new application: a new name
    from tests.conftest import test_project

    again = test_project(tree)
    assert "later.internal" in certificate_names(again.secrets.path("proxy.crt").read_bytes())
    assert again.secrets.path("proxy.crt").read_bytes() != old


def test_secrets_rotate_renews_the_proxy_certificate_for_the_proxy(project):
    assert "proxy.crt" in rotate.rotatable(project.secrets)
    result = rotate.rotate(project, "proxy.crt", stamp="T")
    assert result.files == ["proxy.crt", "proxy.key"] and result.containers == ["infra_proxy"]
    assert project.secrets.path("proxy.crt.rotated-T").exists()


def test_the_proxy_publishes_443_and_apts_port_on_the_masters_address_like_80(project):
    proxy = services.by_name(project.env, "proxy")
    master = "172.28.10.10"
    assert proxy.ports == {"80/tcp": (master, 80), "443/tcp": (master, 443), "3124/tcp": (master, 3124)}
    assert services.by_name(project.env, "cache").ports == {}        # apt reaches the cache through the proxy only


# ---- a real nginx with the rendered configuration --------------------------------------------------

def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


class _Backend(BaseHTTPRequestHandler):
    """Answers every method, and records (method, path, Authorization, Connection) of what reached it."""
    seen: list = []
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), self.headers.get("Connection")))
        body = b"backend\n"
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_MKCOL = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """(http url, https url, CA file, what reached the backend) of the rendered proxy on the loopback."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx)")
    from tests.conftest import copy_tree, test_project

    project = test_project(copy_tree(tmp_path_factory.mktemp("tree")))
    conf = render.render_all(project).files[project.build_dir / "rendered/proxy/nginx.conf"]
    run = tmp_path_factory.mktemp("proxy")
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port80, port443, apt = _free_port(), _free_port(), _free_port()
    upstream = f"127.0.0.1:{backend.server_address[1]}"
    (run / "upstreams").mkdir()
    for app in project.env.routed_apps:
        (run / "upstreams" / f"{app}.conf").write_text(f"server {upstream};\n")
    for dest, src in services.by_name(project.env, "proxy").secrets.items():
        shutil.copy(project.secrets.path(src), run / dest)
    conf = conf.replace("user www-data;", "").replace("pid /run/nginx.pid;", f"pid {run}/nginx.pid;")
    conf = re.sub(r"listen 80( default_server)?;", rf"listen 127.0.0.1:{port80}\1;", conf)
    conf = re.sub(r"listen 443 ssl( default_server)?;", rf"listen 127.0.0.1:{port443} ssl\1;", conf)
    conf = conf.replace(f"listen {services.APT_PORT};", f"listen 127.0.0.1:{apt};")
    conf = re.sub(r"server infra_\w+:\d+( max_fails=\d+ fail_timeout=\d+s)?;", f"server {upstream};", conf)
    conf = conf.replace("/run/secrets/", f"{run}/").replace("/run/lapinfra/upstreams/", f"{run}/upstreams/")
    temp = "".join(f"\n    {kind}_temp_path {run}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {", "http {" + temp, 1)
    (run / "nginx.conf").write_text(conf)
    check = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-p", str(run), "-c", str(run / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen(["nginx", "-e", "stderr", "-p", str(run), "-c", str(run / "nginx.conf"), "-g", "daemon off;"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ca = str(project.secrets.path("ca.crt"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port443), timeout=1).close()
                break
            except OSError:
                if nginx.poll() is not None or time.monotonic() > deadline:
                    nginx.kill()
                    pytest.fail(f"nginx did not start:\n{nginx.stdout.read()}")
                time.sleep(0.2)
        yield {"http": f"http://127.0.0.1:{port80}", "https": f"https://127.0.0.1:{port443}", "apt": f"127.0.0.1:{apt}", "ca": ca,
               "seen": _Backend.seen, "master": str(project.env.master.ip), "password": project.secrets.path("maven.password").read_text().strip()}
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        backend.shutdown()


class _NameAdapter(requests.adapters.HTTPAdapter):
    """TLS to the loopback that sends ``name`` as SNI and checks the certificate for it, as a
    workstation that resolves the name would."""

    def __init__(self, name: str):
        self.name = name
        super().__init__()

    def init_poolmanager(self, *args, **kw):
        super().init_poolmanager(*args, assert_hostname=self.name, server_hostname=self.name, **kw)


def _call(proxy, scheme, method, host, path="/x", **kw):
    _Backend.seen.clear()
    session = requests.Session()
    if scheme == "https":
        session.mount("https://", _NameAdapter(host))
        kw.setdefault("verify", proxy["ca"])
    return session.request(method, f"{proxy[scheme]}{path}", headers={"Host": host, **kw.pop("headers", {})},
                           allow_redirects=False, timeout=10, **kw)


@pytest.mark.parametrize("host", ["maven.internal", "artifact.internal", "cd.internal", "trac.internal", "status.internal",
                                  "app.internal", "hello.internal"])
def test_a_password_over_port_80_is_refused_and_never_reaches_the_backend(proxy, host):
    for method in ("GET", "PUT"):
        r = _call(proxy, "http", method, host, auth=("deploy", proxy["password"]), data=b"secret bytes")
        assert r.status_code == 403 and "https://" in r.text, (method, r.status_code, r.text)
        assert _Backend.seen == []


@pytest.mark.parametrize("host", ["maven.internal", "artifact.internal"])
def test_an_authenticated_put_passes_over_https_with_the_environments_ca(proxy, host):
    r = _call(proxy, "https", "PUT", host, "/com/example/a.jar", auth=("deploy", proxy["password"]), data=b"jar")
    assert r.status_code == 201
    (method, path, authorization, _), = _Backend.seen
    assert (method, path) == ("PUT", "/com/example/a.jar") and authorization.startswith("Basic ")


def test_without_the_environments_ca_the_certificate_is_not_trusted(proxy):
    with pytest.raises(requests.exceptions.SSLError):
        _call(proxy, "https", "GET", "maven.internal", verify=True)      # the system's CAs only


@pytest.mark.parametrize("host", ["maven.internal", "artifact.internal", "cd.internal"])
def test_writes_over_port_80_go_to_https_and_reads_stay(proxy, host):
    for method in ("PUT", "DELETE", "POST", "MKCOL"):
        r = _call(proxy, "http", method, host, "/some/path?q=1", data=b"x")
        assert r.status_code == 308 and r.headers["Location"] == f"https://{host}/some/path?q=1", method
        assert _Backend.seen == []
    for method in ("GET", "HEAD"):
        assert _call(proxy, "http", method, host).status_code == 200
        assert [s[0] for s in _Backend.seen] == [method]


def test_anonymous_writes_of_services_without_a_password_stay_on_port_80(proxy):
    for host in ("trac.internal", "app.internal", "hello.internal"):
        assert _call(proxy, "http", "POST", host, data=b"a form").status_code == 200, host
        assert len(_Backend.seen) == 1


def test_the_cd_servers_login_is_https_only(proxy):
    r = _call(proxy, "http", "GET", "cd.internal", "/auth/login")
    assert r.status_code == 308 and r.headers["Location"] == "https://cd.internal/auth/login"
    assert _Backend.seen == []
    r = _call(proxy, "https", "GET", "cd.internal", "/auth/login", auth=("admin", "a password"))
    assert r.status_code == 200 and _Backend.seen[0][:3] == ("GET", "/auth/login", r.request.headers["Authorization"])


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_websocket_upgrades_pass_on_both_ports(proxy, scheme):
    _call(proxy, scheme, "GET", "cd.internal", "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert _Backend.seen and _Backend.seen[0][3] == "upgrade"


@pytest.mark.filterwarnings(f"ignore::{urllib3.exceptions.InsecureRequestWarning.__module__}.InsecureRequestWarning")
def test_unknown_names_get_the_proxys_404_on_both_ports(proxy):
    for scheme in ("http", "https"):
        # (over https a workstation would refuse the certificate first: it does not name them)
        r = _call(proxy, scheme, "GET", "nothing.internal", **({"verify": False} if scheme == "https" else {}))
        assert r.status_code == 404 and r.headers["X-Proxy"] == "no-vhost"


# ---- the apt cache's port: apt's proxy requests pass, no password and no report page ------------------

def _apt(proxy, request_line: str, *headers: str) -> tuple[str, str]:
    """(status line, body) of one raw request to the apt port, as apt sends it to its HTTP proxy."""
    _Backend.seen.clear()
    host, port = proxy["apt"].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall("\r\n".join([request_line, *headers, "Connection: close", "", ""]).encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    return head.split("\r\n")[0], body


def test_apts_proxy_requests_reach_the_cache_in_its_own_url_form(proxy):
    status, _ = _apt(proxy, "GET http://mirror.example/debian/dists/bookworm/InRelease HTTP/1.1", "Host: mirror.example")
    assert " 200 " in status
    assert _Backend.seen[0][:2] == ("GET", "/mirror.example/debian/dists/bookworm/InRelease")
    status, _ = _apt(proxy, "GET /debian/pool/main/a/a.deb HTTP/1.1", f"Host: ubuntu.cache.internal:{services.APT_PORT}")
    assert " 200 " in status and _Backend.seen[0][:2] == ("GET", "/debian/pool/main/a/a.deb")


@pytest.mark.parametrize("request_line", ["GET /acng-report.html?doCount=Count+Data HTTP/1.1",
                                          "GET http://ubuntu.cache.internal:3124/acng-report.html HTTP/1.1",
                                          "GET http://mirror.example/debian/InRelease HTTP/1.1"])
def test_no_password_and_no_report_page_over_the_apt_port(proxy, request_line):
    authorization = "Authorization: Basic YWRtaW46c2VjcmV0"                 # admin:secret
    for headers in ([authorization], [] if "acng-report" in request_line else None):
        if headers is None:
            continue
        status, body = _apt(proxy, request_line, "Host: ubuntu.cache.internal", *headers)
        assert " 403 " in status and "https://ubuntu.cache.internal/acng-report.html" in body, (request_line, headers)
        assert _Backend.seen == []


def test_the_cache_report_page_takes_its_password_over_https_only(proxy):
    r = _call(proxy, "http", "GET", "ubuntu.cache.internal", "/acng-report.html?doCount=1")
    assert r.status_code == 308 and r.headers["Location"] == "https://ubuntu.cache.internal/acng-report.html?doCount=1"
    r = _call(proxy, "https", "GET", "ubuntu.cache.internal", "/acng-report.html", auth=("admin", "a password"))
    assert r.status_code == 200 and _Backend.seen[0][:3] == ("GET", "/acng-report.html", r.request.headers["Authorization"])
