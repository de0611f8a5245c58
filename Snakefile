# Regenerates Tables 1-3, Fig. 2 and the Appendix D toy plots of Atanov et al. (2019).
#
#   snakemake --workflow-profile workflow/profiles/default                      # paper scale
#   snakemake --workflow-profile workflow/profiles/default --configfile config/quick.yaml
#   snakemake --profile workflow/profiles/slurm                                 # on SLURM
#
# Outputs go to results/<config name>/; see config/config.yaml for every setting.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
