# The learn steps (docs/learn.md): a `labels:` entry samples its own problems with a policy and labels
# the steps by rollouts (label_sample -> label_steps, shard by shard); a `prms:` entry with a `train:`
# block is trained on them, or on a file or Hub dataset (train_prm); `processbench:` benchmarks PRMs
# (processbench per PRM, processbench_plot). Inputs, params and targets: sal_core.learn.plan.
from sal_core.learn.plan import LearnPlan

try:
    LEARN = LearnPlan(GRID)  # snapshots every labels entry's problems, as the dataset's
except SalError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None


wildcard_constraints:
    labels=_one_of(LEARN.names("labels")) or "(?!)",


rule label_sample:
    input:
        problems=paths.LABEL_PROBLEMS,
        models=LEARN.label_models,
    output:
        paths.LABEL_COMPLETIONS,
    log:
        f"{paths.LABEL_LOGS}/sample/{{start}}-{{end}}.log",
    conda:
        SAL_ENV
    threads: resource("label_sample", "threads")
    resources:
        gpu=resource("label_sample", "gpu"),
        mem_mb=resource("label_sample", "mem_mb"),
        runtime=resource("label_sample", "runtime"),
    params:
        job=LEARN.label_job,
        servers=SERVERS,
    message:
        JOB_MESSAGE
    shell:
        "sal generate --problems {input.problems}"
        " --start {wildcards.start} --end {wildcards.end}"
        " --job {params.job:q} --servers {params.servers} --out {output} > {log} 2>&1"


rule label_steps:
    input:
        completions=paths.LABEL_COMPLETIONS,
        models=LEARN.label_models,
    output:
        paths.LABEL_STEPS,
    log:
        f"{paths.LABEL_LOGS}/steps/{{start}}-{{end}}.log",
    conda:
        SAL_ENV
    threads: resource("label_steps", "threads")
    resources:
        gpu=resource("label_steps", "gpu"),
        mem_mb=resource("label_steps", "mem_mb"),
        runtime=resource("label_steps", "runtime"),
    params:
        model=LEARN.label_model,
        settings=LEARN.label_settings,
        servers=SERVERS,
    message:
        JOB_MESSAGE
    shell:
        "sal label-steps --completions {input.completions}"
        " --model {params.model:q} --config {params.settings:q} --servers {params.servers}"
        " --workers {threads} --out {output} > {log} 2>&1"


# The output is written whole at the end (`.{prm}.partial`, renamed); checkpoints go to
# paths.TRAIN_CHECKPOINTS beside it, which is no output, so Snakemake keeps them when it deletes a
# failed job's output, and the rerun resumes from the last one.
rule train_prm:
    input:
        LEARN.train_inputs,
    output:
        directory(paths.TRAINED_PRM),
    log:
        paths.TRAIN_LOG,
    wildcard_constraints:
        prm=_one_of(LEARN.names("prm")) or "(?!)",
    conda:
        SAL_ENV
    threads: resource("train_prm", "threads")
    resources:
        gpu=resource("train_prm", "gpu"),
        mem_mb=resource("train_prm", "mem_mb"),
        runtime=resource("train_prm", "runtime"),
    params:
        settings=LEARN.train_settings,
        launch=LEARN.train_launch,
    message:
        JOB_MESSAGE
    shell:
        "{params.launch} --config {params.settings:q} --out {output} > {log} 2>&1"


rule processbench:
    input:
        LEARN.prm_models,
    output:
        table=report(
            paths.PROCESSBENCH_TABLE,
            caption="../report/processbench_table.rst",
            category="ProcessBench",
        ),
        samples=paths.PROCESSBENCH_SAMPLES,
    log:
        f"{paths.PROCESSBENCH_LOGS}/{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("processbench", "threads")
    resources:
        gpu=resource("processbench", "gpu"),
        mem_mb=resource("processbench", "mem_mb"),
        runtime=resource("processbench", "runtime"),
    params:
        prm=prm_settings,
        options=LEARN.processbench_options(),
        outdir=lambda wildcards, output: Path(output.table).parent,
        servers=SERVERS,
    message:
        JOB_MESSAGE
    shell:
        "sal processbench --prm {params.prm:q} {params.options}"
        " --servers {params.servers} --no-plot --out {params.outdir} > {log} 2>&1"


rule processbench_plot:
    input:
        LEARN.processbench_tables(),
    output:
        report(
            paths.PROCESSBENCH_PLOT,
            caption="../report/processbench.rst",
            category="ProcessBench",
        ),
    log:
        f"{paths.PROCESSBENCH_LOGS}/plot.log",
    localrule: True
    conda:
        SAL_ENV
    message:
        JOB_MESSAGE
    shell:
        "sal processbench --tables {input} --plot {output} > {log} 2>&1"
