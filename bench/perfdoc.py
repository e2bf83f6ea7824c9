"""docs/performance.md: each benchmark owns one '## ' section and rewrites only that."""
import re
from pathlib import Path


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section headed '## <heading>' (up to the next '## ' heading), or append it."""
    text = path.read_text() if path.exists() else "# Performance\n\n"
    match = re.search(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if match:
        text = text[:match.start()] + section + ("\n" if match.end() < len(text) else "") + text[match.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
