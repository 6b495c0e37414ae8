rule prepare_model:
    output:
        directory("resources/models/{source}"),
    log:
        "logs/prepare_model/{source}.log",
    conda:
        SAL_ENV
    shell:
        "sal prepare-model --source {wildcards.source} --out {output} > {log} 2>&1"
