"""Dev-only helpers: the local Neo4j, random-weight models, FASTA fixtures and the demo.

Nothing the workflow or a notebook's embedding path imports lives here.
"""
