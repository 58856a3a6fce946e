"""Every relative link of README.md and docs/*.md resolves: the file exists and, for a ``#fragment`` into a Markdown
page, the page has that anchor (an explicit ``<a id="...">`` or a heading, slugged as GitHub renders it)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|\[([^]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = github_slug(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_github_slug_matches_githubs_rule() -> None:
    assert github_slug("Speed, resuming, shards") == "speed-resuming-shards"
    assert github_slug("`seqdance benchmark-dms`") == "seqdance-benchmark-dms"
    assert github_slug("Precision: `--dtype`") == "precision---dtype"


def test_every_relative_link_resolves() -> None:
    problems = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("mailto:"):
                continue  # http(s) and other schemes: not checked offline
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                problems.append(f"{page.relative_to(REPO_ROOT)}: {target}: no such file")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                problems.append(f"{page.relative_to(REPO_ROOT)}: {target}: no anchor #{fragment}")
    assert not problems, "\n".join(problems)
