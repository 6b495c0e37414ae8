rule push:
    input:
        paths.MERGED,
    output:
        paths.PUSHED,
    log:
        f"{paths.RUN_LOGS}/push.{{prm}}.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        repo=quoted(config.get("push", {}).get("repo", "")),
        public="" if config.get("push", {}).get("private", True) else "--public",
    message:
        JOB_MESSAGE
    shell:
        "sal push --merged {input} --repo {params.repo} {params.public}" " --receipt {output} > {log} 2>&1"
