"""The scaled regression file (``linear``: the shipped regression specialist with its trunk step x 1/2 and its
heads' x 1/4, ``docs/sealed/regression/moves/moves_heads_s3_linear.pt``) against the shipped file (``regression``),
game by game on the portfolio's collected games, each trunk kind apart (a trunk of fewer than 100 parameters is
linear: the regression family's linear trunks hold 10-78, its MLP trunks 114 or more).

Per cell and kind: the games, the geometric mean and the median of gap(linear) / gap(regression), and the games the
scaled file wins. The geometric mean is what the portfolio's selector weighs (the mean log regret); the median is
closer to what issue 23's bar reads::

    python docs/sealed/portfolio/linear/by_kind.py > docs/sealed/portfolio/linear/by_kind.txt
"""

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent

for stream in ("tuning", "validation"):
    table = json.loads((HERE / stream / "gaps.json").read_text())
    experts = list(table["setup"]["experts"])
    scaled, shipped = experts.index("linear"), experts.index("regression")
    print(f"{stream} stream ({table['setup']['draws']} draws x {table['setup']['seeds']} seeds a cell)")
    print("| cell | trunk | games | geometric mean | median | scaled file wins |")
    print("|---|---|---|---|---|---|")
    for cell, rows in table.items():
        if not cell.startswith("regression:"):
            continue
        for kind, linear in (("linear", True), ("MLP", False)):
            games = [r["gaps"] for r in rows if (r["game"][0] < 100) == linear]
            logs = sorted(
                math.log(g[scaled] / g[shipped])
                for g in games
                if all(math.isfinite(g[i]) and g[i] > 0 for i in (scaled, shipped))
            )
            half = len(logs) // 2
            median = logs[half] if len(logs) % 2 else (logs[half - 1] + logs[half]) / 2
            geo = math.exp(sum(logs) / len(logs))
            wins = sum(x < 0 for x in logs)
            print(f"| {cell} | {kind} | {len(games)} | {geo:.3f} | {math.exp(median):.3f} | {wins} |")
    print()
