"""The README and docs/ cannot rot: the configuration page is what the schema says, every
command and code block on a page is run by a test (or marked as needing what the suite does
not have), every config snippet passes the schema, every link lands; and the blocks that
only this file runs, run here against a real local Neo4j."""

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import doc_pages
import pytest
import yaml
from doc_pages import MARKS, REPO, SHELL
from support.random_models import save_random_esm2
from workflow_runner import write_config

from protembed import embed_graph, graph
from protembed.config import load_config
from protembed.demo.local_neo4j import LTS

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", REPO / "tools" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calls_in_tests(function: str) -> set[str]:
    """The literal arguments of every `doc_pages.<function>("...")` (or bare `<function>`)
    call in the test files: what the suite reads from the pages and runs."""
    found = set()
    for path in TESTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            argument = node.args[0]
            if name == function and isinstance(argument, ast.Constant):
                found.add(argument.value)
    return found


def commands_run_by_ci() -> set[str]:
    """.ci/run's commands: CI runs them on every change, the README's `make test` among them."""
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    settings = ("#", "set ", "cd ")
    return {normalised(line) for line in lines if line.strip() and not line.startswith(settings)}


def normalised(command: str) -> str:
    return " ".join(shlex.split(command, comments=True))


def test_the_configuration_page_is_what_the_schema_says():
    generator = config_docs()
    page = generator.render(yaml.safe_load(generator.SCHEMA.read_text()))
    assert generator.PAGE.read_text() == page, (
        "docs/configuration.md differs from the schema: run `make docs` "
        "(python tools/config_docs.py) and commit the page"
    )


def test_every_setting_in_the_schema_has_a_description():
    generator = config_docs()
    missing = generator.missing_descriptions(yaml.safe_load(generator.SCHEMA.read_text()))
    assert not missing, "the schema gives no description for: " + ", ".join(missing)


def test_the_generator_renders_types_defaults_and_ranges_from_the_schema():
    # A schema of our own, so that the rendering itself is held, whatever the real one holds.
    schema = {
        "definitions": {"identifier": {"type": "string", "pattern": "^[a-z]+$"}},
        "properties": {
            "jobs": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 4},
            "part": {
                "type": "object",
                "description": "A part.",
                "properties": {
                    "name": {"$ref": "#/definitions/identifier", "default": "x"},
                    "mode": {"type": "string", "enum": ["a", "b"], "description": "<a>|b"},
                    "size": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
                },
            },
        },
    }
    generator = config_docs()
    page = generator.render(schema)
    assert "| `jobs` | integer | `4` | 1 to 100,000 | *(no description in the schema)* |" in page
    assert "## `part`\n\nA part.\n" in page
    assert "| `part.name` | identifier | `x` |  |" in page
    assert "| `part.mode` | `a` / `b` | *(none: required)* |  | &lt;a&gt;\\|b |" in page
    assert "| `part.size` | integer or `auto` | *(none: required)* | ≥ 1 |" in page
    assert generator.missing_descriptions(schema) == ["jobs", "part.name", "part.size"]


def test_every_shell_command_on_a_page_is_run_by_a_test_or_marked():
    run = {normalised(c) for c in calls_in_tests("command")} | commands_run_by_ci()
    unrun = [
        f"{found.where()}: {command}"
        for found in doc_pages.all_blocks()
        if found.language in SHELL and found.needs is None
        for command in doc_pages.commands(found)
        if command not in run
    ]
    assert not unrun, (
        "commands no test runs: have a test run it through doc_pages.command(...), or mark "
        "its block with <!-- needs: WHAT --> (one of "
        + ", ".join(MARKS)
        + "):\n"
        + "\n".join(unrun)
    )


def test_every_code_block_on_a_page_is_run_by_a_test_or_marked():
    run = calls_in_tests("block")
    unrun = [
        f"{found.where()}: a {found.language} block"
        + (f" named {found.name}" if found.name else "")
        for found in doc_pages.all_blocks()
        if found.language == "python" and found.needs is None and found.name not in run
    ]
    assert not unrun, (
        "code no test runs: name the block (<!-- block: NAME -->) and run it through "
        "doc_pages.block(NAME), or mark it <!-- needs: WHAT -->:\n" + "\n".join(unrun)
    )


def test_what_tests_read_from_the_pages_is_still_there():
    for command in calls_in_tests("command"):
        doc_pages.command(command)
    for name in calls_in_tests("block"):
        doc_pages.block(name)


def test_every_mark_says_what_the_suite_lacks():
    unknown = [
        f"{found.where()}: needs {found.needs!r}"
        for found in doc_pages.all_blocks()
        if found.needs is not None and found.needs not in MARKS
    ]
    assert not unknown, "unknown marks (known: " + ", ".join(MARKS) + "):\n" + "\n".join(unknown)


def test_every_config_snippet_passes_the_schema():
    for found in doc_pages.all_blocks():
        if found.language != "yaml":
            continue
        snippet = yaml.safe_load(found.code)
        # A parent workflow's config holds ours under one key.
        settings = snippet.get("protembed", snippet)
        try:
            load_config(settings)
        except Exception as error:
            pytest.fail(f"{found.where()}: the config snippet fails the schema: {error}")


def headings_as_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    anchors = set()
    text = re.sub(r"^( *)```.*?^\1```", "", page.read_text(), flags=re.M | re.S)
    for heading in re.findall(r"^#+ (.*)$", text, re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(anchor)
    return anchors


def test_every_link_between_pages_lands():
    broken = []
    for page in doc_pages.pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # another site: not ours to check here
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if path.endswith("sizing.md") and not linked.exists():
                continue  # written on another branch (the scale measurements)
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and anchor not in headings_as_anchors(linked):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "links that land nowhere:\n" + "\n".join(broken)


def test_every_page_can_be_found_from_the_readme_and_the_index():
    for index in (REPO / "README.md", REPO / "docs" / "README.md"):
        text = index.read_text()
        prefix = "docs/" if index.parent == REPO else ""
        unlisted = [
            page.name
            for page in doc_pages.pages()
            if page.parent.name == "docs"
            and page.name != "README.md"
            and f"]({prefix}{page.name})" not in text
        ]
        assert not unlisted, f"{index.relative_to(REPO)} does not link to: " + ", ".join(unlisted)


def test_no_placeholder_on_a_page_is_taken_for_html():
    """<property> or <cls> outside code would be read as an HTML tag and not shown."""
    bare = []
    for page in doc_pages.pages():
        text = re.sub(r"^( *)```.*?^\1```", "", page.read_text(), flags=re.M | re.S)
        text = re.sub(r"<!--.*?-->", "", re.sub(r"`[^`]*`", "", text), flags=re.S)
        bare += [f"{page.relative_to(REPO)}: {tag}" for tag in re.findall(r"<[a-z_][^>\n]*>", text)]
    assert not bare, "write these in `code` or as &lt;...&gt;:\n" + "\n".join(bare)


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines; move detail to a docs/ page"


def test_the_quickstart_states_the_suites_size():
    """The README promises a number of tests; the suite holds that many."""
    promised = re.search(r"(\d[\d,]*) tests in \d+ minutes", (REPO / "README.md").read_text())
    assert promised, (
        "README.md no longer says how many tests the suite runs (`N tests in M minutes`)"
    )
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", str(TESTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, "the suite does not collect:\n" + collected.stdout[-2000:]
    count = re.search(r"^(\d+) tests? collected", collected.stdout, re.M)
    assert count, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert promised[1].replace(",", "") == count[1], (
        f"README.md says {promised[1]} tests, the suite collects {count[1]}: measure the suite's "
        "time from a fresh clone and update the Quickstart"
    )


def test_the_cluster_pages_dry_run_plans_without_the_database(tmp_path, monkeypatch):
    """docs/cluster.md's first look at the plan, typed in a directory laid out as a checkout,
    with no NEO4J_* in the environment."""
    for key in [k for k in os.environ if k.startswith("NEO4J_")]:
        monkeypatch.delenv(key)
    for part in ("workflow", "scripts", "envs"):
        (tmp_path / part).symlink_to(REPO / part)
    write_config(tmp_path, shards=5)
    argv = doc_pages.command("snakemake -n --workflow-profile workflow/profiles/slurm")
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "DAG of jobs will be updated after completion" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def hub_cache_with_random_weights(directory: Path, name: str) -> Path:
    """A Hugging Face cache that holds `name` as a download would, with a tiny ESM-2 of
    random weights in it: the pages' hub names load offline, and no weights are fetched."""
    commit = "0123456789abcdef" * 2 + "01234567"
    repository = directory / "hub" / ("models--" + name.replace("/", "--"))
    save_random_esm2(repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    return directory


def run_python(code: str, directory: Path, hub: Path, epilogue: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-c", code + "\n" + epilogue],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HOME": str(hub), "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


# On the LTS server only: the calls go through the same graph code that test_embed_graph.py
# and test_cli.py run on both server lines.
@pytest.mark.parametrize("neo4j_server", [LTS], indirect=True, ids=[f"neo4j-{LTS}"])
def test_the_notebook_pages_run_as_shown(tmp_path, database, neo4j_env, synechocystis):
    """The README's notebook lines, the read-back of docs/notebook.md, the Python and shell
    neighbour queries of docs/graph.md and the README, as a reader types them, in a
    directory with a config.yaml, against a graph that holds the proteins they name."""
    proteins = synechocystis[:30]
    named = [
        {"accession_id": "P0A7Y4", "sequence": proteins[0]["sequence"][:200]},
        {"accession_id": "P14835", "sequence": proteins[1]["sequence"][:200]},
    ]
    graph.add_proteins(graph.ProteinGraph(database), proteins + named)
    hub = hub_cache_with_random_weights(tmp_path / "huggingface", "facebook/esm2_t33_650M_UR50D")
    write_config(tmp_path, results=str(tmp_path / "results"))

    shown = run_python(
        doc_pages.block("readme-notebook"),
        tmp_path,
        hub,
        "print('vectors', vectors.shape, vectors.dtype)\n"
        "held = summary['graph']\n"
        "print('held', held['proteins_with_sequence'], held['vectors'] + held['rejected'])",
    )
    neighbours = printed_list(shown)  # what the block itself prints
    assert len(neighbours) == 10 and all(isinstance(score, float) for _, score in neighbours)
    assert [score for _, score in neighbours] == sorted((s for _, s in neighbours), reverse=True)
    assert "P0A7Y4" not in {protein for protein, _ in neighbours}
    assert "vectors (2, 32) float32" in shown.splitlines()  # the stand-in is 32 wide, not 1,280
    (held,) = [line.split()[1:] for line in shown.splitlines() if line.startswith("held ")]
    assert held[0] == held[1] and int(held[0]) >= 30  # every protein embedded or rejected

    shown = run_python(
        doc_pages.block("notebook-read-back"),
        tmp_path,
        hub,
        "print('read', len(ids), matrix.shape, metadata['dimension'], len(proteins))\n"
        "print('paged', len(page[0]), len(vector))",
    )
    records, _, _ = database.execute_query(
        "MATCH (p:Protein) WHERE p.embedding_esm2_t33_650M_UR50D IS NOT NULL RETURN count(p) AS n"
    )
    n = records[0]["n"]
    assert f"read {n} ({n}, 32) 32 {n}" in shown.splitlines()
    assert f"paged {n} 32" in shown.splitlines()

    shown = run_python(doc_pages.block("graph-neighbours-python"), tmp_path, hub)
    assert printed_list(shown) == neighbours_of("P14835", tmp_path, hub)

    # The shell's neighbours, first with config.yaml, then with another config and property.
    argv = doc_pages.command("protembed neighbours P14835 -k 10")
    rows = run_command(argv, tmp_path)
    expected = neighbours_of("P14835", tmp_path, hub)
    assert [protein for protein, _ in rows] == [protein for protein, _ in expected]
    other = {"results": str(tmp_path / "kmer"), "model": {"name": "kmer-2"}}
    embed_graph(other | {"min_proteins_per_shard": 1})
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    argv = doc_pages.command(
        "protembed neighbours P14835 --config other.yaml --property embedding_kmer_2"
    )
    rows = run_command(argv, tmp_path)
    assert len(rows) == 10 and "P14835" not in {protein for protein, _ in rows}


def neighbours_of(protein: str, directory: Path, hub: Path) -> list[tuple[str, float]]:
    code = (
        "from protembed import open_graph\n"
        "with open_graph('config.yaml') as graph:\n"
        f"    print(graph.nearest_neighbours({protein!r}, k=10))"
    )
    return printed_list(run_python(code, directory, hub))


def printed_list(output: str) -> list:
    """The one printed Python list in `output` (other lines are the run's own messages)."""
    (printed,) = [line for line in output.splitlines() if line.startswith("[")]
    return ast.literal_eval(printed)


def run_command(argv: list[str], directory: Path) -> list[tuple[str, float]]:
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=directory, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [(line.split("\t")[0], float(line.split("\t")[1])) for line in done.stdout.splitlines()]
