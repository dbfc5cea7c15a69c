#!/usr/bin/python3
"""Precision-recall plot from `imgret eval-retrieval --csv` output.

usage: /usr/bin/python3 bench/plot_pr.py PR.csv OUT.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        rows = list(csv.reader(f))
    levels = [float(h.rsplit("_", 1)[1]) for h in rows[0][1:]]
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows[1:]:
        name = r[0]
        style = "-" if name.startswith(("AE", "FC7")) else "--" if name.startswith("ITQ") else ":"
        ax.plot(levels, [float(v) for v in r[1:]], style, marker=".", label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("interpolated precision")
    ax.set_title("Fashion-MNIST: 10,000 test queries, 60,000 training images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
