"""Write WebDataset-style tar shards of an image folder: python scripts/make_shards.py FOLDER OUT [--per-shard N].

Each sample is `NNNNNN.<ext>` (the image file's bytes) and `NNNNNN.txt` (its path under FOLDER);
`aekit train OUT` then streams them (README, "Streaming tar shards").
"""

import argparse

from aekit.data.stream import write_shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--prefix", default="data")
    args = ap.parse_args()
    paths = write_shards(args.folder, args.out, args.per_shard, args.prefix)
    print(f"{len(paths)} shards in {args.out}")


if __name__ == "__main__":
    main()
