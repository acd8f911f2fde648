"""The sentence templates and name lists of the synthetic genomics corpus (see `forge.data.synthetic`).

All text here was written for Forge. Templates are English except `FOREIGN`, which gives the language
filter something to find. Slots in braces are filled by the generator: {g1} {g2} {g3} genes, {d} a disease,
{m} a method, {cell} a tissue or cell model, {n} a cohort size, {p} a p-value, {rs} an rs ID, {hgvs} and
{protein} variants, {band} a cytogenetic band, {fc} a fold change, {or} an odds ratio, {conc} a
concentration, {cite} a citation, {a1} an alias of g1.
"""
from __future__ import annotations

METHODS = (
    "whole-exome sequencing", "whole-genome sequencing", "RNA-seq", "single-cell RNA-seq", "ChIP-seq",
    "ATAC-seq", "a CRISPR-Cas9 knockout screen", "a genome-wide association study", "targeted panel sequencing",
    "long-read sequencing", "quantitative PCR", "methylation array profiling", "Mendelian randomization",
    "eQTL mapping", "proteomic profiling",
)
CELLS = (
    "peripheral blood samples", "tumour biopsies", "induced pluripotent stem cells", "HEK293T cells",
    "primary fibroblasts", "iPSC-derived cardiomyocytes", "primary hepatocytes", "cortical neurons",
    "CD4+ T cells", "patient-derived organoids", "lymphoblastoid cell lines", "bone marrow aspirates",
)
SURNAMES = (
    "Smith", "Garcia", "Chen", "Müller", "Kowalski", "Nakamura", "Okafor", "Rossi", "Novak", "Silva", "Kim",
    "Patel", "Johansson", "Dubois", "Andersen", "Ivanova", "Haddad", "Moreau", "Fischer", "Tanaka", "Lopez",
    "Nguyen", "Singh", "Walker", "O'Brien", "van der Berg", "Mensah", "Costa", "Larsen", "Yilmaz",
)
JOURNALS = (
    "Journal of Synthetic Genomics", "Forge Genetics Letters", "Computational Variant Biology",
    "Annals of Demo Genomics", "Reports in Simulated Medicine", "Open Genome Notes",
)
TITLES = (
    "{M} identifies {g1} variants associated with {d}",
    "Role of {g1} and {g2} in {d}: evidence from {m}",
    "{g1} loss-of-function variants and risk of {d}",
    "Functional characterization of {g1} in {cell}",
    "A {m} study of {d} implicates {g1}",
    "Altered {g2} expression in {d} is driven by {g1}",
    "Regulatory variation at {g1} modulates {d} susceptibility",
    "{g1}, {g2} and {g3} in the molecular landscape of {d}",
)
BACKGROUND = (
    "{D} is a complex disorder with a substantial genetic component{cite}.",
    "Variants in {g1} have been linked to {d} in several cohorts{cite}.",
    "The molecular mechanisms that connect {g1} to {d} remain poorly understood{cite}.",
    "{g1} encodes a protein that regulates cell growth and DNA repair{cite}.",
    "Previous studies reported that {g2} interacts with {g1} in {cell}{cite}.",
    "Understanding the role of {g1} may improve risk prediction for {d}{cite}.",
)
METHODS_SENTENCES = (
    "We performed {m} on {n} patients with {d} and {n2} matched controls.",
    "Samples were obtained from {cell} and sequenced to a mean depth of {depth}x.",
    "Cells were treated with {conc} of the inhibitor for 24 h at 37 °C.",
    "Variants were called with a standard pipeline and filtered at a minor allele frequency below 1%.",
    "Relative expression was computed with the $2^{{-\\Delta\\Delta C_t}}$ method and normalized to GAPDH.",
    "Intracellular [Ca2+] was measured with Fura-2 in {cell}.",
    "A {size} kb region on chromosome {band} containing {g1} was captured and sequenced.",
    "Association was tested with logistic regression adjusted for age, sex and ancestry{cite}.",
)
RESULTS = (
    "The lead variant {rs} near {g1} was associated with {d} ({p}, OR = {or}).",
    "We identified the missense variant {hgvs} ({protein}) in {g1} in {k} unrelated families.",
    "{g2} expression was increased {fc}-fold in {cell} from affected individuals ({p}).",
    "Loss of {g1} reduced proliferation by {pct}% compared with controls ({p}).",
    "Carriers of {rs} showed lower {g2} expression in {cell} ({p}).",
    "{A1} levels were elevated in patients compared with controls ({p}).",
    "Knockout of {g1} increased the expression of {g2} and {g3} ({p}).",
    "The signal at {band} was independent of known risk loci ({p}).",
)
DISCUSSION = (
    "These results suggest that {g1} contributes to {d} through altered regulation of {g2}.",
    "Our findings are consistent with earlier reports on {g1}{cite}.",
    "Further work is needed to test whether {g1} is a useful therapeutic target in {d}.",
    "The effect of {rs} on {g2} expression supports a regulatory mechanism.",
    "A limitation of this study is the modest size of the replication cohort.",
)
CONCLUSIONS = (
    "In conclusion, {g1} is a candidate gene for {d}.",
    "Together, these data implicate {g1} and {g2} in {d}.",
    "Our study highlights {g1} as a biomarker for {d}.",
)
ACKNOWLEDGEMENTS = (
    "We thank the participants and their families. This work was supported by a research grant.",
    "The authors thank the sequencing core facility for technical support.",
)
FOREIGN_TITLES = {"de": "Die Rolle von {g1} und {g2} bei {d}", "fr": "Le rôle de {g1} et {g2} dans {d}",
                  "es": "El papel de {g1} y {g2} en {d}"}
FOREIGN = {
    "de": ("Wir untersuchten die Rolle von {g1} bei {d} in einer Kohorte von {n} Patienten.",
           "Die Expression von {g2} war im Tumorgewebe deutlich erhöht ({p}).",
           "Diese Ergebnisse deuten darauf hin, dass {g1} ein möglicher Biomarker ist.",
           "Die Varianten wurden mittels Sequenzierung bestätigt und mit klinischen Daten verglichen.",
           "Weitere Studien sind nötig, um die Funktion von {g1} zu klären."),
    "fr": ("Nous avons étudié le rôle de {g1} dans {d} chez {n} patients.",
           "L'expression de {g2} était fortement augmentée dans les tissus tumoraux ({p}).",
           "Ces résultats suggèrent que {g1} pourrait servir de biomarqueur.",
           "Les variants ont été confirmés par séquençage et comparés aux données cliniques.",
           "D'autres études sont nécessaires pour préciser la fonction de {g1}."),
    "es": ("Estudiamos el papel de {g1} en {d} en una cohorte de {n} pacientes.",
           "La expresión de {g2} aumentó de forma notable en el tejido tumoral ({p}).",
           "Estos resultados sugieren que {g1} podría ser un biomarcador útil.",
           "Las variantes se confirmaron mediante secuenciación y se compararon con los datos clínicos.",
           "Se necesitan más estudios para aclarar la función de {g1}."),
}
