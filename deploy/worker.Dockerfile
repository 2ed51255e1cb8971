# One image for every party's worker (and the operators' CLI and codec server). Each party runs it
# on its own host with its own `--agency`, mounting only its own standard, keys, TLS client
# certificate and envconfig profile: the image itself holds no standard, no key, no certificate.
#
#   docker build -f deploy/worker.Dockerfile -t frontier-review-worker .      (from the repository root)
#   docker run --rm -v /etc/dod/frontier-review:/run/frontier-review:ro \
#       -v dod-records:/var/lib/frontier-review frontier-review-worker --agency dod --profile dod
#
# Written for a cluster this machine cannot run (no container engine here): not built here.
# deploy/worker.Dockerfile.dockerignore keeps examples/standards, keys, records and tests out.

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/frontier-review
COPY pyproject.toml README.md starter.py worker.py ./
COPY activities ./activities
COPY api ./api
COPY audit ./audit
COPY cli ./cli
COPY domain ./domain
COPY infra ./infra
COPY workflows ./workflows
COPY policies ./policies
COPY examples/registry.toml ./examples/registry.toml
RUN pip install --editable . && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin frontier

# Everything a party holds comes from its own mount (read-only), never from the image:
#   /run/frontier-review/temporal.toml    envconfig profile(s): address, namespace, TLS client cert/key, CA
#   /run/frontier-review/tls/             that party's client certificate and key, and the cluster's CA
#   /run/frontier-review/keys/            payload-keys.json, public-keys.json, trust-anchors.json,
#                                         signing/<party>.pem (its own signing key only)
#   /run/frontier-review/standards/       <agency>.toml (a standards body's own standard only)
ENV TEMPORAL_CONFIG_FILE=/run/frontier-review/temporal.toml \
    FRONTIER_REVIEW_KEYS_DIR=/run/frontier-review/keys \
    FRONTIER_REVIEW_STANDARDS_DIR=/run/frontier-review/standards \
    FRONTIER_REVIEW_DATA_DIR=/var/lib/frontier-review

RUN mkdir -p /var/lib/frontier-review && chown frontier /var/lib/frontier-review
VOLUME /var/lib/frontier-review
USER 10001
ENTRYPOINT ["python", "/opt/frontier-review/worker.py"]
CMD ["--help"]
