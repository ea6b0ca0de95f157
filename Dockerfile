FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
COPY agents agents
COPY quix_worker quix_worker
COPY clients clients
COPY devtools devtools
COPY cli cli
RUN pip install --no-cache-dir '.[quix]'
ENTRYPOINT []
