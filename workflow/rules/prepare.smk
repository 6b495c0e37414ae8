rule prepare_model:
    output:
        directory(paths.PREPARED_MODEL),
    message:
        JOB_MESSAGE
    log:
        "logs/prepare_model/{source}.log",
    conda:
        SAL_ENV
    shell:
        "sal prepare-model --source {wildcards.source} --out {output} > {log} 2>&1"
