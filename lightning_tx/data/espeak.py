"""A minimal ctypes binding to eSpeak NG (the library shipped by ``espeakng-loader``):
synthesize text with a voice, rate and pitch, and return the waveform with the
synthesizer's own phoneme events (IPA names and start times)."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the utterance
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """One synthesized utterance.

    Attributes:
        waveform: ``[S]`` float32 samples in [-1, 1] at ``sample_rate``.
        sample_rate: Hz (eSpeak NG synthesizes at 22,050 Hz).
        phonemes: ``(start_seconds, ipa_name)`` in time order, from the phoneme events;
            each phoneme lasts until the next one starts (the last until the end).
    """

    waveform: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, str]]


class ESpeak:
    """eSpeak NG, loaded once per process (the library keeps global state: one synthesis at
    a time, guarded by a lock)."""

    _lock = threading.Lock()
    _library = None
    _sample_rate = 0

    def __init__(self) -> None:
        with self._lock:
            if ESpeak._library is None:
                ESpeak._library, ESpeak._sample_rate = self._load()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[float, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds a pointer

    @staticmethod
    def _load():
        try:
            import espeakng_loader
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise RuntimeError("the built-in corpus needs the package `espeakng-loader`") from error
        library = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        library.espeak_Initialize.restype = ctypes.c_int
        library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        library.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        library.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        sample_rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, options)
        if sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise (data path {data_path.decode()})")
        return library, sample_rate

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                name = event.id.string.decode("utf-8", errors="replace")
                self._events.append((event.audio_position / 1000.0, name))
            index += 1
        return 0

    def synthesize(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50) -> Synthesis:
        """Speak ``text`` with ``voice`` (e.g. ``"en-us"``, ``"de+f2"``), ``rate`` in words
        per minute (80-450) and ``pitch`` (0-99)."""
        library = ESpeak._library
        with self._lock:
            self._chunks, self._events = [], []
            if library.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            library.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            library.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            library.espeak_SetSynthCallback(self._callback)
            encoded = text.encode("utf-8") + b"\0"
            status = library.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise RuntimeError(f"eSpeak NG failed to synthesize {text!r} (status {status})")
            library.espeak_Synchronize()
            waveform = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            phonemes = sorted(self._events)
        return Synthesis((waveform.astype(np.float32) / 32768.0), ESpeak._sample_rate, phonemes)
