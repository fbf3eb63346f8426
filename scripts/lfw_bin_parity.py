"""Does a verification .bin score as the protocol it was made from? LFW View 2 written as a .bin
(pairs.txt order, PNG and JPEG-95), scored with one trained net against protocol=lfw_view2.

    python scripts/lfw_bin_parity.py [--lfw ../shared/data/lfw] [--out /tmp/lfw_bin_parity]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_formats import _lfw_bin  # noqa: E402  (the tests' .bin writer)

from facebench.config import compose  # noqa: E402
from facebench.run import execute  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lfw_bin_parity"))
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["+method=deepid", f"trainer.steps={args.steps}", f"results_root={args.out / 'results'}"]
    view2 = execute(compose([*common, "protocol=lfw_view2", f"protocol.root={args.lfw}"]), args.out / "view2")
    print(f"lfw_view2: {100 * view2['metrics']['mean_accuracy']:.2f}%")
    for fmt in ("PNG", "JPEG"):
        path = args.out / f"lfw_{fmt.lower()}.bin"
        if not path.exists():
            _lfw_bin(path, args.lfw, fmt)
        record = execute(compose([*common, "protocol=bin", f"protocol.path={path}"]), args.out / f"bin_{fmt.lower()}")
        print(f"{path.name}: {100 * record['metrics']['mean_accuracy']:.2f}%")


if __name__ == "__main__":
    main()
