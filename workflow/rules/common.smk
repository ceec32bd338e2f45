from pathlib import Path

from snakemake.utils import min_version, validate

from protembed.config import check_config
from protembed.names import vector_property

min_version("9.14.1")


check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
validate(config, schema="../schemas/config.schema.yaml")

# All outputs of one model live under one directory named after its vector property, so
# several models can be run side by side from one checkout.
RUN = Path(config["results"]) / vector_property(config)
SHARDS = range(config["shards"])
