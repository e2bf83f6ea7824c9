"""The release record (lapinfra/records.py Release): what a deploy writes reads back unchanged,
a record of an earlier version loads (defaults for what it lacks, its unknown keys kept), and a
malformed one is an error that names the file."""
import json

import pytest

from lapinfra import records
from lapinfra.errors import LapinfraError

# release.json as every deploy so far wrote it: json.dumps(record, indent=2), in this key order
WRITTEN = json.dumps({
    "release": "3ad1e5d0c4f2",
    "images": {"registry": {"repository": "infra/3ad1e5d0c4f2/registry", "id": "sha256:" + "a" * 64},
               "dns": {"repository": "infra/3ad1e5d0c4f2/dns", "id": "sha256:" + "d" * 64}},
    "config": {"registry": "0123456789abcdef", "dns": "fedcba9876543210"},
    "deployed_by": "alice",
    "deployed_at": "2026-12-04T05:00:00+0000",
}, indent=2)


def test_a_written_record_reads_back_and_writes_out_unchanged():
    record = records.Release.load(WRITTEN)
    assert record.release == "3ad1e5d0c4f2" and record.deployed_by == "alice"
    assert record.images["dns"] == records.ReleasedImage("infra/3ad1e5d0c4f2/dns", "sha256:" + "d" * 64)
    assert record.image_ids() == {"registry": "sha256:" + "a" * 64, "dns": "sha256:" + "d" * 64}
    assert record.config["registry"] == "0123456789abcdef"
    assert record.dump() == WRITTEN


def test_a_new_record_is_written_as_deploy_always_wrote_it():
    record = records.new_release("r1", {"dns": "sha256:d"}, {"dns": "c"})
    doc = json.loads(record.dump())
    assert list(doc) == ["release", "images", "config", "deployed_by", "deployed_at"]
    assert doc["images"] == {"dns": {"repository": "infra/r1/dns", "id": "sha256:d"}}
    assert records.Release.load(record.dump()) == record


def test_an_older_or_newer_record_loads_with_defaults_and_keeps_what_it_does_not_know():
    old = records.Release.load('{"release": "c1", "note": {"by": "a later version"}}')
    assert old.images == {} and old.config == {} and old.deployed_by is None and old.deployed_at is None
    assert json.loads(old.dump()) == {"release": "c1", "images": {}, "config": {}, "note": {"by": "a later version"}}
    assert old.with_config({"dns": "c"}).other == {"note": {"by": "a later version"}}


@pytest.mark.parametrize("text, what", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "is not a JSON object but list"),
    ('{"images": {}}', "names no release"),
    ('{"release": "r", "images": {"dns": {"id": "sha256:d"}}}', "`images.dns` without its `repository` and `id`"),
    ('{"release": "r", "config": {"dns": 1}}', "`config` that is not an object of config hashes"),
    ('{"release": "r", "deployed_at": 5}', "`deployed_at` that is not a string"),
])
def test_a_malformed_record_is_an_error_naming_the_file(text, what):
    with pytest.raises(LapinfraError) as error:
        records.Release.load(text)
    assert str(error.value).startswith(f"{records.RELEASE}: the release record ") and what in str(error.value)


class Session:
    """The two file operations of a MasterSession the record needs."""

    def __init__(self, files):
        self.files = files

    def read_json(self, path):
        return json.loads(self.files[path]) if path in self.files else None

    def put(self, path, data, mode=0o600):
        self.files[path] = data.decode()


def test_read_and_write_through_the_session():
    session = Session({})
    assert records.read_release(session) is None
    records.write_release(session, records.Release.load(WRITTEN))
    assert session.files == {records.RELEASE: WRITTEN}
    assert records.read_release(session) == records.Release.load(WRITTEN)


def test_every_path_below_data_lapinfra_is_named_by_the_records_module():
    assert records.RELEASE == "/data/lapinfra/release.json"
    assert records.AUDIT_LOGS == ("lapinfra/releases.jsonl", "lapinfra/verified.jsonl")
    assert records.STATE_IN_DATA == "lapinfra" and records.HOST_KEYS_IN_DATA == "lapinfra/ssh"


def test_no_module_but_records_writes_out_a_path_below_data_lapinfra():
    from tests.conftest import ROOT

    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("lapinfra", "tasks") for path in sorted((ROOT / folder).glob("*.py"))
             if path.name != "records.py"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if "/data/lapinfra" in line or "release.json" in line or "lapinfra/ssh" in line]
    assert found == [], "name the path through lapinfra/records.py"
