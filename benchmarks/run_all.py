"""Run every benchmark in order (`make bench`); each writes its JSON under benchmarks/results/.

The order matters: the export benchmark reuses the model the training benchmark trained. Pass benchmark names to
run a subset, e.g. `python benchmarks/run_all.py data model`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["data", "model", "train", "export"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"[bench] {script.name}: not present, skipped")
            continue
        print(f"[bench] {script.name} ...", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])
        print(f"[bench] {script.name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"[bench] failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
