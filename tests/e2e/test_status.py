"""The status page status.<domain>, as a browser on the LAN sees it, and `invoke status`.

Headless Chromium (Debian's) loads http://status.<domain>/ with the name resolved by the
environment's own bind9 (asked over the network with dnspython, handed to Chromium as a
host rule: Chromium asks no other resolver); the screenshot stays in build/<env>/status.png.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import dns.message
import dns.query
import dns.rdatatype
import pytest
import requests

from lapinfra import config, services
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def resolve(env, name: str) -> str:
    """The A record of ``name`` as the environment's DNS answers it (never another resolver)."""
    answer = dns.query.udp(dns.message.make_query(name, "A"), str(env.master.ip), port=53, timeout=5)
    return next(str(r) for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)


def status_json(env) -> dict:
    r = requests.get(f"http://{env.master.ip}/status.json", headers={"Host": f"status.{env.domain}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_for(env, ready, seconds=20):
    """status.json once ``ready(doc)`` holds (the page is regenerated within seconds of its inputs)."""
    deadline, doc = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        doc = status_json(env)
        if ready(doc):
            return doc
        time.sleep(1)
    reasons = [(row.get("name"), row.get("reason")) for row in (doc or {}).get("services") or [] if not row.get("ok")]
    raise AssertionError(f"status.json never got there in {seconds}s: red {(doc or {}).get('red')} {reasons}, "
                         f"last run {(doc or {}).get('verification', {}) and doc['verification'].get('at')}: "
                         f"{json.dumps(doc)[:1500]}")


def chromium(url: str, host_ip: str, host: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                               f"--host-resolver-rules=MAP {host} {host_ip}", *args, url],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env(infra):
    return config.load(ROOT, ENV)


def test_the_page_shows_the_release_every_service_and_the_latest_snapshot(env):
    snap = invoke("snapshot.create", f"--env={ENV}", "--label", "for-the-page").stderr
    sid = re.search(r"snapshot ([0-9a-f]{8})", snap).group(1)
    # the snapshot alone regenerates the page too, from the facts the last run published:
    # wait for the page of this run, not only of this snapshot
    before = (status_json(env).get("verification") or {}).get("at")
    invoke("test", f"--env={ENV}")
    release = json.loads(node_sh("cat /data/lapinfra/release.json").stdout)["release"]
    doc = wait_for(env, lambda d: ((d.get("backups") or {}).get("latest") or {}).get("id") == sid
                   and (d.get("verification") or {}).get("at") not in (None, before))
    assert doc["environment"] == ENV and doc["release"]["release"] == release
    assert doc["red"] == [], [(row["name"], row["reason"]) for row in doc["services"] if not row["ok"]]

    host = f"status.{env.domain}"
    ip = resolve(env, host)
    assert ip == str(env.master.ip)
    dom = chromium(f"http://{host}/", ip, host, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert len(page.encode()) < 200_000
    assert re.search(rf'id="release"[^>]*>{re.escape(release)}<', page), "the running release is not on the page"
    assert re.search(rf'id="latest-snapshot"[^>]*>{sid}', page), "the latest snapshot is not on the page"
    for s in services.services(env):
        assert f'id="service-{s.name}"' in page, f"{s.name} is not on the page"
    shot = ROOT / "build" / ENV / "status.png"
    shot.unlink(missing_ok=True)
    assert chromium(f"http://{host}/", ip, host, f"--screenshot={shot}", "--window-size=1200,1600").returncode == 0
    assert shot.stat().st_size > 10_000            # a rendered page, kept as the CI artifact

    # not a byte of the environment's secrets on the page
    for f in (ROOT / "secrets" / ENV).iterdir():
        if f.suffix in (".pub", ".crt") or "known_hosts" in f.name or "authorized_keys" in f.name:
            continue
        for line in f.read_text(errors="replace").splitlines():
            if len(line.strip()) >= 12 and not line.startswith("-----"):
                assert line.strip() not in page, f"a line of secrets/{ENV}/{f.name} is on the status page"


def test_invoke_status_is_the_same_summary_in_the_terminal(env):
    run = invoke("status", f"--env={ENV}", "--json")
    mine = json.loads(run.stdout)
    assert mine["release"]["release"] == status_json(env)["release"]["release"]
    assert {s["name"] for s in mine["services"]} == {s.name for s in services.services(env)}
    table = invoke("status", f"--env={ENV}").stdout
    assert "trac" in table and "backup" in table

# A stopped service turns red on the page: tests/e2e/test_red.py (its round that stops Trac).
