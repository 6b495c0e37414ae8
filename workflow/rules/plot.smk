rule plot:
    input:
        "results/{dataset}/accuracy.csv",
    output:
        [
            report(
                f"results/{{dataset}}/plots/{path}",
                caption=f"../report/{Path(path).stem}.rst",
                category="Plots",
                subcategory=Path(path).parent.name,
            )
            for path in PLOTS
        ],
    log:
        "logs/{dataset}/plot.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        outdir=lambda wildcards: f"results/{wildcards.dataset}/plots",
        baseline=GRID.evaluation["baseline_sampling"],
    shell:
        "sal plot --accuracy {input} --outdir {params.outdir}"
        " --baseline-sampling {params.baseline} > {log} 2>&1"
