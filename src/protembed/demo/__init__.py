"""The demo (`python -m protembed.demo`) and what it needs at run time: a local Neo4j
(local_neo4j), an ESM-2 with random weights for machines without the model hub
(offline_model) and the proteins of a FASTA file as records (proteins).

The tests and benchmarks use the same pieces; nothing the workflow or a notebook's
embedding path imports lives here.
"""
