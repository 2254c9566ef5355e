# syntax=docker/dockerfile:1
# One image for every fairq process; the command picks which (see deploy/entrypoint.sh):
#   api | worker [dramatiq options] | scheduler | migrate | up | any `fairq` subcommand
# Build:  docker build -t fairq .

# --- build: wheels of fairq and its three bundled plugins -----------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY setup.cfg pyproject.toml ./
COPY app ./app
COPY migrations ./migrations
COPY plugins ./plugins
RUN python -m pip wheel --wheel-dir /wheels . plugins/csv_upi plugins/csv_neft plugins/campaigns

# --- runtime: no compiler, no sources, not root ------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FAIRQ_DATA_DIR=/var/lib/fairq
RUN groupadd --system --gid 10001 fairq \
 && useradd --system --uid 10001 --gid fairq --home-dir /app --shell /usr/sbin/nologin fairq \
 && mkdir -p /app /var/lib/fairq && chown fairq:fairq /var/lib/fairq
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=root:root deploy/entrypoint.sh /usr/local/bin/fairq-entrypoint
USER fairq
EXPOSE 8000 9191
# The API's liveness; worker and scheduler containers override or disable it (compose, k8s).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["fairq-entrypoint"]
CMD ["api"]
