# The two commands of the README's Quickstart, and the checks run before every commit.
.PHONY: demo test lint bootstrap docs

bootstrap:
	tools/bootstrap.sh

demo: bootstrap
	.venv/bin/python -m protembed.demo

test: bootstrap
	.venv/bin/python -m pytest

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/snakemake --lint \
	  && .venv/bin/snakefmt --check workflow/

docs: bootstrap
	.venv/bin/python tools/config_docs.py
