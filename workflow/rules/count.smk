# Alignments to counts: fragments per bin on the configured bins, fragment sizes, other contigs.


rule count:
    input:
        alignment=lambda wildcards: alignment_of(wildcards.sample),
        bins=config["genome"]["bins"],
    output:
        f"{OUT}/counts/{{sample}}.counts.npz",
    params:
        mapq=config["count"]["min_mapq"],
        extra=config["count"]["extra"],
        fasta=f"--fasta {config['genome']['fasta']}",
    threads: 2
    log:
        f"{OUT}/logs/count/{{sample}}.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "plasmacount count {input.alignment} --bins {input.bins} --sample {wildcards.sample} --min-mapq {params.mapq}"
        " --threads {threads} {params.fasta} {params.extra} -o {output} > {log} 2>&1"
