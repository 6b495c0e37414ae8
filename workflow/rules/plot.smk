rule plot:
    input:
        paths.ACCURACY,
    output:
        [
            report(
                f"{paths.PLOTS}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Plots",
            )
            for name in paths.PLOT_NAMES
        ],
    log:
        f"{paths.LOGS}/plot.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        outdir=lambda wildcards, output: str(Path(output[0]).parent),
    shell:
        "sal plot --accuracy {input} --outdir {params.outdir} > {log} 2>&1"
