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


# The metrics paths go through a list file: for a sweep they are far longer than one shell
# command may be (Linux caps a single argument at 128 KiB).
rule metrics_list:
    input:
        all_metrics(),
    output:
        paths.METRICS_LIST,
    log:
        f"{paths.LOGS}/metrics_list.log",
    localrule: True
    message:
        JOB_MESSAGE
    run:
        write_path_list(input, output[0], log[0])


rule aggregate:
    input:
        metrics_list=paths.METRICS_LIST,
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
    message:
        JOB_MESSAGE
    shell:
        "sal aggregate --metrics-list {input.metrics_list} --out {output.table}"
        " --compute-optimal {output.optimal} > {log} 2>&1"
