"""Unstructured, block, unit-wise and refilled IMP at equal weights remaining.

Reads the trainings of a finished `benchmarks/deploy.py` run (each
`<deploy dir>/train/<name>/done.json` holds one row per IMP round, with the
test accuracy of the round's kept weights) and compares, at the weights
remaining of each round of the unit-wise IMP schedules:

* `unit`: IMP of whole hidden units (`LotteryTicket(granularity="unit")`);
* `refill`: the same with `refill=True` (Chen et al. 2022: rank by
  unstructured magnitude, then refill the most important units);
* `IMP`: unstructured IMP, and `block 1x4`, `block 1x16`: IMP of blocks,
  all interpolated (linearly in log weights remaining) between the two rounds
  that bracket the level, since their schedule prunes 20% a round.

Every training used the same budget and initial weights (see deploy.py);
one seed, so differences of a few tenths of a point are within the spread
seen across seeds in `benchmarks/reproduce_lenet.py` (0.1-0.2 points std).
Writes `granularity.md` and `granularity.png` into the deploy directory.

    python benchmarks/granularity.py                  # reads runs/deploy
    python benchmarks/granularity.py --deploy-dir runs/deploy_quick
"""

import argparse
import json
import math
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
UNSTRUCTURED = {"imp": "IMP", "block4": "block 1x4", "block16": "block 1x16"}


def load_curves(deploy_dir):
    """`{training name: [(weights remaining, test accuracy %), ...]}`."""
    curves = {}
    for done in sorted((deploy_dir / "train").glob("*/done.json")):
        rows = json.loads(done.read_text(encoding="utf-8"))["rounds"]
        curves[done.parent.name] = [
            (row["weights_remaining"], 100 * row["test"]["accuracy"]) for row in rows
        ]
    return curves


def interpolate(curve, level):
    """The accuracy of `curve` at `level`, linear in log weights remaining."""
    points = sorted(curve, reverse=True)  # Most weights first.
    for (w_hi, a_hi), (w_lo, a_lo) in zip(points, points[1:]):
        if w_lo <= level <= w_hi:
            t = (math.log(w_hi) - math.log(level)) / (math.log(w_hi) - math.log(w_lo))
            return a_hi + t * (a_lo - a_hi)
    return None


def comparison(curves):
    """Markdown lines: one table per unit-wise shape, one row per round."""
    shapes = sorted(name[len("unit_") :] for name in curves if name.startswith("unit_"))
    lines = [_final_blocks(curves)] if "block4" in curves else []
    for shape in shapes:
        unit, refill = curves[f"unit_{shape}"], curves.get(f"refill_{shape}")
        others = {label: curves[n] for n, label in UNSTRUCTURED.items() if n in curves}
        header = ["round", "weights left", "unit", "refill", *others, "unit - IMP"]
        lines += [
            f"### Unit-wise schedule to {shape.replace('x', '-')} hidden units",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for r, (level, accuracy) in enumerate(unit):
            cells = [str(r), f"{100 * level:.1f}%", f"{accuracy:.2f}"]
            cells.append(f"{refill[r][1]:.2f}" if refill and r < len(refill) else "-")
            interpolated = {label: interpolate(c, level) for label, c in others.items()}
            cells += ["-" if v is None else f"{v:.2f}" for v in interpolated.values()]
            imp = interpolated.get("IMP")
            cells.append("-" if imp is None else f"{accuracy - imp:+.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _final_blocks(curves):
    """One line: block IMP against unstructured IMP, round by round."""
    imp = curves["imp"]
    gaps = {
        label: [b - i for (_, b), (_, i) in zip(curves[name], imp)]
        for name, label in UNSTRUCTURED.items()
        if name != "imp" and name in curves
    }
    parts = []
    for label, gap in gaps.items():
        last, early = imp[len(gap) - 1][0], imp[min(7, len(gap) - 1)][0]
        parts.append(
            f"{label}: {gap[-1]:+.2f} points at {100 * last:.1f}% left, "
            f"{min(gap[:8]):+.2f} at worst down to {100 * early:.1f}%"
        )
    return "Block IMP minus unstructured IMP, same rounds: " + "; ".join(parts) + ".\n"


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    styles = {"imp": "o-", "block4": "s--", "block16": "v:"}
    for name, curve in curves.items():
        if name.startswith("control_"):
            continue
        w, a = zip(*curve)
        axes.plot([100 * x for x in w], a, styles.get(name, ".-"), label=name, ms=4)
    for name, curve in curves.items():
        if name.startswith("control_"):
            shape = name[len("control_") :]
            axes.axhline(curve[0][1], lw=0.8, ls=":", color="gray")
            axes.annotate(
                f"dense {shape} from scratch",
                (100, curve[0][1]),
                fontsize=7,
                color="gray",
                ha="right",
                va="bottom",
            )
    axes.set_xscale("log")
    axes.invert_xaxis()
    axes.set_xlabel("weights remaining, % (log)")
    axes.set_ylabel("test accuracy, %")
    axes.set_title("LeNet-300-100 on MNIST: IMP granularities (one seed)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deploy-dir",
        type=pathlib.Path,
        default=ROOT / "runs" / "deploy",
        help="a finished benchmarks/deploy.py output folder (default runs/deploy)",
    )
    args = parser.parse_args(argv)
    curves = load_curves(args.deploy_dir)
    missing = [n for n in ("imp",) if n not in curves] + (
        [] if any(n.startswith("unit_") for n in curves) else ["unit_<shape>"]
    )
    if missing:
        print(
            f"{args.deploy_dir}: no finished training {', '.join(missing)}; run "
            "benchmarks/deploy.py first.",
            file=sys.stderr,
        )
        return 2
    shown = os.path.relpath(args.deploy_dir, ROOT)
    lines = [
        f"Test accuracy (%) of the kept weights of each IMP round, from "
        f"{shown}/train/*/done.json; IMP and block columns "
        "interpolated at the unit schedule's weights remaining (log-linear). "
        "One seed.",
        "",
        *comparison(curves),
    ]
    text = "\n".join(lines)
    print(text)
    (args.deploy_dir / "granularity.md").write_text(text + "\n", encoding="utf-8")
    plot(curves, args.deploy_dir / "granularity.png")
    print(f"Wrote {shown}/granularity.md and granularity.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
