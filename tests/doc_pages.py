"""The README and docs/ pages as tests read them: their fenced blocks, the shell commands in
those blocks, and the blocks named by a `<!-- block: NAME -->` comment.

A test that runs what a page shows takes it from the page, through `command("...")` or
`block("NAME")` with a literal argument: tests/test_docs.py reads those calls from the test
files to know which commands and blocks the suite runs, and fails for any other command on
a page that is not marked as needing what the suite does not have (`<!-- needs: gpu -->`,
see MARKS)."""

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What a block may need that the suite cannot give it, and so is not run by a test.
MARKS = {
    "gpu": "a GPU",
    "cluster": "a SLURM cluster",
    "network": "a package registry, image registry or model hub beyond the suite's reach",
    "your graph": "a Neo4j server of the reader's own (tests set the same variables for theirs)",
}

_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)
_COMMENT = re.compile(r"<!--\s*(block|needs):\s*([^()>]*?)\s*(?:\(.*?\))?\s*-->\s*\Z", re.S)
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    name: str | None  # from <!-- block: NAME --> just above the fence
    needs: str | None  # from <!-- needs: WHAT (why) --> just above the fence

    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for fence in _FENCE.finditer(text):
        before = text[: fence.start()].rstrip()
        comment = _COMMENT.search(before[before.rfind("<!--") :]) if "<!--" in before else None
        # The comment must be the last thing before the fence, not one further up the page.
        if comment and not before.endswith("-->"):
            comment = None
        kind, value = (comment.group(1), comment.group(2)) if comment else (None, None)
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, fence.start()) + 1,
                language=fence.group(2),
                code=_dedent(fence.group(3), len(fence.group(1))),
                name=value if kind == "block" else None,
                needs=value if kind == "needs" else None,
            )
        )
    return found


def all_blocks() -> list[Block]:
    return [found for page in pages() for found in blocks(page)]


def commands(shell_block: Block) -> list[str]:
    """The block's commands, one per entry: continuation lines joined, comments and blank
    lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", shell_block.code)
    return [
        " ".join(shlex.split(line, comments=True))
        for line in joined.splitlines()
        if shlex.split(line, comments=True)
    ]


def command(text: str) -> list[str]:
    """`text` as argv, after checking that a page shows exactly this command in a shell
    block (spacing and a trailing comment aside)."""
    wanted = " ".join(shlex.split(text))
    shown = {c for b in all_blocks() if b.language in SHELL for c in commands(b)}
    assert wanted in shown, f"no page in README.md or docs/ shows the command `{text}` any more"
    return shlex.split(text)


def block(name: str) -> str:
    """The code of the one block named `name` (<!-- block: NAME --> above its fence)."""
    named = [b for b in all_blocks() if b.name == name]
    assert len(named) == 1, (
        f"expected one block marked <!-- block: {name} --> in README.md and docs/, "
        f"found {len(named)}"
    )
    return named[0].code


def _dedent(code: str, indent: int) -> str:
    return "".join(
        line[indent:] if line[:indent].isspace() else line for line in code.splitlines(True)
    )
