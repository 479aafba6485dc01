"""The ``mambaad`` command line: ``mambaad <verb> [options]``.

Each verb is a pair of small functions, ``add_<verb>_args(parser)`` and ``cmd_<verb>(args) -> int``,
registered in the one table :data:`VERBS`; adding a verb means adding one row. User errors
(:class:`~mambaad.errors.MambaADError`) are printed as a single ``error: ...`` line on stderr with exit
status 1 (``--debug`` shows the traceback instead); argparse usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mambaad import __version__
from mambaad.errors import ConfigError, MambaADError

if TYPE_CHECKING:
    from mambaad.data.summary import ClassSummary


# --------------------------------------------------------------------------------------------- data
def add_data_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad data``."""
    from mambaad.data.formats import list_formats

    p.add_argument("root", type=Path, help="data set root folder")
    p.add_argument("--format", choices=list_formats(), default=None, help="layout (default: detect it)")
    p.add_argument("--meta", default=None, help="meta file name for --format meta (default meta.json)")
    p.add_argument("--check", action="store_true", help="decode every image and mask (finds corrupt files)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _format_table(fmt: str, root: Path, summaries: dict[str, ClassSummary], checked: bool) -> str:
    cols = ("train_good", "test_good", "test_anomalous", "masks")
    width = max([5, *(len(c) for c in summaries)])
    lines = [f"format: {fmt}   root: {root}", f"{'class':<{width}}  " + "  ".join(f"{c:>14}" for c in cols)]
    totals = dict.fromkeys(cols, 0)
    for name, s in summaries.items():
        vals = [getattr(s, c) for c in cols]
        for c, v in zip(cols, vals):
            totals[c] += v
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>14}" for v in vals))
    if len(summaries) > 1:
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[c]:>14}" for c in cols))
    problems = [f"  {name}: {msg}" for name, s in summaries.items() for msg in s.problems]
    lines.append("problems:" if problems else "problems: none")
    if not checked:
        lines.append(
            "(files were not decoded; --check reads every image and mask, finding corrupt files and empty masks)"
        )
    lines.extend(problems)
    return "\n".join(lines)


def _progress(done: int, total: int) -> None:
    if done % 500 == 0 or done == total:
        end = "\n" if done == total else ""
        print(f"\rchecked {done}/{total} files", end=end, file=sys.stderr, flush=True)


def cmd_data(args: argparse.Namespace) -> int:
    """Detect (or take) the layout of a data root and print per-class counts and problems."""
    from mambaad.data.folder import check_root
    from mambaad.data.formats import detect_format, read_dataset
    from mambaad.data.meta import read_meta
    from mambaad.data.summary import check_files, summarize

    root = check_root(args.root)
    fmt = args.format or detect_format(root)
    if args.meta and fmt != "meta":
        raise ConfigError(f"--meta: only used with --format meta (layout here: {fmt})")
    samples = read_meta(root, args.meta) if args.meta else read_dataset(root, fmt)
    summaries = summarize(samples)
    if args.check:
        check_files(samples, summaries, progress=_progress if sys.stderr.isatty() else None)
    if args.json:
        out = {"format": fmt, "root": str(root), "classes": {k: v.to_json() for k, v in summaries.items()}}
        print(json.dumps(out, indent=1))
    else:
        print(_format_table(fmt, root, summaries, args.check))
    return 0


# --------------------------------------------------------------------------------------------- synth
def add_synth_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad synth``."""
    p.add_argument("out", type=Path, help="output folder (new, or one made earlier by this command)")
    p.add_argument("--classes", type=int, default=4, help="number of classes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed = same bytes)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--train", type=int, default=60, help="normal training images per class (default 60)")
    p.add_argument("--test", type=int, default=30, help="test images per class, half defective (default 30)")


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the synthetic defect data set."""
    from mambaad.data.synth import make_synthetic_dataset

    t0 = time.perf_counter()
    out = make_synthetic_dataset(args.out, args.classes, args.seed, args.size, args.train, args.test)
    n = args.classes * (args.train + args.test)
    print(f"wrote {n} images ({args.classes} classes) to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Verb:
    """One sub-command: its name, one-line help, argument setup and handler."""

    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


VERBS: tuple[Verb, ...] = (
    Verb("data", "summarize a data set: layout, per-class counts, problems", add_data_args, cmd_data),
    Verb("synth", "write the synthetic defect data set (folder layout)", add_synth_args, cmd_synth),
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per row of :data:`VERBS`."""
    parser = argparse.ArgumentParser(prog="mambaad", description="MambaAD anomaly detection.")
    parser.add_argument("--version", action="version", version=f"mambaad {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an absent sub-command --debug must not overwrite a top-level `mambaad --debug <verb>`.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help, parents=[common])
        verb.add_args(p)
        p.set_defaults(_run=verb.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mambaad`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args._run(args))
    except MambaADError as exc:
        if args.debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
