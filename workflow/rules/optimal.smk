# Compute-optimal strategy by difficulty (sal_core.evaluation.optimal, docs/evaluation.md). Each run's
# per-problem credit comes from a rule of its own, so adding this to a finished grid reruns no evaluate
# job; the analysis then reads one model's credit files (a list file written at parse time).
from sal_core.evaluation.protocols import first_grader_flag


rule credit:
    input:
        paths.MERGED,
    output:
        paths.CREDIT,
    log:
        f"{paths.RUN_LOGS}/credit.{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("credit", "threads")
    resources:
        gpu=resource("credit", "gpu"),
        mem_mb=resource("credit", "mem_mb"),
        runtime=resource("credit", "runtime"),
    params:
        # the first protocol's and the first grader's rules: the credit the metrics file averages
        options=evaluation_options() + first_grader_flag(config.get("evaluation", {})),
    message:
        JOB_MESSAGE
    shell:
        "sal evaluate --merged {input} --credit {output} --workers {threads} {params.options} > {log} 2>&1"


rule optimal:
    input:
        lambda wildcards: CREDIT_FILES[wildcards.model],
    output:
        table=report(
            paths.OPTIMAL_TABLE,
            caption="../report/optimal_table.rst",
            category="Compute-optimal by difficulty",
            subcategory="{model}",
        ),
        plot=report(
            paths.OPTIMAL_PLOT,
            caption="../report/optimal_plot.rst",
            category="Compute-optimal by difficulty",
            subcategory="{model}",
        ),
    log:
        f"{paths.LOGS}/optimal.{{model}}.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        credit_list=lambda wildcards: CREDIT_LISTS[wildcards.model],
        options=OPTIMAL_OPTIONS,
    message:
        JOB_MESSAGE
    shell:
        "sal optimal --credit-list {params.credit_list} --model {wildcards.model} --out {output.table}"
        " --plot {output.plot} {params.options} > {log} 2>&1"
