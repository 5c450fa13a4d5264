"""``dlr-engine demo``: the main job end to end on built-in audio.

Renders the demo corpus (a few synthetic ballroom clips in WAV / FLAC / OGG, 44.1 and 48 kHz,
mono and stereo) and extracts DLR, log-mel and tempogram features plus the shipped default
model's style, tempo-class and embedding outputs from it, as ``extract`` does for any corpus.
"""
from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="render the built-in demo audio and extract "
                                                "features and model outputs from it",
                                   description=" ".join(__doc__.split("\n\n")[1].split()))
    parser.add_argument("--out", default="demo_out", help="folder for the audio and outputs")
    parser.add_argument("--model", default="default",
                        help="as for extract; 'default' is the shipped model")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .data.synth import demo_corpus
    from .engine import extract

    out = Path(args.out)
    paths = demo_corpus(out / "audio")
    print(f"demo corpus: {len(paths)} files in {out / 'audio'}")
    summary = extract([str(p) for p in paths], out=out / "features",
                      representations=("dlr", "mel", "tempogram"), model=args.model)
    print(json.dumps(summary, indent=2, default=str))
    outputs = out / "features" / "outputs.parquet"
    if outputs.exists():
        print_predictions(outputs, out / "audio")
    return 0 if summary.get("failed", 0) == 0 else 1


def print_predictions(outputs: Path, audio_dir: Path) -> None:
    """Per track: the most probable style and tempo class (mean over segments) beside the
    labels the demo audio was rendered with."""
    import pyarrow.parquet as pq

    from .data.synth import LABELS_CSV, read_labels
    from .models.registry import tempo_class_names

    table = pq.read_table(outputs).to_pydict()
    truth = {Path(row["path"]).name: row for row in read_labels(audio_dir / LABELS_CSV)}
    tempo_names = tempo_class_names()
    print(f"{'track':28s} {'style (true)':28s} {'tempo class (true)':24s}")
    for track_id in dict.fromkeys(table["id"]):
        rows = [i for i, value in enumerate(table["id"]) if value == track_id]
        label = truth.get(Path(track_id).name)
        style = _most_probable(table, rows, "style_")
        tempo = _most_probable(table, rows, "tempo_")
        true_style = label["style"] if label else "?"
        true_tempo = tempo_names[int(label["tempo_class"])] if label else "?"
        print(f"{Path(track_id).name:28s} {f'{style} ({true_style})':28s} "
              f"{f'{tempo} ({true_tempo})':24s}")


def _most_probable(table: dict, rows: list[int], prefix: str) -> str:
    columns = [name for name in table if name.startswith(prefix)]
    means = {name: sum(table[name][i] for i in rows) / len(rows) for name in columns}
    return max(means, key=means.get).removeprefix(prefix) if means else "-"
