"""The verification suite writes only to places reserved for it, and leaves nothing there.

The suite runs as every deploy's gate, production's included: the git branch it pushes,
the Trac ticket it files and the Maven and artifact files it uploads are named under
``services.SUITE_PLACE`` and removed by the check that made them. After a full run,
every ref of every repository, every ticket and every file of the two repositories is
as it was before.
"""
import pytest

from lapinfra import services
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e

# What a user of each service keeps, read on the master: git refs (in infra_git), Trac's
# tickets (its SQLite database, in infra_trac), the files of the Maven and artifact repositories.
REFS = ("docker exec infra_git sh -c 'cd /data/git/repositories && for r in *.git; do"
        " git --git-dir=\"$r\" for-each-ref --format=\"$r %(refname) %(objectname)\"; done'")
TICKETS = ("docker exec infra_trac /opt/trac/bin/python3 -c 'import sqlite3; [print(*row) for row in sqlite3.connect("
           "\"/data/env/db/trac.db\").execute(\"select id, summary from ticket order by id\")]'")
FILES = "cd /data && find maven artifact -mindepth 1 | sort"


def kept() -> dict[str, str]:
    return {name: node_sh(command).stdout for name, command in
            (("git refs", REFS), ("tickets", TICKETS), ("files", FILES))}


def test_a_full_run_leaves_every_ref_ticket_and_file_as_it_was(infra):
    before = kept()
    assert "gitolite-admin.git refs/heads/master" in before["git refs"], before["git refs"][:500]
    run = invoke("test", f"--env={ENV}")
    assert "test_pushed_commit_is_visible_in_a_fresh_clone" in run.stdout + run.stderr   # the writing checks ran
    after = kept()
    for name in before:
        assert after[name] == before[name], f"the suite left {name} behind:\n" + "\n".join(
            sorted(set(after[name].splitlines()) ^ set(before[name].splitlines())))
    assert services.SUITE_PLACE not in "".join(after.values())
