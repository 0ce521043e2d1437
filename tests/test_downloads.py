"""Verified downloads (slam_recipes.audio.downloads), against a local HTTP server: a file whose sha256 is the
published one is cached and reused; a tampered one is refused with one line and nothing is cached."""

import hashlib
import http.server
import json
import os
import threading

import pytest
import torch

from slam_recipes.audio import downloads
from slam_recipes.audio.kmeans import load_centroids, save_centroids
from slam_recipes.audio.vocoder import UnitHiFiGAN, VocoderConfig, load_vocoder
from slam_recipes.errors import ConfigError


@pytest.fixture
def server(tmp_path):
    """An HTTP server on localhost serving tmp_path/served; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_published_hash_is_checked_before_anything_is_cached(server, tmp_path, monkeypatch):
    served, base = server
    (served / "km.safetensors").write_bytes(b"x" * 100)
    good = sha256(served / "km.safetensors")
    url, cache = base + "km.safetensors", tmp_path / "cache"
    monkeypatch.setitem(downloads.PUBLISHED_SHA256, url, "0" * 64)  # what a tampered mirror looks like
    with pytest.raises(ConfigError, match=r"km\.safetensors: the download's sha256 is not the published one .*"
                       r"nothing was cached"):  # fmt: skip
        downloads.resolve_file(url, str(cache))
    assert not cache.exists() or os.listdir(cache) == []  # no file, no temporary left behind
    monkeypatch.setitem(downloads.PUBLISHED_SHA256, url, good)
    local = downloads.resolve_file(url, str(cache))
    assert local == str(cache / "km.safetensors") and sha256(cache / "km.safetensors") == good
    (served / "km.safetensors").write_bytes(b"changed")  # cached: read from disk, not fetched again
    assert downloads.resolve_file(url, str(cache)) == local and (cache / "km.safetensors").read_bytes() == b"x" * 100


def test_the_textless_files_have_their_published_hashes():
    """The three files the recipes name, each with textlesslib's sha256 (64 hex digits)."""
    names = {url.rsplit("/", 1)[1] for url in downloads.PUBLISHED_SHA256}
    assert names == {"mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin", "hifigan_lj_mhubert_base_25hz.pt",
                     "hifigan_lj_mhubert_base_25hz_config.json"}  # fmt: skip
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in downloads.PUBLISHED_SHA256.values())


def test_a_vocoder_and_centroids_load_from_urls_only_when_their_hashes_match(server, tmp_path, monkeypatch):
    served, base = server
    config = VocoderConfig(num_embeddings=20, embedding_dim=8, model_in_dim=8, upsample_rates=[2, 2],
                           upsample_kernel_sizes=[4, 4], upsample_initial_channel=16, resblock_kernel_sizes=[3],
                           resblock_dilation_sizes=[[1]], dur_predictor_params=None)  # fmt: skip
    torch.manual_seed(0)
    UnitHiFiGAN(config).save_textless(str(served / "voc.pt"), str(served / "voc_config.json"))
    from safetensors.torch import save_file

    centroids = torch.randn(20, 4)
    save_file({"centroids": centroids}, str(served / "km.safetensors"))
    cache = str(tmp_path / "cache")
    for name in ("voc.pt", "voc_config.json", "km.safetensors"):
        monkeypatch.setitem(downloads.PUBLISHED_SHA256, base + name, sha256(served / name))
    monkeypatch.setattr(downloads, "DEFAULT_CACHE", cache)
    vocoder = load_vocoder(base + "voc.pt", base + "voc_config.json", device="cpu", cache_dir=cache)
    assert vocoder.num_units == 20
    assert torch.equal(load_centroids(base + "km.safetensors"), centroids)
    (served / "km2.safetensors").write_bytes((served / "km.safetensors").read_bytes()[:-4] + b"\x00\x00\x00\x00")
    monkeypatch.setitem(downloads.PUBLISHED_SHA256, base + "km2.safetensors", sha256(served / "km.safetensors"))
    with pytest.raises(ConfigError, match="not the published one"):
        load_centroids(base + "km2.safetensors")
    assert sorted(os.listdir(cache)) == ["km.safetensors", "voc.pt", "voc_config.json"]  # the tampered one: not cached
    with pytest.raises(ConfigError, match="the fitted centroids are saved there, so it must be a local path"):
        save_centroids(base + "fitted.safetensors", centroids)  # read from a URL, yes; written to one, no
    assert json.loads((served / "voc_config.json").read_text())["num_embeddings"] == 20
