"""The packaged Snakemake workflow of a whole study (``bioprune study``) and its config schema.

- :mod:`bioprune.workflow.config`: the study config (pydantic), validated before anything runs;
- :mod:`bioprune.workflow.plan`: the jobs it implies (names, paths, each stage's options);
- ``Snakefile``: the rules, one per stage, each calling ``bioprune <stage>``;
- :mod:`bioprune.workflow.run`: writes the config into the study directory and runs Snakemake.
"""
