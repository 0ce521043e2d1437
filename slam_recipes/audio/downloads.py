"""Downloads of published audio checkpoints, verified before they are cached or unpickled.

textlesslib's checkpoint manager publishes a sha256 for each file it serves; `PUBLISHED_SHA256` holds those of the
files this package's recipes use (the mHuBERT-25Hz layer-11 k-means 500, the unit HiFi-GAN of the paper's GenPPL
and its config). A downloaded file whose hash differs is refused with one line and never reaches the cache, so a
later run cannot load it either. The download itself is `torch.hub.download_url_to_file`, which hashes while it
writes to a temporary file and moves the file into place only once the hash matched.
"""

from __future__ import annotations

import logging
import os

from slam_recipes.errors import ConfigError, first_line

logger = logging.getLogger(__name__)

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "slam_recipes", "downloads")
TEXTLESS_TWIST = "https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/"
PUBLISHED_SHA256 = {  # textlesslib, textless/checkpoint_manager/__init__.py (Checkpoint(..., sha256=...))
    TEXTLESS_TWIST + "mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin":
        "03cc04a9c24fec4285e73e709c485756d8f116aa8e724eac555de6a7cf8d28ad",
    TEXTLESS_TWIST + "hifigan_lj_mhubert_base_25hz.pt":
        "d88224e95c501e2cd59a6e4014753169cfe060fb7ade3cc0da03c809fef73b79",
    TEXTLESS_TWIST + "hifigan_lj_mhubert_base_25hz_config.json":
        "116dc39be4970cd393e562acd0a0ec70a86aaba7e9ca469b8b836cb3fe46afc7",
}  # fmt: skip


def is_url(path_or_url: str) -> bool:
    return path_or_url.startswith(("http://", "https://"))


def resolve_file(path_or_url: str, cache_dir: str | None = None, sha256: str | None = None, what: str = "file") -> str:
    """A local path as it is (a ConfigError naming `what` when missing); a URL downloaded once into `cache_dir`
    (default: DEFAULT_CACHE, read at call time) and read from there afterwards, offline too. The download is checked against `sha256`, else the URL's published
    hash (`PUBLISHED_SHA256`): a mismatch is a ConfigError and nothing is cached. A URL with no known hash is
    downloaded unchecked, with a warning."""
    if not is_url(path_or_url):
        if not os.path.isfile(path_or_url):
            raise ConfigError(f"{path_or_url}: no such {what}")
        return path_or_url
    cache_dir = cache_dir or DEFAULT_CACHE
    local = os.path.join(cache_dir, os.path.basename(path_or_url.split("?")[0]))
    if os.path.isfile(local):
        return local
    expected = sha256 or PUBLISHED_SHA256.get(path_or_url)
    if expected is None:
        logger.warning("%s: no published sha256 to check the download against", path_or_url)
    os.makedirs(cache_dir, exist_ok=True)
    import torch

    try:
        torch.hub.download_url_to_file(path_or_url, local, hash_prefix=expected, progress=True)
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise ConfigError(
                f"{path_or_url}: the download's sha256 is not the published one ({first_line(err)}); nothing was "
                "cached"
            ) from err
        raise ConfigError(f"{path_or_url}: cannot download ({first_line(err)})") from err
    except Exception as err:  # network errors come in many types (URLError, HTTPError, OSError, timeouts)
        raise ConfigError(
            f"{path_or_url}: cannot download ({first_line(err)}); download it yourself and pass the local path"
        ) from err
    return local
