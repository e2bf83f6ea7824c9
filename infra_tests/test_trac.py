"""Trac: the issue tracker behind the port-80 proxy as trac.<domain>; anonymous users file tickets.

Everything goes through the proxy on the master's port 80 with the Host header a
browser would send (the workstation does not resolve *.internal names), and
tickets are created through Trac's own web form, form token and all.
"""
import csv
import io
import re
import uuid

import pytest
import requests

from lapinfra import services

ENV_DIR = "/data/trac/env"  # the Trac environment on the node (/data/env inside infra_trac)


@pytest.fixture(scope="session")
def trac_url(master_ip) -> str:
    return f"http://{master_ip}:80"


@pytest.fixture
def trac(env):
    """A browser-like HTTP session (keeps Trac's form-token cookie) naming trac.<domain>."""
    with requests.Session() as session:
        session.headers["Host"] = f"trac.{env.domain}"
        yield session


def _form_token(trac, trac_url) -> str:
    r = trac.get(f"{trac_url}/newticket", timeout=10)
    assert r.status_code == 200, r.text[:500]
    match = re.search(r'name="__FORM_TOKEN" value="([^"]+)"', r.text)
    assert match, "no __FORM_TOKEN in the new-ticket form (anonymous lacks TICKET_CREATE?)"
    assert trac.cookies.get("trac_form_token") == match.group(1)
    return match.group(1)


def _query(trac, trac_url, summary: str) -> list[dict]:
    """Tickets whose summary contains `summary`, from the query module's CSV export."""
    r = trac.get(f"{trac_url}/query", timeout=10, params=[
        ("summary", f"~{summary}"), ("status", "!closed"), ("format", "csv"),
        ("col", "id"), ("col", "summary"), ("col", "type"), ("col", "status")])
    assert r.status_code == 200, r.text[:500]
    rows = csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))
    return [{key.lower(): value for key, value in row.items()} for row in rows]  # headers are labels: "Summary"


def test_front_page_is_the_environments_trac(trac, trac_url, env):
    r = trac.get(f"{trac_url}/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert re.search(r"Powered by\s*<a[^>]*>\s*<strong>Trac\b", r.text), "no Trac footer"
    assert f"lap-infra {env.name}" in r.text, "project name from the rendered trac.ini missing"


def test_form_post_without_token_is_refused(trac, trac_url):
    summary = f"{services.SUITE_PLACE} no-token {uuid.uuid4().hex}"
    r = trac.post(f"{trac_url}/newticket", timeout=10, allow_redirects=False,
                  data={"field_summary": summary, "field_type": "task", "submit": "Create ticket"})
    assert r.status_code == 400
    assert _query(trac, trac_url, summary) == []


def test_ticket_created_through_the_form_is_listed(trac, trac_url, env, node):
    summary = f"{services.SUITE_PLACE} {uuid.uuid4().hex}"
    token = _form_token(trac, trac_url)
    r = trac.post(f"{trac_url}/newticket", timeout=10, allow_redirects=False, data={
        "__FORM_TOKEN": token,
        "field_summary": summary,
        "field_description": "Filed by the lap-infra verification suite; removed again right away.",
        "field_type": "task",
        "field_reporter": "infra-tests",
        "submit": "Create ticket",
    })
    # Trac redirects to the new ticket under its public name ([trac] base_url).
    assert r.status_code == 303, r.text[:500]
    location = r.headers["Location"]
    match = re.fullmatch(rf"http://trac\.{re.escape(env.domain)}/ticket/(\d+)(#.*)?", location)
    assert match, location
    number = match.group(1)
    try:
        page = trac.get(f"{trac_url}/ticket/{number}", timeout=10)
        assert page.status_code == 200
        assert summary in page.text
        assert _query(trac, trac_url, summary) == [
            {"id": number, "summary": summary, "type": "task", "status": "new"}]
    finally:
        # Anonymous users cannot delete tickets: the administrator's way, on the node.
        removed = node.run(f"docker exec infra_trac trac-admin /data/env ticket remove {number}")
    assert removed.rc == 0, removed.stderr
    assert _query(trac, trac_url, summary) == []


def test_environment_lives_in_data_trac(node):
    version = node.file(f"{ENV_DIR}/VERSION")
    assert version.exists
    assert version.content_string.startswith("Trac Environment Version")
    assert node.file(f"{ENV_DIR}/db/trac.db").is_file
    assert "file = /env/trac/trac.ini" in node.file(f"{ENV_DIR}/conf/trac.ini").content_string
