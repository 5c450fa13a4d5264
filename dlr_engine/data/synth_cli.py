"""``dlr-engine synth``: write a synthetic rhythm corpus (audio files plus labels.csv)."""
from __future__ import annotations

from pathlib import Path

from .soundfont import SOURCES, SoundFontUnavailable, availability
from .synth import AUDIO_FORMATS, CORPUS_SAMPLE_RATE, write_corpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="render a synthetic ballroom-like rhythm corpus with style/tempo/tag labels",
        description="Render clips 0..N-1 of corpus SEED of a source (the synthesiser, or drum "
                    "grooves through a SoundFont) into DIR as mono audio files plus DIR/labels.csv. "
                    "The same source and seed always give the same audio.")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (created if missing)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, required=True, help="corpus seed (non-negative)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="clip duration in seconds (default 30)")
    parser.add_argument("--sample-rate", type=int, default=CORPUS_SAMPLE_RATE,
                        help=f"Hz (default {CORPUS_SAMPLE_RATE})")
    parser.add_argument("--format", choices=tuple(AUDIO_FORMATS), default="wav",
                        help="audio format (default wav)")
    parser.add_argument("--source", choices=tuple(SOURCES), default="synth",
                        help="synth: the built-in synthesiser's ballroom styles (default); soundfont: "
                             "General MIDI drum grooves (60-240 BPM, no style label) played through a "
                             "GM SoundFont with FluidSynth (needs the soundfont extra and a SoundFont, "
                             "e.g. apt-get install fluid-soundfont-gm; or set DLR_ENGINE_SOUNDFONT); "
                             "soundfont-out-of-source: its held-out kits, grooves and room")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    reason = availability() if args.source != "synth" else None
    if reason:  # a missing SoundFont or FluidSynth says what to install, before any work
        raise SoundFontUnavailable(reason)
    csv_path = write_corpus(args.out, args.n, args.seed, seconds=args.seconds,
                            sample_rate=args.sample_rate, fmt=args.format, render=SOURCES[args.source])
    print(f"wrote {args.n} clips and {csv_path}")
    return 0
