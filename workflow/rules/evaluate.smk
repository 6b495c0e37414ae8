rule evaluate:
    input:
        MERGED,
    output:
        METRICS,
    log:
        f"{LOGS}/evaluate.{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("evaluate", "threads", 2)
    resources:
        mem_mb=resource("evaluate", "mem_mb", 4000),
        runtime=resource("evaluate", "runtime", 30),
    params:
        options=evaluation_options(),
    shell:
        "sal evaluate --merged {input} --out {output} --workers {threads} {params.options}"
        " > {log} 2>&1"


rule aggregate:
    input:
        all_metrics(),
    output:
        table=report(
            "results/{dataset}/accuracy.csv",
            caption="../report/accuracy.rst",
            category="Tables",
        ),
        optimal=report(
            "results/{dataset}/compute_optimal.csv",
            caption="../report/compute_optimal.rst",
            category="Tables",
        ),
    log:
        "logs/{dataset}/aggregate.log",
    localrule: True
    conda:
        SAL_ENV
    shell:
        "sal aggregate --metrics {input} --out {output.table}"
        " --compute-optimal {output.optimal} > {log} 2>&1"
