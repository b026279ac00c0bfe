"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples are, as text.

    python bench/profile_summary.py bench/out/profile.raw [--top 30] [--grep proxy/]

Prints the share of samples each function is on the stack of (inclusive) and at the top of (self),
and with `--grep` only the frames whose file matches. Frames are `function (file:line)` as py-spy
writes them; lines are dropped so one function is one row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['func']} ({file})"


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--grep", default="")
    args = parser.parse_args()
    total, inclusive, own = summarise(args.raw)
    print(f"{total} samples")
    for title, counts in (("inclusive", inclusive), ("self", own)):
        print(f"\n== {title}")
        shown = [(n, c) for n, c in counts.most_common() if args.grep in n][: args.top]
        for name, count in shown:
            print(f"{100 * count / max(total, 1):6.1f}%  {name}")


if __name__ == "__main__":
    main()
