"""The README's main command: run a study, export its best config, train the final model.

    python -m search.demo studies/smoke.yaml

Idempotent: a study already in its storage is resumed (a finished one is left as it is).
"""

from __future__ import annotations

import sys

from musicdet.config import load_run_config
from musicdet.train import train

from .export import export_best, load_study
from .runner import run_study
from .significance import compare_top
from .spec import load_spec
from .study import study_counts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_path = args[0] if args else "studies/smoke.yaml"
    spec = load_spec(spec_path)
    result = run_study(spec, resume=True)
    counts = study_counts(load_study(spec))
    print("trials: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
          " (the best is the best COMPLETE trial; DUPLICATE: a configuration already trained)")
    best_yaml = spec.workdir / "best.yaml"
    number, _ = export_best(spec, best_yaml)
    print(f"best trial {number} (value {result.best_value:.4f}) exported to {best_yaml}")
    significance = compare_top(spec, load_study(spec), 2)
    if significance is not None:
        print(significance.format().splitlines()[-1])  # the best against the runner-up
    final = train(load_run_config(best_yaml), spec.workdir / "final", progress=True)
    metric = spec.search.primary.metric
    print(f"\nfinal model: {final.model_path} ({metric} {final.best.metrics()[metric]:.4f})")
    print(f"detect music: musicdet detect {final.model_path} AUDIO --out DIR")
    print(f"browse the study: musicdet-search ui {spec_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
