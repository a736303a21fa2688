# Results to what people and other tools read: per-sample and batch reports, then MultiQC over
# the reports' custom-content files and the alignment statistics.


rule report:
    input:
        [analysis_outputs(analysis) for analysis in ANALYSES],
    output:
        f"{OUT}/reports/batch.html",
        [f"{OUT}/reports/{sample}.html" for sample in TEST],
    params:
        folders=lambda wildcards, input: sorted({os.path.dirname(path) for path in input}),
        pdf="" if config["report"]["pdf"] else "--no-pdf",
        output=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount report {params.folders} {params.pdf} -o {params.output} > {log} 2>&1"


rule multiqc:
    input:
        reports=f"{OUT}/reports/batch.html",
        stats=[f"{OUT}/qc/{sample}.stats.txt" for sample in SAMPLES if SAMPLES[sample].input_kind != "counts"],
        duplicates=[f"{OUT}/qc/{sample}.markdup.txt" for sample in ALIGNED],
    output:
        f"{OUT}/multiqc/multiqc_report.html",
    params:
        folders=lambda wildcards, input: sorted({os.path.dirname(path) for path in [input.reports, *input.stats, *input.duplicates]}),
        output=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{OUT}/logs/multiqc.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "multiqc {params.folders} --force --no-ansi -o {params.output} > {log} 2>&1"
