# One image for every service of compose.yaml: the API, the outbox relay, each stage worker,
# projections and the webhook dispatcher differ only by their command.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    STRATEGIES_LOG_FORMAT=json

RUN pip install --no-cache-dir uv \
    && useradd --create-home --uid 10001 strategies

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY domain ./domain
COPY projections ./projections
COPY workers ./workers
COPY api ./api
COPY infra ./infra
RUN uv sync --frozen --no-dev

USER strategies
ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 8000
CMD ["strategies", "serve", "--host", "0.0.0.0", "--port", "8000"]
