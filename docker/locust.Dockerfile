# Locust with the Triton client, for the load-test users in loadtest/.
FROM locustio/locust:2.47.0
USER root
WORKDIR /opt/finer-triton
COPY pyproject.toml README.md ./
COPY finer ./finer
COPY client ./client
COPY loadtest ./loadtest
RUN pip install --no-cache-dir ".[client]"
USER locust
