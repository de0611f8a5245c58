"""Snakemake script: the report's Claims section from runs.csv and Fig. 2's arrays."""

from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.claims import write_claims

        results = write_claims(
            smk.input.runs,
            list(smk.input.recon),
            smk.output[0],
            protocol=dict(smk.params.protocol),
            config_name=smk.params.config_name,
        )
        for r in results:
            log.info("%s: %s", r.claim.cid, r.verdict)


if "snakemake" in globals():
    _main(globals()["snakemake"])
