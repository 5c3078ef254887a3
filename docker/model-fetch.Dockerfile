# The Kubernetes init container (deploy/k8s): copies one stored version of the ensemble from object
# storage or the MLflow registry into the pod's model repository (`python -m export.model_store pull`).
# MLflow's artifact stores do the reading (boto3 for s3://); no torch, no Triton.
FROM python:3.11-slim
WORKDIR /opt/finer-triton
COPY pyproject.toml README.md ./
COPY finer ./finer
COPY export ./export
RUN pip install --no-cache-dir ".[fetch]" && python3 -c "import export.model_store, mlflow, boto3"
USER nobody
ENTRYPOINT ["python3", "-m", "export.model_store"]
