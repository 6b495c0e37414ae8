rule prepare_model:
    output:
        directory(paths.PREPARED_MODEL),
    log:
        "logs/prepare_model/{source}.log",
    conda:
        SAL_ENV
    message:
        JOB_MESSAGE
    shell:
        "sal prepare-model --source {wildcards.source} --out {output} > {log} 2>&1"
