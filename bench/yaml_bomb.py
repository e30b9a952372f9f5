"""Cost of 16 small YAML alias bombs (303 bytes each) in one plain render: time and peak RSS.

Each document stays under the per-document alias limit; the render's YAML budget
(gitopsd.core.yamlio.YamlBudget) must refuse the whole at the second one.

    .venv/bin/python bench/yaml_bomb.py
"""

from __future__ import annotations

import pathlib
import resource
import tempfile
import time

from gitopsd.core.errors import RenderError
from gitopsd_plugins.plain import render_directory

DOC = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(5)
) + "kind: ConfigMap\napiVersion: v1\nmetadata: {name: bomb}\n"


def main() -> None:
    directory = pathlib.Path(tempfile.mkdtemp())
    (directory / "bomb.yaml").write_text("---\n".join(DOC.replace("name: bomb", f"name: bomb{i}") for i in range(16)))
    print(f"16 documents of {len(DOC)} bytes")
    start = time.perf_counter()
    try:
        render_directory(directory)
        print("accepted")
    except RenderError as exc:
        print(f"refused: {exc}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{time.perf_counter() - start:.2f} s, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
