#!/usr/bin/env python3
"""Speed and memory of the `pubmed_xml` reader on generated PubMed files of growing size.

Writes a PubmedArticleSet of N citations shaped like the annual baseline's (a DOCTYPE, a structured abstract
of about 1,500 characters, ten authors, MeSH headings, keywords, article ids; deterministic for a given N),
plain and gzipped, then reads each in a fresh process: every citation through the reader and validated into a
ScientificPaper, then let go (as a stream; `data.max_papers` or a step that drops papers keeps no more).
Prints Markdown for BENCHMARKS.md: the machine and date, then per file its size, seconds, papers/s, the peak
resident memory of the reading process (ru_maxrss) and that peak less its resident memory just before reading
(after its imports), which is what reading added. Flat memory shows as the same peak for 1,000 and 100,000
citations.

    python benchmarks/pubmed_read.py                          # 1,000, 10,000 and 100,000 citations
    python benchmarks/pubmed_read.py --sizes 1000 20000 --keep /tmp/pubmed
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on the path)

REPO = Path(__file__).resolve().parent.parent
GENES = ["BRCA1", "TP53", "EGFR", "KRAS", "MYC", "PTEN", "ALK", "ROS1", "STK11", "CDKN2A", "IDH1", "BRAF"]
WORDS = ("the of and in to with was were for that by on from as at is this patients cells expression "
         "tumour mutation variant cohort associated increased reduced risk response analysis").split()


def citation(i: int, rng: random.Random) -> str:
    gene = rng.choice(GENES)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + f" {gene}."

    parts = "".join(f'<AbstractText Label="{label}" NlmCategory="{label}">{sentence(45)} {sentence(40)}</AbstractText>'
                    for label in ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"))
    authors = "".join(f"<Author ValidYN=\"Y\"><LastName>Author{rng.randrange(10**6)}</LastName><ForeName>A</ForeName>"
                      f"<Initials>A</Initials></Author>" for _ in range(10))
    mesh = "".join(f"<MeshHeading><DescriptorName UI=\"D{rng.randrange(10**6):06d}\" MajorTopicYN=\"N\">"
                   f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}</DescriptorName></MeshHeading>" for _ in range(8))
    pmid = 10_000_000 + i
    return (f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
            f'<Article PubModel="Print"><Journal><JournalIssue CitedMedium="Internet"><PubDate><Year>{1990 + i % 35}'
            f'</Year></PubDate></JournalIssue><Title>Journal of Synthetic Genomics</Title></Journal>'
            f'<ArticleTitle>{gene} and {rng.choice(WORDS)} {rng.choice(WORDS)} in cohort {i}.</ArticleTitle>'
            f'<ELocationID EIdType="doi" ValidYN="Y">10.1000/jsg.{pmid}</ELocationID><Abstract>{parts}</Abstract>'
            f'<AuthorList CompleteYN="Y">{authors}</AuthorList></Article><MeshHeadingList>{mesh}</MeshHeadingList>'
            f'<KeywordList Owner="NOTNLM"><Keyword MajorTopicYN="N">{gene}</Keyword></KeywordList></MedlineCitation>'
            f'<PubmedData><ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList></PubmedData>'
            f'</PubmedArticle>\n')


def write_file(path: Path, n: int, seed: int = 2026) -> None:
    rng = random.Random(seed)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as out:
        out.write('<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January '
                  '2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n<PubmedArticleSet>\n')
        for i in range(n):
            out.write(citation(i, rng))
        out.write("</PubmedArticleSet>\n")


CHILD = """
import json, resource, sys, time
from pathlib import Path
from forge.data.papers import ScientificPaper
from forge.data.pubmed import read_pubmed
from forge.recipe.schema import DataSource
def current_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = current_kib()
started, papers, bad = time.perf_counter(), 0, 0
for _, _, default_id, record in read_pubmed(Path(sys.argv[1]), DataSource(path=sys.argv[1])):
    if isinstance(record, dict):
        ScientificPaper.from_record(record, default_id)
        papers += 1
    else:
        bad += 1
seconds = time.perf_counter() - started
print(json.dumps({"papers": papers, "bad": bad, "seconds": seconds,
                  "base_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=REPO,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="forge-pubmed-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{_dt.date.today().isoformat()}; load average before {os.getloadavg()[0]:.1f} (a shared machine: "
          "other work slows the reads)\n")
    print("| citations | file | size MB | seconds | papers/s | peak RSS MiB | added by reading MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        for suffix in (".xml", ".xml.gz"):
            path = folder / f"pubmed_{n}{suffix}"
            if not path.exists():
                write_file(path, n)
            result = measure(path)
            assert result["papers"] == n and result["bad"] == 0, result
            print(f"| {n:,} | {suffix.lstrip('.')} | {path.stat().st_size / 1e6:,.1f} | {result['seconds']:.1f} | "
                  f"{n / result['seconds']:,.0f} | {result['peak_kib'] / 1024:,.0f} | "
                  f"{(result['peak_kib'] - result['base_kib']) / 1024:,.1f} |", flush=True)
            if args.keep is None:
                path.unlink()
    if args.keep is None:
        folder.rmdir()


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - started:.0f} s in all)")
