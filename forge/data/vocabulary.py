"""Genomics vocabulary shared by the synthetic corpus and `normalize_genomics`: real human gene symbols
(HGNC) with common aliases and associated disease areas, Greek letter names, and the gene symbols that
are also English words (whose case is never "fixed").

Immutable constants only; the associations are coarse and serve to make the synthetic text coherent.
"""
from __future__ import annotations

from types import MappingProxyType

# symbol | aliases (comma separated) | disease keys (see DISEASES)
_GENE_TABLE = """
TP53|p53|breast,colorectal,lung,glioma,leukemia
BRCA1||breast,ovarian
BRCA2||breast,ovarian,pancreatic
EGFR|HER1|lung,glioma
KRAS||colorectal,lung,pancreatic
NRAS||melanoma,leukemia
BRAF||melanoma,colorectal
PIK3CA||breast,colorectal
PTEN||glioma,breast,prostate
MYC|c-Myc|lymphoma,breast
CDKN2A|p16INK4a|melanoma,pancreatic,glioma
RB1||retinoblastoma
APC||colorectal
ATM||breast,pancreatic
CHEK2||breast,prostate
PALB2||breast,pancreatic
MLH1||colorectal
MSH2||colorectal
MSH6||colorectal
ERBB2|HER2|breast
ALK||lung
ROS1||lung
RET||thyroid,lung
KIT||gist,leukemia
PDGFRA||gist
FLT3||leukemia
NPM1||leukemia
DNMT3A||leukemia
IDH1||glioma,leukemia
IDH2||leukemia
TET2||leukemia
JAK2||mpn
CALR||mpn
SF3B1||leukemia
EZH2||lymphoma
KMT2A|MLL|leukemia
ARID1A||ovarian,gastric
NOTCH1||leukemia
CTNNB1|β-catenin|colorectal
SMAD4||pancreatic,colorectal
TGFB1|TGF-β1|fibrosis
VHL||renal
HIF1A|HIF-1α|renal
NF1||neurofibromatosis
STK11|LKB1|lung
KEAP1||lung
CFTR||cystic_fibrosis
HBB||sickle_cell
HTT|huntingtin|huntington
FMR1||fragile_x
DMD|dystrophin|duchenne
SMN1||sma
LDLR||hypercholesterolemia
APOE||alzheimer
APOB||hypercholesterolemia
PCSK9||hypercholesterolemia
MTHFR||cardiovascular
HFE||hemochromatosis
SERPINA1|α1-antitrypsin|aatd
GBA1|GBA|parkinson
LRRK2||parkinson
SNCA|α-synuclein|parkinson
PSEN1||alzheimer
APP||alzheimer
MAPT|tau|alzheimer
SOD1||als
C9orf72||als
TARDBP|TDP-43|als
TNF|TNF-α|rheumatoid,ibd
IL6|IL-6|rheumatoid,covid
IL1B|IL-1β|rheumatoid
IL10|IL-10|ibd
IFNG|IFN-γ|ibd
CCR5||hiv
ACE2||covid
TMPRSS2||covid,prostate
ESR1|ERα|breast
AR||prostate
FOXP3||autoimmune
MTOR|mTOR|tsc
AKT1||breast
NFKB1|NF-κB1|ibd,rheumatoid
STAT3||lymphoma
VEGFA|VEGF|renal
PPARG|PPARγ|t2d
TCF7L2||t2d
FTO||obesity
MC4R||obesity
LEP|leptin|obesity
GCK||mody
HNF1A||mody
CYP2D6||pharmacogenomics
CYP2C19||pharmacogenomics
VKORC1||pharmacogenomics
TPMT||pharmacogenomics
DPYD||pharmacogenomics
SLC6A4||depression
COMT||schizophrenia
BDNF||depression
MECP2||rett
SHANK3||autism
CHD8||autism
SCN1A||epilepsy
KCNQ1||long_qt
KCNH2|hERG|long_qt
MYH7||cardiomyopathy
MYBPC3||cardiomyopathy
TTN||cardiomyopathy
LMNA|lamin A/C|cardiomyopathy
PKD1||pkd
FBN1||marfan
GJB2|connexin 26|hearing_loss
USH2A||retinitis
ABCA4||stargardt
RPE65||retinitis
"""

DISEASES = MappingProxyType({
    "breast": "breast cancer", "ovarian": "ovarian cancer", "pancreatic": "pancreatic adenocarcinoma",
    "colorectal": "colorectal cancer", "lung": "lung adenocarcinoma", "glioma": "glioblastoma",
    "leukemia": "acute myeloid leukemia", "melanoma": "cutaneous melanoma", "prostate": "prostate cancer",
    "lymphoma": "diffuse large B-cell lymphoma", "retinoblastoma": "retinoblastoma", "thyroid": "medullary thyroid carcinoma",
    "gist": "gastrointestinal stromal tumour", "mpn": "myeloproliferative neoplasms", "gastric": "gastric cancer",
    "fibrosis": "pulmonary fibrosis", "renal": "clear cell renal carcinoma", "neurofibromatosis": "neurofibromatosis type 1",
    "cystic_fibrosis": "cystic fibrosis", "sickle_cell": "sickle cell disease", "huntington": "Huntington's disease",
    "fragile_x": "fragile X syndrome", "duchenne": "Duchenne muscular dystrophy", "sma": "spinal muscular atrophy",
    "hypercholesterolemia": "familial hypercholesterolemia", "alzheimer": "Alzheimer's disease",
    "cardiovascular": "coronary artery disease", "hemochromatosis": "hereditary hemochromatosis",
    "aatd": "alpha-1 antitrypsin deficiency", "parkinson": "Parkinson's disease", "als": "amyotrophic lateral sclerosis",
    "rheumatoid": "rheumatoid arthritis", "ibd": "inflammatory bowel disease", "covid": "COVID-19", "hiv": "HIV infection",
    "autoimmune": "autoimmune disease", "tsc": "tuberous sclerosis complex", "t2d": "type 2 diabetes",
    "obesity": "severe early-onset obesity", "mody": "maturity-onset diabetes of the young",
    "pharmacogenomics": "adverse drug response", "depression": "major depressive disorder",
    "schizophrenia": "schizophrenia", "rett": "Rett syndrome", "autism": "autism spectrum disorder",
    "epilepsy": "Dravet syndrome", "long_qt": "long QT syndrome", "cardiomyopathy": "hypertrophic cardiomyopathy",
    "pkd": "polycystic kidney disease", "marfan": "Marfan syndrome", "hearing_loss": "nonsyndromic hearing loss",
    "retinitis": "retinitis pigmentosa", "stargardt": "Stargardt disease",
})


def _genes() -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    rows = []
    for line in _GENE_TABLE.strip().splitlines():
        symbol, aliases, diseases = line.split("|")
        rows.append((symbol, tuple(a for a in aliases.split(",") if a), tuple(diseases.split(","))))
    return tuple(rows)


GENES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = _genes()
"""(symbol, aliases, disease keys) for each gene the synthetic corpus uses."""
GENE_SYMBOLS: frozenset[str] = frozenset(symbol for symbol, _, _ in GENES)

# Symbols that are also English words or common abbreviations: lower-case "met", "ret", "app" or "ar"
# in prose is a word, so normalize_genomics never upper-cases them.
AMBIGUOUS_SYMBOLS: frozenset[str] = frozenset({
    "APP", "AR", "ATM", "KIT", "MET", "RET", "REST", "SET", "CAT", "MAX", "CLOCK", "CAD", "APC", "WAS", "CAMP",
    "SHE", "CAPS", "PIGS", "MICE", "TANK", "CAST", "COIL", "DAMAGE", "GAS6", "HR", "IMPACT", "LIMA1", "NODAL",
})
GREEK_NAMES = MappingProxyType({
    "\u03b1": "alpha", "\u03b2": "beta", "\u03b3": "gamma", "\u03b4": "delta", "\u03b5": "epsilon",
    "\u03b6": "zeta", "\u03b7": "eta", "\u03b8": "theta", "\u03b9": "iota", "\u03ba": "kappa",
    "\u03bb": "lambda", "\u03bc": "mu", "\u03bd": "nu", "\u03be": "xi", "\u03c0": "pi", "\u03c1": "rho",
    "\u03c3": "sigma", "\u03c4": "tau", "\u03c5": "upsilon", "\u03c6": "phi", "\u03c7": "chi", "\u03c8": "psi",
    "\u03c9": "omega", "\u0394": "Delta", "\u0393": "Gamma", "\u03a9": "Omega",
})
