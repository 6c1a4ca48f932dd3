# The platform image used by docker-compose.yml and nomad/abaco.nomad.hcl.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobs jobs
COPY api api
COPY scheduler scheduler
COPY launcher launcher
RUN pip install --no-cache-dir .
EXPOSE 8000
# Binds where the settings say: ABACO_API_HOST may leave loopback only with ABACO_AUTH=jwt
# (the app refuses to start otherwise).
# PROMETHEUS_MULTIPROC_DIR: each gunicorn worker counts requests in a file there, and
# GET /metrics adds them up (api/metrics.py).
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/abaco-metrics
CMD ["sh", "-c", "exec gunicorn --bind \"${ABACO_API_HOST:-127.0.0.1}:${ABACO_API_PORT:-8000}\" --workers 4 --worker-class gevent --worker-connections 1000 'api.app:create_app()'"]
