"""K-means for unit tokenisation: centroids as a plain tensor (safetensors), nearest-centroid assignment in torch,
conversion of textlesslib's pickled k-means (opt-in), and mini-batch k-means to fit your own."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from slam_recipes.errors import ConfigError
from slam_recipes.files import atomic_path

logger = logging.getLogger(__name__)


def check_save_path(path: str, overwrite: bool = True) -> None:
    """Centroids are saved to a local `.safetensors` file: a URL (which `load_centroids` accepts), another extension
    (read back as a pickle), or an existing file without `overwrite` is a ConfigError."""
    from slam_recipes.audio.downloads import is_url

    if is_url(path):
        raise ConfigError(f"kmeans_path {path!r}: the fitted centroids are saved there, so it must be a local path")
    if os.path.splitext(path)[1].lower() != ".safetensors":
        raise ConfigError(f"kmeans_path {path}: fitted centroids are saved as .safetensors; name the file so")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"kmeans_path {path}: exists; choose another path or pass --overwrite_kmeans true")


def save_centroids(path: str, centroids: torch.Tensor) -> None:
    """Write `[k, dim]` centroids as safetensors (`centroids`), to a temporary name first; `path` must be local
    (`check_save_path`)."""
    from safetensors.torch import save_file

    check_save_path(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as temporary:
        save_file({"centroids": centroids.detach().float().cpu().contiguous()}, temporary)
        umask = os.umask(0)  # safetensors creates the file owner-only; give it the mode any other output gets
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)


def converted_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".safetensors"


def load_centroids(path: str, allow_pickle: bool = False) -> torch.Tensor:
    """`[k, dim]` float32 centroids from a safetensors or .npy file, or from a scikit-learn k-means pickle (such as
    textlesslib's `..._km500.bin`) when `allow_pickle` — loading a pickle runs code, so it must be asked for. A pickle
    is converted once to `<name>.safetensors` next to it, which later runs use without the opt-in. A URL is
    downloaded once and checked against its published sha256 before it is cached or unpickled
    (`slam_recipes.audio.downloads`)."""
    from slam_recipes.audio.downloads import resolve_file

    path = resolve_file(path, what="k-means file")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(path)
        if "centroids" not in tensors:
            raise ConfigError(f"{path}: no 'centroids' tensor (found {sorted(tensors)})")
        return _checked(tensors["centroids"].float(), path)
    if extension == ".npy":
        return _checked(torch.from_numpy(np.load(path, allow_pickle=False)).float(), path)
    converted = converted_path(path)
    if os.path.isfile(converted):
        logger.info("Using %s, converted earlier from %s", converted, path)
        return load_centroids(converted)
    if not allow_pickle:
        raise ConfigError(
            f"{path} is a pickle, and loading a pickle runs code: set allow_pickle_kmeans: true if you trust the "
            f"file (it is converted once to {converted})"
        )
    try:
        import joblib
    except ImportError as err:
        raise ConfigError(f"{path}: reading a k-means pickle needs `pip install slam-recipes[kmeans-pickle]`") from err
    model = joblib.load(path)
    centers = getattr(model, "cluster_centers_", None)
    if centers is None:
        raise ConfigError(f"{path}: the pickle holds a {type(model).__name__}, not a fitted k-means")
    centroids = _checked(torch.from_numpy(np.asarray(centers, dtype=np.float32)), path)
    save_centroids(converted, centroids)
    logger.info("Converted %s to %s (%d centroids of dimension %d)", path, converted, *centroids.shape)
    return centroids


def _checked(centroids: torch.Tensor, path: str) -> torch.Tensor:
    if centroids.ndim != 2 or centroids.shape[0] < 1:
        raise ConfigError(
            f"{path}: centroids must be a [clusters, dimension] matrix, got shape {list(centroids.shape)}"
        )
    return centroids


class NearestCentroid:
    """Assigns each feature frame to its nearest centroid (squared Euclidean) with one matmul, on the features'
    device: argmin_k ‖c_k‖² − 2 x·c_k."""

    def __init__(self, centroids: torch.Tensor, device: str | torch.device = "cpu"):
        self.centroids = centroids.to(device=device, dtype=torch.float32)
        self.squared_norms = self.centroids.pow(2).sum(dim=1)
        self.num_units, self.dim = self.centroids.shape

    def check_dimension(self, dim: int, where: str) -> None:
        if dim != self.dim:
            raise ConfigError(f"k-means dimension {self.dim} differs from the {dim}-dimensional features of {where}")

    def __call__(self, features: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        features = features.to(device=self.centroids.device, dtype=torch.float32)
        if features.shape[0] <= chunk:
            return torch.addmm(self.squared_norms, features, self.centroids.T, alpha=-2.0).argmin(dim=1)
        # In chunks, so the [frames, clusters] distance matrix stays small (cache-sized on CPU).
        return torch.cat([self(part) for part in features.split(chunk)])


def inertia(features: torch.Tensor, centroids: torch.Tensor) -> float:
    """Mean squared distance of each frame to its nearest centroid."""
    centroids = centroids.to(features.device, torch.float32)
    assign = NearestCentroid(centroids, features.device)(features)
    return float((features.float() - centroids[assign]).pow(2).sum(1).mean())


def fit_kmeans(
    features: torch.Tensor,
    num_clusters: int,
    *,
    batch_size: int = 10000,
    steps: int = 200,
    seed: int = 0,
    init_sample: int = 20000,
) -> torch.Tensor:
    """Mini-batch k-means (Sculley, 2010) on `[frames, dim]` features, on their device: k-means++ seeding on a
    sample, then `steps` mini-batches, each centroid moving towards its batch mean at a rate 1 / (frames seen).
    Returns `[num_clusters, dim]` centroids."""
    features = features.float()
    count = features.shape[0]
    if count < num_clusters:
        raise ConfigError(f"{count} feature frames cannot make {num_clusters} clusters; sample more audio")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sample = features[torch.randperm(count, generator=generator)[: max(init_sample, num_clusters)].to(features.device)]
    centroids = _kmeans_plus_plus(sample, num_clusters, generator)
    seen = torch.zeros(num_clusters, device=features.device)
    for _ in range(steps):
        batch = features[torch.randint(0, count, (min(batch_size, count),), generator=generator).to(features.device)]
        assign = NearestCentroid(centroids, features.device)(batch)
        sums = torch.zeros_like(centroids).index_add_(0, assign, batch)
        counts = torch.bincount(assign, minlength=num_clusters).float()
        seen += counts
        hit = counts > 0
        rate = (counts[hit] / seen[hit]).unsqueeze(1)
        centroids[hit] += rate * (sums[hit] / counts[hit].unsqueeze(1) - centroids[hit])
    return centroids


def _kmeans_plus_plus(sample: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: each new centroid is the best of a few candidates drawn in proportion to the
    squared distance to the nearest chosen centroid (the candidate that lowers the total distance most)."""
    trials = 2 + int(np.log(num_clusters))
    first = int(torch.randint(0, sample.shape[0], (1,), generator=generator))
    chosen = [first]
    closest = (sample - sample[first]).pow(2).sum(1)
    for _ in range(1, num_clusters):
        total = closest.sum()
        weights = (closest / total if total > 0 else torch.ones_like(closest)).cpu()
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator).to(sample.device)
        distances = torch.cdist(sample[candidates], sample).pow(2)  # [trials, frames]
        updated = torch.minimum(closest.unsqueeze(0), distances)
        best = int(updated.sum(1).argmin())
        chosen.append(int(candidates[best]))
        closest = updated[best]
    return sample[torch.tensor(chosen, device=sample.device)].clone()
