# With several evaluation.graders the evaluate job also writes the run's grader files (accuracy per
# grader, the disagreements, a figure: sal_core.evaluation.disagreement); with [default] alone its
# outputs and command are what they always were, so upgrading reruns nothing.
GRADER_OUTPUTS = (
    {
        "grades": f"{GRADER_FILES}.grades.parquet",
        "grader_accuracy": report(
            f"{GRADER_FILES}.accuracy.csv",
            caption="../report/grader_accuracy.rst",
            category="Graders",
            subcategory="{model} {run} {sampling} seed {seed} {prm}",
        ),
        "disagreements": report(
            f"{GRADER_FILES}.disagreements.csv",
            caption="../report/grader_disagreements.rst",
            category="Graders",
            subcategory="{model} {run} {sampling} seed {seed} {prm}",
        ),
        "grader_plot": report(
            f"{GRADER_FILES}.png",
            caption="../report/grader_accuracy.rst",
            category="Graders",
            subcategory="{model} {run} {sampling} seed {seed} {prm}",
        ),
    }
    if len(GRADERS) > 1
    else {}
)
EVALUATE_SHELL = (
    "sal evaluate --merged {input} --out {output[0]} --workers {threads} {params.options}"
    f"{grader_flag(config.get('evaluation', {}))} --grader-files {GRADER_FILES.replace('{', '{wildcards.')}"
    " > {log} 2>&1"
    if GRADER_OUTPUTS
    else "sal evaluate --merged {input} --out {output} --workers {threads} {params.options} > {log} 2>&1"
)


rule evaluate:
    input:
        paths.MERGED,
    output:
        paths.METRICS,
        **GRADER_OUTPUTS,
    log:
        f"{paths.RUN_LOGS}/evaluate.{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("evaluate", "threads")
    resources:
        gpu=resource("evaluate", "gpu"),
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
    params:
        options=evaluation_options(),
    message:
        JOB_MESSAGE
    shell:
        EVALUATE_SHELL


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
    threads: resource("evaluate_protocol", "threads")
    resources:
        gpu=resource("evaluate_protocol", "gpu"),
        mem_mb=resource("evaluate_protocol", "mem_mb"),
        runtime=resource("evaluate_protocol", "runtime"),
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
