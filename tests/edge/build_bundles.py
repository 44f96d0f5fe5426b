"""Build the edge tests' bundles into DIR, for a Python without torch (EDGE_TEST_BUNDLES=DIR).

    python -m tests.edge.build_bundles DIR        # in the main venv (torch, transformers, training)
"""
import sys
from pathlib import Path

from tests.edge.conftest import BUNDLES, build_bundles


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.edge.build_bundles DIR")
    root = Path(sys.argv[1])
    if root.exists() and any(root.iterdir()):
        sys.exit(f"build_bundles: {root} is not empty; give a new or empty folder")
    build_bundles(root)
    print(f"built {len(BUNDLES)} bundles in {root}: {', '.join(BUNDLES)}")


if __name__ == "__main__":
    main()
