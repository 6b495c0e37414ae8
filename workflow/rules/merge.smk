rule merge:
    input:
        problems=PROBLEMS,
        completions=merge_completions,
        scores=merge_scores,
    output:
        MERGED,
    log:
        f"{LOGS}/merge.{{prm}}.log",
    conda:
        SAL_ENV
    params:
        run=run_keys,
        shard_size=GRID.dataset.shard_size,
    shell:
        "sal merge --problems {input.problems} --completions {input.completions}"
        " --scores {input.scores} --run {params.run:q} --shard-size {params.shard_size}"
        " --out {output} > {log} 2>&1"
