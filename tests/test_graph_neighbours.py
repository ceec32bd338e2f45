"""Nearest neighbours through the vector index find a protein's family: the labelled
beta-lactamase set, embedded by the k-mer model, loaded into the real local Neo4j."""

from collections import Counter
from pathlib import Path

import pytest
from test_graph_incremental import kmer_config, run_steps

from protembed import graph
from protembed.demo.proteins import read_proteins

DATA = Path(__file__).resolve().parent / "data"
FAMILIES = ("TEM", "SHV", "CTX-M", "KPC", "CMY", "VIM")
K = 5


@pytest.fixture
def betalactamases(tmp_path, database) -> dict[str, str]:
    """All 1,548 proteins of 35 families in the graph, embedded with kmer-2."""
    proteins = read_proteins(DATA / "betalactamase_families.fasta", attributes=("family",))
    graph.add_proteins(graph.ProteinGraph(database), proteins)
    _, receipt = run_steps(kmer_config(), tmp_path)
    assert receipt["written"] == len(proteins)
    return {p["accession_id"]: p["family"] for p in proteins}


def test_neighbours_of_family_members_are_mostly_of_their_family(database, betalactamases):
    for family in FAMILIES:
        members = sorted(i for i, f in betalactamases.items() if f == family)
        # Every member of a small family, an even spread of a large one.
        queries = members[:: max(1, len(members) // 12)]
        same = total = 0
        for protein_id in queries:
            found = graph.ProteinGraph(
                database, vector_property="embedding_kmer_2"
            ).nearest_neighbours(protein_id, K)
            assert len(found) == K and protein_id not in {i for i, _ in found}
            assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
            same += sum(betalactamases[i] == family for i, _ in found)
            total += K
        # 35 families in the set: chance would put well under a third of neighbours in the
        # query's family even for the largest of these six.
        share = same / total
        assert share >= 0.8, f"{family}: {share:.2f} of neighbours in the family"
    # Each family's neighbours are not simply the biggest families of the set.
    sizes = Counter(betalactamases.values())
    assert max(sizes[f] for f in FAMILIES) / len(betalactamases) < 0.15
