rule push:
    input:
        paths.MERGED,
    output:
        paths.PUSHED,
    message:
        JOB_MESSAGE
    log:
        f"{paths.RUN_LOGS}/push.{{prm}}.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        repo=config.get("push", {}).get("repo", ""),
        public="" if config.get("push", {}).get("private", True) else "--public",
    shell:
        "sal push --merged {input} --repo {params.repo} {params.public}" " --receipt {output} > {log} 2>&1"
