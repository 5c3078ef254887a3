"""The first stage: inline-XBRL filings -> FiNER-format sentences.

`filings.ixbrl` reads one filing's narrative text and its tagged numbers, `filings.corpus` builds a
corpus of train/validation/test splits from a folder of them (`python -m filings.corpus`), cached
per filing by `filings.cache` and summarised by `filings.report`. Training reads the corpus; the web
app's filing check and batch tagging read filings with the same reader.
"""
