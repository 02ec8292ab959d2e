"""Speech for the synthetic corpus: espeak-ng through ctypes, or a numpy formant fallback.

espeak-ng keeps synthesis state in C statics (pitch flutter phase, echo buffer, gain control,
``rand()``) that no API call resets, so the same text comes out differently depending on what
was spoken before. To keep every programme a pure function of its seed, each utterance loads
the library afresh (``dlopen``), seeds its random generators and unloads it again
(``dlclose``): about 5 ms per utterance. A process-wide lock keeps one voice at a time.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Sequence

import numpy as np
import soxr
from scipy import signal

from musicdet.synth.dsp import SAMPLE_RATE, band, fade, fit_length, samples, set_level

ESPEAK_RATE = 22050  # Hz, espeak-ng's native output rate
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_ESPEAK_LOCK = threading.Lock()
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
    "klatt3", "croak", "Andy", "Annie", "Denis", "Gene", "Mario", "Michael", "anika",
    "belinda", "benjamin", "boris", "david", "edward", "grandpa", "linda", "max", "norbert",
    "paul", "pedro", "steph", "travis", "victor", "zac", "announcer", "aunty", "john",
)  # fmt: skip

# Per language: openers, subjects, verbs, objects, closers ("{n}" becomes a number).
GRAMMARS: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (
        ("Good evening,", "Meanwhile,", "In other news,", "This morning", "According to reports,"),
        ("the minister", "our correspondent", "the city council", "a local family", "the team",
         "the weather service", "the company"),
        ("announced", "reported", "discussed", "rejected", "confirmed", "expects"),
        ("a new plan", "the results", "heavy rain", "the final score", "record prices",
         "the traffic situation", "an agreement"),
        ("for the region", "at {n} o'clock", "after {n} days", "on the motorway", "this weekend",
         "with great interest"),
    ),
    "de": (
        ("Guten Abend,", "Unterdessen", "Heute Morgen", "Nach Angaben der Polizei", "Außerdem"),
        ("der Minister", "unsere Reporterin", "der Stadtrat", "die Mannschaft", "das Unternehmen",
         "der Wetterdienst"),
        ("kündigte", "meldete", "diskutierte", "bestätigte", "erwartet"),
        ("einen neuen Plan", "die Ergebnisse", "starken Regen", "ein Abkommen", "hohe Preise"),
        ("für die Region an", "um {n} Uhr", "nach {n} Tagen", "auf der Autobahn",
         "am Wochenende"),
    ),
    "es": (
        ("Buenas noches,", "Mientras tanto,", "Esta mañana", "Según las autoridades,", "Además,"),
        ("el ministro", "nuestra corresponsal", "el ayuntamiento", "el equipo", "la empresa"),
        ("anunció", "confirmó", "discutió", "rechazó", "espera"),
        ("un nuevo plan", "los resultados", "fuertes lluvias", "un acuerdo", "precios récord"),
        ("para la región", "a las {n} horas", "después de {n} días", "en la autopista",
         "este fin de semana"),
    ),
    "fr": (
        ("Bonsoir,", "Pendant ce temps,", "Ce matin", "Selon la police,", "Par ailleurs,"),
        ("le ministre", "notre envoyée spéciale", "le conseil municipal", "l'équipe",
         "l'entreprise"),
        ("a annoncé", "a confirmé", "a discuté", "a rejeté", "attend"),
        ("un nouveau projet", "les résultats", "de fortes pluies", "un accord", "des prix records"),
        ("pour la région", "à {n} heures", "après {n} jours", "sur l'autoroute", "ce week-end"),
    ),
    "it": (
        ("Buonasera,", "Nel frattempo,", "Questa mattina", "Secondo la polizia,", "Inoltre,"),
        ("il ministro", "la nostra inviata", "il consiglio comunale", "la squadra", "l'azienda"),
        ("ha annunciato", "ha confermato", "ha discusso", "ha respinto", "aspetta"),
        ("un nuovo piano", "i risultati", "forti piogge", "un accordo", "prezzi record"),
        ("per la regione", "alle {n}", "dopo {n} giorni", "in autostrada", "questo fine settimana"),
    ),
    "pt": (
        ("Boa noite,", "Entretanto,", "Esta manhã", "Segundo a polícia,", "Além disso,"),
        ("o ministro", "a nossa correspondente", "a câmara municipal", "a equipa", "a empresa"),
        ("anunciou", "confirmou", "discutiu", "rejeitou", "espera"),
        ("um novo plano", "os resultados", "chuva forte", "um acordo", "preços recorde"),
        ("para a região", "às {n} horas", "depois de {n} dias", "na autoestrada",
         "este fim de semana"),
    ),
    "nl": (
        ("Goedenavond,", "Intussen", "Vanochtend", "Volgens de politie", "Daarnaast"),
        ("de minister", "onze verslaggever", "de gemeenteraad", "het team", "het bedrijf"),
        ("kondigde", "bevestigde", "besprak", "verwierp", "verwacht"),
        ("een nieuw plan", "de resultaten", "zware regen", "een akkoord", "recordprijzen"),
        ("voor de regio", "om {n} uur", "na {n} dagen", "op de snelweg", "dit weekend"),
    ),
}
LANGUAGES = tuple(GRAMMARS)
EspeakSpeaker = tuple[str, str, int, int, int]  # language, voice, rate (wpm), pitch, range
Say = Callable[[np.random.Generator, int], np.ndarray]  # (rng, speaker) -> one utterance

# Vowel formants (F1, F2, F3) in Hz for the fallback synthesiser.
VOWEL_FORMANTS = (
    (730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410),
    (300, 870, 2240), (660, 1720, 2410), (490, 1350, 1690),
)  # fmt: skip


def sentence(rng: np.random.Generator, language: str) -> str:
    """One random news-style sentence in ``language`` (a key of `GRAMMARS`)."""
    openers, subjects, verbs, objects, closers = GRAMMARS[language]
    words = [str(rng.choice(subjects)), str(rng.choice(verbs)), str(rng.choice(objects))]
    if rng.random() < 0.5:
        words.insert(0, str(rng.choice(openers)))
    if rng.random() < 0.7:
        words.append(str(rng.choice(closers)).format(n=int(rng.integers(2, 24))))
    text = " ".join(words)
    return text[0].upper() + text[1:] + str(rng.choice([".", ".", "!", "?"]))


@functools.cache
def espeak_available() -> bool:
    """Whether espeak-ng can be loaded through ``espeakng_loader`` in this process."""
    try:
        _espeak_synth("a", "en", 175, 50, 50)
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def espeak_speak(text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice`` (e.g. "de+m3"), float32 at 16 kHz.

    ``rate`` is in words per minute (80-450); ``pitch`` and ``pitch_range`` are 0-100.
    Deterministic: the same arguments give the same samples whatever was spoken before.
    """
    pcm = _espeak_synth(text, voice, rate, pitch, pitch_range)
    audio = pcm.astype(np.float32) / 32768.0
    return soxr.resample(audio, ESPEAK_RATE, SAMPLE_RATE).astype(np.float32)


def _espeak_synth(text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
    import _ctypes

    import espeakng_loader

    chunks: list[np.ndarray] = []

    def collect(wav: ctypes._Pointer, n: int, _events: int) -> int:  # type: ignore[type-arg]
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _SynthCallback(collect)
    encoded = text.encode("utf-8") + b"\0"
    with _ESPEAK_LOCK:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                              ctypes.c_int]
            data_path = espeakng_loader.get_data_path().encode()
            if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path,
                                     _INITIALIZE_DONT_EXIT) <= 0:
                raise RuntimeError(f"espeak-ng: cannot initialise with data at {data_path!r}")
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"espeak-ng: unknown voice {voice!r}")
            for parameter, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                                     (_PARAM_RANGE, pitch_range)):
                lib.espeak_SetParameter(parameter, value, 0)
            lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
            ctypes.CDLL(None).srand(1)  # breath noise uses libc rand()
            lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def speech(rng: np.random.Generator, seconds: float, engine: str = "espeak") -> np.ndarray:
    """``seconds`` of speech (one or two speakers, pauses between utterances), 16 kHz.

    ``engine`` is "espeak" (falls back to "formant" when espeak-ng cannot be loaded) or
    "formant". The result is RMS-normalised to -20 dBFS.
    """
    if samples(seconds) == 0:
        return np.zeros(0, np.float32)
    if engine == "formant" or not espeak_available():
        return set_level(formant_speech(rng, seconds), -20.0).astype(np.float32)
    speakers = [random_speaker(rng) for _ in range(1 if rng.random() < 0.7 else 2)]
    audio = talk(rng, seconds, lambda r, k: espeak_utterance(r, speakers[k]), len(speakers))
    return set_level(fade(audio, 0.02, 0.05), -20.0).astype(np.float32)


def talk(rng: np.random.Generator, seconds: float, say: Say, speakers: int) -> np.ndarray:
    """``seconds`` of turns: ``say(rng, speaker)`` (an utterance at 16 kHz), then a 0.15-0.7 s
    pause, the ``speakers`` taking turns; float64, levels as ``say`` made them."""
    n = samples(seconds)
    pieces: list[np.ndarray] = [np.zeros(0)]
    total = 0
    while total < n:
        utterance = say(rng, (len(pieces) // 2) % speakers)
        pause = np.zeros(samples(rng.uniform(0.15, 0.7)))
        pieces += [utterance, pause]
        total += len(utterance) + len(pause)
    return fit_length(np.concatenate(pieces), n)


def random_speaker(rng: np.random.Generator) -> EspeakSpeaker:
    """An espeak-ng speaker: language, voice with variant, rate (wpm), pitch and range."""
    language = str(rng.choice(LANGUAGES))
    voice = f"{language}+{rng.choice(VARIANTS)}"
    return (language, voice, int(rng.integers(130, 220)), int(rng.integers(20, 80)),
            int(rng.integers(25, 90)))


def espeak_utterance(rng: np.random.Generator, speaker: EspeakSpeaker) -> np.ndarray:
    """One or two random sentences in ``speaker``'s language, silence trimmed, 16 kHz."""
    language, voice, rate, pitch, pitch_range = speaker
    text = " ".join(sentence(rng, language) for _ in range(int(rng.integers(1, 3))))
    return trim_silence(espeak_speak(text, voice, rate, pitch, pitch_range))


def trim_silence(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """``audio`` from its first to its last sample louder than ``threshold``."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0]: loud[-1] + 1] if len(loud) else audio


def voiced(rng: np.random.Generator, f0_hz: np.ndarray, formants: Sequence[float]) -> np.ndarray:
    """A voiced sound: glottal pulses at pitch contour ``f0_hz`` (one value per sample)
    through resonators at ``formants`` (Hz)."""
    phase = np.cumsum(f0_hz * (1.0 + 0.01 * rng.standard_normal(len(f0_hz)))) / SAMPLE_RATE
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = signal.lfilter([1.0], [1.0, -0.97], pulses)  # -6 dB/octave glottal tilt
    out = source
    for formant in formants:
        bandwidth = 50.0 + 0.06 * formant
        radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        theta = 2 * np.pi * formant / SAMPLE_RATE
        out = signal.lfilter([1.0 - radius], [1.0, -2 * radius * np.cos(theta), radius**2], out)
    return out


def formant_speech(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Speech-like sound without espeak-ng: phrases of consonant-vowel syllables at 3-7 Hz with
    a falling pitch, separated by pauses; float64 at 16 kHz, ``seconds`` long."""
    base_f0 = rng.uniform(90, 240)
    return talk(rng, seconds, lambda r, _: formant_phrase(r, base_f0, int(r.integers(3, 12))), 1)


def formant_phrase(rng: np.random.Generator, base_f0: float, n_syllables: int) -> np.ndarray:
    """``n_syllables`` consonant-vowel syllables with a pitch falling from 1.15 × ``base_f0``
    (Hz) to 0.85 ×; float64 at 16 kHz."""
    syllables = []
    for index in range(n_syllables):
        declination = 1.15 - 0.3 * index / max(n_syllables - 1, 1)
        vowel_n = samples(rng.uniform(0.07, 0.22))
        f0 = base_f0 * declination * np.linspace(1.0, rng.uniform(0.9, 1.1), vowel_n)
        formants = np.array(VOWEL_FORMANTS[rng.integers(len(VOWEL_FORMANTS))], float)
        vowel = voiced(rng, f0, formants * rng.uniform(0.9, 1.15))
        vowel = fade(set_level(vowel, -20.0), 0.02, 0.04)
        syllables += [_consonant(rng), vowel]
    return np.concatenate(syllables)


def _consonant(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # fricative
        noise = band(rng.standard_normal(samples(rng.uniform(0.04, 0.12))),
                     rng.uniform(1500, 4000), 7000)
        return fade(set_level(noise, -30.0), 0.01, 0.01)
    if kind == 1:  # stop: closure then burst
        burst = set_level(band(rng.standard_normal(samples(0.015)), 500, 6000), -24.0)
        return np.concatenate([np.zeros(samples(rng.uniform(0.02, 0.06))), burst])
    return np.zeros(samples(rng.uniform(0.0, 0.03)))  # vowel onset

