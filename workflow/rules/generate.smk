rule generate:
    input:
        **generate_model_inputs,
        problems=PROBLEMS,
    output:
        paths.COMPLETIONS,
    log:
        f"{paths.RUN_LOGS}/generate/{{start}}-{{end}}.log",
    conda:
        SAL_ENV
    threads: resource("generate", "threads", 1)
    resources:
        mem_mb=resource("generate", "mem_mb", 16000),
        runtime=resource("generate", "runtime", 120),
    params:
        job=generate_job,
    message:
        JOB_MESSAGE
    shell:
        "sal generate --problems {input.problems}"
        " --start {wildcards.start} --end {wildcards.end}"
        " --job {params.job:q} --out {output} > {log} 2>&1"
