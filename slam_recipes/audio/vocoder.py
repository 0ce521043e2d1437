"""A unit HiFi-GAN vocoder with a duration predictor: deduplicated units → 16 kHz waveform.

The architecture is the unit-to-speech HiFi-GAN of the speech-resynthesis line of work, as used by textlesslib's
`hifigan_lj_mhubert_base_25hz` vocoder (the one behind the paper's GenPPL):

- an embedding of the units;
- a duration predictor (two 1-D convolutions, each followed by ReLU, LayerNorm over channels and dropout, then a
  linear layer) giving log-durations; a unit is repeated `max(1, round(exp(d) - 1))` frames;
- the HiFi-GAN generator: a kernel-7 input convolution, then per level a leaky ReLU (slope 0.1), a transposed
  convolution upsampling by `upsample_rates[i]`, and the mean of `len(resblock_kernel_sizes)` residual blocks
  (dilated convolutions); finally a leaky ReLU (slope 0.01), a kernel-7 convolution to one channel and tanh.

One frame becomes `prod(upsample_rates)` samples (640 at 16 kHz for 25 Hz units). Checkpoints in the textlesslib
format — `torch.save({"generator": state_dict})` with weight-normalised convolutions (`weight_g` / `weight_v`) and a
separate JSON config — load from a local path or a URL (downloaded once into a cache folder). Weight norm is folded
into plain weights at load time, as inference does.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from slam_recipes.audio.downloads import is_url, resolve_file
from slam_recipes.errors import ConfigError, first_line
from slam_recipes.files import atomic_path, atomic_write
from slam_recipes.precision import default_device

_UNSUPPORTED = ("f0", "multispkr", "multistyle")  # conditioning the unit-only vocoders of the paper do not use


@dataclass
class VocoderConfig:
    num_embeddings: int = 500
    embedding_dim: int = 128
    model_in_dim: int = 128
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 4, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 8, 8, 4])
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    dur_predictor_params: dict | None = field(
        default_factory=lambda: {
            "encoder_embed_dim": 128,
            "var_pred_hidden_dim": 128,
            "var_pred_kernel_size": 3,
            "var_pred_dropout": 0.5,
        }
    )
    sampling_rate: int = 16000

    @property
    def hop_length(self) -> int:
        """Waveform samples per unit frame."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, values: dict, source: str = "vocoder config") -> VocoderConfig:
        """The fields this architecture uses; other keys of a textlesslib/fairseq config (training settings) are
        ignored. Conditioning this vocoder does not implement (f0, speakers, styles) is refused."""
        used = [k for k in _UNSUPPORTED if values.get(k)]
        if used:
            raise ConfigError(f"{source}: {', '.join(used)} conditioning is not supported (unit-only vocoders)")
        names = {f.name for f in cls.__dataclass_fields__.values()}
        missing = [k for k in ("num_embeddings", "upsample_rates", "upsample_kernel_sizes") if k not in values]
        if missing:
            raise ConfigError(f"{source}: missing key(s) {missing} of a unit HiFi-GAN config")
        config = cls(**{k: v for k, v in values.items() if k in names})
        if "model_in_dim" not in values:
            config.model_in_dim = config.embedding_dim
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes):
            raise ConfigError(f"{source}: upsample_rates and upsample_kernel_sizes differ in length")
        if len(config.resblock_kernel_sizes) != len(config.resblock_dilation_sizes):
            raise ConfigError(f"{source}: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        return config


class DurationPredictor(nn.Module):
    """Unit embeddings [B, T, E] → log-durations [B, T]."""

    def __init__(self, embed_dim: int, hidden_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv1d(embed_dim, hidden_dim, kernel_size, padding=(kernel_size - 1) // 2), nn.ReLU()
        )
        self.ln1 = nn.LayerNorm(hidden_dim)
        # The published model pads its second convolution by 1 whatever the kernel (it uses kernel 3).
        self.conv2 = nn.Sequential(nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(hidden_dim)
        self.proj = nn.Linear(hidden_dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` [B, T] (1 on units, 0 on padding) zeroes the padding before each convolution, so a sequence's
        durations do not depend on what it is batched with (alone, a convolution pads with zeros too)."""
        keep = (lambda t: t * mask[..., None]) if mask is not None else (lambda t: t)
        x = self.dropout(self.ln1(self.conv1(keep(x).transpose(1, 2)).transpose(1, 2)))
        x = self.dropout(self.ln2(self.conv2(keep(x).transpose(1, 2)).transpose(1, 2)))
        return self.proj(x).squeeze(-1)


class ResBlock(nn.Module):
    """HiFi-GAN residual block (type 1): for each dilation d, x += conv(lrelu(conv_d(lrelu(x))))."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, S]; `mask` [B, 1, S] zeroes the padding before each convolution (see `UnitHiFiGAN.forward`)."""
        keep = (lambda t: t * mask) if mask is not None else (lambda t: t)
        for dilated, plain in zip(self.convs1, self.convs2, strict=True):
            x = x + keep(plain(F.leaky_relu(keep(dilated(F.leaky_relu(x, 0.1))), 0.1)))
        return x


class UnitHiFiGAN(nn.Module):
    """Units → waveform, batched. Parameter names follow the textlesslib checkpoints (`dict`, `dur_predictor`,
    `conv_pre`, `ups`, `resblocks`, `conv_post`), so their state dicts load as they are (after weight-norm
    folding)."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.config = config
        self.dict = nn.Embedding(config.num_embeddings, config.embedding_dim)
        params = config.dur_predictor_params
        self.dur_predictor = (
            DurationPredictor(
                params["encoder_embed_dim"],
                params["var_pred_hidden_dim"],
                params["var_pred_kernel_size"],
                params["var_pred_dropout"],
            )
            if params
            else None
        )
        channels = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.model_in_dim, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2))
            for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(c_out, k, dilations))
        self.conv_post = nn.Conv1d(channels // 2 ** len(config.upsample_rates), 1, 7, padding=3)

    @property
    def num_units(self) -> int:
        return self.config.num_embeddings

    @property
    def device(self) -> torch.device:
        return self.conv_pre.weight.device

    def predict_durations(self, units: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Frames per unit [B, T] (0 in padding): max(1, round(exp(log-duration) - 1)), or 1 without a predictor."""
        mask = torch.arange(units.shape[1], device=units.device)[None, :] < lengths[:, None]
        if self.dur_predictor is None:
            return mask.long()
        log_durations = self.dur_predictor(self.dict(units), mask.to(self.dict.weight.dtype))
        durations = torch.clamp(torch.round(torch.exp(log_durations) - 1).long(), min=1)
        return durations * mask

    def forward(
        self, units: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """units [B, T] (padded), lengths [B] → (waveforms [B, S] in [-1, 1], samples per row [B]). `durations`
        [B, T] overrides the predicted frames per unit. Padding is zeroed before every convolution, at every
        resolution, so each row's waveform is the one it gets alone (a convolution pads with zeros there too)."""
        if durations is None:
            durations = self.predict_durations(units, lengths)
        frames = durations.sum(dim=1)
        width = int(frames.max().item()) if frames.numel() else 0
        expanded = torch.zeros(units.shape[0], width, dtype=torch.long, device=units.device)
        for row in range(units.shape[0]):
            repeated = torch.repeat_interleave(units[row], durations[row])
            expanded[row, : repeated.numel()] = repeated
        x = self.dict(expanded).transpose(1, 2)

        def valid(samples_per_frame: int) -> torch.Tensor:  # [B, 1, S]: 1 within each row's length
            positions = torch.arange(width * samples_per_frame, device=units.device)
            return (positions[None, :] < frames[:, None] * samples_per_frame)[:, None, :].to(x.dtype)

        x = x * valid(1)
        x = self.conv_pre(x) * valid(1)
        per_level, scale = len(self.config.resblock_kernel_sizes), 1
        for i, up in enumerate(self.ups):
            scale *= self.config.upsample_rates[i]
            mask = valid(scale)
            x = up(F.leaky_relu(x, 0.1)) * mask
            blocks = self.resblocks[i * per_level : (i + 1) * per_level]
            x = sum(block(x, mask) for block in blocks) / per_level * mask
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))
        return x.squeeze(1), frames * self.config.hop_length

    @torch.inference_mode()
    def synthesize(self, sequences: list, batch_size: int = 16) -> list:
        """Unit sequences (lists or 1-D arrays of unit indices) → float32 numpy waveforms, batched by similar length.
        An empty sequence gives an empty waveform."""
        import numpy as np

        out: list = [np.zeros(0, dtype=np.float32)] * len(sequences)
        order = sorted((i for i in range(len(sequences)) if len(sequences[i])), key=lambda i: -len(sequences[i]))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            lengths = torch.tensor([len(sequences[i]) for i in batch], device=self.device)
            units = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long, device=self.device)
            for row, i in enumerate(batch):
                units[row, : lengths[row]] = torch.as_tensor(np.asarray(sequences[i]), dtype=torch.long)
            audio, samples = self(units, lengths)
            audio = audio.float().cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = audio[row, : int(samples[row])]
        return out

    def save_textless(self, checkpoint_path: str, config_path: str | None = None) -> None:
        """Save in the textlesslib layout: `{"generator": state_dict}` with weight-normalised convolutions, plus
        the JSON config (default: `<checkpoint stem>_config.json`)."""
        state = {}
        for name, tensor in self.state_dict().items():
            module = self.get_submodule(name.rsplit(".", 1)[0])
            if name.endswith(".weight") and isinstance(module, nn.Conv1d | nn.ConvTranspose1d) and "dur_" not in name:
                norm = tensor.flatten(1).norm(dim=1).view(-1, *[1] * (tensor.dim() - 1))
                state[name[: -len("weight")] + "weight_g"] = norm.clone()
                state[name[: -len("weight")] + "weight_v"] = tensor.clone()
            else:
                state[name] = tensor.clone()
        os.makedirs(os.path.dirname(os.path.abspath(checkpoint_path)), exist_ok=True)
        with atomic_path(checkpoint_path) as temporary:
            torch.save({"generator": state}, temporary)
        with atomic_write(config_path or default_config_path(checkpoint_path)) as f:
            json.dump({**asdict(self.config), "resblock": "1"}, f, indent=2)


def fold_weight_norm(state: dict) -> dict:
    """`weight_g` / `weight_v` pairs (and `parametrizations.weight.original0/1`) → plain `weight`."""
    folded = {}
    for name, tensor in state.items():
        if name.endswith(".weight_v") or name.endswith(".parametrizations.weight.original1"):
            continue
        if name.endswith(".weight_g") or name.endswith(".parametrizations.weight.original0"):
            prefix = (
                name.rsplit(".weight_g", 1)[0]
                if name.endswith(".weight_g")
                else name.rsplit(".parametrizations", 1)[0]
            )
            v = (
                state[prefix + ".weight_v"]
                if name.endswith(".weight_g")
                else state[prefix + ".parametrizations.weight.original1"]
            )
            norm = v.flatten(1).norm(dim=1).view(-1, *[1] * (v.dim() - 1))
            folded[prefix + ".weight"] = v * (tensor / norm)
        else:
            folded[name] = tensor
    return folded


def default_config_path(checkpoint_path: str) -> str:
    """textlesslib's naming: `<name>.pt` → `<name>_config.json`."""
    return os.path.splitext(checkpoint_path)[0] + "_config.json"


def load_vocoder(
    path_or_url: str,
    config_path_or_url: str | None = None,
    *,
    device: str | None = None,
    cache_dir: str | None = None,
) -> UnitHiFiGAN:
    """A unit HiFi-GAN from a textlesslib-format checkpoint (file, folder holding one `.pt` and its config, or URL)
    and its JSON config (default: `<checkpoint>_config.json` beside it, or `config.json` in its folder)."""
    if os.path.isdir(path_or_url):
        found = sorted(n for n in os.listdir(path_or_url) if n.endswith((".pt", ".pth", ".ckpt")))
        if len(found) != 1:
            raise ConfigError(f"{path_or_url}: expected one vocoder checkpoint (.pt) in the folder, found {found}")
        path_or_url = os.path.join(path_or_url, found[0])
    if config_path_or_url is None:
        config_path_or_url = default_config_path(path_or_url)
        beside = os.path.join(os.path.dirname(path_or_url), "config.json")
        if not is_url(path_or_url) and not os.path.isfile(config_path_or_url):
            config_path_or_url = beside
    checkpoint_file = resolve_file(path_or_url, cache_dir, what="vocoder file")
    config_file = resolve_file(config_path_or_url, cache_dir, what="vocoder file")
    try:
        with open(config_file) as f:
            config = VocoderConfig.from_dict(json.load(f), config_file)
    except (json.JSONDecodeError, TypeError) as err:
        raise ConfigError(f"{config_file}: not a vocoder config: {first_line(err)}") from err
    try:  # weights only: a checkpoint cannot run code
        checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError / EOFError for bad files
        raise ConfigError(f"{checkpoint_file}: cannot read the vocoder checkpoint: {first_line(err)}") from err
    state = checkpoint.get("generator", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"{checkpoint_file}: no generator state dict in the checkpoint")
    model = UnitHiFiGAN(config)
    try:
        model.load_state_dict(fold_weight_norm(state))
    except RuntimeError as err:
        raise ConfigError(f"{checkpoint_file}: does not match its config {config_file}: {first_line(err)}") from err
    device = default_device(device)
    return model.to(device).eval()
