"""The registry: TLS from the environment's CA, password required, the release's images in it."""
import requests


def test_anonymous_access_is_refused(registry):
    r = requests.get(f"{registry['url']}/v2/", verify=registry["ca"], timeout=5)
    assert r.status_code == 401


def test_wrong_password_is_refused(registry):
    r = requests.get(f"{registry['url']}/v2/", auth=(registry["auth"][0], "wrong"), verify=registry["ca"], timeout=5)
    assert r.status_code == 401


def test_lists_every_image_of_the_deployed_release(registry, release):
    r = requests.get(f"{registry['url']}/v2/_catalog?n=1000", auth=registry["auth"], verify=registry["ca"], timeout=5)
    assert r.status_code == 200
    catalog = set(r.json()["repositories"])
    expected = {image["repository"] for image in release["images"].values()}
    assert expected <= catalog, f"missing from the registry: {sorted(expected - catalog)}"


def test_deployed_manifests_match_the_running_images(registry, release, node):
    for name, image in release["images"].items():
        r = requests.get(
            f"{registry['url']}/v2/{image['repository']}/manifests/latest", auth=registry["auth"], verify=registry["ca"], timeout=5,
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        assert r.status_code == 200, name
        assert r.json()["config"]["digest"] == image["id"], name
