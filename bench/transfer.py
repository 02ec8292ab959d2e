"""Transfer from the embedded corpus to real audio, per corpus × loss × front end, over seeds.

    python bench/transfer.py [REAL] [--hours 1] [--epochs 20] [--seeds 3]
        [--corpora default procedural no-singing ...] [--losses ce aaucsum]
        [--front-ends none window pcen] [--augments off masks masks+mix] [--hidden 128]
        [--out DIR]

Trains the paper's model (2 × BiGRU, ``--hidden`` units) on ``--hours`` of an embedded corpus
(``data.format: synth``, corpus seed 0) — the default one, today's procedural one, or the
default with one provider family removed (`corpus_settings`: the ablation) — with each loss
(LossConfig types with the paper's parameters: aaucsum is aAUCsum(0.75, 0.001)), each front
end (`FRONT_ENDS`), each training augmentation preset (`AUGMENTS`) and seeds 0 … N-1, then
scores the labelled folder REAL (generic format; default ../shared/realdev beside the
repository) with `musicdet.evaluate.evaluate_model`. Prints per run the synthetic validation
AUC of the kept epoch and REAL's pooled frame AUC and EER with 95 % bootstrap CIs over files,
recall and F1 at precision 0.90; then per corpus × loss × front end × augmentation the mean
± sd over seeds. Resumable: a run whose model file and REAL metrics are already in OUT is
read, not redone (OUT/CORPUS-LOSS-FRONTEND[-AUGMENT]-seedN/: the training folder,
realdev/metrics.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from musicdet.config import RunConfig
from musicdet.configtools import to_dict
from musicdet.evaluate import METRICS_FILE, evaluate_model
from musicdet.losses import LOSS_TYPES
from musicdet.modelfile import load_model
from musicdet.synth import SynthConfig, sources
from musicdet.synth.config import ROLES
from musicdet.train import MODEL, train

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_REAL = REPOSITORY.parent / "shared" / "realdev"
FRONT_ENDS: dict[str, dict[str, dict[str, str]]] = {
    "none": {"features": {"mel_scaling": "log"}, "model": {"input_norm": "none"}},
    "window": {"features": {"mel_scaling": "log"}, "model": {"input_norm": "window"}},
    "pcen": {"features": {"mel_scaling": "pcen"}, "model": {"input_norm": "none"}},
    "pcen+window": {"features": {"mel_scaling": "pcen"}, "model": {"input_norm": "window"}},
}
"""Front ends by name: the paper's min-max block scaling of log-Mel + chroma alone (none),
with each window standardised inside the model, PCEN instead of log-Mel, and both."""
COLUMNS = ("val_auc", "auc", "eer", "recall", "f1")
# Training-time augmentation presets (the run config's augment: section) by name.
AUGMENTS: dict[str, dict[str, float]] = {
    "off": {},
    "masks": {"time_masks": 2, "time_mask_frames": 30, "freq_masks": 2, "freq_mask_bins": 16},
    "masks+mix": {"time_masks": 2, "time_mask_frames": 30, "freq_masks": 2,
                  "freq_mask_bins": 16, "mix_prob": 0.5, "mix_level_db": 10, "stretch": 0.1},
}
# Provider families for the ablation: each is removed from the default corpus in turn.
FAMILIES: dict[str, tuple[str, ...]] = {
    "gm": ("gm-scores", "gm-arrangements", "gm-solo", "gm-percussion"),
    "additive": ("additive", "additive-sparse", "additive-percussion"),
    "singing": ("sung-voice", "piper-sung"),
    "recorded-music": ("wesnoth-music", "warzone2100-music", "nexuiz-music", "supertux-music"),
    "recorded-speech": ("asterisk-speech",),
    "recorded-effects": ("opensfx-effects", "supertux-effects"),
    "textured-noise": ("textured-noise",),
    "natural-speech": ("piper", "flite"),
}
# Today's (before issue 10) corpus: additive music, espeak, procedural noise, no singing.
PROCEDURAL = {"music": ("additive",), "solo": ("additive-sparse",),
              "percussion": ("additive-percussion",), "singing": (),
              "speech": ("espeak", "formant-speech"), "noise": ("procedural-noise",)}


def corpus_settings(corpus: str) -> dict[str, Any] | None:
    """The corpus settings (SynthConfig as a dict) of ``corpus``: None (the default),
    ``procedural`` (today's providers only) or ``no-FAMILY`` (the default providers without
    that family; an optional role left empty is left out)."""
    if corpus == "default":
        return None
    roles = {}
    for name, role in ROLES.items():
        chosen = sources.resolve_weights(None, role.default, name, optional=True)
        if corpus == "procedural":
            chosen = {p: w for p, w in role.default.items() if p in PROCEDURAL[name]}
        else:
            chosen = {p: w for p, w in chosen.items() if p not in FAMILIES[corpus[3:]]}
        roles[f"{name}_sources"] = chosen
    return to_dict(SynthConfig(**roles))


@dataclass(frozen=True)
class Run:
    corpus: str
    loss: str
    front_end: str
    seed: int
    augment: str = "off"

    @property
    def name(self) -> str:
        augment = "" if self.augment == "off" else f"-{self.augment}"
        return f"{self.corpus}-{self.loss}-{self.front_end}{augment}-seed{self.seed}"

    @property
    def group(self) -> tuple[str, str, str, str]:
        """What a row of the mean ± sd table pools over seeds."""
        return self.corpus, self.loss, self.front_end, self.augment


def run_config(run: Run, args: argparse.Namespace) -> RunConfig:
    """The run config of one run: the defaults, but for corpus size, schedule, size, front end."""
    front = FRONT_ENDS[run.front_end]
    return RunConfig.from_dict({
        "seed": run.seed,
        "data": {"format": "synth", "synth_hours": args.hours, "synth_seed": 0,
                 "synth": corpus_settings(run.corpus), "cache_dir": str(args.out / "cache")},
        "features": front["features"],
        "model": {"hidden_size": args.hidden, **front["model"]},
        "loss": {"type": run.loss},
        "augment": AUGMENTS[run.augment],
        "training": {"epochs": args.epochs, "device": "cpu"},
    })


def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless done) and evaluate (unless done) one run; its table row."""
    folder = args.out / run.name
    metrics_file = folder / "realdev" / METRICS_FILE
    config = run_config(run, args)
    if not _finished(folder, config):
        train(config, folder, progress=False)
        metrics_file.unlink(missing_ok=True)
    if metrics_file.is_file():
        report = json.loads(metrics_file.read_text(encoding="utf-8"))
    else:
        report = evaluate_model(folder / MODEL, args.real, folder / "realdev",
                                cache_dir=args.out / "cache", bootstrap=args.bootstrap,
                                progress=False)
    pooled, ci = report["pooled"], report["bootstrap"]
    return {"val_auc": load_model(folder / MODEL).metrics["val_auc"],
            "auc": pooled["auc"], "auc_ci": (ci["auc_low"], ci["auc_high"]),
            "eer": pooled["eer"], "eer_ci": (ci["eer_low"], ci["eer_high"]),
            "recall": pooled["recall"] or 0.0, "f1": pooled["f1"] or 0.0}


def _finished(folder: Path, config: RunConfig) -> bool:
    """Whether ``folder`` holds a model trained with ``config`` for all its epochs."""
    history, saved = folder / "history.json", folder / "config.yaml"
    if not ((folder / MODEL).is_file() and history.is_file() and saved.is_file()):
        return False
    epochs = len(json.loads(history.read_text(encoding="utf-8")))
    return saved.read_text(encoding="utf-8") == config.to_yaml() and \
        epochs == config.training.epochs


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def print_tables(rows: dict[Run, dict[str, Any]], real: Path) -> None:
    print(f"\nper run (realdev = {real}; CIs: 95 % bootstrap over files; recall, F1 at P = 0.90)")
    print(f"{'run':28s} {'val AUC':>7s}  {'real AUC [CI]':>21s}  {'real EER [CI]':>21s}  "
          f"{'recall':>6s} {'F1':>6s}")
    for run, row in rows.items():
        auc = f"{row['auc']:.3f} [{row['auc_ci'][0]:.3f}, {row['auc_ci'][1]:.3f}]"
        eer = f"{row['eer']:.3f} [{row['eer_ci'][0]:.3f}, {row['eer_ci'][1]:.3f}]"
        print(f"{run.name:28s} {row['val_auc']:7.3f}  {auc:>21s}  {eer:>21s}  "
              f"{row['recall']:6.3f} {row['f1']:6.3f}")
    print("\nmean ± sd over seeds")
    print(f"{'corpus':14s} {'loss':8s} {'front end':12s} {'augment':10s} {'n':>2s}  " +
          "  ".join(f"{name:>13s}" for name in ("val AUC", "real AUC", "real EER", "recall",
                                                 "F1")))
    for key in dict.fromkeys(run.group for run in rows):
        group = [row for run, row in rows.items() if run.group == key]
        corpus, loss, front, augment = key
        print(f"{corpus:14s} {loss:8s} {front:12s} {augment:10s} {len(group):2d}  " +
              "  ".join(f"{mean_sd([row[c] for row in group]):>13s}" for c in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", nargs="?", type=Path, default=DEFAULT_REAL,
                        help="labelled real audio, generic format (default: %(default)s)")
    parser.add_argument("--hours", type=float, default=1.0, help="embedded corpus size, hours")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds: N of them")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first training seed (seeds K … K+N-1; default 0)")
    parser.add_argument("--corpora", nargs="+", default=["default", "procedural"],
                        choices=["default", "procedural", *(f"no-{f}" for f in FAMILIES)],
                        help="corpora: default, today's procedural one, default without a "
                             "provider family (default: %(default)s)")
    parser.add_argument("--losses", nargs="+", default=["ce", "aaucsum"], choices=LOSS_TYPES)
    parser.add_argument("--front-ends", nargs="+", default=["window"],
                        choices=list(FRONT_ENDS))
    parser.add_argument("--augments", nargs="+", default=["off"], choices=list(AUGMENTS),
                        help="training augmentation presets (`AUGMENTS`; default: off)")
    parser.add_argument("--hidden", type=int, default=128, help="GRU units per direction")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "runs" / "transfer")
    args = parser.parse_args()
    if not args.real.is_dir():
        parser.error(f"{args.real}: no such folder; expected labelled real audio (WAV + "
                     "same-stem CSV onset,offset,label), e.g. ../shared/realdev")
    torch.set_num_threads(args.threads)
    runs = [Run(corpus, loss, front, seed, augment) for corpus in args.corpora
            for loss in args.losses for front in args.front_ends for augment in args.augments
            for seed in range(args.first_seed, args.first_seed + args.seeds)]
    rows = {}
    for run in runs:
        rows[run] = measure(run, args)
        row = rows[run]
        print(f"{run.name}: val AUC {row['val_auc']:.3f}, real AUC {row['auc']:.3f}", flush=True)
    print_tables(rows, args.real)


if __name__ == "__main__":
    main()
