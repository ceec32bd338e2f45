"""Every Cypher query, whole, so that a reader sees each one as the server gets it.

Labels and property names cannot be query parameters: they are checked once, against a
plain-identifier pattern, and spliced in as {label}, {id}, {sequence} and {vector};
{vector}_xxx are the vector's provenance siblings.
"""

# Provenance stored beside each vector as <property>_<suffix>: these are the same for
# every vector of a run (from the embeddings' Parquet metadata); sequence_sha256 and
# long_sequence_handling are per protein; a rejection leaves only the hash and the reason.
RUN_PROVENANCE = (
    "model",
    "model_revision",
    "embedding",
    "pooling",
    "dimension",
    "precision",
    "batching",
    "created",
    "pipeline",
)
# What makes two vectors comparable: the same weights, embedding kind and size. One
# property (and its index) holds one such space; precision and time may vary within it,
# and so may the pooling statement's wording from one protembed release to the next.
SPACE_PROVENANCE = ("model_revision", "embedding", "dimension")
# A rejection says which model's rules rejected the protein, so that it guards the
# property too (a property may hold nothing but rejections).
REJECTION_PROVENANCE = ("model", "model_revision", "embedding")

# What read-back returns of each stored vector besides the vector itself (the order of
# QUERIES["vector_row"]); residues: of the node's sequence now.
STORED_COLUMNS = ("id", "sequence_sha256", "long_sequence_handling", *RUN_PROVENANCE, "residues")

QUERIES = {
    "server": "CALL dbms.components() YIELD name, versions, edition "
    "WHERE name = 'Neo4j Kernel' RETURN versions[0] AS version, edition",
    "range_indexes": "SHOW INDEXES YIELD name, type, labelsOrTypes, properties, state "
    "WHERE type = 'RANGE' AND labelsOrTypes = [$label] AND properties = [$property] "
    "RETURN name, state",
    "vector_indexes": "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state "
    "WHERE labelsOrTypes = [$label] AND properties = [$property] RETURN name, options, state",
    "create_id_index": "CREATE INDEX {index} IF NOT EXISTS FOR (p:{label}) ON (p.{id})",
    "await_index": "CALL db.awaitIndex($name, $timeout)",
    # Keyset pages in id order, served by the id's range index with the limit pushed down.
    "keyset_page": "MATCH (p:{label}) WHERE p.{id} > $after AND {where} "
    "WITH p ORDER BY p.{id} LIMIT $limit RETURN collect({row}) AS page",
    # All nodes holding one id: a run of equal ids may straddle a page's end.
    "keyset_id": "MATCH (p:{label}) WHERE p.{id} = $id AND {where} RETURN collect({row}) AS page",
    "export_row": "[p.{id}, p.{sequence}, p.{vector}_sequence_sha256, "
    "p.{vector} IS NOT NULL OR p.{vector}_rejected IS NOT NULL, elementId(p)]",
    # A stored vector and what the graph says of it (STORED_COLUMNS, in this order).
    "vector_row": "[p.{id}, p.{vector}, p.{vector}_sequence_sha256, "
    "p.{vector}_long_sequence_handling, p.{vector}_model, p.{vector}_model_revision, "
    "p.{vector}_embedding, p.{vector}_pooling, p.{vector}_dimension, p.{vector}_precision, "
    "p.{vector}_batching, toString(p.{vector}_created), p.{vector}_pipeline, "
    "size(p.{sequence})]",
    "rejection_row": "[p.{id}, p.{vector}_rejected, p.{vector}_sequence_sha256, "
    "p.{vector}_model, size(p.{sequence})]",
    # A label scan on purpose: on 5.26 the planner answers `NOT p.id IS :: STRING NOT NULL`
    # from the id's range index, which holds no node that lacks the id.
    "without_string_id": "MATCH (p:{label}) USING SCAN p:{label} "
    "WHERE p.{sequence} IS NOT NULL AND NOT p.{id} IS :: STRING NOT NULL "
    "RETURN elementId(p) AS node, p.{id} IS NULL AS missing",
    "reachable": "RETURN 1",
    "vector_type": "CYPHER 25 RETURN vector([1.0], 1, FLOAT32) AS v",
    "database_name": "CALL db.info() YIELD name",
    "store_format": "SHOW DATABASES YIELD name, store WHERE name = $name RETURN store",
    "has_label": "MATCH (p:{label}) RETURN 1 AS found LIMIT 1",
    "has_property": "MATCH (p:{label}) WHERE p.{property} IS NOT NULL RETURN 1 AS found LIMIT 1",
    # The property keys of a sample of the label's nodes: the names a typo was meant to be.
    "label_keys": "MATCH (p:{label}) WITH p LIMIT 1000 UNWIND keys(p) AS key "
    "RETURN collect(DISTINCT key) AS keys",
    "labels": "CALL db.labels() YIELD label RETURN collect(label) AS labels",
    "count_with_sequence": "MATCH (p:{label}) WHERE p.{sequence} IS NOT NULL RETURN count(p) AS n",
    "count_with_vector": "MATCH (p:{label}) WHERE p.{vector} IS NOT NULL RETURN count(p) AS n",
    "stored_space": "MATCH (p:{label}) "
    "WHERE p.{vector} IS NOT NULL OR p.{vector}_rejected IS NOT NULL "
    "RETURN p.{id} AS id, {{model: p.{vector}_model, model_revision: p.{vector}_model_revision, "
    "embedding: p.{vector}_embedding, dimension: p.{vector}_dimension}} AS space LIMIT 1",
    # Only nodes that still hold the row's sequence; a node whose vector was made from that
    # sequence already is left alone, so loading twice changes nothing.
    "write_vectors": "UNWIND range(0, size($ids) - 1) AS i "
    "MATCH (p:{label} {{{id}: $ids[i]}}) WHERE p.{sequence} = $sequences[i] "
    "CALL (p, i) {{ "
    "WITH p, i WHERE p.{vector} IS NULL OR p.{vector}_sequence_sha256 IS NULL "
    "OR p.{vector}_sequence_sha256 <> $sha256[i] "
    "{store} "
    "SET p += $provenance, p.{vector}_sequence_sha256 = $sha256[i], "
    "p.{vector}_long_sequence_handling = $handling[i], p.{vector}_rejected = null "
    "RETURN count(*) AS changed }} "
    "RETURN collect(DISTINCT i) AS found, sum(changed) AS written",
    "store_list": "CALL db.create.setNodeVectorProperty(p, $property, $vectors[i])",
    "store_native": "SET p.{vector} = vector($vectors[i], $dimension, FLOAT32)",
    "write_rejections": "UNWIND range(0, size($rows) - 1) AS i WITH i, $rows[i] AS row "
    "MATCH (p:{label} {{{id}: row.id}}) WHERE p.{sequence} = row.sequence "
    "CALL (p, row) {{ "
    "WITH p, row WHERE p.{vector}_sequence_sha256 IS NULL "
    "OR p.{vector}_sequence_sha256 <> row.sha256 "
    "OR coalesce(p.{vector}_rejected, '') <> row.reason "
    "SET p += $who, p.{vector}_sequence_sha256 = row.sha256, p.{vector}_rejected = row.reason "
    "REMOVE {stale} "
    "RETURN count(*) AS changed }} "
    "RETURN collect(DISTINCT i) AS found, sum(changed) AS written",
    "create_vector_index": "CREATE VECTOR INDEX {index} IF NOT EXISTS FOR (p:{label}) "
    "ON p.{vector} OPTIONS {{indexConfig: {{`vector.dimensions`: $dimension, "
    "`vector.similarity_function`: $similarity, `vector.hnsw.m`: $hnsw_m, "
    "`vector.hnsw.ef_construction`: $hnsw_ef_construction, "
    "`vector.quantization.enabled`: $quantization}}}}",
    "neighbours_search": "MATCH (q:{label} {{{id}: $id}}) WHERE q.{vector} IS NOT NULL "
    "MATCH (node:{label}) SEARCH node IN (VECTOR INDEX {index} FOR q.{vector} LIMIT $k + 1) "
    "SCORE AS score WITH node, score WHERE node <> q "
    "RETURN node.{id} AS id, score ORDER BY score DESC LIMIT $k",
    "neighbours_procedure": "MATCH (q:{label} {{{id}: $id}}) WHERE q.{vector} IS NOT NULL "
    "CALL db.index.vector.queryNodes($index, $k + 1, q.{vector}) "
    "YIELD node, score WITH node, score WHERE node <> q "
    "RETURN node.{id} AS id, score ORDER BY score DESC LIMIT $k",
    "nearest_search": "MATCH (node:{label}) "
    "SEARCH node IN (VECTOR INDEX {index} FOR $vector LIMIT $k) SCORE AS score "
    "RETURN node.{id} AS id, score ORDER BY score DESC",
    "nearest_procedure": "CALL db.index.vector.queryNodes($index, $k, $vector) "
    "YIELD node, score RETURN node.{id} AS id, score ORDER BY score DESC",
    "stored_for_id": "MATCH (p:{label} {{{id}: $id}}) "
    "RETURN p.{vector} AS vector, p.{vector}_rejected AS rejected",
    # Why a protein has no vector: every node with the id (ids may repeat) says its part.
    "vector_status": "MATCH (p:{label} {{{id}: $id}}) "
    "RETURN count(p) AS nodes, count(p.{sequence}) AS with_sequence, "
    "count(p.{vector}) AS embedded, collect(DISTINCT p.{vector}_rejected) AS rejected",
    # {property} is a checked name too: the node property the report colours by.
    "property_values": "UNWIND $ids AS wanted MATCH (p:{label} {{{id}: wanted}}) "
    "RETURN p.{id} AS id, p.{property} AS value",
    "add_proteins": "UNWIND $rows AS row MERGE (p:{label} {{{id}: row.{id}}}) SET p += row",
}
