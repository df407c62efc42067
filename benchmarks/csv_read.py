"""Reading a large CSV table: pyarrow.csv against the stdlib csv reader (issue #18).

    python benchmarks/csv_read.py [--rows 300000] [--cols 20] [--repeat 3] [--dir /tmp]

Writes a seeded table (an `id` text column and COLS float columns) once, then reads it with
`aekit.data.tables.read_table_file` in a fresh process per reader and repetition, with pyarrow
hidden from the stdlib runs. Reports the read time and the process's peak RSS (ru_maxrss, which
includes the interpreter, numpy and pyarrow themselves) and checks that both readers give the
same array and identifiers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = """
import sys, time, resource, hashlib, json
if {hide}:
    sys.modules["pyarrow"] = None  # import pyarrow fails: the stdlib reader
from pathlib import Path
from aekit.data.tables import read_table_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
data = read_table_file(Path({path!r}))
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest = hashlib.sha1(data.array.tobytes() + "\\n".join(data.ids).encode()).hexdigest()
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "start_mb": before / 1024, "digest": digest}}))
"""


def write_table(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write(",".join(["id", *(f"c{j}" for j in range(cols))]) + "\n")
        for start in range(0, rows, 10_000):
            x = rng.normal(size=(min(10_000, rows - start), cols)) * 100
            lines = [f"row-{start + i}," + ",".join(f"{v:.6g}" for v in row) + "\n" for i, row in enumerate(x)]
            f.writelines(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp")
    args = ap.parse_args()
    path = Path(args.dir) / f"aekit_csv_{args.rows}x{args.cols}.csv"
    if not path.is_file():
        write_table(path, args.rows, args.cols)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    results: dict[str, list[dict]] = {"stdlib": [], "pyarrow": []}
    for _ in range(args.repeat):
        for reader in results:
            code = CHILD.format(hide=reader == "stdlib", path=str(path))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            results[reader].append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[reader][-1]
            start = f"at start {r['start_mb']:.0f} MB"
            print(f"{reader:8s} {r['seconds']:6.2f} s  peak RSS {r['peak_mb']:6.0f} MB ({start})")
    digests = {r["digest"] for rs in results.values() for r in rs}
    print("same array and ids from both readers:", len(digests) == 1)
    for reader, rs in results.items():
        s = [r["seconds"] for r in rs]
        m = [r["peak_mb"] for r in rs]
        print(
            f"{reader:8s} time median {statistics.median(s):.2f} s (range {min(s):.2f}-{max(s):.2f}), "
            f"peak RSS median {statistics.median(m):.0f} MB (range {min(m):.0f}-{max(m):.0f})"
        )


if __name__ == "__main__":
    main()
