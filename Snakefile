# debench: train every surveyed DE-inspired model across seeds, aggregate beside the published
# numbers, report. `snakemake --cores all` runs the survey protocol (config/config.yaml);
# `snakemake --cores 2 --configfile config/smoke.yaml` runs the offline smoke preset.
from snakemake.utils import min_version

min_version("8.0")


if "experiments" not in config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


onstart:
    start_fork_server()


onsuccess:
    stop_fork_server()


onerror:
    stop_fork_server()


rule all:
    input:
        get_final_output(),
