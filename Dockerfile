# Consent gateway image. Configuration is mounted at /config (gateway.toml and senders/);
# secrets and DSNs come from the environment (GATEWAY_DATABASE_URL, GATEWAY_REDIS_URL,
# GATEWAY_SECRET_KEY). Build: docker build -t consent-gateway .  (compose.yaml runs it.)
FROM python:3.11-slim-bookworm

# GATEWAY_ALLOW_EMBEDDED_DATABASE=0: without GATEWAY_DATABASE_URL every command exits 2
# instead of starting the embedded PostgreSQL, whose data would live in the container and be
# lost when it is recreated; set it to 1 (with [database] embedded_data_dir on a volume) to
# accept that.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_ALLOW_EMBEDDED_DATABASE=0

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app gateway

WORKDIR /app
# The runtime lock first (pinned, hashes checked): this layer is rebuilt only when it changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY keywords ./keywords
COPY rules ./rules
# The shipped send-rule table (docs/rules.md): [rules] shipped_dir "" finds it beside
# /config/gateway.toml. A mount over /config/rules replaces it; add stricter rules with
# [rules] operator_dir instead.
COPY config/rules /config/rules
RUN pip install --no-cache-dir --no-deps . && mkdir -p /app/var && chown gateway:gateway /app/var

USER 10001:10001
# HTTP ([http] port) and inbound SMTP ([smtp] port), as config/gateway.toml and
# deploy/gateway.toml set them.
EXPOSE 8080 2525
VOLUME ["/config"]
# `gateway healthcheck` reads [http] host and port from the configuration and asks
# /readyz?scope=intake: healthy while this instance can record an opt-out.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s \
    CMD ["gateway", "--config", "/config/gateway.toml", "healthcheck"]
ENTRYPOINT ["gateway", "--config", "/config/gateway.toml"]
CMD ["serve"]
