# The sample sheet, read and checked before any job runs, and the paths every rule shares.
import os

from plasmacount.samplesheet import read_sample_sheet

SAMPLES = {row.sample: row for row in read_sample_sheet(config["samples"])}
OUT = config["outdir"].rstrip("/")
ANALYSES = list(config["analyses"])
TEST = [name for name, row in SAMPLES.items() if row.role == "test"]
REFERENCE = [name for name, row in SAMPLES.items() if row.role == "reference"]
NORMAL = [name for name, row in SAMPLES.items() if row.role == "normal"]
ALIGNED = [name for name, row in SAMPLES.items() if row.input_kind == "fastq"]

if "nipt" in ANALYSES and not config["nipt"]["reference"] and len(REFERENCE) < 20:
    raise ValueError(
        f"nipt needs a reference: set nipt.reference in the config, or give at least 20 samples with role "
        f"'reference' in {config['samples']} ({len(REFERENCE)} given)"
    )
if not TEST:
    raise ValueError(f"{config['samples']}: no sample with role 'test' (the samples to analyse)")


wildcard_constraints:
    sample="[A-Za-z0-9][A-Za-z0-9._-]*",


def alignment_of(sample):
    """The BAM/CRAM of a sample: made by the workflow from FASTQ, or given in the sheet."""
    row = SAMPLES[sample]
    if row.input_kind == "fastq":
        return f"{OUT}/alignments/{sample}.bam"
    return row.bam


def fastq_of(wildcards):
    row = SAMPLES[wildcards.sample]
    return [row.fastq_1] + ([row.fastq_2] if row.fastq_2 else [])


def counts_of(sample):
    row = SAMPLES[sample]
    return row.counts if row.input_kind == "counts" else f"{OUT}/counts/{sample}.counts.npz"


def reference_file():
    return config["nipt"]["reference"] or f"{OUT}/reference/reference.npz"


def panel_file():
    if config["tumor"]["panel"]:
        return config["tumor"]["panel"]
    return f"{OUT}/tumor_panel/panel.npz" if len(NORMAL) >= 3 else None


def analysis_outputs(analysis):
    return [f"{OUT}/{analysis}/{sample}.{analysis}.json" for sample in TEST]


def final_outputs():
    outputs = [f"{OUT}/reports/batch.html"]
    if config["multiqc"]:
        outputs.append(f"{OUT}/multiqc/multiqc_report.html")
    return outputs
