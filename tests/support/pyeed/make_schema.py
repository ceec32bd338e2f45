"""PyEED's schema, made the way PyEED makes it: neomodel's install_labels on a node class
with the properties of PyEED's `Protein` (pyeed/model.py).

Runs in .venv-pyeed, a PyEED user's environment: neomodel 7 needs neo4j 6.1.x, the main
environment's lock a later driver.
Connection from NEO4J_URI, NEO4J_USERNAME and NEO4J_PASSWORD, as everywhere else.
"""

import os

from neomodel import (
    ArrayProperty,
    FloatProperty,
    IntegerProperty,
    StringProperty,
    StructuredNode,
    VectorIndex,
    config,
    db,
)


class Protein(StructuredNode):
    accession_id = StringProperty(unique_index=True, required=True)
    sequence = StringProperty(required=True)
    name = StringProperty()
    seq_length = IntegerProperty(required=True)
    mol_weight = FloatProperty()
    ec_number = StringProperty()
    nucleotide_id = StringProperty()
    locus_tag = StringProperty()
    structure_ids = ArrayProperty(StringProperty())
    go_terms = ArrayProperty(StringProperty())
    embedding = ArrayProperty(FloatProperty(), vector_index=VectorIndex(dimensions=1280))


if __name__ == "__main__":
    host = os.environ["NEO4J_URI"].split("://", 1)[1]
    user, password = os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"]
    config.DATABASE_URL = f"bolt://{user}:{password}@{host}"
    db.install_labels(Protein)  # neomodel 7; earlier releases: neomodel.install_labels
    db.close_connection()
