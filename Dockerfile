# Consent gateway image. Configuration is mounted at /config (gateway.toml and senders/);
# secrets and DSNs come from the environment (GATEWAY_DATABASE_URL, GATEWAY_REDIS_URL,
# GATEWAY_SECRET_KEY). Build: docker build -t consent-gateway .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app gateway

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY keywords ./keywords
RUN pip install --no-cache-dir . && mkdir -p /app/var && chown gateway:gateway /app/var

USER 10001:10001
EXPOSE 8080
VOLUME ["/config"]
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"]
ENTRYPOINT ["gateway", "--config", "/config/gateway.toml"]
CMD ["serve"]
