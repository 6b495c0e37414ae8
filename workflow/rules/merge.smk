rule merge:
    input:
        problems=PROBLEMS,
        completions=merge_completions,
        scores=merge_scores,
    output:
        paths.MERGED,
    log:
        f"{paths.RUN_LOGS}/merge.{{prm}}.log",
    conda:
        SAL_ENV
    params:
        run=merged_metadata,
        shard_size=merge_shard_size,
    message:
        JOB_MESSAGE
    shell:
        "sal merge --problems {input.problems} --completions {input.completions}"
        " --scores {input.scores} --run {params.run:q} --shard-size {params.shard_size}"
        " --out {output} > {log} 2>&1"
