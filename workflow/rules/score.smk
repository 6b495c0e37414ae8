rule score:
    input:
        **score_model_inputs,
        completions=paths.COMPLETIONS,
    output:
        paths.SCORES,
    log:
        f"{paths.RUN_LOGS}/score/{{start}}-{{end}}.{{prm}}.log",
    conda:
        SAL_ENV
    threads: resource("score", "threads")
    resources:
        gpu=resource("score", "gpu"),
        mem_mb=resource("score", "mem_mb"),
        runtime=resource("score", "runtime"),
    params:
        prm=prm_settings,
        # the path only, a constant: the server locations in the file are no parameter (paths.SERVERS)
        servers=SERVERS,
    message:
        JOB_MESSAGE
    shell:
        "sal score --completions {input.completions}"
        " --prm {params.prm:q} --servers {params.servers} --out {output} > {log} 2>&1"
