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


# Each further `evaluation.protocols` entry: its own metrics per run and its own tables, next to
# the first protocol's, which stay as they are (sal_core.evaluation.protocols).
rule evaluate_protocol:
    input:
        paths.MERGED,
    output:
        paths.PROTOCOL_METRICS,
    log:
        f"{paths.RUN_LOGS}/evaluate.{{prm}}.{{protocol}}.log",
    conda:
        SAL_ENV
    threads: resource("evaluate", "threads", 2)
    resources:
        mem_mb=resource("evaluate", "mem_mb", 4000),
        runtime=resource("evaluate", "runtime", 30),
    params:
        options=evaluation_options(with_protocol=False),
    message:
        JOB_MESSAGE
    shell:
        "sal evaluate --merged {input} --out {output} --workers {threads} --protocol {wildcards.protocol}"
        " {params.options} > {log} 2>&1"


rule aggregate_protocol:
    input:
        lambda wildcards: PROTOCOL_METRICS[wildcards.protocol],
    output:
        table=paths.PROTOCOL_ACCURACY,
        optimal=paths.PROTOCOL_COMPUTE_OPTIMAL,
    log:
        f"{paths.LOGS}/aggregate.{{protocol}}.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        metrics_list=lambda wildcards: PROTOCOL_METRICS_LISTS[wildcards.protocol],
    message:
        JOB_MESSAGE
    shell:
        "sal aggregate --metrics-list {params.metrics_list} --out {output.table}"
        " --compute-optimal {output.optimal} > {log} 2>&1"
