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

import numpy as np

from slam_recipes.errors import ConfigError

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_POS_CHARACTER, _CHARS_UTF8 = 1, 1


@dataclasses.dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (language + optional `+variant`) at a speaking rate (words/minute) and base pitch (0-100)."""

    name: str
    voice: str
    rate: int = 175
    pitch: int = 50


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


def _speak_chunk(items: list[tuple[str, Voice]]) -> tuple[int, list[np.ndarray]]:
    """Runs in a fresh process: (sample rate, int16 waveforms) of each (text, voice)."""
    lib, sample_rate = _library()
    chunks: list[np.ndarray] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    def collect(samples, count, events):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    lib.espeak_SetSynthCallback(collect)
    waveforms = []
    for text, voice in items:
        if lib.espeak_SetVoiceByName(voice.voice.encode()) != 0:
            raise ConfigError(f"espeak-ng has no voice {voice.voice!r} (voice {voice.name})")
        lib.espeak_SetParameter(_RATE, voice.rate, 0)
        lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
        lib.espeak_ng_SetRandSeed(0)
        chunks.clear()
        data = text.encode()
        if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not speak {text!r}")
        lib.espeak_Synchronize()
        waveforms.append(np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
    return sample_rate, waveforms


def speak(
    items: list[tuple[str, Voice]], *, chunk_size: int = 64, num_workers: int = 2
) -> tuple[int, list[np.ndarray]]:
    """(sample rate, int16 waveforms) of each (text, voice), in order. Chunks of `chunk_size` items are spoken by fresh
    processes (`num_workers` at a time), so the audio of an item depends only on its chunk, not on the pool."""
    _loader()  # fail early, in this process, when espeak-ng is missing
    parts = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    context = multiprocessing.get_context("fork")  # children use only ctypes and numpy
    with context.Pool(num_workers, maxtasksperchild=1) as pool:
        results = pool.map(_speak_chunk, parts, chunksize=1)
    rates = {rate for rate, _ in results}
    if len(rates) > 1:
        raise RuntimeError(f"espeak-ng returned several sample rates: {sorted(rates)}")
    return rates.pop() if rates else 22050, [w for _, waves in results for w in waves]
