"""A run's files are readable by whoever the user's umask lets read them: on a shared file
system, colleagues in the group read the vectors under the usual umask 022, and nobody else
does under 077. Against the real local Neo4j, every step with the k-mer model."""

import os
import stat

import pytest
from test_graph_incremental import kmer_config, run_steps

from protembed import graph


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_every_output_of_a_run_has_the_umask_mode(tmp_path, database, synechocystis, umask, mode):
    graph.add_proteins(
        graph.ProteinGraph(database),
        [*synechocystis[:10], {"accession_id": "BAD", "sequence": "X"}],
    )
    old = os.umask(umask)
    try:
        run_steps(kmer_config(), tmp_path / "run")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"manifest.json", "embeddings.parquet", "receipt.json"}
    wrong = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if stat.S_IMODE(p.stat().st_mode) != mode
    }
    assert not wrong, f"files not {oct(mode)} under umask {oct(umask)}: {wrong}"
