"""Regenerate the figures of the results pages (``docs/results/*.md``), each from the command that gives it.

    python scripts/results.py                      # run every figure, print the blocks, change nothing
    python scripts/results.py --write              # ... and rewrite the blocks in their pages
    python scripts/results.py --only main_job quadratic --write

Every figure lives in its page (:attr:`Figure.page`) between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->``, beside the prose that explains it; its first line is a comment naming the command and
the commit it was produced on. Deterministic figures (seeded runs,
one torch thread) are the command's output as printed, and ``tests/test_readme_figures.py`` fails when the code
no longer prints them: figures that take under a minute in the default run, the others in a ``slow`` test.
They are compared by :func:`same_figure`, to the printed precision: another CPU (another instruction set, or
MKL code path) computes the same sums in another order, which moves a result by round-off, so a printed number
may differ by one unit in its last digit, and numbers at round-off level (below 1e-12, where a float64
computation of O(1) quantities has no more correct digits) agree with any other such number. Timing figures are
run several times and reported as the median with the range of the runs, since this machine's timings vary from
run to run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtg_env._platform import cpu_model

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


@dataclass(frozen=True)
class Figure:
    """One figure: the command that gives it, how its output becomes the block, and the page it lives in."""

    page: str
    """The results page holding the block, under ``docs/results/`` (``"games.md"``)."""
    command: list[str]
    """argv; ``{tmp}`` is replaced by a fresh temporary directory."""
    render: Callable[[list[str]], str]
    """The block's Markdown from the stdout of each run."""
    deterministic: bool = True
    """Reproduced exactly (one run, compared by the test) rather than summarised over ``runs`` runs."""
    runs: int = 1
    keep: str | None = None
    """A directory of the repository the command's ``{tmp}`` is with ``--write`` (the report it generates:
    ``docs/audit``, written as ``--out docs/audit``); a run that only checks the figure writes into a temporary
    directory, never into the repository."""
    chaotic: str | None = None
    """A regular expression of the lines that report a training run amplifying round-off (PPO's, the audit's
    non-convex digits games): seeded and exact on the CPU model that produced them (the block names the model),
    but on another CPU the same sums in another order train another policy or reach another end point. There
    those lines' text must match and their ``mean ± spread`` pairs agree within the larger spread; their other
    numbers are not compared (:func:`same_figure`), so a matched line without such pairs (the audit's) is compared
    by its text alone; every other line is compared as usual."""


def _drop(lines: list[str], *prefixes: str) -> list[str]:
    """The lines that do not start (after indentation) with one of ``prefixes``."""
    return [line for line in lines if not line.strip().startswith(prefixes)]


def _text_block(lines: list[str]) -> str:
    return "```text\n" + "\n".join(line.rstrip() for line in lines).strip("\n") + "\n```"


def _main_job(outputs: list[str]) -> str:
    lines = outputs[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("task "))
    table = [line for line in lines[start:] if line and not line.startswith("wrote ")]
    return _text_block(table)


def _untimed(render: Callable[[list[str]], str]) -> Callable[[list[str]], str]:
    """``render`` without the wall times a deterministic figure's header quotes (``(58 s)``): not part of the result."""
    return lambda outputs: re.sub(r" \(\d+ s\)", "", render(outputs))


def _verbatim(*drop: str) -> Callable[[list[str]], str]:
    def render(outputs: list[str]) -> str:
        return _text_block(_drop(outputs[0].splitlines(), *drop))

    return render


def _timing_table(outputs: list[str], label_width: int, column: int, header: str) -> str:
    """Median and range over runs of one numeric column of a benchmark's table rows."""
    values: dict[str, list[float]] = {}
    for out in outputs:
        for line in out.splitlines():
            label, rest = line[:label_width].strip(), line[label_width:].split()
            if label and len(rest) > column and all(_is_number(v) for v in rest):  # a table row, not a header
                values.setdefault(label, []).append(float(rest[column]))
    rows = [f"| configuration | {header}: median | range over {len(outputs)} runs |", "|---|---|---|"]
    for label, vs in values.items():
        rows.append(f"| {label} | {statistics.median(vs):.3f} | {min(vs):.3f} – {max(vs):.3f} |")
    return "\n".join(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _audit(outputs: list[str]) -> str:
    """The audit's findings, from the report data its command wrote (``audit.json`` beside the ``report.md`` its
    last line names; cwd-relative paths are the repository's)."""
    import json

    written = re.findall(r"^wrote (.*report\.md)$", outputs[0], flags=re.M)
    if not written:
        raise ValueError(f"the audit printed no `wrote .../report.md` line; its output ended {outputs[0][-300:]!r}")
    data = json.loads((ROOT / Path(written[-1]).parent / "audit.json").read_text())
    return "\n".join(f"- **{s['title']}.** {s['finding']}" for s in data["sections"])


def _cells(outputs: list[str], prefix: str, keys: int) -> dict[tuple[str, ...], list[list[float]]]:
    """Rows of the benchmark lines that start with ``prefix``: the first ``keys`` fields name the row, the rest
    are numbers; one list of values per run."""
    rows: dict[tuple[str, ...], list[list[float]]] = {}
    for out in outputs:
        for line in out.splitlines():
            parts = line.split()
            values = parts[1 + keys :]
            if parts and parts[0] == prefix and values and all(_is_number(v) for v in values):  # not the header
                rows.setdefault(tuple(parts[1 : 1 + keys]), []).append([float(v) for v in values])
    return rows


def _spread(values: list[float], spec: str) -> str:
    med = format(statistics.median(values), spec)
    return med if len(values) == 1 else f"{med} ({format(min(values), spec)}–{format(max(values), spec)})"


def _engine(outputs: list[str]) -> str:
    """The engine benchmark's three tables: median (range) over the runs of every cell."""
    lines = [
        f"Median (range) of {len(outputs)} runs.",
        "",
        "| suite | B | engine game-steps/s | ÷ hand-written batched reference | ÷ loop of lone envs |",
        "|---|---|---|---|---|",
    ]
    for (suite, batch), runs in _cells(outputs, "THROUGHPUT", 2).items():
        cols = list(zip(*runs, strict=True))
        lone = _spread(list(cols[2]), ".1f") if len(cols) > 2 else "—"
        lines.append(
            f"| {suite} | {batch} | {_spread(list(cols[0]), '.0f')} | {_spread(list(cols[1]), '.2f')} | {lone} |"
        )
    lines += [
        "",
        "Per-task trunk Jacobian, B = 64: the engine's time ÷ a plain per-task backward loop (below 1: faster).",
        "",
        "| suite | trunk n | M = 2 | M = 4 | M = 8 | M = 16 | M = 32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for (suite, n), runs in _cells(outputs, "JACOBIAN", 2).items():
        cols = list(zip(*runs, strict=True))
        lines.append(f"| {suite} | {n} | " + " | ".join(_spread(list(c), ".2f") for c in cols) + " |")
    return "\n".join(lines)


def _bench(outputs: list[str]) -> str:
    """The default benchmark's leaderboard and manipulability table as ``mtg-env bench`` prints them (its
    timing line left out: the tables are deterministic, the time is not)."""
    lines = outputs[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Benchmark"))
    body = [line for line in lines[start + 1 :] if " s wall, " not in line]
    body = ["#" + line if line.startswith("## ") else line for line in body]  # under the page's heading
    return "\n".join(line.rstrip() for line in body).strip("\n")


def _module_suite(outputs: list[str]) -> str:
    """The ModuleSuite step benchmark: speed ratios and memory, median (range) over the runs."""
    lines = [
        f"Median (range) of {len(outputs)} runs.",
        "",
        "| B | reference | engine ms per game-step | reference ms per game-step | engine speed ÷ reference |",
        "|---|---|---|---|---|",
    ]
    for (games, reference), runs in _cells(outputs, "SPEED", 2).items():
        cols = list(zip(*runs, strict=True))
        lines.append(
            f"| {games} | {reference} | {_spread(list(cols[0]), '.2f')} | {_spread(list(cols[1]), '.2f')} | "
            f"{_spread(list(cols[2]), '.2f')} |"
        )
    lines += ["", "| B | engine MiB | hand-written MiB | engine ÷ hand-written |", "|---|---|---|---|"]
    for (games,), runs in _cells(outputs, "MEMORY", 1).items():
        cols = list(zip(*runs, strict=True))
        lines.append(f"| {games} | " + " | ".join(_spread(list(c), ".2f" if i == 2 else ".1f") for i, c in
                                                 enumerate(cols)) + " |")  # fmt: skip
    return "\n".join(lines)


PY = sys.executable
FIGURES: dict[str, Figure] = {
    "main_job": Figure("games.md", [PY, "-m", "mtg_env.cli", "run", "--no-progress", "--out", "{tmp}"], _main_job),
    "quadratic": Figure("games.md", [PY, "examples/quadratic_equilibrium.py"], _verbatim()),
    "ppo": Figure(
        "games.md", [PY, "examples/ppo_vs_paper.py", "--out", "{tmp}"], _untimed(_verbatim("wrote ")), chaotic=r"^PPO "
    ),
    "toy2d": Figure(
        "games.md",
        [PY, "examples/toy2d_trajectories.py", "--out", "{tmp}"],
        _verbatim("wrote ", "("),
    ),
    "toy_papers": Figure(
        "games.md",
        [PY, "examples/mtl_toy_papers.py", "--out", "{tmp}"],
        _verbatim("wrote ", "(total", "[one engine batch"),
    ),
    "audit": Figure(
        "audit.md",
        [PY, "-m", "mtg_env.cli", "audit", "--no-progress", "--out", "{tmp}"],
        _audit,
        keep="docs/audit",
        chaotic=r"^- \*\*Remarks 10 and 13",
    ),
    "bench": Figure(
        "bench.md",
        [PY, "-m", "mtg_env.cli", "bench", "--backend", "process", "--no-progress", "--out", "{tmp}"],
        _bench,
    ),
    "step_overhead": Figure(
        "speed.md",
        [PY, "benchmarks/step_overhead.py"],
        lambda outs: _timing_table(outs, 32, 2, "steps/s vs the batched reference"),
        deterministic=False,
        runs=3,
    ),
    "engine": Figure(
        "speed.md",
        [PY, "benchmarks/engine_throughput.py", "--rounds", "3"],
        _engine,
        deterministic=False,
        runs=3,
    ),
    "multidigits": Figure(
        "games.md",
        [PY, "examples/multidigits_rules.py"],
        lambda outs: "\n".join(_drop(outs[0].splitlines(), "(")).strip("\n"),
    ),
    "module_suite_step": Figure(
        "speed.md",
        [PY, "benchmarks/module_suite_step.py", "--rounds", "5"],
        _module_suite,
        deterministic=False,
        runs=3,
    ),
    "tuning_players": Figure(
        "speed.md",
        [PY, "benchmarks/tuning_players.py"],
        lambda outs: _timing_table(outs, 12, 3, "one formula ÷ grouped"),
        deterministic=False,
        runs=3,
    ),
    "consensus_cost": Figure(
        "speed.md",
        [PY, "benchmarks/consensus_cost.py"],
        lambda outs: _timing_table(outs, 14, 1, "step cost vs `mean`"),
        deterministic=False,
        runs=3,
    ),
}


#: Below this a printed number is round-off (see the module docstring).
ROUND_OFF = 1e-12
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: ``mean ± spread``: the two numbers.
_SPREAD = re.compile(rf"({_NUMBER.pattern}) ± ({_NUMBER.pattern})")


def _last_place(token: str) -> float:
    """One unit in the last printed digit of the number ``token`` (``0.9777`` → 1e-4, ``8.445e-16`` → 1e-19)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def same_figure(expected: str, printed: str, chaotic: str | None = None) -> str | None:
    """``None`` when the block ``printed`` is the block ``expected`` to the printed precision; else what differs.

    Text must match exactly; numbers may differ by one unit in the last printed digit (round-off moving a value
    across a rounding boundary), and two numbers both below :data:`ROUND_OFF` in magnitude are equal.
    ``chaotic`` (:attr:`Figure.chaotic`, given on another CPU than the one that produced the block): on the lines it
    matches only the ``mean ± spread`` pairs are compared, each mean within the larger of the two spreads."""
    a_lines, b_lines = expected.splitlines(), printed.splitlines()
    if len(a_lines) != len(b_lines):
        return f"{len(a_lines)} lines in the page, {len(b_lines)} printed"
    for row, (a, b) in enumerate(zip(a_lines, b_lines, strict=True)):
        if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
            return f"line {row + 1}: page {a!r}, printed {b!r}"
        if chaotic is not None and re.search(chaotic, a):
            for (x, dx), (y, dy) in zip(_SPREAD.findall(a), _SPREAD.findall(b), strict=True):
                if abs(float(x) - float(y)) > max(float(dx), float(dy)):
                    return f"line {row + 1}: page {x} ± {dx}, printed {y} ± {dy} (in {b!r})"
            continue
        for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True):
            fx, fy = float(x), float(y)
            if abs(fx) < ROUND_OFF and abs(fy) < ROUND_OFF:
                continue
            if abs(fx - fy) > 1.0001 * max(_last_place(x), _last_place(y)):
                return f"line {row + 1}: page {x}, printed {y} (in {b!r})"
    return None


def provenance(name: str, commit: str) -> str:
    """The block's first line: the command that gives it and the commit it was produced on (a chaotic figure's:
    and the CPU model)."""
    cpu = f" on {cpu_model()}" if FIGURES[name].chaotic is not None else ""
    return f"<!-- produced by `python scripts/results.py --only {name} --write` at commit {commit}{cpu} -->"


def produced_on(block: str) -> str | None:
    """The CPU model a block's provenance line names (``None``: it names none)."""
    match = re.match(r"<!-- produced by .* at commit \S+ on (.+) -->", block.splitlines()[0] if block else "")
    return match.group(1) if match else None


def _commit() -> str:
    """The short hash of HEAD, ``-dirty`` when the working tree has changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def figure_body(block: str) -> str:
    """A block without its provenance line."""
    lines = block.splitlines()
    return "\n".join(lines[1:]) if lines and lines[0].startswith("<!-- produced by") else block


def run_figure(name: str, write: bool = False) -> tuple[str, float]:
    """Run figure ``name``'s command (``runs`` times) with one torch thread; its block and the seconds taken.
    ``write``: the command writes into the figure's :attr:`Figure.keep` directory of the repository."""
    figure = FIGURES[name]
    # One thread: the deterministic figures are bit-exact only at a fixed thread count, and the timings are
    # the house's one-thread ratios.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    outputs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # alive until the block is rendered (it may read the output)
        for run in range(figure.runs):
            tmp = Path(scratch) / str(run)
            tmp.mkdir()
            out = figure.keep if write and figure.keep is not None else str(tmp)
            argv = [part.replace("{tmp}", out) for part in figure.command]
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"figure {name!r}: {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}"
                )
            outputs.append(done.stdout)
        seconds = time.perf_counter() - start
        block = figure.render(outputs)
    return block, seconds


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- results:{name} -->\n)(.*?)\n?(<!-- /results:{name} -->)", flags=re.S)


def page_path(name: str) -> Path:
    """The results page that holds figure ``name``'s block."""
    return RESULTS / FIGURES[name].page


def figure_block(name: str, text: str | None = None) -> str:
    """The block of figure ``name`` as it stands in its page (or in ``text``, that page's text)."""
    page = page_path(name)
    match = _pattern(name).search(page.read_text() if text is None else text)
    if match is None:
        raise KeyError(
            f"{page.relative_to(ROOT)} has no block <!-- results:{name} --> ... <!-- /results:{name} -->; "
            f"move it back or change FIGURES[{name!r}].page"
        )
    return match.group(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="figures to regenerate (default: all)")
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in their pages")
    args = parser.parse_args(argv)
    names = args.only or list(FIGURES)
    olds = {name: figure_body(figure_block(name)) for name in names}  # fail before running anything if one is missing
    commit = _commit()
    for name in names:
        block, seconds = run_figure(name, write=args.write)
        status = "unchanged" if block == olds[name] else "CHANGED"
        print(f"## {name} ({seconds:.0f} s, {status})\n{block}\n", flush=True)
        if args.write:  # into the page as it is now (it may have been edited while the figure ran)
            page = page_path(name)
            block = provenance(name, commit) + "\n" + block
            page.write_text(_pattern(name).sub(lambda m, b=block: m.group(1) + b + "\n" + m.group(3), page.read_text()))
            print(f"wrote {name} into {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
