"""Long recordings → utterance-sized segments, so that the feature model never sees more than `max_segment_seconds`
of audio at once, whatever the file's length.

Libri-Light's files run from minutes to over an hour; at 25 Hz an hour is 90,000 frames, and self-attention over
them fits on no GPU. Libri-Light's own preparation (`data_preparation/cut_by_vad.py`) joins consecutive
voice-activity chunks into sequences of about 60 s. Two ways here, both reading only one segment's audio at a time
(`AudioReader`), so that memory does not grow with the file:

- **vad** (the default): silero-vad's speech probabilities over 32 ms windows, its speech chunks (at most
  `max_segment_seconds` each, cut at the longest pause when longer), then consecutive chunks joined while the
  joined span stays within `max_segment_seconds`. A segment is one contiguous span of the file, pauses inside it
  kept; the silence between segments is left out. Unlike Libri-Light's script, the chunks of a segment are not
  concatenated, so each segment has one start and one end time.
- **fixed**: windows of `max_segment_seconds`, each seeing `context_seconds` more audio on both sides, of which only
  its own frames are kept. The kept frames add up to exactly the frames of the whole file,
  (n - window) // hop + 1; their features equal the whole file's wherever the model's receptive field lies inside
  the window and its context (a convolution stack does; self-attention over the whole file and per-utterance
  normalisation such as the MFCC backend's mean do not, so frames near a cut may get other units).

A file no longer than `max_segment_seconds` is one segment, tokenised as it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from slam_recipes.audio.features import SAMPLE_RATE, AudioReader
from slam_recipes.errors import ConfigError, DataError

VAD_WINDOW = 512  # samples at 16 kHz per silero-vad probability (32 ms)
SEGMENTATIONS = ("vad", "fixed")
ALIGNMENT_COLUMN = "aligned_text"  # word timings, as slprl/sTinyStories ships them: [{word, start_time, end_time}]


@dataclass(frozen=True)
class Segment:
    """Samples `[start, stop)` at 16 kHz fed to the feature model, and which of its frames are kept:
    `[keep_start, keep_stop)` (frame indices of the segment's own features; `keep_stop` None: all of them).
    `begin` / `end` are the file time in seconds that the kept frames stand for."""

    start: int
    stop: int
    begin: float
    end: float
    keep_start: int = 0
    keep_stop: int | None = None

    @property
    def num_samples(self) -> int:
        return self.stop - self.start


@functools.cache
def load_vad():
    """silero-vad's model (shipped in its wheel: nothing is downloaded). Importing silero-vad sets torch to one
    thread; the caller's thread count is put back."""
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad

    model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def speech_probabilities(reader: AudioReader, block_seconds: float = 32.768) -> np.ndarray:
    """silero-vad's speech probability for each 512-sample (32 ms) window of `reader`'s 16 kHz audio, the last
    window zero-padded, read `block_seconds` at a time: (ceil(num_samples / 512),) float32."""
    import torch

    model = load_vad()
    model.reset_states()
    block = max(1, int(block_seconds * SAMPLE_RATE) // VAD_WINDOW) * VAD_WINDOW
    probabilities = []
    with torch.inference_mode():
        for start in range(0, reader.num_samples, block):
            audio = torch.from_numpy(reader.read(start, start + block))
            if len(audio) % VAD_WINDOW:
                audio = torch.nn.functional.pad(audio, (0, VAD_WINDOW - len(audio) % VAD_WINDOW))
            for window in audio.split(VAD_WINDOW):
                probabilities.append(float(model(window, SAMPLE_RATE)))
    return np.asarray(probabilities, dtype=np.float32)


def join_spans(spans: list[tuple[int, int]], max_samples: int) -> list[tuple[int, int]]:
    """Consecutive `(start, stop)` spans (sorted, not overlapping) joined while the joined span, from the first
    start to the last stop, holds at most `max_samples`; a span longer than that on its own is cut into equal
    pieces that fit."""
    joined: list[tuple[int, int]] = []
    for start, stop in spans:
        if joined and stop - joined[-1][0] <= max_samples:
            joined[-1] = (joined[-1][0], stop)
            continue
        pieces = -(-(stop - start) // max_samples)
        edges = [start + (stop - start) * i // pieces for i in range(pieces + 1)]
        joined += list(zip(edges[:-1], edges[1:], strict=True))
    return joined


def slice_alignment(words: list[dict], begin: float, end: float, where: str = "aligned_text") -> list[dict]:
    """The words of a word alignment (`[{"word", "start_time", "end_time"}]`, seconds in the file, the
    sTinyStories `aligned_text` layout) whose midpoint lies in `[begin, end)` seconds, with their times counted from
    `begin`: the alignment of a segment. Raises DataError naming `where` for another layout."""
    try:
        return [
            {**w, "start_time": w["start_time"] - begin, "end_time": w["end_time"] - begin}
            for w in words
            if begin <= (w["start_time"] + w["end_time"]) / 2 < end
        ]
    except (KeyError, TypeError) as err:
        raise DataError(
            f"{where}: expected a list of {{word, start_time, end_time}} (seconds), got {words!r:.80}"
        ) from err


def vad_segments(reader: AudioReader, max_segment_seconds: float, threshold: float = 0.5) -> list[Segment]:
    """Speech segments of `reader`'s audio, each at most `max_segment_seconds`, in file order (see the module
    docstring). A file with no speech found gives none. silero-vad's other settings are its defaults: speech chunks
    of at least 250 ms, ended by 100 ms of silence, padded by 30 ms."""
    from silero_vad import get_speech_timestamps_from_probs

    max_samples = int(max_segment_seconds * SAMPLE_RATE)
    speech = get_speech_timestamps_from_probs(
        speech_probabilities(reader).tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=threshold,
        max_speech_duration_s=max_segment_seconds,
        audio_length_samples=reader.num_samples,
    )
    spans = join_spans([(chunk["start"], chunk["end"]) for chunk in speech], max_samples)
    return [Segment(start, stop, start / SAMPLE_RATE, stop / SAMPLE_RATE) for start, stop in spans]


def fixed_segments(
    num_samples: int, hop: int, window: int, max_segment_seconds: float, context_seconds: float
) -> list[Segment]:
    """Windows over `num_samples` samples for a feature model whose frame i sees samples [i · hop, i · hop +
    window): each feeds the model at most `max_segment_seconds` of audio, `context_seconds` of it on each side
    seen but not kept, and together they keep each of the file's (num_samples - window) // hop + 1 frames once.
    Raises ConfigError when the context leaves no frame to keep."""
    total = (num_samples - window) // hop + 1
    context = round(context_seconds * SAMPLE_RATE / hop)
    kept = (int(max_segment_seconds * SAMPLE_RATE) - window) // hop + 1 - 2 * context
    if kept < 1:
        raise ConfigError(
            f"max_segment_seconds {max_segment_seconds} leaves no frame to keep with segment_context_seconds "
            f"{context_seconds} on each side; raise it to at least {(2 * context * hop + window) / SAMPLE_RATE:.3f}"
        )
    segments = []
    for first in range(0, total, kept):
        last = min(first + kept, total)  # frames [first, last) are kept
        seen_first, seen_last = max(0, first - context), min(total, last + context)
        start, stop = seen_first * hop, (seen_last - 1) * hop + window
        end = num_samples if last == total else last * hop
        segments.append(
            Segment(start, stop, first * hop / SAMPLE_RATE, end / SAMPLE_RATE, first - seen_first, last - seen_first)
        )
    return segments


class Segmenter:
    """Cuts a recording longer than `max_segment_seconds` into `Segment`s by `method` (vad or fixed; see the module
    docstring) for a feature model with framing `hop` / `window` (16 kHz samples); a shorter one is one segment."""

    def __init__(
        self,
        method: str = "vad",
        max_segment_seconds: float = 60.0,
        *,
        hop: int,
        window: int,
        context_seconds: float = 2.0,
        vad_threshold: float = 0.5,
    ):
        if method not in SEGMENTATIONS:
            raise ConfigError(f"segmentation must be one of {', '.join(SEGMENTATIONS)}, got {method!r}")
        if max_segment_seconds * SAMPLE_RATE < max(window, VAD_WINDOW):
            raise ConfigError(f"max_segment_seconds must hold at least one frame, got {max_segment_seconds}")
        self.method, self.max_segment_seconds = method, max_segment_seconds
        self.hop, self.window, self.context_seconds, self.vad_threshold = hop, window, context_seconds, vad_threshold
        if method == "fixed":  # the settings are checked now, not at the first long file
            longest = int(max_segment_seconds * SAMPLE_RATE) + 1
            fixed_segments(longest, hop, window, max_segment_seconds, context_seconds)

    def __call__(self, reader: AudioReader) -> list[Segment]:
        n = reader.num_samples
        if n <= self.max_segment_seconds * SAMPLE_RATE:
            return [Segment(0, n, 0.0, n / SAMPLE_RATE)]
        if self.method == "vad":  # a piece too short for one frame (a cut of a long chunk) is left out
            segments = vad_segments(reader, self.max_segment_seconds, self.vad_threshold)
            return [s for s in segments if s.num_samples >= self.window]
        return fixed_segments(n, self.hop, self.window, self.max_segment_seconds, self.context_seconds)
