"""docs/configuration.md is generated from the configuration model and kept current."""
import re


from lapinfra import config, configdoc
from tests.conftest import ROOT


def _models(model=config.Environment, seen=None):
    seen = seen if seen is not None else []
    if model not in seen:
        seen.append(model)
        for field in model.model_fields.values():
            sub = configdoc._section(field)
            if sub is not None:
                _models(sub, seen)
    return seen


def test_the_checked_in_reference_is_current():
    assert (ROOT / configdoc.DOC).read_text() == configdoc.render(), "docs/configuration.md is stale: run `invoke config.doc`"


def test_a_changed_description_makes_the_reference_stale(monkeypatch):
    field = config.Registry.model_fields["port"]
    monkeypatch.setattr(field, "description", "a different meaning")
    text = configdoc.render()
    assert "| `registry.port` | integer 1..65535 | `5000` | a different meaning |" in text
    assert text != (ROOT / configdoc.DOC).read_text()


def test_every_key_is_documented_with_a_meaning():
    text = configdoc.render()
    models = _models()
    assert config.Node in models and config.Retention in models
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no Field description"
    rows = re.findall(r"^\| `([^`]+)` \|", text, re.M)
    for key in ("registry.port", "nodes[].ssh_port", "apps.<name>.health.cmd", "backup.keep.within", "base_image.mirror", "cache.ubuntu_upstream"):
        assert key in rows
    assert len(rows) == sum(1 for m in models for n, f in m.model_fields.items() if configdoc._section(f) is None)


def test_types_and_defaults_are_the_models():
    text = configdoc.render()
    assert "| `lb.name` | a DNS label: lower-case letters, digits and inner dashes, at most 63 characters | `app` |" in text
    assert "| `provider` | one of `docker`, `virtualbox` | required |" in text
    assert "| `nodes[].ip` | IPv4 address (a string), or unset | unset |" in text
