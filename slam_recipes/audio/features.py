"""Speech features for unit tokenisation: audio reading, HuBERT layer features, and an offline MFCC backend.

Every extractor takes a list of 16 kHz mono float32 waveforms and returns one `[frames, dim]` float tensor per
waveform, on the extractor's device, and says in `min_samples` the fewest 16 kHz samples that give one frame (a
shorter waveform gives `[0, dim]`). Its framing is `hop` and `window`: frame i sees samples [i · hop, i · hop +
window), so n samples give `num_frames(n)` = (n - window) // hop + 1 frames.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from slam_recipes.errors import ConfigError, DataError, first_line

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")


# ---------------------------------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------------------------------
def read_audio(source, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """A file path, raw bytes, or a datasets audio dict (`{"path", "bytes"}` or decoded `{"array",
    "sampling_rate"}`) → (mono float32 waveform at `sample_rate`, the file's own rate). Channels are averaged;
    other rates are resampled (polyphase). Raises DataError for unreadable or empty audio. `AudioReader` reads a
    span of it instead."""
    reader = AudioReader(source, sample_rate)
    return reader.read(), reader.rate


class AudioReader:
    """One recording (what `read_audio` takes), read span by span at `sample_rate` (16 kHz) without holding the
    rest of it in memory: a long file costs only the span asked for.

    `num_samples` is its length at `sample_rate`: ceil(frames · sample_rate / rate), what polyphase resampling
    (`scipy.signal.resample_poly`) of the whole file gives. `read(start, stop)` returns exactly samples
    `[start, stop)` of that whole-file resampling (to float rounding): it reads the span with enough margin for the
    resampling filter, starting on a sample where the input and output grids meet. Channels are averaged.
    Unreadable or empty audio raises DataError naming the file, here or at `read`."""

    def __init__(self, source, sample_rate: int = SAMPLE_RATE):
        self.sample_rate = sample_rate
        self._array = self._path = self._bytes = None
        if isinstance(source, dict) and source.get("array") is not None:
            audio = np.asarray(source["array"], dtype=np.float32)
            if audio.ndim > 1:  # channels first or last, whichever axis is the short one
                audio = audio.mean(axis=-1 if audio.shape[-1] <= 8 else 0)
            self.name, self._array, self.rate = source.get("path") or "audio", audio, int(source["sampling_rate"])
            frames = len(audio)
        else:
            if isinstance(source, dict):
                self.name = source.get("path") or "audio"
                self._bytes, self._path = source.get("bytes"), None if source.get("bytes") else source.get("path")
            elif isinstance(source, bytes | bytearray):
                self.name, self._bytes = "audio bytes", bytes(source)
            else:
                self.name = self._path = source
            if self._bytes is None and self._path is None:
                raise DataError(f"{self.name}: no audio (neither bytes nor a path)")
            with self._open() as f:
                self.rate, frames = f.samplerate, f.frames
        if frames <= 0:
            raise DataError(f"{self.name}: zero-length audio")
        self.frames = frames
        divisor = math.gcd(self.rate, sample_rate)
        self.up, self.down = sample_rate // divisor, self.rate // divisor
        self.num_samples = -(-frames * self.up // self.down)
        # The resampling filter reaches 10 · max(up, down) upsampled samples each side (scipy's default); the margin
        # holds that many input samples, in whole input blocks of `down` samples so the grids stay aligned.
        self._margin_blocks = -(-(10 * max(self.up, self.down) // self.up + 1) // self.down) + 1

    def _open(self):
        import soundfile

        try:
            return soundfile.SoundFile(io.BytesIO(self._bytes) if self._bytes is not None else self._path)
        except Exception as err:  # soundfile raises its own error types (and RuntimeError / OSError) for bad files
            raise DataError(f"{self.name}: unreadable audio: {first_line(err)}") from err

    def _read_native(self, begin: int, end: int) -> np.ndarray:
        """Mono float32 samples `[begin, end)` at the file's own rate."""
        if self._array is not None:
            return np.ascontiguousarray(self._array[begin:end])
        with self._open() as f:
            try:
                f.seek(begin)
                audio = f.read(end - begin, dtype="float32", always_2d=True)
            except Exception as err:  # a truncated or corrupt stream fails here rather than at opening
                raise DataError(f"{self.name}: unreadable audio: {first_line(err)}") from err
        return audio.mean(axis=1)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples `[start, stop)` at `sample_rate` (default: all of it) as mono float32."""
        stop = self.num_samples if stop is None else min(stop, self.num_samples)
        if not 0 <= start < stop:
            raise ValueError(f"{self.name}: empty span [{start}, {stop}) of {self.num_samples} samples")
        if self.up == self.down:
            audio = self._read_native(start, stop)
        else:
            from scipy.signal import resample_poly

            first = max(0, start // self.up - self._margin_blocks)  # in blocks: `down` input, `up` output samples
            last = -(-stop // self.up) + self._margin_blocks
            native = self._read_native(first * self.down, min(self.frames, last * self.down))
            resampled = resample_poly(native, self.up, self.down)
            audio = resampled[start - first * self.up : stop - first * self.up].astype(np.float32)
        if audio.size < stop - start:  # the stream ends before its header says (a truncated file)
            raise DataError(
                f"{self.name}: audio ends before the {self.num_samples} samples its header gives (truncated?): "
                f"asked for [{start}, {stop}), got {audio.size}"
            )
        return np.ascontiguousarray(audio, dtype=np.float32)


def samples_before_resampling(num_samples: int, rate: int, sample_rate: int = SAMPLE_RATE) -> int:
    """The fewest samples at `rate` (Hz) that `read_audio` resamples to at least `num_samples` at `sample_rate`:
    its polyphase resampling gives ceil(n · sample_rate / rate) samples, so n > (num_samples - 1) · rate /
    sample_rate. E.g. 400 samples at 16 kHz ← 1198 at 48 kHz (1197 give 399)."""
    return (num_samples - 1) * rate // sample_rate + 1


def find_audio_files(source: str) -> tuple[str, list[str]]:
    """A folder (searched recursively) or a glob of audio files → (root, sorted relative paths)."""
    import glob

    if os.path.isdir(source):
        root = source
        files = [
            os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(source)
            for name in names
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS
        ]
    else:
        root = os.path.dirname(source.split("*", 1)[0]) or "."
        files = [
            os.path.relpath(p, root)
            for p in glob.glob(source, recursive=True)
            if os.path.splitext(p)[1].lower() in AUDIO_EXTENSIONS
        ]
    if not files:
        raise DataError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return root, sorted(files)


# ---------------------------------------------------------------------------------------------------------------------
# MFCC backend (fully offline)
# ---------------------------------------------------------------------------------------------------------------------
def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, low_hz: float = 20.0, high_hz: float | None = None):
    """Triangular HTK-mel filters, `[n_fft // 2 + 1, num_mels]`."""
    high_hz = high_hz or sample_rate / 2
    edges = _mel_to_hz(np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), num_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0, np.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center)))
    return torch.tensor(weights.T, dtype=torch.float32)


def dct_matrix(num_coefficients: int, num_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II, `[num_mels, num_coefficients]`."""
    n = np.arange(num_mels)[:, None]
    k = np.arange(num_coefficients)[None, :]
    basis = np.cos(np.pi / num_mels * (n + 0.5) * k) * np.sqrt(2.0 / num_mels)
    basis[:, 0] /= np.sqrt(2.0)
    return torch.tensor(basis, dtype=torch.float32)


def deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over ±`width` frames (edges repeated), `[frames, dim]` → `[frames, dim]`."""
    padded = torch.cat([features[:1].expand(width, -1), features, features[-1:].expand(width, -1)])
    frames = features.shape[0]
    numerator = sum(
        n * (padded[width + n : width + n + frames] - padded[width - n : width - n + frames])
        for n in range(1, width + 1)
    )
    return numerator / (2 * sum(n * n for n in range(1, width + 1)))


class MFCCFeatures:
    """13 MFCCs + Δ + ΔΔ at `frame_rate` frames/s (50: 25 ms windows, 20 ms hop; 25: 40 ms windows and hop, the
    frame rate of mHuBERT-25Hz), mean-normalised per utterance.

    An offline stand-in for HuBERT (it needs no download): it is what the demo corpus is tokenised with. MFCC units
    capture acoustics, not the phonetic content HuBERT units carry, so it is no replacement for HuBERT in real
    training."""

    def __init__(
        self,
        num_coefficients: int = 13,
        num_mels: int = 40,
        n_fft: int = 512,
        device: str = "cpu",
        frame_rate: int = 50,
    ):
        if frame_rate <= 0 or SAMPLE_RATE % frame_rate:
            raise ConfigError(f"mfcc_frame_rate must divide {SAMPLE_RATE}, got {frame_rate}")
        self.device = torch.device(device)
        self.frames_per_second = frame_rate
        self.hop = SAMPLE_RATE // frame_rate
        self.window = max(400, self.hop)  # 25 ms, or the whole hop when it is longer: no sample is skipped
        self.n_fft = max(n_fft, 1 << (self.window - 1).bit_length())  # a power of two that holds the window
        self.filters = mel_filterbank(num_mels, self.n_fft, SAMPLE_RATE).to(self.device)
        self.dct = dct_matrix(num_coefficients, num_mels).to(self.device)
        self.hann = torch.hann_window(self.window, periodic=True, device=self.device)
        self.dim = 3 * num_coefficients
        self.min_samples = 1  # a waveform shorter than one window is zero-padded to it

    def num_frames(self, num_samples: int) -> int:
        return 1 + max(0, num_samples - self.window) // self.hop

    def __call__(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        outputs = []
        for waveform in waveforms:
            audio = torch.from_numpy(np.asarray(waveform, dtype=np.float32)).to(self.device)
            if audio.numel() < self.window:
                audio = torch.nn.functional.pad(audio, (0, self.window - audio.numel()))
            frames = audio.unfold(0, self.window, self.hop) * self.hann  # [frames, window]
            power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)
            cepstra = torch.log(power @ self.filters + 1e-6) @ self.dct
            delta = deltas(cepstra)
            features = torch.cat([cepstra, delta, deltas(delta)], dim=1)
            features = features - features.mean(0)  # cepstral mean normalisation: removes the channel / speaker offset
            outputs.append(features)
        return outputs


# ---------------------------------------------------------------------------------------------------------------------
# HuBERT backend
# ---------------------------------------------------------------------------------------------------------------------
def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """The fewest input samples for which a stack of unpadded 1-D convolutions (`kernels`, `strides`, first layer
    first; a HuBERT config's `conv_kernel` / `conv_stride`) gives one output frame: k₁ + Σᵢ₌₂ (kᵢ - 1) · s₁ ⋯ sᵢ₋₁.
    HuBERT base's stack (10,3,3,3,3,2,2) / (5,2,2,2,2,2,2) needs 400 samples (25 ms at 16 kHz)."""
    samples, hop = kernels[0], 1
    for kernel, previous_stride in zip(kernels[1:], strides[:-1], strict=True):
        hop *= previous_stride
        samples += (kernel - 1) * hop
    return samples


class HubertFeatures:
    """The output of transformer layer `layer` (1-based, as textlesslib's `output_layer`) of any HuBERT-family
    checkpoint (Hub name or folder), e.g. mHuBERT-25Hz layer 11. `dtype` as in
    `slam_recipes.precision.choose_dtype`: by default bfloat16 on a GPU that has it, float32 on CPU.

    Models with group-normalised convolutions (HuBERT base, mHuBERT) see each waveform alone, since zero padding
    would change their normalisation statistics; layer-normalised ones are batched with an attention mask. A
    waveform shorter than the convolutions' receptive field (`min_samples`, 400 for HuBERT base) gives `[0, dim]`
    without reaching the model, alone or in a batch."""

    def __init__(
        self,
        model_name_or_path: str,
        layer: int,
        device: str | None = None,
        dtype: str = "auto",
        bf16_native_only: bool = True,
    ):
        from transformers import AutoConfig, HubertModel

        from slam_recipes.precision import default_device, load_dtype

        device = default_device(device)
        torch_dtype = load_dtype(dtype, device, bf16_native_only, "feature model")
        try:
            config = AutoConfig.from_pretrained(model_name_or_path)
        except OSError as err:
            raise ConfigError(f"{model_name_or_path}: cannot load the feature model: {first_line(err)}") from err
        if not 1 <= layer <= config.num_hidden_layers:
            raise ConfigError(
                f"layer {layer} is outside the {config.num_hidden_layers} layers of {model_name_or_path}"
            )
        # Compute only the layers needed (one more for pre-norm models, whose last output is normalised).
        keep = min(config.num_hidden_layers, layer + (1 if config.do_stable_layer_norm else 0))
        self.model = HubertModel.from_pretrained(model_name_or_path, dtype=torch_dtype)
        del self.model.encoder.layers[keep:]
        self.model.config.num_hidden_layers = keep
        self.model.to(device).eval()
        self.layer = layer
        self.device = torch.device(device)
        self.dim = config.hidden_size
        self.group_norm = config.feat_extract_norm == "group"
        self.normalize = _wants_normalized_input(model_name_or_path)
        self.kernels, self.strides = list(config.conv_kernel), list(config.conv_stride)
        self.hop = math.prod(self.strides)  # samples between frames: 320 (50 Hz), 640 for mHuBERT-25Hz
        self.frames_per_second = SAMPLE_RATE / self.hop
        self.min_samples = self.window = receptive_field(self.kernels, self.strides)  # samples one frame sees

    def num_frames(self, num_samples: int) -> int:
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            num_samples = (num_samples - kernel) // stride + 1
        return max(0, num_samples)

    @torch.inference_mode()
    def __call__(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        # The convolutions refuse an input shorter than their receptive field, so those never reach the model.
        long_enough = [i for i, w in enumerate(waveforms) if len(w) >= self.min_samples]
        groups = [[waveforms[i]] for i in long_enough] if self.group_norm else [[waveforms[i] for i in long_enough]]
        outputs = []
        for group in filter(None, groups):
            width = max(len(w) for w in group)
            batch = torch.zeros((len(group), width), dtype=torch.float32)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for i, w in enumerate(group):
                audio = torch.from_numpy(np.asarray(w, dtype=np.float32))
                if self.normalize:
                    audio = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
                batch[i, : len(w)], mask[i, : len(w)] = audio, 1
            batch = batch.to(self.device, dtype=self.model.dtype)
            kwargs = {} if self.group_norm else {"attention_mask": mask.to(self.device)}
            hidden = self.model(batch, output_hidden_states=True, **kwargs).hidden_states[self.layer]
            outputs += [hidden[i, : self.num_frames(len(w))].float() for i, w in enumerate(group)]
        features = [torch.zeros((0, self.dim), device=self.device) for _ in waveforms]
        for i, frames in zip(long_enough, outputs, strict=True):
            features[i] = frames
        return features


def _wants_normalized_input(model_name_or_path: str) -> bool:
    """The checkpoint's feature-extractor setting (`do_normalize`), false when it ships none."""
    from transformers import AutoFeatureExtractor

    try:
        return bool(getattr(AutoFeatureExtractor.from_pretrained(model_name_or_path), "do_normalize", False))
    except (OSError, ValueError):
        return False


def build_feature_extractor(
    backend: str,
    model_name_or_path: str | None = None,
    layer: int = 11,
    device: str | None = None,
    dtype: str = "auto",
    mfcc_frame_rate: int = 50,
    bf16_native_only: bool = True,
):
    """`hubert` (any HuBERT-family checkpoint at `layer`) or `mfcc` (offline, at `mfcc_frame_rate` frames/s)."""
    if backend == "mfcc":
        from slam_recipes.precision import default_device

        return MFCCFeatures(device=default_device(device) if device else "cpu", frame_rate=mfcc_frame_rate)
    if backend == "hubert":
        if not model_name_or_path:
            raise ConfigError("backend hubert needs feature_model (e.g. slprl/mhubert-base-25hz)")
        return HubertFeatures(model_name_or_path, layer, device=device, dtype=dtype, bf16_native_only=bf16_native_only)
    raise ConfigError(f"backend must be hubert or mfcc, got {backend!r}")
