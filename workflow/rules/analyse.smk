# Counts to results: the prenatal reference and the tumour panel when the sheet brings their
# samples, then each configured analysis over the test samples as one batch.


rule reference:
    input:
        counts=[counts_of(sample) for sample in REFERENCE],
        bins=config["genome"]["bins"],
    output:
        f"{OUT}/reference/reference.npz",
    log:
        f"{OUT}/logs/reference.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount reference {input.counts} --bins {input.bins} -o {output} > {log} 2>&1"


rule tumor_panel:
    input:
        counts=[counts_of(sample) for sample in NORMAL],
        bins=config["genome"]["bins"],
    output:
        f"{OUT}/tumor_panel/panel.npz",
    log:
        f"{OUT}/logs/tumor_panel.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount tumor {input.counts} --bins {input.bins} --make-panel -o {output} > {log} 2>&1"


rule nipt:
    input:
        counts=[counts_of(sample) for sample in TEST],
        reference=reference_file(),
    output:
        analysis_outputs("nipt"),
        table=f"{OUT}/nipt/nipt.tsv",
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
        extra=config["nipt"]["extra"],
    log:
        f"{OUT}/logs/nipt.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount nipt {input.counts} --reference {input.reference} {params.extra} -o {params.folder} > {log} 2>&1"


rule viral:
    input:
        counts=[counts_of(sample) for sample in TEST],
    output:
        analysis_outputs("viral"),
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
        extra=config["viral"]["extra"],
    log:
        f"{OUT}/logs/viral.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount viral {input.counts} {params.extra} -o {params.folder} > {log} 2>&1"


rule tumor:
    input:
        counts=[counts_of(sample) for sample in TEST],
        bins=config["genome"]["bins"],
        panel=[panel_file()] if panel_file() else [],
    output:
        analysis_outputs("tumor"),
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
        panel=f"--panel {panel_file()}" if panel_file() else "",
        extra=config["tumor"]["extra"],
    log:
        f"{OUT}/logs/tumor.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount tumor {input.counts} --bins {input.bins} {params.panel} {params.extra} -o {params.folder} > {log} 2>&1"


rule fragments:
    input:
        # Alignments where the sheet has them (end motifs need reads), counts otherwise.
        data=[counts_of(s) if SAMPLES[s].input_kind == "counts" else alignment_of(s) for s in TEST],
        bins=config["genome"]["bins"],
        fasta=[rules.genome.output.fasta] if any(SAMPLES[s].input_kind != "counts" for s in TEST) else [],
    output:
        analysis_outputs("fragments"),
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
        window=config["fragments"]["window"],
        motifs=lambda wildcards, input: f"--fasta {input.fasta}" if input.fasta else "",
    log:
        f"{OUT}/logs/fragments.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount fragments {input.data} --bins {input.bins} {params.motifs} --window {params.window}"
        " -o {params.folder} > {log} 2>&1"
