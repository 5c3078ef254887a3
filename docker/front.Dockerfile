# The front doors (server/front.py) in front of the official Triton container: body and message
# limits, admission control, the operator-API gate and canary readiness. Python only (finer/ and
# server/); no Triton, no model.
FROM python:3.11-slim
WORKDIR /opt/finer-triton
COPY pyproject.toml README.md ./
COPY finer ./finer
COPY server ./server
RUN pip install --no-cache-dir ".[front]" && python3 -c "import server.front"
USER nobody
ENTRYPOINT ["python3", "-m", "server.front"]
