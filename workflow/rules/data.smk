rule prepare_data:
    output:
        cache=f"{DATA_DIR}/{{dataset}}.npz",
        meta=f"{DATA_DIR}/{{dataset}}.json",
    log:
        f"{DATA_DIR}/logs/{{dataset}}.log",
    benchmark:
        f"{DATA_DIR}/benchmarks/{{dataset}}.tsv"
    conda:
        "../../environment.yml"
    params:
        source=config["data"]["source"],
        options=data_options(),
    shell:
        "debench prepare-data --dataset {wildcards.dataset} --source {params.source}"
        " --out {output.cache} --options {params.options:q} > {log} 2>&1"
