"""Offline text-to-speech with espeak-ng, for building the demo corpus (`recipes/make_demo_corpus.py`).

espeak-ng is used through its C API (ctypes) from the `espeakng-loader` wheel, which bundles the library and its
voice data: `pip install -e ".[tts]"`. espeak-ng is GPL-3.0-or-later: it is an optional extra, not a dependency of
this package, loaded (ctypes) only while the corpus is (re)built, and none of it is shipped here. The corpus it
produced (units, texts) is committed, so no recipe needs it at run time.

espeak-ng keeps synthesis state from one utterance to the next (the same text spoken twice in one process gives
different samples, even with its random seed reset), so a waveform depends on what the process spoke before. For a reproducible corpus every
chunk of utterances is spoken by a fresh process: the output then depends only on the chunk's own texts and voices.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import re

import numpy as np

from slam_recipes.errors import ConfigError

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_EVENT_END_OF_LIST, _EVENT_WORD = 0, 1  # espeak_EVENT_TYPE
_WORD = re.compile(r"[\w']+")
_SILENCE = 100  # int16 mean magnitude below which a 10 ms block is silent (espeak-ng's pauses are exact zeros)


@dataclasses.dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (language + optional `+variant`) at a speaking rate (words/minute) and base pitch (0-100)."""

    name: str
    voice: str
    rate: int = 175
    pitch: int = 50


class _Event(ctypes.Structure):
    """espeak-ng's `espeak_EVENT` (speak_lib.h): a word event gives the word's place in the text (1-based
    character position and length) and the sample at which its speech starts."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


def tts_version() -> str:
    """The espeak-ng wheel's version (part of what decides the audio)."""
    from importlib.metadata import version

    return f"espeakng-loader {version('espeakng-loader')}"


def _loader():
    try:
        import espeakng_loader
    except ImportError as err:
        raise ConfigError('building the demo corpus needs espeak-ng: pip install -e ".[tts]"') from err
    return espeakng_loader


def _library():
    espeakng_loader = _loader()
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError("espeak-ng failed to initialise")
    return lib, rate


def _speak_chunk(items: list[tuple[str, Voice]]) -> tuple[int, list[np.ndarray], list[list[dict]]]:
    """Runs in a fresh process: (sample rate, int16 waveforms, word alignments) of each (text, voice)."""
    lib, sample_rate = _library()
    chunks: list[np.ndarray] = []
    starts: list[tuple[int, int, int]] = []  # (sample, text position, length) of each word

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
    def collect(samples, count, events):
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_WORD:
                starts.append((events[i].sample, events[i].text_position, events[i].length))
            i += 1
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    lib.espeak_SetSynthCallback(collect)
    waveforms, alignments = [], []
    for text, voice in items:
        if lib.espeak_SetVoiceByName(voice.voice.encode()) != 0:
            raise ConfigError(f"espeak-ng has no voice {voice.voice!r} (voice {voice.name})")
        lib.espeak_SetParameter(_RATE, voice.rate, 0)
        lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
        lib.espeak_ng_SetRandSeed(0)
        chunks.clear()
        starts.clear()
        data = text.encode()
        if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not speak {text!r}")
        lib.espeak_Synchronize()
        waveform = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        waveforms.append(waveform)
        alignments.append(word_alignment(text, waveform, sample_rate, starts))
    return sample_rate, waveforms, alignments


def word_alignment(
    text: str, waveform: np.ndarray, sample_rate: int, starts: list[tuple[int, int, int]]
) -> list[dict]:
    """The words espeak-ng spoke, in the sTinyStories `aligned_text` layout: [{word, start_time, end_time}] in
    seconds (rounded to 0.1 ms). `starts`: its word events, (first sample, 1-based character position, length in
    characters; espeak-ng places a sentence's first word one character early). The words are the text's runs of
    letters, digits and apostrophes, matched to the events in order (so "duck." is "duck"); a text whose word count
    differs from its events' is a RuntimeError. A word spans its sound: from its first to its last non-silent 10 ms
    block between its event and the next word's (or the audio's end), so silence at either end of that stretch
    belongs to no word. The events are espeak-ng's, not a forced alignment: a word's first sound (the "th" of
    "this") can come a few blocks before its event, taking the pause before it into the previous word."""
    names = _WORD.findall(text)
    if len(names) != len(starts):
        raise RuntimeError(f"espeak-ng spoke {len(starts)} words of the {len(names)} in {text!r}")
    block = sample_rate // 100
    loud = np.abs(waveform.astype(np.float32))
    if loud.size:
        loud = np.add.reduceat(loud, np.arange(0, loud.size, block)) / block >= _SILENCE
    words = []
    ends = [sample for sample, _, _ in starts[1:]] + [waveform.size]
    for name, (sample, _, _), next_start in zip(names, starts, ends, strict=True):
        first, last = sample // block, -(-next_start // block)
        sounding = np.flatnonzero(loud[first:last])
        begin, end = sample, next_start
        if sounding.size:  # the word's sound: from its first to its last non-silent block
            begin = max(sample, (first + int(sounding[0])) * block)
            end = min(next_start, (first + int(sounding[-1]) + 1) * block)
        words.append({
            "word": name,
            "start_time": round(begin / sample_rate, 4),
            "end_time": round(max(end, begin) / sample_rate, 4),
        })  # fmt: skip
    return words


def speak(
    items: list[tuple[str, Voice]], *, chunk_size: int = 64, num_workers: int = 2
) -> tuple[int, list[np.ndarray], list[list[dict]]]:
    """(sample rate, int16 waveforms, word alignments: see `word_alignment`) of each (text, voice), in order. Chunks
    of `chunk_size` items are spoken by fresh processes (`num_workers` at a time), so the audio of an item depends only
    on its chunk, not on the pool."""
    _loader()  # fail early, in this process, when espeak-ng is missing
    parts = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    context = multiprocessing.get_context("fork")  # children use only ctypes and numpy
    with context.Pool(num_workers, maxtasksperchild=1) as pool:
        results = pool.map(_speak_chunk, parts, chunksize=1)
    rates = {rate for rate, _, _ in results}
    if len(rates) > 1:
        raise RuntimeError(f"espeak-ng returned several sample rates: {sorted(rates)}")
    waveforms = [w for _, waves, _ in results for w in waves]
    return rates.pop() if rates else 22050, waveforms, [a for _, _, words in results for a in words]
