# Archive tagging (`python -m client.batch`), one pod per shard of the Indexed Job in
# deploy/k8s/components/archive-job: the thin client and the filing reader; no torch, no Triton.
FROM python:3.11-slim
WORKDIR /opt/finer-triton
COPY pyproject.toml README.md ./
COPY finer ./finer
COPY filings ./filings
COPY client ./client
RUN pip install --no-cache-dir ".[batch]" && python3 -c "import client.batch, filings.ixbrl, lxml"
USER 1000
ENTRYPOINT ["python3", "-m", "client.batch"]
