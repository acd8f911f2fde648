"""Short genomics paragraphs written for the real-model tests: gene names, variants and pathways in the
plain style of an abstract. The held-out paragraphs share the training set's vocabulary and phrasing but
not its sentences, so a few steps of fine-tuning should lower their perplexity; the gene passages carry the
gene symbols a zero-shot answer should name.
"""
from __future__ import annotations

TRAIN = [
    "The BRCA1 c.68_69delAG variant removes two bases from exon 2 and truncates the protein. Carriers show "
    "defective homologous recombination, and their tumours respond to PARP inhibitors.",
    "Loss-of-function variants in PALB2 impair the recruitment of BRCA2 to DNA double-strand breaks. The "
    "homologous recombination pathway then fails, and breast cancer risk rises several-fold.",
    "The TP53 R175H variant disrupts the DNA-binding domain of p53. Cells carrying it escape cell cycle arrest "
    "after DNA damage, and the MDM2 feedback loop no longer limits their growth.",
    "KRAS G12D keeps the GTPase in its active state and drives the MAPK pathway through RAF, MEK and ERK. In "
    "pancreatic cancer the variant is found in most tumours.",
    "EGFR L858R increases the kinase activity of the receptor and activates the PI3K-AKT pathway. Lung tumours "
    "with this variant respond to tyrosine kinase inhibitors such as gefitinib.",
    "The BRAF V600E variant activates the MAPK pathway without an upstream signal. It is found in half of "
    "melanomas, and vemurafenib inhibits the mutant kinase.",
    "Deletions of PTEN remove the phosphatase that opposes PI3K signalling. Without PTEN, AKT stays active and "
    "the mTOR pathway promotes cell growth and survival.",
    "The CFTR F508del variant misfolds the chloride channel, which is degraded before it reaches the membrane. "
    "Chloride transport in the airway epithelium fails in cystic fibrosis.",
    "APOE e4 carriers clear amyloid beta more slowly from the brain. The variant changes lipid transport by "
    "the apolipoprotein and raises the risk of Alzheimer disease.",
    "MLH1 promoter methylation silences the gene and disables DNA mismatch repair. Colorectal tumours with this "
    "defect accumulate microsatellite instability.",
    "The PIK3CA H1047R variant increases the lipid kinase activity of p110 alpha and activates the PI3K-AKT "
    "pathway in breast cancer cells.",
    "JAK2 V617F removes the autoinhibition of the kinase and activates STAT5 signalling without cytokine. The "
    "variant is found in most patients with polycythemia vera.",
]

HELD_OUT = [
    "The BRCA2 c.5946delT variant truncates the protein and impairs homologous recombination. Carriers of the "
    "variant have a higher risk of breast and ovarian cancer.",
    "KRAS G12V keeps the GTPase active and drives the MAPK pathway through RAF and ERK in colorectal tumours.",
    "Deletions of CDKN2A remove the p16 protein that holds cells in cell cycle arrest, and melanoma cells then "
    "divide without the control of the RB1 pathway.",
    "The IDH1 R132H variant changes the enzyme so that it produces 2-hydroxyglutarate, which blocks DNA "
    "demethylation in glioma cells.",
]

# (passage, the gene symbols it names): for the zero-shot gene prompt
GENE_PASSAGES = [
    ("Mutations in BRCA1 and BRCA2 impair homologous recombination and raise the risk of breast cancer.",
     {"BRCA1", "BRCA2"}),
    ("The TP53 R175H variant inactivates p53, and MDM2 no longer controls its level in tumour cells.",
     {"TP53", "MDM2"}),
    ("Activating variants of KRAS and BRAF drive the MAPK pathway in colorectal cancer.",
     {"KRAS", "BRAF"}),
]
