rule evaluate:
    input:
        paths.MERGED,
    output:
        paths.METRICS,
    log:
        f"{paths.RUN_LOGS}/evaluate.{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("evaluate", "threads", 2)
    resources:
        mem_mb=resource("evaluate", "mem_mb", 4000),
        runtime=resource("evaluate", "runtime", 30),
    params:
        options=evaluation_options(),
    message:
        JOB_MESSAGE
    shell:
        "sal evaluate --merged {input} --out {output} --workers {threads} {params.options}" " > {log} 2>&1"


rule aggregate:
    input:
        ALL_METRICS,
    output:
        table=report(
            paths.ACCURACY,
            caption="../report/accuracy.rst",
            category="Tables",
        ),
        optimal=report(
            paths.COMPUTE_OPTIMAL,
            caption="../report/compute_optimal.rst",
            category="Tables",
        ),
    log:
        f"{paths.LOGS}/aggregate.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        # the metrics paths (the inputs), one per line, written at parse time (rules/common.smk)
        metrics_list=METRICS_LIST,
    message:
        JOB_MESSAGE
    shell:
        "sal aggregate --metrics-list {params.metrics_list} --out {output.table}"
        " --compute-optimal {output.optimal} > {log} 2>&1"
