"""plasmacount: molecular counting of plasma cell-free DNA from low-pass whole-genome sequencing.

The package turns a sample's alignments into counts of cfDNA fragments per genomic bin (with
fragment sizes), and builds prenatal and cancer analyses on those counts. The command line in
`plasmacount.cli` is a thin layer over the typed functions of the domain modules.
"""

__version__ = "0.1.0"
