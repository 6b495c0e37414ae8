rule plot:
    input:
        "results/{dataset}/accuracy.csv",
    output:
        vs_n=report(
            "results/{dataset}/plots/accuracy_vs_n.png",
            caption="../report/accuracy_vs_n.rst",
            category="Plots",
        ),
        vs_tokens=report(
            "results/{dataset}/plots/accuracy_vs_tokens.png",
            caption="../report/accuracy_vs_tokens.rst",
            category="Plots",
        ),
        by_level=report(
            "results/{dataset}/plots/accuracy_by_level.png",
            caption="../report/accuracy_by_level.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plot.log",
    localrule: True
    conda:
        SAL_ENV
    params:
        outdir=lambda wildcards, output: str(Path(output.vs_n).parent),
    shell:
        "sal plot --accuracy {input} --outdir {params.outdir} > {log} 2>&1"
