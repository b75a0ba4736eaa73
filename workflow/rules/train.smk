rule track_init:
    output:
        ids=f"{RESULTS}/mlflow/experiments.json",
    log:
        f"{RESULTS}/logs/track_init.log",
    benchmark:
        f"{RESULTS}/benchmarks/track_init.tsv"
    conda:
        "../../environment.yml"
    params:
        uri=tracking_uri(),
        experiments=EXPERIMENTS,
        enabled="" if config["mlflow"]["enabled"] else "--disabled",
    shell:
        "debench track init --uri {params.uri:q} --experiments {params.experiments}"
        " --out {output.ids} {params.enabled} > {log} 2>&1"


rule train:
    input:
        # ancient: a cache or tracking file rewritten in place never reruns a finished run (a
        # failing rerun would delete its metrics.json); changed data settings change the cache's
        # path (debench.config.data_dir) and so rerun the runs that read it
        data=data_cache,
        tracking=ancient(rules.track_init.output.ids),
    output:
        metrics=f"{RESULTS}/runs/{{experiment}}/{{dataset}}/{{model}}/seed{{seed}}/metrics.json",
    log:
        f"{RESULTS}/logs/train/{{experiment}}/{{dataset}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{experiment}}/{{dataset}}/{{model}}/seed{{seed}}.tsv"
    retries: train_retries()
    conda:
        "../../environment.yml"
    threads: train_threads
    resources:
        gpu=train_gpu,
    params:
        identity=train_identity,
        spec=train_spec,
        gpu_slots=gpu_slots,
    shell:
        "debench train --spec {params.spec:q} --tracking-ids {input.tracking}"
        " --threads {threads} --gpu-slots {params.gpu_slots} --gpu-units {resources.gpu} > {log} 2>&1"
