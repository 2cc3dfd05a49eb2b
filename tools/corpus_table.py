"""Generate the README's corpus table from the recipes (never edit it by hand).

    python tools/corpus_table.py                  # print the Markdown table
    python tools/corpus_table.py --update-readme  # ... and put it into README.md between the markers

tests/test_corpus.py fails when the README's table differs from what this prints.
"""

from __future__ import annotations

import argparse
import sys

from climb_cli.catalog import Catalog
from climb_cli.corpus import markdown_table, readme_path, update_readme


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args(argv)
    recipes, broken = Catalog().load_each()
    if broken:
        for e in broken.values():
            sys.stderr.write(f"corpus_table: {e}\n")
        return 1
    table = markdown_table(recipes)
    if args.update_readme:
        path = readme_path()
        path.write_text(update_readme(path.read_text(encoding="utf-8"), table), encoding="utf-8")
        sys.stdout.write(f"corpus table of {len(recipes)} recipes written to {path}\n")
    else:
        sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
