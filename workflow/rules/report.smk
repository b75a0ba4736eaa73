rule aggregate:
    input:
        metrics=all_metrics(),
        published="config/reference/published_results.csv",
    output:
        runs=f"{RESULTS}/runs.csv",
        summary=f"{RESULTS}/tables/summary.json",
        tables=[
            report(
                f"{RESULTS}/tables/{table}.csv",
                caption="../report/table.rst",
                category=report_category(table),
                subcategory="Table",
                labels={
                    "model": TABLE_SPECS[table].models,
                    "metric": TABLE_SPECS[table].metric,
                },
            )
            for table in TABLES
        ],
        markdown=expand(f"{RESULTS}/tables/{{table}}.md", table=TABLES),
        latex=expand(f"{RESULTS}/tables/{{table}}.tex", table=TABLES),
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        "../../environment.yml"
    params:
        runs=lambda w, output: results_dir(output.runs) / "runs",
        out=lambda w, output: results_dir(output.runs),
        tolerances=json.dumps(config["report"]["tolerances"], sort_keys=True),
    shell:
        # exactly the runs the config asks for: other records under runs/ are stale, not counted
        "debench aggregate --runs {params.runs} --published {input.published}"
        " --out {params.out} --tolerances {params.tolerances:q} --metrics {input.metrics:q} > {log} 2>&1"


rule report:
    input:
        summary=rules.aggregate.output.summary,
        runs=rules.aggregate.output.runs,
    output:
        html=report(
            f"{RESULTS}/report/report.html",
            caption="../report/html.rst",
            category="Report",
        ),
        plots=[
            report(
                f"{RESULTS}/report/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category=report_category(PLOTS[name].section),
                subcategory="Plots",
                labels={"model": PLOTS[name].models, "metric": PLOTS[name].metric},
            )
            for name in PLOTS
        ],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    params:
        tables=lambda w, input: results_dir(input.runs),
        runs=lambda w, input: results_dir(input.runs) / "runs",
        out=lambda w, output: Path(output.html).parent,
    shell:
        "debench report --tables {params.tables} --runs {params.runs} --out {params.out} > {log} 2>&1"
