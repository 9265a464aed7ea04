"""Comments and docstrings in ``src/`` cite only sources a reader of the repository can open.

Citations of the project's private briefs (``spec §1.2``, ``stack.md §3``, ``spec/spaghettinet.md``) mean nothing
to a reader: a comment should name an upstream file (e.g. tensorflow/models
``research/object_detection/models/ssd_spaghettinet_feature_extractor.py``), a paper, or state the fact itself.
This walks every ``.py`` file under ``src/`` as plain text (no import, no TensorFlow) and names each offending line.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = REPO_ROOT / "src"

#: Text that only makes sense with the private briefs at hand. ``§`` alone covers ``spec §`` and ``stack.md §``.
FORBIDDEN = ("spec §", "stack.md", "spec/spaghettinet", "§")


def _hits(path: Path) -> list[str]:
    """``file:line: text`` for every line of ``path`` that holds a forbidden string."""
    relative = path.relative_to(REPO_ROOT).as_posix()
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if any(token in line for token in FORBIDDEN):
            found.append(f"{relative}:{number}: {line.strip()}")
    return found


def test_sources_exist():
    assert any(SOURCE_ROOT.rglob("*.py")), f"no Python files under {SOURCE_ROOT}"


def test_no_private_brief_citations_in_src():
    offending = []
    for path in sorted(SOURCE_ROOT.rglob("*.py")):
        offending.extend(_hits(path))
    assert not offending, (
        "cite an upstream file or paper, or state the fact, instead of the private briefs:\n"
        + "\n".join(offending)
    )
