rule generate:
    input:
        problems=PROBLEMS,
        models=generate_model_inputs,
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
        # the path only, a constant: the server locations in the file are no parameter (paths.SERVERS)
        servers=SERVERS,
    shell:
        "OMP_NUM_THREADS={threads} sal generate --problems {input.problems}"
        " --start {wildcards.start} --end {wildcards.end}"
        " --job {params.job:q} --servers {params.servers} --out {output} > {log} 2>&1"
