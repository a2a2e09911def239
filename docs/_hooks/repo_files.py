"""MkDocs hook: pages link to files outside docs/ (benchmark charts) as they do on
GitHub (``../benchmarks/results.png``); the site serves those files under the same
relative path, so one link works in both places."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).parents[2]
SHARED = ["benchmarks"]  # folders whose images pages may show
_LINK = re.compile(r"\]\(\.\./(" + "|".join(SHARED) + r")/")


def on_files(files: Files, config: Any) -> Files:
    for folder in SHARED:
        for path in sorted((ROOT / folder).glob("*.png")):
            files.append(
                File(
                    path.relative_to(ROOT).as_posix(),
                    src_dir=str(ROOT),
                    dest_dir=config["site_dir"],
                    use_directory_urls=config["use_directory_urls"],
                )
            )
    return files


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _LINK.sub(r"](\1/", markdown)
