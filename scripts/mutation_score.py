"""Per-module mutation score from mutmut's result files (mutants/**/*.py.meta), as a Markdown table.

Score = killed / (killed + survived + timeout): mutants no selected test reaches ("no tests") are counted apart,
since they say the module's fast tests do not call that function at all rather than that a test missed a change."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked", "other")


def tally(mutants_dir: Path) -> dict[str, Counter]:
    table = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter()
        for code in codes.values():
            status = status_by_exit_code[code]
            counts[status if status in COLUMNS else "other"] += 1
        table[meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")] = counts
    return table


def main() -> int:
    mutants_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "mutants")
    table = tally(mutants_dir)
    if not table:
        print(f"no mutmut results under {mutants_dir}/: run `bash scripts/mutation.sh` first", file=sys.stderr)
        return 1
    print("| module | " + " | ".join(COLUMNS) + " | total | score |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    total = Counter()
    for module, counts in table.items():
        total.update(counts)
        judged = counts["killed"] + counts["survived"] + counts["timeout"]
        score = f"{counts['killed'] / judged:.0%}" if judged else "-"
        print(f"| {module} | " + " | ".join(str(counts[c]) for c in COLUMNS) + f" | {sum(counts.values())} | {score} |")
    judged = total["killed"] + total["survived"] + total["timeout"]
    score = f"{total['killed'] / judged:.0%}" if judged else "-"
    print("| all | " + " | ".join(str(total[c]) for c in COLUMNS) + f" | {sum(total.values())} | {score} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
