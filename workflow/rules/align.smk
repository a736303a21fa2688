# Reads to alignments: the genome indexed once, then bwa mem, mate fixing, sorting and duplicate
# marking per sample (samtools), with samtools stats for MultiQC.


rule genome:
    input:
        config["genome"]["fasta"],
    output:
        fasta=f"{OUT}/genome/genome.fa",
        index=multiext(f"{OUT}/genome/genome.fa", ".amb", ".ann", ".bwt", ".pac", ".sa", ".fai"),
    log:
        f"{OUT}/logs/genome.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "(cp {input} {output.fasta} && bwa index {output.fasta} && samtools faidx {output.fasta}) > {log} 2>&1"


rule align:
    input:
        reads=fastq_of,
        genome=rules.genome.output.fasta,
        index=rules.genome.output.index,
    output:
        bam=f"{OUT}/alignments/{{sample}}.bam",
        bai=f"{OUT}/alignments/{{sample}}.bam.bai",
        duplicates=f"{OUT}/qc/{{sample}}.markdup.txt",
    params:
        bwa=config["align"]["bwa_extra"],
        markdup="" if config["align"]["mark_duplicates"] else "--mode t -n",
    threads: config["align"]["threads"]
    log:
        f"{OUT}/logs/align/{{sample}}.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "(bwa mem -t {threads} {params.bwa} -R '@RG\\tID:{wildcards.sample}\\tSM:{wildcards.sample}' {input.genome} {input.reads}"
        " | samtools fixmate -m -u - -"
        " | samtools sort -u -@ {threads} -T {output.bam}.tmp -"
        " | samtools markdup -@ {threads} -s -f {output.duplicates} {params.markdup} - {output.bam}"
        " && samtools index {output.bam}) > {log} 2>&1"


rule alignment_stats:
    input:
        lambda wildcards: alignment_of(wildcards.sample),
    output:
        f"{OUT}/qc/{{sample}}.stats.txt",
    log:
        f"{OUT}/logs/alignment_stats/{{sample}}.log",
    conda:
        "../envs/plasmacount.yaml"
    shell:
        "samtools stats {input} > {output} 2> {log}"
