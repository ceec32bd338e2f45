from pathlib import Path

from snakemake.utils import min_version, validate

from protembed.names import vector_property

min_version("9.14.1")


validate(config, schema="../schemas/config.schema.yaml")

# All outputs of one model live under one directory named after its vector property, so
# several models can be run side by side from one checkout.
RUN = Path(config["results"]) / vector_property(config)
SHARDS = range(config["shards"])
