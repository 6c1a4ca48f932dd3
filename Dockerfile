# The platform image used by docker-compose.yml and nomad/abaco.nomad.hcl.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobs jobs
COPY api api
COPY scheduler scheduler
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "8", "api.app:create_app()"]
