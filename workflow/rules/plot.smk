rule plot:
    input:
        paths.ACCURACY,
    output:
        [
            report(
                f"{paths.PLOTS}/{path}",
                caption=f"../report/{Path(path).stem}.rst",
                category="Plots",
                subcategory=Path(path).parent.name,
            )
            for path in PLOT_FILES
        ],
    log:
        f"{paths.LOGS}/plot.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        outdir=lambda wildcards: paths.PLOTS.format(dataset=wildcards.dataset),
        baseline=GRID.baseline_sampling,
    message:
        JOB_MESSAGE
    shell:
        "sal plot --accuracy {input} --outdir {params.outdir}" " --baseline-sampling {params.baseline} > {log} 2>&1"
