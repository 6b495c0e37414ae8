rule generate:
    input:
        **generate_model_inputs,
    output:
        paths.COMPLETIONS,
    log:
        f"{paths.RUN_LOGS}/generate/{{start}}-{{end}}.log",
    conda:
        SAL_ENV
    threads: resource("generate", "threads")
    resources:
        gpu=resource("generate", "gpu"),
        mem_mb=resource("generate", "mem_mb"),
        runtime=resource("generate", "runtime"),
    params:
        job=generate_job,
        # the snapshot by name, its dataset settings by digest (sal_core.plan.Plan.dataset_version)
        problems=PROBLEMS,
        dataset=PLAN.dataset_version,
        # the path only, a constant: the server locations in the file are no parameter (paths.SERVERS)
        servers=SERVERS,
    message:
        JOB_MESSAGE
    shell:
        "sal generate --problems {params.problems}"
        " --start {wildcards.start} --end {wildcards.end}"
        " --job {params.job:q} --servers {params.servers} --out {output} > {log} 2>&1"
